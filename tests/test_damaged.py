"""Damaged files and races: every one becomes a one-line error or a recovery, never a traceback.

Each test makes the damage itself (a checkpoint cut to 100 bytes, a torn status.json, a runs root
where a file stands, processes racing for one name) and checks what the user sees.
"""
import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

import gancore
from gancore import cli, launch, runs, views
from gancore.errors import ConfigError, RunError
from conftest import ROOT, subprocess_env, tiny, wait_for


def cut(path, size=100):
    """What a full disk or a copy gone wrong leaves: the first `size` bytes."""
    data = path.read_bytes()[:size]
    path.write_bytes(data)
    return data


def weights(path):
    return torch.load(path, weights_only=True)


def one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in text, text
    return lines[0]


@pytest.fixture
def done_run(runs_root):
    """A finished conditional run with checkpoints at steps 3 and 6."""
    return gancore.train(tiny(name="hurt", conditioning="concat"))


# ---------------------------------------------------------------- checkpoints
def test_resume_skips_a_truncated_checkpoint_and_continues_exactly(runs_root, done_run, capsys):
    straight = gancore.train(tiny(name="straight", conditioning="concat", steps=9))
    newest = runs.checkpoint_path(done_run, 6)
    cut(newest)
    assert cli.main(["train", "--resume", done_run, "--steps", "9"]) == 0
    err = capsys.readouterr().err
    assert "skipped" in err and "ckpt_0000006.pt" in err and "continuing from step 3" in err
    log = (runs_root / "hurt" / "train.log").read_text()
    assert "skipped" in log and "ckpt_0000006.pt: unreadable checkpoint" in log
    assert [r["step"] for r in runs.read_metrics(done_run)] == [2, 4, 6, 8, 9]  # cut back to 3, then trained on
    status = runs.read_status(done_run)
    assert status["state"] == "done" and status["step"] == 9 and status["resumes"][-1]["step"] == 3
    a, b = weights(runs.checkpoint_path(straight, 9)), weights(runs.checkpoint_path(done_run, 9))
    for key in ("G", "D", "G_ema"):
        for name in a[key]:
            torch.testing.assert_close(a[key][name], b[key][name], msg=f"{key}.{name}")
    assert weights(newest)["step"] == 6  # the damaged file was replaced when step 6 came round again


def test_resume_when_no_checkpoint_loads_exits_2_and_changes_nothing(done_run, capsys):
    for step in (3, 6):
        cut(runs.checkpoint_path(done_run, step))
    before = {p: p.read_bytes() for p in Path(done_run).rglob("*") if p.is_file()}
    assert cli.main(["train", "--resume", done_run, "--steps", "9"]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("gancore: error: --resume: no checkpoint") and "ckpt_0000003.pt" in line \
        and "ckpt_0000006.pt" in line
    after = {p: p.read_bytes() for p in Path(done_run).rglob("*") if p.is_file()}
    assert after == before  # nothing deleted, nothing rewritten (status.json included)


def test_sample_and_eval_use_the_newest_checkpoint_that_loads(done_run, tmp_path, capsys):
    cut(runs.checkpoint_path(done_run, 6))
    out = tmp_path / "s.npz"
    assert cli.main(["sample", done_run, "--n", "20", "--seed", "0", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert one_line(err).startswith("gancore: warning: skipped") and "ckpt_0000006.pt" in err
    with np.load(out) as f:
        assert f["images"].shape == (20, 16, 16, 1)
    assert cli.main(["eval", done_run, "--n", "20"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["step"] == 3 and "ckpt_0000006.pt" in one_line(captured.err)


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_a_run_none_of_whose_checkpoints_loads_gets_one_line_naming_each(done_run, tmp_path, capsys, command):
    """No warning per file before the error: the one error line names every file and why."""
    cut(runs.checkpoint_path(done_run, 6))
    cut(runs.checkpoint_path(done_run, 3))
    extra = ["--out", str(tmp_path / "s.npz")] if command == "sample" else []
    assert cli.main([command, done_run, "--n", "20", *extra]) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("gancore: error:") and "no checkpoint loads" in line
    assert "ckpt_0000006.pt: unreadable checkpoint" in line and "ckpt_0000003.pt: unreadable checkpoint" in line
    assert not (tmp_path / "s.npz").exists()


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_naming_a_corrupt_checkpoint_is_an_error_that_names_it(done_run, tmp_path, capsys, command):
    cut(runs.checkpoint_path(done_run, 6))
    extra = ["--out", str(tmp_path / "s.png")] if command == "sample" else []
    assert cli.main([command, done_run, "--n", "20", "--step", "6", *extra]) == 2
    line = one_line(capsys.readouterr().err)
    assert "ckpt_0000006.pt: unreadable checkpoint" in line and line.startswith("gancore: error:")
    assert not (tmp_path / "s.png").exists()


def test_a_dashboard_resume_that_cannot_start_puts_back_the_previous_state(done_run):
    for step in (3, 6):
        cut(runs.checkpoint_path(done_run, step))
    proc = launch.resume(done_run, steps=9)
    assert runs.read_status(done_run)["state"] in ("queued", "done")
    proc.wait(timeout=120)
    assert proc.returncode == 2
    status = runs.read_status(done_run)
    assert status["state"] == "done"  # what it was, not a "queued" with no process behind it
    assert status["error"].startswith("resume failed: --resume: no checkpoint")
    assert views.state_of(status) == "done"


def test_a_trainer_that_cannot_start_leaves_failed_not_queued(runs_root, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory while building D")

    monkeypatch.setattr(gancore.trainer, "build_models", broken)
    with pytest.raises(RuntimeError):
        gancore.train(tiny(name="nostart"))
    status = runs.read_status(runs_root / "nostart")
    assert status["state"] == "failed" and "out of memory" in status["error"]


# ---------------------------------------------------------------- the runs root
@pytest.mark.parametrize("where", ["file", "under-a-file", "proc"])
def test_a_runs_root_that_cannot_be_made_is_one_line_before_any_data_loads(tmp_path, capsys, where):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    root = {"file": blocker, "under-a-file": blocker / "runs", "proc": Path("/proc/gancore-runs")}[where]
    # a folder dataset that does not exist: had the data been loaded first, the error would name it instead
    code = cli.main(["train", "--runs_root", str(root), "--dataset", "folder", "--data_path", str(tmp_path / "none")])
    assert code == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"gancore: error: --runs_root: cannot create {root}"), line
    assert blocker.read_text() == "not a directory"


# ---------------------------------------------------------------- races for a run directory
def _claim(args):
    root, name, numbered, barrier = args
    barrier.wait()
    try:
        return str(runs.claim_run_dir(root, name, numbered=numbered))
    except RunError:
        return None


def race(root, name, numbered, n=8):
    with multiprocessing.Manager() as manager:
        barrier = manager.Barrier(n)
        with multiprocessing.get_context("fork").Pool(n) as pool:
            return pool.map(_claim, [(root, name, numbered, barrier)] * n)


def test_many_processes_racing_for_one_name_exactly_one_wins(tmp_path):
    results = race(tmp_path, "contested", numbered=False)
    assert [r for r in results if r] == [str(tmp_path / "contested")]


def test_default_names_in_the_same_second_get_distinct_directories(tmp_path):
    results = race(tmp_path, "digits-dcgan-nonsaturating-20261122-120000", numbered=True)
    assert all(results) and len(set(results)) == 8


def test_a_reservation_is_taken_over_by_exactly_one_trainer(tmp_path):
    path = runs.reserve_run_dir(tmp_path, "reserved")
    runs.write_json_atomic(path / "launch.json", {"dataset": "digits"})
    results = race(tmp_path, "reserved", numbered=False)
    assert [r for r in results if r] == [str(path)]


def test_two_trainings_started_together_with_one_name_never_share_it(runs_root):
    cmd = [sys.executable, "-m", "gancore", "train", "--name", "twin", *sum(
        ([f"--{k}", str(v)] for k, v in tiny(steps=4).items()), [])]
    procs = [subprocess.Popen(cmd, env=subprocess_env(runs_root), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=180) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = outs[[p.returncode for p in procs].index(2)][1]
    assert "already exists" in one_line(loser)
    assert runs.read_status(runs_root / "twin")["resumes"] == []
    log = (runs_root / "twin" / "train.log").read_text()
    assert log.count("started step 0") == 1


# ---------------------------------------------------------------- atomic writes and file patterns
def test_temp_files_never_match_what_readers_look_for(tmp_path):
    (tmp_path / "samples").mkdir()
    (tmp_path / "checkpoints").mkdir()
    for name in ("step_0000500.png", ".step_0000500.png.4242.tmp", "step_0000500.tmp.png", "step_0000500.npz",
                 ".step_0000500.npz.4242.tmp"):
        (tmp_path / "samples" / name).write_bytes(b"x")
    for name in ("ckpt_0000500.pt", ".ckpt_0000500.pt.4242.tmp", "ckpt_0000500.pt.tmp", "best.pt"):
        (tmp_path / "checkpoints" / name).write_bytes(b"x")
    assert runs.sample_grids(tmp_path) == {500: tmp_path / "samples" / "step_0000500.png"}
    assert runs.sample_points(tmp_path) == {500: tmp_path / "samples" / "step_0000500.npz"}
    assert runs.checkpoints(tmp_path) == {500: tmp_path / "checkpoints" / "ckpt_0000500.pt"}


def test_an_interrupted_atomic_write_leaves_the_previous_file_and_no_temp(tmp_path):
    path = tmp_path / "status.json"
    runs.write_json_atomic(path, {"state": "running"})

    def dies_halfway(f):
        f.write(b'{"state": "do')
        raise OSError("No space left on device")

    with pytest.raises(OSError):
        runs.atomic_write(path, dies_halfway)
    assert json.loads(path.read_text()) == {"state": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


# ---------------------------------------------------------------- every reader of the run directory
def test_readers_survive_torn_and_corrupt_run_files(runs_root, done_run, capsys, tmp_path):
    run = Path(done_run)
    (run / "status.json").write_text('{"state": "runn')  # torn
    with open(run / "metrics.jsonl", "a") as f:
        f.write('[1, 2]\n{"step": "x"}\n{"step": 7, "loss_d": 1.0')  # garbage lines, then a half-written one
    cut(runs.sample_grids(run)[6], 60)
    other = Path(gancore.train(tiny(name="other")))
    (other / "config.json").write_text("[1, 2, 3]")  # valid JSON, not an object
    (other / "data.json").write_text("\x00\x01")

    assert runs.read_status(run) == {}
    assert [r["step"] for r in runs.read_metrics(run)] == [2, 4, 6]
    assert views.load_grid(runs.sample_grids(run)[6]) is None
    assert views.load_grid(runs.sample_grids(run)[3]) is not None
    rows = {r["run"]: r for r in views.run_rows(runs_root)}
    assert rows["hurt"]["state"] == "?" and rows["other"]["dataset"] is None
    assert cli.main(["runs", "--root", str(runs_root)]) == 0
    assert "config.json unreadable" in capsys.readouterr().out
    with pytest.raises(RunError, match="config.json: unreadable"):
        runs.Run(other)
    (other / "config.json").write_text(json.dumps(runs.read_json(run / "config.json")))
    assert cli.main(["sample", str(other), "--n", "4", "--out", str(tmp_path / "x.png")]) == 2
    assert "data.json: missing or unreadable" in one_line(capsys.readouterr().err)
    (run / "samples" / "step_0000006.npz").write_bytes(b"PK\x03\x04 torn")
    assert views.points_at(run, 6) is None


def test_a_torn_reference_cache_is_recomputed(gancore_cache):
    from gancore import image_metrics
    from gancore.data import load_dataset
    from gancore.evaluator import evaluator_for

    data = load_dataset("digits")
    model, report = evaluator_for(data, train_if_missing=False)
    scorer = image_metrics.ImageScorer(data, model, report)
    [path] = (gancore_cache / "reference").glob(f"evaluator-*-{scorer.fingerprint}-all-{len(data)}.pt")
    cut(path)
    image_metrics._REFERENCES.clear()  # a new process
    again = image_metrics.ImageScorer(data, model, report)
    for key in scorer.reference["fid"]:
        torch.testing.assert_close(again.reference["fid"][key], scorer.reference["fid"][key])
    assert weights(path)["format"] == image_metrics.REF_FORMAT  # rewritten whole


def test_a_torn_cached_evaluator_is_retrained_or_named(tmp_path):
    from gancore.data import load_dataset
    from gancore.evaluator import EvaluatorError, evaluator_for, evaluator_path

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (120, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "tiny.npz", x=x, y=np.arange(120) % 3)
    data = load_dataset("npz", str(tmp_path / "tiny.npz"))
    cache = tmp_path / "cache"
    path = evaluator_path(data, cache)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 half an evaluator")
    with pytest.raises(EvaluatorError, match="not a readable evaluator file.*train-evaluator"):
        evaluator_for(data, cache_dir=cache, train_if_missing=False, log=None)
    model, report = evaluator_for(data, cache_dir=cache, epochs=1, log=None)
    assert report["fingerprint"] and evaluator_for(data, cache_dir=cache, train_if_missing=False, log=None)


# ---------------------------------------------------------------- the dashboard
def page(name, run):
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    at.session_state["run"] = run
    at.run()
    at.switch_page(f"pages/{name}.py").run()
    return at


def test_samples_and_monitor_warn_about_an_unreadable_checkpoint(done_run):
    cut(runs.checkpoint_path(done_run, 6))
    name = Path(done_run).name
    for page_name in ("samples", "monitor"):
        at = page(page_name, name)
        assert not at.exception, [e.value for e in at.exception]
        warnings = " ".join(w.value for w in at.warning)
        assert "ckpt_0000006.pt: unreadable checkpoint" in warnings and "use step 3" in warnings, page_name
    at = page("samples", name)
    assert at.selectbox(key="samples_step").value == 3 and at.image  # drawn from the checkpoint that loads
    at.selectbox(key="samples_step").set_value(6).run()
    assert not at.exception and "ckpt_0000006.pt: unreadable checkpoint" in at.error[0].value


def test_a_finished_run_leaves_no_temp_files(done_run):
    assert [p for p in Path(done_run).rglob("*") if ".tmp" in p.name] == []
