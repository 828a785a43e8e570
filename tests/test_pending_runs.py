"""A launched run before its trainer writes config.json: its row shows the config the launch resolved (not
"auto" and a blank conditioning), and "starting" once its process is up rather than "queued"."""
import os

from gancore import launch, runs, views
from conftest import tiny


def test_a_pending_run_shows_its_resolved_config_and_whether_it_is_starting(runs_root):
    path = launch.reserve(runs_root, dict(tiny(name="pending"), model="auto"))
    [row] = views.run_rows(runs_root)
    assert (row["state"], row["model"], row["conditioning"], row["steps"]) == ("queued", "dcgan", "none", 6)
    runs.update_status(path, pid=os.getpid())  # what dispatch writes when it has started the process
    [row] = views.run_rows(runs_root)
    assert row["state"] == "starting" and row["pending"]
    [pending] = launch.pending_runs(runs_root)
    assert pending["resolved"]["model"] == "dcgan" and pending["resolved"]["batch_size"] == 16
