"""Launching runs as detached processes: names, reservation, sweeps with a concurrency limit, stop, resume, delete."""
import json
import os

import pytest

from gancore import launch, runs
from gancore.errors import ConfigError, RunError
from conftest import tiny, wait_for


def state(path):
    return runs.read_status(path).get("state")


@pytest.mark.parametrize("name", ["../evil", "a/b", "/abs", ".hidden", "..", "x" * 121, "sp ace", ""])
def test_names_that_could_escape_the_root_are_refused(tmp_path, name):
    with pytest.raises(ConfigError, match="name:"):
        launch.run_path(tmp_path, name)


def test_run_path_stays_under_root(tmp_path):
    assert launch.run_path(tmp_path, "ok-1.2_x") == (tmp_path / "ok-1.2_x").resolve()


def test_invalid_fields_launch_nothing(runs_root):
    with pytest.raises(ConfigError, match="--steps: must be > 0"):
        launch.launch(tiny(steps=-1), runs_root)
    with pytest.raises(ConfigError, match="--conditioning: projection"):
        launch.launch(tiny(dataset="ring", conditioning="projection"), runs_root)
    with pytest.raises(ConfigError, match="--batch_size"):  # a check that needs the data
        launch.launch(tiny(dataset="ring", batch_size=10 ** 6), runs_root)
    assert not runs_root.exists() or not any(runs_root.iterdir())


def test_launch_reserves_the_directory_and_trains_it_in_another_process(runs_root):
    path = launch.launch(tiny(name="detached", conditioning="concat"), runs_root)
    assert path == runs_root.resolve() / "detached"
    status = runs.read_status(path)
    assert status["pid"] and status["state"] in ("queued", "running", "done")
    # its own session: a Ctrl-C or hang-up of the dashboard's terminal never reaches it. Nothing has reaped the
    # child yet (launch.reap() runs before a dispatch starts anything), so its pid names it even if it has ended.
    assert os.getsid(status["pid"]) == status["pid"] != os.getsid(0)
    assert json.loads((path / "launch.json").read_text())["conditioning"] == "concat"
    wait_for(lambda: state(path) == "done", 90, what="the launched run to finish")
    assert runs.read_json(path / "config.json")["name"] == "detached"
    assert len(runs.checkpoints(path)) == 2 and runs.sample_grids(path)
    assert launch.pending_runs(runs_root) == []
    with pytest.raises(RunError, match="already exists"):
        launch.launch(tiny(name="detached"), runs_root)


def test_a_launch_that_dies_before_training_shows_as_failed_with_its_error(runs_root):
    path = launch.reserve(runs_root, tiny(name="doomed"))
    (path / "launch.json").write_text(json.dumps({"dataset": "folder", "data_path": "/nonexistent/pets"}))
    proc = launch.spawn(["train", "--config", str(path / "launch.json")], path / "launch.log")
    runs.update_status(path, pid=proc.pid)
    proc.wait(timeout=60)
    [pending] = launch.pending_runs(runs_root)
    assert pending["name"] == "doomed" and pending["state"] == "failed"
    assert "/nonexistent/pets" in pending["error"]


def test_sweep_runs_the_cross_product_at_most_max_parallel_at_once(runs_root):
    paths = launch.launch_sweep(tiny(name="sw", steps=4), {"loss": ["nonsaturating", "hinge"], "seed": [0, 1]},
                                runs_root, max_parallel=1)
    assert [p.name for p in paths] == ["sw-nonsaturating-seed0", "sw-nonsaturating-seed1", "sw-hinge-seed0",
                                       "sw-hinge-seed1"]
    wait_for(lambda: all(state(p) == "done" for p in paths), timeout=180, what="the sweep")
    spans = sorted((runs.read_status(p)["started"], runs.read_status(p)["finished"]) for p in paths)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end - 0.05  # one at a time: each starts after the previous finished
    assert {runs.read_json(p / "config.json")["loss"] for p in paths} == {"nonsaturating", "hinge"}


def test_sweep_checks_every_combination_before_launching_any(runs_root):
    with pytest.raises(ConfigError, match=r"--pack.*\(sweep run pack=3\)"):
        launch.launch_sweep(tiny(name="bad"), {"pack": [2, 3]}, runs_root)  # 16 % 3 != 0
    assert not runs_root.exists() or not any(runs_root.iterdir())


def test_stop_resume_and_delete(runs_root):
    path = launch.launch(tiny(name="long", steps=100000, log_every=10, ckpt_every=50000), runs_root)
    wait_for(lambda: state(path) == "running" and runs.read_status(path).get("step", 0) > 0, 90, what="training")
    with pytest.raises(RunError, match="still running"):
        launch.delete(path, runs_root)
    launch.stop(path)
    wait_for(lambda: state(path) == "stopped", 90, what="the stop")
    stopped_at = runs.read_status(path)["step"]
    assert max(runs.checkpoints(path)) == stopped_at  # checkpointed on SIGTERM
    launch.resume(path, steps=stopped_at + 4)
    wait_for(lambda: state(path) == "done", 90, what="the resumed run")
    assert runs.read_status(path)["step"] == stopped_at + 4
    assert [r["step"] for r in runs.read_status(path)["resumes"]] == [stopped_at]
    with pytest.raises(RunError, match="not a run directory"):
        launch.delete(runs_root / "..", runs_root)
    launch.delete(path, runs_root)
    assert not path.exists()


def test_clone_fields_give_what_was_launched(runs_root):
    path = launch.launch(tiny(name="orig", loss="hinge"), runs_root)
    wait_for(lambda: state(path) == "done", 90, what="the run")
    fields = launch.clone_fields(path)
    assert fields["loss"] == "hinge" and "name" not in fields and "runs_root" not in fields


def test_the_trainer_and_the_launcher_never_lose_each_others_status_updates(tmp_path):
    """Two processes update status.json at once, each its own keys (as the trainer writes its progress while the
    launcher writes the placement): every update of both survives (runs.update_status merges under a lock)."""
    import subprocess
    import sys

    from conftest import ROOT

    run = tmp_path / "run"
    run.mkdir()
    runs.update_status(run, state="queued")
    code = ("import sys; from gancore import runs\n"
            "for i in range(150): runs.update_status(sys.argv[1], **{f'{sys.argv[2]}{i}': i})")
    writers = [subprocess.Popen([sys.executable, "-c", code, str(run), who], cwd=ROOT) for who in ("trainer", "launcher")]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    status = runs.read_status(run)
    lost = [f"{who}{i}" for who in ("trainer", "launcher") for i in range(150) if f"{who}{i}" not in status]
    assert lost == [] and status["state"] == "queued"
