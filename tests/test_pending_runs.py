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


def test_a_refused_field_is_named_at_the_field_in_the_forms_words(runs_root):
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/launch.py").run()
    assert at.selectbox(key="preset_pick").value == "" and "No preset" in at.selectbox(key="preset_pick").format_func("")
    at.number_input(key="f_lr_g").set_value(-1.0)
    [launch_button] = [b for b in at.button if b.label == "Launch"]
    launch_button.click().run()
    assert not at.exception
    assert [e.value for e in at.error] == ["lr_g: must be a positive number (got -1.0)"]
    assert not list(runs_root.glob("*")) or not [p for p in runs_root.iterdir() if not p.name.startswith(".")]
