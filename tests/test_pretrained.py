"""gancore's pretrained MNIST-5k generator (gancore/pretrained/mnist-5k-cgan): it ships small and complete,
samples every digit recognisably, is read-only (no resume, no delete), and the Samples page offers it.
Also the sampling-only checkpoint it is made of, on a tiny run of our own."""
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gancore
from gancore import cli, launch, runs, views
from gancore.evaluator import accuracy, shipped_evaluator
from gancore.sample import sample_run
from conftest import ROOT, subprocess_env, tiny
from test_dashboard import app

PRETRAINED = runs.PRETRAINED_ROOT / "mnist-5k-cgan"
LABEL = "mnist-5k-cgan (gancore's pretrained, read-only)"  # its entry on the Samples page
REFUSED = "a sampling-only checkpoint (no D, no optimiser state); it cannot be resumed"


def tree_digest(path) -> str:
    """A hash of every file's relative path and bytes: equal before and after = nothing on disk changed."""
    h, path = hashlib.sha256(), Path(path)
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(path)).encode() + p.read_bytes())
    return h.hexdigest()


# ---------------------------------------------------------------- the shipped run
def test_shipped_run_is_one_small_sampling_only_checkpoint():
    files = {str(p.relative_to(PRETRAINED)) for p in PRETRAINED.rglob("*") if p.is_file()}
    assert {"config.json", "data.json", "status.json", "metrics.jsonl", "README.md"} <= files
    assert len(runs.checkpoints(PRETRAINED)) == 1 and len(runs.sample_grids(PRETRAINED)) == 1
    assert sum((PRETRAINED / f).stat().st_size for f in files) < 5 * 2**20
    [(step, path)] = runs.checkpoints(PRETRAINED).items()
    state = runs.load_checkpoint(path)
    assert runs.is_sampling_only(state) and state["G_ema"] is not None
    assert not {"D", "opt_g", "opt_d", "rng"} & set(state)
    status = runs.read_status(PRETRAINED)
    assert status["state"] == "done" and status["step"] == step == status["final"]["step"]
    assert status["final"]["provenance"]["n_gen"] == 10_000
    assert "scripts/make_pretrained.py" in (PRETRAINED / "README.md").read_text()


def test_shipped_files_are_not_git_ignored():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = [str(p.relative_to(ROOT)) for p in PRETRAINED.rglob("*") if p.is_file()]
    ignored = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True).stdout
    assert ignored == "", ignored


def test_pretrained_run_samples_every_class_recognisably():
    """10 samples per digit (seed 0), read by the shipped MNIST-5k evaluator (97.8 % held-out accuracy).
    The shipped generator's conditional accuracy over 10,000 samples is 0.984, its weakest digits (7, 3)
    0.97 (status.json "final"). At 0.95 a digit has 7 or more of 10 right with probability 0.99, and 85
    of 100 overall is 10 standard deviations below the expected 98.4: a generator that draws the wrong digits,
    or one image whatever the class, fails; a retrained one as good as this passes."""
    run = gancore.load_run("pretrained:mnist-5k-cgan")
    assert run.path == PRETRAINED and runs.is_conditional(run.config) and run.data_info["num_classes"] == 10
    x, y = run.sample(100, seed=0)  # classes in equal blocks: 10 per digit
    assert x.shape == (100, 28, 28, 1) and x.dtype == np.uint8 and list(np.bincount(y)) == [10] * 10
    evaluator, _ = shipped_evaluator("mnist-5k")
    images, labels = torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(y)  # (100, 1, 28, 28) uint8
    with torch.no_grad():
        per_class = [round(10 * accuracy(evaluator, images[labels == k], labels[labels == k])) for k in range(10)]
    assert min(per_class) >= 7 and sum(per_class) >= 85, per_class
    assert len({x[y == k].tobytes() for k in range(10)}) == 10 and x[y == 3].std(axis=0).mean() > 10  # varied


def test_cli_sample_from_a_fresh_clone_writes_the_png(tmp_path, runs_root):
    out = tmp_path / "threes.png"
    proc = subprocess.run([sys.executable, "-m", "gancore", "sample", "gancore/pretrained/mnist-5k-cgan", "--n", "100",
                           "--label", "3", "--out", str(out)], cwd=ROOT, env=subprocess_env(runs_root),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as img:
        assert img.size == (10 * 30 + 2, 10 * 30 + 2)  # 10 x 10 digits of 28 px, 2 px apart


# ---------------------------------------------------------------- read-only
def test_resume_is_refused_with_one_line_and_nothing_changes(tmp_path, monkeypatch, capsys):
    before = tree_digest(PRETRAINED)
    monkeypatch.chdir(ROOT)
    assert cli.main(["train", "--resume", "gancore/pretrained/mnist-5k-cgan"]) == 2
    err = capsys.readouterr().err.strip()
    [ckpt] = runs.checkpoints(PRETRAINED).values()
    assert err.count("\n") == 0 and err.startswith("gancore: error: ") and err.endswith(f"{ckpt.name}: {REFUSED}")
    # a copy outside the package is refused the same way, by its checkpoint
    copy = shutil.copytree(PRETRAINED, tmp_path / "runs" / "mine")
    with pytest.raises(runs.CheckpointError, match=re.escape(REFUSED)):
        gancore.train(resume=copy, steps=6000)
    assert tree_digest(copy) == tree_digest(PRETRAINED) == before


def test_launch_refuses_to_resume_or_delete_it():
    before = tree_digest(PRETRAINED)
    with pytest.raises(gancore.RunError, match=r"mnist-5k-cgan: a pretrained run shipped with gancore "
                                               r"\(read-only\); it cannot be resumed"):
        launch.resume(PRETRAINED)
    for root in (None, runs.PRETRAINED_ROOT):  # even with the package directory as the runs root
        with pytest.raises(gancore.RunError, match=r"\(read-only\); it cannot be deleted"):
            launch.delete(PRETRAINED, root)
    assert tree_digest(PRETRAINED) == before


def test_it_is_not_one_of_the_users_runs(runs_root, capsys):
    assert views.run_rows(runs_root) == [] and runs.list_runs(runs_root) == []
    assert cli.main(["runs"]) == 0 and "mnist-5k-cgan" not in capsys.readouterr().out


# ---------------------------------------------------------------- the Samples page
def test_samples_page_on_an_empty_root_shows_every_digit_of_the_pretrained_run(runs_root):
    at = app("samples")
    assert at.selectbox(key="samples_pick").value == LABEL
    assert at.selectbox(key="samples_pick").options == [LABEL]
    assert "No conditional run of yours yet: showing gancore's pretrained MNIST-5k generator (read-only)" \
        in at.info[0].value
    assert not at.error and not [b for b in at.button if b.label in ("Resume", "Delete")]
    [step] = runs.checkpoints(PRETRAINED)
    assert f"mnist-5k-cgan · step {step} · seed 0 · rows: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9" \
        in str(at.get("image")[0].proto)
    at.multiselect(key="samples_classes").set_value([3]).run()
    assert not at.exception and "rows: 3 (the same noise" in str(at.get("image")[0].proto)
    assert len(at.get("image")) == 4  # class rows, nearest training images, interpolation, class morph


def test_samples_page_puts_it_last_when_the_user_has_a_conditional_run(runs_root):
    gancore.train(tiny(name="mine", conditioning="concat", runs_root=str(runs_root)))
    at = app("samples")
    options = at.selectbox(key="samples_pick").options
    assert options == ["mine", LABEL] and at.selectbox(key="samples_pick").value == "mine"
    assert not at.info and not at.error


# ---------------------------------------------------------------- the sampling-only checkpoint itself
def test_a_sampling_only_checkpoint_samples_exactly_as_the_full_one(runs_root):
    run_dir = gancore.train(tiny(name="strip", conditioning="concat", runs_root=str(runs_root)))
    [*_, (step, path)] = runs.checkpoints(run_dir).items()
    full, size = sample_run(run_dir, 20, seed=3)[0], path.stat().st_size
    state = runs.load_checkpoint(path)
    runs.torch_save_atomic(runs.sampling_checkpoint(state), path)
    assert not {"D", "opt_g", "opt_d", "rng"} & set(runs.load_checkpoint(path)) and path.stat().st_size < size / 2
    assert np.array_equal(sample_run(run_dir, 20, seed=3)[0], full)
    before = tree_digest(run_dir)
    with pytest.raises(runs.CheckpointError, match=re.escape(f"{path.name}: {REFUSED}")):
        gancore.train(resume=run_dir, steps=12)
    assert tree_digest(run_dir) == before
    runs.torch_save_atomic(dict(runs.sampling_checkpoint(state), G_ema=None, G=None), path)
    with pytest.raises(runs.CheckpointError, match="without weights"):
        runs.load_checkpoint(path)
