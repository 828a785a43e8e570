"""The training loop's promises: exact resume, crash safety, signals, NaN handling, the run directory."""
import json
import math
import signal
import subprocess
import sys
import time

import pytest
import torch

import gancore
from gancore import runs
from gancore import losses
from gancore.trainer import RunFailed
from conftest import subprocess_env, tiny
from test_exact_resume import assert_same_records, assert_same_state, ema_is_an_average


def weights(run_dir, step):
    return torch.load(runs.checkpoint_path(run_dir, step), weights_only=False)


def test_run_directory_contents(runs_root):
    run_dir = gancore.train(tiny(conditioning="concat", name="contents"))
    assert run_dir == str(runs_root / "contents")
    files = {p.name for p in (runs_root / "contents").iterdir()}
    assert {"config.json", "data.json", "status.json", "metrics.jsonl", "train.log", "samples", "checkpoints"} <= files
    config = json.loads((runs_root / "contents" / "config.json").read_text())
    assert config["model"] == "dcgan" and config["image_size"] == 16 and config["g_depth"] == 2  # resolved, no "auto"
    status = json.loads((runs_root / "contents" / "status.json").read_text())
    assert status["state"] == "done" and status["schema"] == runs.SCHEMA_VERSION and status["step"] == 6
    assert status["images_seen"] == 6 * 16
    assert sorted(runs.sample_grids(run_dir)) == [3, 6]
    from PIL import Image

    grid = Image.open(runs.sample_grids(run_dir)[6])
    assert grid.height > grid.width * 0.9  # 10 classes x 10 columns: one row per class
    rec = runs.read_metrics(run_dir)[-1]
    assert rec["step"] == 6 and rec["images_seen"] == 96 and rec["lr_g"] == 2e-4 and rec["img_per_s"] > 0


def test_resumed_run_equals_uninterrupted_run(runs_root):
    """At the default EMA settings, past the ramp-up: ema_rampup 0.05 caps the averaging horizon at 0.05 x step, so
    the EMA G copies G up to step 20 and averages from step 21 on; the interrupted run resumes at step 20."""
    fields = tiny(conditioning="concat", ckpt_every=10, log_every=5, sample_every=24)
    straight = gancore.train(dict(fields, name="straight", steps=24))
    split = gancore.train(dict(fields, name="split", steps=20))
    gancore.train(resume=split, steps=24)
    a = weights(straight, 24)
    assert_same_state(a, weights(split, 24))
    assert ema_is_an_average(a)
    records = runs.read_metrics(straight)
    assert [r["step"] for r in records] == [5, 10, 15, 20, 24]
    assert_same_records(records, runs.read_metrics(split))
    status = runs.read_status(split)
    assert [r["step"] for r in status["resumes"]] == [20]
    assert status["state"] == "done" and status["step"] == 24


@pytest.mark.parametrize("decay, rampup", [(0.75, 1.0), (0.9, 0.0)])
def test_ema_is_the_average_of_g_the_docs_describe(runs_root, decay, rampup):
    """G and the EMA G checkpointed at every step: each step moves the EMA G's weights towards G's by
    1 / horizon, the horizon 1 / (1 - ema_decay) capped at ema_rampup x step (rampup 0: no cap) and at least 1,
    computed here by hand from the checkpoints. Decay 0.75 with rampup 1: horizons 1, 2, 3, 4, 4, 4; decay 0.9
    with rampup 0: 10 throughout."""
    run_dir = gancore.train(tiny(dataset="ring", ema_decay=decay, ema_rampup=rampup, steps=6, ckpt_every=1))
    states = {step: weights(run_dir, step) for step in range(1, 7)}
    own = ("running_mean", "running_var", "num_batches_tracked")  # the EMA G's batch norms settle their own
    names = [k for k in states[1]["G"] if not k.endswith(own)]
    for step in range(2, 7):
        horizon = min(1 / (1 - decay), rampup * step) if rampup else 1 / (1 - decay)
        w = 1 / max(horizon, 1.0)
        for k in names:
            before, g = states[step - 1]["G_ema"][k].double(), states[step]["G"][k].double()
            torch.testing.assert_close(states[step]["G_ema"][k].double(), before + w * (g - before), rtol=1e-6,
                                       atol=1e-7, msg=f"step {step}: G_ema.{k}")
    assert ema_is_an_average(states[6])


def test_a_short_class_conditional_run_draws_the_classes_asked_for(runs_root):
    """500 steps of concat on digits, scored by the shipped digits evaluator (the run's own evaluation): the
    generated images must be read as the classes G was asked for far more often than chance (0.1).
    Measured (1,000 samples, torch 2.13 CPU, about 9 s on one core): cond_acc 0.900, 0.875, 0.840 for seeds 0, 1, 2;
    with D judging G's fakes against other labels in the G step (G learns to ignore its labels) 0.102, 0.140,
    0.109; with G's concat embedding fed class 0 whatever the label 0.108 (seed 0). The threshold 0.5 sits far
    from both. (D judging fakes against wrong labels in the D step gives 0.67-0.78: D then learns "mismatched =
    fake" and still teaches G the classes; the next test catches that.)"""
    run_dir = gancore.train(tiny(conditioning="concat", steps=500, g_width=16, d_width=16, batch_size=32, lr_g=1e-3,
                                 lr_d=1e-3, beta1=0.2, beta2=0.99, log_every=100, sample_every=500, ckpt_every=500,
                                 eval_every=500, eval_n=1000))
    final = runs.read_metrics(run_dir)[-1]
    assert final["step"] == 500 and final["provenance"]["evaluator"] == "digits"
    assert final["cond_acc"] > 0.5, final["cond_acc"]


@pytest.mark.parametrize("conditioning", ["concat", "acgan", "projection"])
def test_d_judges_every_fake_with_the_labels_it_was_made_for(runs_root, monkeypatch, conditioning):
    """The networks the step calls are watched: every fake D judges, in the D step and in the G step, comes with
    the labels G made it for (a D shown fakes with other labels learns to reject mismatched pairs and can still
    look right by class accuracy, see above)."""
    from gancore.trainer import Trainer

    made, judged = {}, []  # id(fake) -> (fake, labels G got); (labels G got, labels D got) per judged fake
    init = Trainer.__init__

    def watched_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        G_step = self.G_step

        def G(z, y):
            x = G_step(z, y)
            made[id(x)] = (x, y)
            return x

        def watch(D_step):
            def D(x, y):
                if id(x) in made and made[id(x)][0] is x:
                    judged.append((made[id(x)][1], y))
                return D_step(x, y)
            return D

        self.G_step, self.D_step, self.D_frozen = G, watch(self.D_step), watch(self.D_frozen)

    monkeypatch.setattr(Trainer, "__init__", watched_init)
    gancore.train(tiny(conditioning=conditioning, steps=3, n_critic=2))
    assert len(judged) == 3 * (2 + 1)  # every D step's fakes and every G step's
    assert all(y_made is not None for y_made, _ in judged)
    assert all(torch.equal(y_made, y_judged) for y_made, y_judged in judged), "fakes judged against other labels"


def test_same_seed_same_run_and_other_seed_differs(runs_root):
    a = runs.read_metrics(gancore.train(tiny(name="a")))
    b = runs.read_metrics(gancore.train(tiny(name="b")))
    c = runs.read_metrics(gancore.train(tiny(name="c", seed=1)))
    assert [r["loss_d"] for r in a] == [r["loss_d"] for r in b]
    assert [r["loss_d"] for r in a] != [r["loss_d"] for r in c]


def test_resume_refuses_changing_what_is_trained(runs_root):
    run_dir = gancore.train(tiny(name="r"))
    with pytest.raises(gancore.ConfigError, match="--loss: cannot change when resuming"):
        gancore.train(resume=run_dir, loss="lsgan")
    with pytest.raises(gancore.ConfigError, match="--steps: 2 is before the latest checkpoint"):
        gancore.train(resume=run_dir, steps=2)


def test_existing_run_name_is_never_overwritten(runs_root):
    run_dir = gancore.train(tiny(name="keep"))
    before = (runs_root / "keep" / "metrics.jsonl").read_bytes()
    with pytest.raises(gancore.RunError, match="already exists"):
        gancore.train(tiny(name="keep", loss="lsgan"))
    assert (runs_root / "keep" / "metrics.jsonl").read_bytes() == before
    assert json.loads((runs_root / "keep" / "config.json").read_text())["loss"] == "nonsaturating"
    assert run_dir


def test_non_finite_loss_fails_the_run_and_keeps_the_good_checkpoint(runs_root, monkeypatch):
    d_loss = losses.d_minimax
    calls = {"n": 0}

    def d_loss_that_diverges(real, fake, smooth):  # fault injection: the real loss, then NaN from the 5th D step
        calls["n"] += 1
        loss = d_loss(real, fake, smooth)
        return loss * float("nan") if calls["n"] >= 5 else loss

    monkeypatch.setattr(losses, "d_minimax", d_loss_that_diverges)  # the nonsaturating objective's D loss
    with pytest.raises(RunFailed, match="non-finite loss"):
        gancore.train(tiny(name="nan", steps=10, ckpt_every=3, log_every=2))
    run_dir = runs_root / "nan"
    status = runs.read_status(run_dir)
    assert status["state"] == "failed" and "non-finite" in status["error"] and "step 3" in status["error"]
    assert sorted(runs.checkpoints(run_dir)) == [3]  # nothing saved after the NaN appeared
    state = weights(run_dir, 3)
    assert all(torch.isfinite(t).all() for t in state["G"].values() if t.is_floating_point())
    assert all(math.isfinite(r["loss_d"]) for r in runs.read_metrics(run_dir))


def test_metrics_reader_tolerates_half_written_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss_d": 0.5}\n{"step": 2, "loss_d": 0.4}\n{"step": 3, "lo')
    assert [r["step"] for r in runs.read_metrics(tmp_path)] == [1, 2]


def test_metrics_reader_reads_infinity_and_skips_a_corrupt_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "reverse_kl": Infinity}\n{"step": 2, "reverse_kl": 0.1}\n')
    assert [r["reverse_kl"] for r in runs.read_metrics(tmp_path)] == [math.inf, 0.1]  # json.dumps writes inf so
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2, "lo\n{"step": 3}\n')
    assert [r["step"] for r in runs.read_metrics(tmp_path)] == [1, 3]


def start_training(runs_root, *args):
    cmd = [sys.executable, "-m", "gancore", "train", *args]
    return subprocess.Popen(cmd, env=subprocess_env(runs_root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


LONG_RUN = ["--dataset", "digits", "--z_dim", "8", "--g_width", "8", "--d_width", "8", "--batch_size", "16",
            "--steps", "100000", "--log_every", "10", "--ckpt_every", "50", "--sample_every", "1000", "--device", "cpu",
            "--eval_every", "0"]  # signals and crashes, not evaluation (test_metrics.py covers that)


def test_kill_9_then_resume(runs_root):
    proc = start_training(runs_root, *LONG_RUN, "--name", "killed")
    run_dir = runs_root / "killed"
    wait_for(lambda: len(runs.checkpoints(run_dir)) >= 2 and runs.read_status(run_dir).get("step", 0) > 110)
    proc.kill()  # SIGKILL: no chance to clean up
    proc.wait()
    status = runs.read_status(run_dir)
    assert status["state"] == "running" and not runs.is_active(status)
    last_ckpt = max(runs.checkpoints(run_dir))
    logged_past = max(r["step"] for r in runs.read_metrics(run_dir))
    assert logged_past > last_ckpt  # records after the checkpoint exist and must not be duplicated

    out = subprocess.run([sys.executable, "-m", "gancore", "runs"], env=subprocess_env(runs_root),
                         capture_output=True, text=True)
    assert "running (no process)" in out.stdout

    done = subprocess.run([sys.executable, "-m", "gancore", "train", "--resume", str(run_dir),
                           "--steps", str(last_ckpt + 30)], env=subprocess_env(runs_root), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(run_dir)
    steps = [r["step"] for r in runs.read_metrics(run_dir)]
    assert steps == list(range(10, last_ckpt + 31, 10))  # no gap, no duplicate
    status = runs.read_status(run_dir)
    assert status["state"] == "done" and status["resumes"][-1]["step"] == last_ckpt


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_checkpoints_and_stops(runs_root, sig):
    proc = start_training(runs_root, *LONG_RUN, "--name", "sig")
    run_dir = runs_root / "sig"
    wait_for(lambda: runs.read_status(run_dir).get("step", 0) > 20)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip().splitlines()[-1] == str(run_dir)
    status = runs.read_status(run_dir)
    assert status["state"] == "stopped"
    assert max(runs.checkpoints(run_dir)) == status["step"] > 20
    assert "stopped by" in (run_dir / "train.log").read_text()


def test_heartbeat_and_pid_while_running(runs_root):
    proc = start_training(runs_root, *LONG_RUN, "--name", "live")
    run_dir = runs_root / "live"
    try:
        wait_for(lambda: runs.read_status(run_dir).get("state") == "running")
        status = runs.read_status(run_dir)
        assert status["pid"] == proc.pid and runs.is_active(status)
        assert time.time() - status["heartbeat"] < 30
        with pytest.raises(gancore.RunError, match="still being trained"):
            gancore.train(resume=run_dir)
    finally:
        proc.terminate()
        proc.wait()


def test_a_streamed_dataset_trains_and_resumes_exactly(runs_root, tmp_path, monkeypatch):
    """A set larger than the in-memory limit trains from its memory map through data.Loader, resumably."""
    import numpy as np

    from gancore.data import load_dataset

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "set.npz", x=rng.integers(0, 256, (200, 16, 16, 1), dtype=np.uint8), y=np.arange(200) % 4)
    monkeypatch.setenv("GANCORE_DATA_IN_MEMORY_MB", "0")  # stream everything
    assert load_dataset("npz", str(tmp_path / "set.npz")).to("cpu").streamed
    fields = tiny(dataset="npz", data_path=str(tmp_path / "set.npz"), conditioning="concat", ckpt_every=4)
    straight = gancore.train(dict(fields, name="straight", steps=8))
    split = gancore.train(dict(fields, name="split", steps=4))
    gancore.train(resume=split, steps=8)
    assert_same_state(weights(straight, 8), weights(split, 8))
    assert weights(split, 8)["rng"]["loader"] == {"k": 8}


def test_a_run_from_before_pad_to_samples_and_resumes_as_it_was(runs_root):
    """config.json of a run made before the pad_to field lacks it; the 28 px recipe must not pad such a run."""
    from pathlib import Path

    from gancore.sample import load_generator

    path = Path(gancore.train(tiny(name="old", dataset="mnist-5k", pad_to=28, steps=2, log_every=1, sample_every=2,
                                   ckpt_every=2)))
    config = json.loads((path / "config.json").read_text())
    del config["pad_to"]
    (path / "config.json").write_text(json.dumps(config))
    G, _, _ = load_generator(path)  # the stored 2-stage weights load into the network rebuilt from config.json
    assert G(torch.randn(3, 8)).shape == (3, 1, 28, 28)
    gancore.train(resume=str(path), steps=4)
    assert runs.read_status(path)["step"] == 4 and runs.read_json(path / "config.json")["pad_to"] == 28
