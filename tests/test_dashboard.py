"""Every dashboard page under Streamlit's AppTest: empty runs root, every kind of run, launching from the form."""
import os
import signal

import pytest
from streamlit.testing.v1 import AppTest

import runs_fixture
from gancore import runs
from gancore.presets import PRESETS
from conftest import ROOT, wait_for

APP = str(ROOT / "dashboard" / "app.py")
TITLES = {"runs": "Runs", "launch": "Launch", "monitor": "Monitor", "compare": "Compare", "samples": "Samples",
          "mode_collapse": "Mode collapse"}  # page file: its title
PAGES = list(TITLES)


def app(page="runs", run=None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    if run:
        at.session_state["run"] = run
    at.run()
    if page != "runs":
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def button(at, label):
    found = [b for b in at.button if b.label == label]
    assert found, f"no button {label!r} among {[b.label for b in at.button]}"
    return found[0]


def kill(path):
    pid = runs.read_status(path).get("pid")
    if pid and runs.pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def full_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash") / "runs"
    names = runs_fixture.build(root)
    return root, names


@pytest.mark.parametrize("page", PAGES)
def test_every_page_loads_on_an_empty_root(runs_root, page):
    at = app(page)
    assert at.title[0].value == TITLES[page]
    if page != "launch":
        assert at.info, "an empty page says what to do"


def test_quick_start_on_the_landing_page_launches_mnist(runs_root):
    at = app("runs")
    button(at, "Quick start: train a class-conditional DCGAN on MNIST-5k").click().run()
    [path] = [p for p in runs_root.iterdir() if not p.name.startswith(".")]  # not the queue's lock file
    try:
        assert runs.read_json(path / "launch.json")["preset"] == "cgan-concat"
        assert runs.pid_alive(runs.read_status(path)["pid"])
        assert at.title[0].value == "Monitor"  # the quick start takes you to the run
    finally:
        kill(path)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_loads_with_every_kind_of_run(full_root, monkeypatch, page):
    root, names = full_root
    monkeypatch.setenv("GANCORE_RUNS", str(root))
    for kind in ("done", "running", "failed", "crashed", "points"):
        at = app(page, run=names[kind])
        errors = [e.value for e in at.error]
        assert all("non-finite loss" in e for e in errors) if kind == "failed" else not errors, (kind, errors)


def test_mode_collapse_page_shows_a_collapsed_ring_as_3_modes_90_percent_hits_and_kl_log_8_over_3(
        full_root, monkeypatch, tmp_path):
    import math
    import shutil

    import numpy as np

    root, names = full_root
    copy_root = tmp_path / "runs"
    shutil.copytree(root / names["points"], copy_root / names["points"])
    monkeypatch.setenv("GANCORE_RUNS", str(copy_root))
    info = runs.read_json(copy_root / names["points"] / "data.json")
    modes, sigma = np.asarray(info["modes"]), info["sigma"]
    assert len(modes) == 8 and sigma == 0.01
    i = np.arange(2250)
    hits = modes[i % 3] + 2 * sigma * np.stack([np.cos(i), np.sin(i)], 1)  # 2 sigma around modes 0, 1, 2
    off = 1.5 * modes[3 + np.arange(250) % 5]  # 10 %: 0.5 beyond modes 3..7, no hits
    last = max(runs.sample_points(copy_root / names["points"]))
    runs.save_npz_atomic(runs.sample_points(copy_root / names["points"])[last],
                         points=np.concatenate([hits, off]).astype(np.float32))
    at = app("mode_collapse", run=names["points"])
    shown = {m.label.split(" (")[0]: m.value for m in at.metric}  # "modes captured (these points)": the label
    assert shown == {"modes captured": "3 / 8", "high-quality share": "90.0%", "reverse KL": f"{math.log(8 / 3):.3f}"}


def test_runs_table_states(full_root, monkeypatch):
    root, names = full_root
    monkeypatch.setenv("GANCORE_RUNS", str(root))
    at = app("runs")
    df = at.dataframe[0].value
    states = dict(zip(df["run"], df["state"]))
    assert states[names["done"]] == "done" and states[names["running"]] == "running"
    assert states[names["failed"]] == "failed" and states[names["crashed"]] == "crashed"
    assert states[names["pending"]] == "starting"  # a pending launch whose process is up
    # what fits 1,400 px: one "setup" column for dataset, model, loss and conditioning; whole percents
    assert list(df.columns[:9]) == ["run", "state", "progress", "setup", "latest", "best", "elapsed", "time left",
                                    "placement"]
    done = df.set_index("run").loc[names["done"]]
    assert done["progress"] == 100 and done["setup"] == "digits · concat"  # dcgan and nonsaturating are the defaults
    resume_to = at.number_input[0]
    assert resume_to.label == "Resume to step" and resume_to.proto.label_visibility.value == 0  # shown
    assert at.get("code")[0].proto.wrap_lines  # the log tail wraps long lines instead of cutting them off


def test_monitor_shows_health_and_charts(full_root, monkeypatch):
    root, names = full_root
    monkeypatch.setenv("GANCORE_RUNS", str(root))
    at = app("monitor", run=names["failed"])
    assert any("non-finite loss" in w.value for w in at.warning)
    at = app("monitor", run=names["crashed"])
    assert any("process is gone" in w.value for w in at.warning)
    assert at.get("plotly_chart") and at.get("image")


def test_compare_overlays_two_runs_and_refuses_other_provenance(full_root, monkeypatch):
    root, names = full_root
    monkeypatch.setenv("GANCORE_RUNS", str(root))
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["cmp_default"] = [names["done"], names["points"]]
    at.run()
    at.switch_page("pages/compare.py").run()
    at.multiselect(key="cmp_metrics").set_value(["loss_d", "fid"]).run()
    assert not at.exception
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    assert any("different provenance" in w.value and names["points"] in w.value for w in at.warning)
    table = at.dataframe[0].value
    assert set(table.index) == {names["done"], names["points"]}


def test_launch_form_starts_a_run(runs_root):
    at = app("launch")
    at.text_input(key="f_name").set_value("from-form")
    at.selectbox(key="f_dataset").set_value("digits")
    for key, value in {"f_steps": 4, "f_g_width": 8, "f_d_width": 8, "f_batch_size": 16, "f_eval_every": 0,
                       "f_z_dim": 8}.items():
        at.number_input(key=key).set_value(value)
    button(at, "Launch").click().run()
    assert not at.error, [e.value for e in at.error]
    path = runs_root / "from-form"
    assert path.is_dir() and runs.read_json(path / "launch.json")["dataset"] == "digits"
    assert "Launched 1 run: from-form" in at.success[0].value
    wait_for(lambda: runs.read_status(path).get("state") == "done", timeout=120, what="the launched run")
    assert runs.read_json(path / "config.json")["steps"] == 4


def test_launch_form_shows_auto_fields_empty_with_the_value_they_resolve_to(runs_root):
    at = app("launch")
    steps, eval_every, beta1 = (at.number_input(key=k) for k in ("f_steps", "f_eval_every", "f_beta1"))
    assert steps.value is None and eval_every.value is None and beta1.value is None  # not "0" or "-1"
    # MNIST-5k's 28 px recipe: 2,000 steps, beta1 0.2; five evaluations over the run
    assert (steps.proto.placeholder, beta1.proto.placeholder) == ("auto: 2,000", "auto: 0.2")
    assert eval_every.proto.placeholder == "auto: 500"
    at.selectbox(key="f_dataset").set_value("ring").run()  # every change shows at once: no form to submit
    assert at.number_input(key="f_steps").proto.placeholder == "auto: 5,000"
    assert at.number_input(key="f_z_dim").proto.placeholder == "auto: 2"
    at.number_input(key="f_steps").set_value(600).run()
    assert at.number_input(key="f_eval_every").proto.placeholder == "auto: 100"  # scaled with the run's length
    assert at.number_input(key="f_eval_every").value is None


def test_launch_form_refuses_invalid_settings_with_the_validation_message(runs_root):
    at = app("launch")
    at.number_input(key="f_n_critic").set_value(0)
    button(at, "Launch").click().run()
    assert at.error and "n_critic: must be > 0" in at.error[0].value
    at.number_input(key="f_n_critic").set_value(1)
    at.number_input(key="f_steps").set_value(10)
    at.selectbox(key="f_dataset").set_value("ring")
    at.selectbox(key="f_conditioning").set_value("projection")
    button(at, "Launch").click().run()
    assert "projection" in at.error[0].value
    at.selectbox(key="f_conditioning").set_value("none")
    at.text_input(key="f_name").set_value("../outside")
    button(at, "Launch").click().run()
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "name:" in errors[0], errors  # the projection refusal went with the projection
    assert not runs_root.exists() or not any(runs_root.iterdir())


def test_launch_form_sweep_and_preset(runs_root):
    at = app("launch")
    at.selectbox(key="preset_pick").set_value("wgan-gp-grid").run()
    assert at.selectbox(key="f_loss").value == "wgan-gp" and at.number_input(key="f_n_critic").value == 5
    at.text_input(key="f_name").set_value("sw")
    at.number_input(key="f_steps").set_value(2)
    at.text_area(key="sweep_text").set_value("seed = 0, 1\nbogus = 1")
    button(at, "Launch").click().run()
    assert "'bogus' is not a config field" in at.error[0].value
    at.text_area(key="sweep_text").set_value("seed = 0, 1")
    button(at, "Launch").click().run()
    assert not at.error
    paths = [runs_root / "sw-seed0", runs_root / "sw-seed1"]
    wait_for(lambda: all(runs.read_status(p).get("state") == "done" for p in paths), timeout=180, what="the sweep")
    assert runs.read_json(paths[1] / "config.json")["loss"] == "wgan-gp"


def test_clone_into_launch_fills_the_form(full_root, monkeypatch):
    root, names = full_root
    monkeypatch.setenv("GANCORE_RUNS", str(root))
    at = app("runs", run=names["done"])
    button(at, "Clone").click().run()
    assert at.title[0].value == "Launch"
    assert at.selectbox(key="f_conditioning").value == "concat" and at.number_input(key="f_steps").value == 8


def test_samples_page_renders_class_rows(full_root, monkeypatch):
    root, names = full_root
    monkeypatch.setenv("GANCORE_RUNS", str(root))
    at = app("samples", run=names["done"])
    imgs = at.get("image")
    assert len(imgs) == 4  # class rows, interpolation, class morph, a sample beside its nearest training images
    at.multiselect(key="samples_classes").set_value([3, 7]).run()
    assert not at.exception and "rows: 3, 7" in str(at.get("image")[0].proto)


def test_delete_asks_first(full_root, monkeypatch, tmp_path):
    import shutil

    root, names = full_root
    copy_root = tmp_path / "runs"
    shutil.copytree(root / names["failed"], copy_root / names["failed"])
    monkeypatch.setenv("GANCORE_RUNS", str(copy_root))
    at = app("runs", run=names["failed"])
    assert (copy_root / names["failed"]).exists()  # the popover's confirm button is the only delete
    button(at, "Yes, delete it").click().run()
    assert not (copy_root / names["failed"]).exists()


def test_launch_form_has_every_config_field(runs_root):
    from gancore.config import field_names

    at = app("launch")
    keys = {w.key for kind in ("selectbox", "checkbox", "number_input", "text_input")
            for w in getattr(at, kind) if w.key}
    missing = [f for f in field_names() if f not in ("runs_root", "preset") and f"f_{f}" not in keys]
    assert not missing, f"config fields without a widget on Launch: {missing}"
    assert len(at.selectbox(key="preset_pick").options) == 1 + len(PRESETS)  # "defaults" + every preset
