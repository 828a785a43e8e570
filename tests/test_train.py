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
from gancore.losses import LOSSES
from gancore.trainer import RunFailed
from conftest import subprocess_env, tiny


def weights(run_dir, step):
    return torch.load(runs.checkpoint_path(run_dir, step), weights_only=False)


def assert_same_state(a, b):
    for key in ("G", "D", "G_ema"):
        for name in a[key]:
            torch.testing.assert_close(a[key][name], b[key][name], msg=f"{key}.{name}")


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
    straight = gancore.train(tiny(name="straight", steps=8, ckpt_every=4, conditioning="concat"))
    split = gancore.train(tiny(name="split", steps=4, ckpt_every=4, conditioning="concat"))
    gancore.train(resume=split, steps=8)
    assert_same_state(weights(straight, 8), weights(split, 8))
    a, b = runs.read_metrics(straight), runs.read_metrics(split)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [2, 4, 6, 8]
    for ra, rb in zip(a, b):
        for key in ("loss_d", "loss_g", "d_real", "d_fake", "grad_norm_d", "grad_norm_g", "images_seen"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-5), (ra["step"], key)
    status = runs.read_status(split)
    assert [r["step"] for r in status["resumes"]] == [4]
    assert status["state"] == "done" and status["step"] == 8


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
    d_loss, g_loss = LOSSES["nonsaturating"]
    calls = {"n": 0}

    def d_loss_that_diverges(real, fake, smooth):  # fault injection: the real loss, then NaN from the 5th D step
        calls["n"] += 1
        loss = d_loss(real, fake, smooth)
        return loss * float("nan") if calls["n"] >= 5 else loss

    monkeypatch.setitem(LOSSES, "nonsaturating", (d_loss_that_diverges, g_loss))
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
