"""Multi-process training under torchrun (gloo, 2 CPU processes, tiny configs): one run directory written
by rank 0, identical weights on every rank, exact resume with as many processes, resume with another
number, a failing rank that stops the other, SIGTERM; and torch.compile on the CPU."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import gancore
from gancore import runs
from conftest import ROOT, subprocess_env, tiny, wait_for

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo on Linux")


def torchrun(runs_root, args, nproc=2, env=None, timeout=240, wait=True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "gancore", "train", *args]
    environ = dict(subprocess_env(runs_root), OMP_NUM_THREADS="1", **(env or {}))
    proc = subprocess.Popen(cmd, env=environ, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def flags(**fields) -> list[str]:
    return [a for k, v in fields.items() for a in (f"--{k}", str(v))]


def weights(run_dir, step):
    return torch.load(runs.checkpoint_path(run_dir, step), weights_only=True)


def same_weights(a, b):
    for key in ("G", "D", "G_ema"):
        for name in a[key]:
            if not torch.equal(a[key][name], b[key][name]):
                return f"{key}.{name}"
    return None


def test_two_processes_train_one_run_with_identical_ranks(runs_root):
    """DCGAN D with batch norm, a conditional G with batch norm, evaluation on rank 0, EMA."""
    code, out, err = torchrun(runs_root, flags(**tiny(name="ddp", conditioning="concat", steps=8, log_every=2,
                                                          sample_every=4, ckpt_every=4, eval_every=4, eval_n=40,
                                                          batch_size=32)))
    assert code == 0, err
    assert out.strip().splitlines() == [str(runs_root / "ddp")]  # rank 0 alone prints the run directory
    assert [p.name for p in runs_root.iterdir()] == ["ddp"]
    records = runs.read_metrics(runs_root / "ddp")
    assert [r["step"] for r in records] == [2, 4, 6, 8] and records[-1]["images_seen"] == 8 * 32
    assert "fid" in records[1] and "fid" in records[3]
    status = runs.read_status(runs_root / "ddp")
    assert status["state"] == "done" and status["world_size"] == 2
    log = (runs_root / "ddp" / "train.log").read_text()
    assert "on cpu x 2 processes" in log and "ranks agree: G, D and G_ema are identical on all 2 processes" in log
    assert log.count("step 8 ") == 1  # one writer
    state = weights(runs_root / "ddp", 8)
    assert state["world_size"] == 2 and len(state["rng"]["ranks"]) == 2
    ranks = state["rng"]["ranks"]
    assert torch.equal(ranks[0]["data"], ranks[1]["data"])  # one global stream of batches, each rank its slice
    draws = []
    for rank in ranks:  # dropout, augmentation and penalty draws: each rank's own (the draws differ, not only bytes)
        gen = torch.Generator()
        gen.set_state(rank["torch"])
        draws.append(torch.rand(8, generator=gen))
    assert not torch.equal(*draws)


@pytest.mark.parametrize("recipe", [
    dict(),  # the default DCGAN: batch norm in D, whose statistics follow each rank's own fakes
    dict(loss="hinge", r1_gamma=1.0),
    dict(model="progressive", image_size=16, fade_images=64, stable_images=64),
    dict(conditioning="projection", sn_g=True),
], ids=["dcgan", "r1", "progressive", "projection-sn_g"])
def test_ranks_with_their_own_streams_end_done_and_agree(runs_root, recipe):
    """Each rank draws its own batches and noise (not the same stream under another name), and still every rank
    ends with the same G, D and G_ema: the agreement check at the end holds, so the run ends done."""
    code, _, err = torchrun(runs_root, flags(**tiny(name="own", batch_size=32, steps=6, ckpt_every=6, **recipe)))
    assert code == 0, err
    assert runs.read_status(runs_root / "own")["state"] == "done"
    assert "ranks agree: G, D and G_ema are identical on all 2 processes" in (runs_root / "own" / "train.log").read_text()


def test_two_processes_train_what_one_process_trains(runs_root):
    """Every rank draws the global batch of images and noise and keeps its half; DDP averages the gradients and the
    records average the means. So two processes train the one-process run: the same losses at every record and the
    same weights, up to float summation order (an MLP: no batch statistics, which would see half the batch). Each
    rank drawing the same half, or its own stream, or a gradient or loss left unaveraged, would break the equality."""
    common = dict(dataset="ring", model="mlp", g_width=16, d_width=16, z_dim=2, batch_size=64, steps=30, log_every=5,
                  ckpt_every=30, sample_every=30, eval_every=0, ema_rampup=0.5, device="cpu")
    code, _, err = torchrun(runs_root, flags(**dict(common, name="two")))
    assert code == 0, err
    gancore.train(dict(common, name="one"))
    two, one = runs.read_metrics(runs_root / "two"), runs.read_metrics(runs_root / "one")
    for key in ("loss_d", "loss_g", "d_real", "d_fake", "grad_norm_d", "grad_norm_g"):
        assert [r[key] for r in two] == pytest.approx([r[key] for r in one], rel=1e-4, abs=1e-6), key
    a, b = weights(runs_root / "two", 30), weights(runs_root / "one", 30)
    for net in ("G", "D", "G_ema"):
        for name in a[net]:
            assert torch.allclose(a[net][name], b[net][name], rtol=1e-4, atol=1e-5), f"{net}.{name}"
    assert not torch.equal(a["G"][next(iter(a["G"]))], a["G_ema"][next(iter(a["G"]))])  # the EMA past its ramp-up


def test_a_resume_on_a_machine_without_the_run_directory_stops_every_rank_with_one_line(runs_root):
    run_dir = gancore.train(tiny(name="here", dataset="ring", steps=4, ckpt_every=4))
    start = time.monotonic()
    code, _, err = torchrun(runs_root, ["--resume", run_dir, "--steps", "8"], env={"GANCORE_FAULT": "1:no-run-dir"})
    assert code != 0 and time.monotonic() - start < 60
    assert f"--resume: {run_dir} is not visible on " in err and "(rank 1)" in err
    assert "a filesystem all of them share" in err
    assert runs.read_status(run_dir)["state"] == "done" and runs.read_status(run_dir)["step"] == 4  # untouched


def test_an_evaluator_trained_at_the_start_keeps_the_other_ranks_out_of_the_collective_timeout(runs_root, tmp_path):
    """--eval_train_evaluator on data with no evaluator yet (~17 s to train on one thread): the other rank waits on
    the evaluator cache's lock, not in a collective whose timeout (here 8 s) would fail the run."""
    code, _, err = torchrun(runs_root, flags(**tiny(name="evaluated", image_size=12, batch_size=32, steps=4,
                                                    eval_every=4, eval_n=40, eval_train_evaluator=True)),
                            env={"GANCORE_DIST_TIMEOUT": "8", "GANCORE_CACHE": str(tmp_path / "cache")})
    assert code == 0, err
    assert runs.read_status(runs_root / "evaluated")["state"] == "done"
    assert "fid" in runs.read_metrics(runs_root / "evaluated")[-1]


@pytest.mark.parametrize("recipe", [
    dict(loss="wgan-gp", n_critic=2, sn_d=True, conditioning="acgan"),  # double backward, SN buffers, ACGAN head
    dict(loss="hinge", r1_gamma=1.0, conditioning="projection", model="resnet"),  # R1, conditional BN
    dict(dataset="ring", pack=2, mbstd=True, fm_weight=1.0),  # packing, minibatch stddev, feature matching
])
def test_gan_traps_keep_the_ranks_identical_and_resume_exactly(runs_root, recipe):
    common = dict(tiny(batch_size=32, log_every=2, ckpt_every=4, sample_every=4), **recipe)
    code, _, err = torchrun(runs_root, flags(**dict(common, name="straight", steps=8)))
    assert code == 0, err
    code, _, err = torchrun(runs_root, flags(**dict(common, name="split", steps=4)))
    assert code == 0, err
    code, _, err = torchrun(runs_root, ["--resume", str(runs_root / "split"), "--steps", "8"])
    assert code == 0, err
    for run in ("straight", "split"):
        assert "ranks agree" in (runs_root / run / "train.log").read_text()
    assert same_weights(weights(runs_root / "straight", 8), weights(runs_root / "split", 8)) is None
    a, b = runs.read_metrics(runs_root / "straight"), runs.read_metrics(runs_root / "split")
    assert [r["loss_d"] for r in a] == [r["loss_d"] for r in b]


def test_a_run_resumes_with_another_number_of_processes(runs_root):
    code, _, err = torchrun(runs_root, flags(**tiny(name="two-one", batch_size=32, steps=4, ckpt_every=4)))
    assert code == 0, err
    gancore.train(resume=str(runs_root / "two-one"), steps=8)  # 2 -> 1
    log = (runs_root / "two-one" / "train.log").read_text()
    assert "2 process(es) trained it, 1 resume it" in log
    one = gancore.train(tiny(name="one-two", batch_size=32, steps=4, ckpt_every=4))
    code, _, err = torchrun(runs_root, ["--resume", one, "--steps", "8"])  # 1 -> 2
    assert code == 0, err
    for run in ("two-one", "one-two"):
        status = runs.read_status(runs_root / run)
        assert status["state"] == "done" and status["step"] == 8
        assert [r["step"] for r in runs.read_metrics(runs_root / run)] == [2, 4, 6, 8]
    assert "1 process(es) trained it, 2 resume it" in (runs_root / "one-two" / "train.log").read_text()
    assert runs.read_status(runs_root / "one-two")["world_size"] == 2


@pytest.mark.parametrize("failing", [0, 1])
def test_a_rank_that_fails_stops_the_other(runs_root, failing):
    start = time.monotonic()
    code, _, err = torchrun(runs_root, flags(**tiny(name="doomed", dataset="ring", steps=400, log_every=50)),
                            env={"GANCORE_FAULT": f"{failing}:20", "GANCORE_DIST_TIMEOUT": "60"})
    assert code != 0 and time.monotonic() - start < 120
    status = runs.read_status(runs_root / "doomed")
    assert status["state"] == "failed" and status["step"] < 400
    assert ("injected fault" if failing == 0 else "RuntimeError") in status["error"]


def test_sigterm_to_torchrun_checkpoints_once_and_stops(runs_root):
    proc = torchrun(runs_root, flags(**tiny(name="term", dataset="ring", steps=100_000, log_every=50,
                                            ckpt_every=100_000, sample_every=100_000)), wait=False)
    path = runs_root / "term"
    wait_for(lambda: runs.read_status(path).get("step", 0) >= 100, 120, "the run to pass step 100")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    status = runs.read_status(path)
    assert status["state"] == "stopped"
    assert list(runs.checkpoints(path)) == [status["step"]]  # the one written on the way out
    assert weights(path, status["step"])["world_size"] == 2


def test_compile_trains_on_the_cpu_and_resumes(runs_root):
    """Inductor (through the C compiler) trains as the plain modules do; a compiled run whose last checkpoint is lost
    resumes from the one before (compiling again) and ends bit for bit where it had got to uninterrupted."""
    from test_exact_resume import assert_same_records, assert_same_state, ema_is_an_average

    fields = tiny(dataset="ring", steps=4, ckpt_every=2, g_width=16, d_width=16, ema_rampup=1.0)
    run_dir = gancore.train(dict(fields, name="compiled", compile=True))
    assert runs.read_status(run_dir)["state"] == "done"
    state = runs.load_checkpoint(runs.checkpoint_path(run_dir, 4))
    assert not any(k.startswith("_orig_mod") for k in state["G"])  # checkpoints hold the plain modules
    assert ema_is_an_average(state)
    plain = gancore.train(dict(fields, name="plain"))
    a, b = runs.read_metrics(run_dir), runs.read_metrics(plain)
    assert [r["loss_d"] for r in a] == pytest.approx([r["loss_d"] for r in b], rel=1e-4)
    runs.checkpoint_path(run_dir, 4).unlink()
    gancore.train(resume=run_dir)
    assert_same_state(runs.load_checkpoint(runs.checkpoint_path(run_dir, 4)), state)
    assert_same_records(runs.read_metrics(run_dir), a)
    assert [r["step"] for r in runs.read_status(run_dir)["resumes"]] == [2]
    with pytest.raises(gancore.ConfigError, match="--compile: wgan-gp differentiates"):
        gancore.train(tiny(compile=True, loss="wgan-gp"))


def test_launch_starts_a_run_under_torchrun_and_stop_reaches_every_rank(runs_root):
    from gancore import launch

    with pytest.raises(gancore.ConfigError, match=r"--batch_size: 15 \(the global batch\) must split evenly"):
        launch.launch(tiny(batch_size=15), runs_root, processes=2)
    path = launch.launch(tiny(name="launched", dataset="ring", steps=100_000, log_every=50, ckpt_every=100_000,
                              sample_every=100_000, batch_size=32), runs_root, processes=2)
    wait_for(lambda: runs.read_status(path).get("step", 0) >= 100, 120, "the launched run to pass step 100")
    assert runs.read_status(path)["world_size"] == 2
    launch.stop(path)  # SIGTERM to rank 0 only (status.json's pid)
    wait_for(lambda: runs.read_status(path).get("state") == "stopped", 120, "every rank to stop")
    step = runs.read_status(path)["step"]
    assert list(runs.checkpoints(path)) == [step] and "ranks agree" in (path / "train.log").read_text()
    proc = launch.resume(path, steps=step + 20, processes=2)
    proc.wait(timeout=120)
    status = runs.read_status(path)
    assert proc.returncode == 0 and status["state"] == "done" and status["step"] == step + 20
    assert "resume:" not in (path / "train.log").read_text()  # as many processes: streams continue exactly
