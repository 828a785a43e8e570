"""Compare with groups of seeds (AppTest): the mean curve and its band, the groups' final values, the pairwise
table with its verdicts, and the parallel-coordinates chart of settings against a final score."""
import json
import os

import pytest
from streamlit.testing.v1 import AppTest

import gancore
from conftest import ROOT

APP = str(ROOT / "dashboard" / "app.py")
BASE = dict(dataset="ring", model="mlp", g_width=16, d_width=16, batch_size=32, steps=20, log_every=5,
            sample_every=20, ckpt_every=20, eval_every=10, eval_n=500, device="cpu")


@pytest.fixture(scope="module")
def grouped_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp") / "runs"
    names = []
    for loss in ("nonsaturating", "hinge"):
        for seed in (0, 1, 2):
            gancore.train(dict(BASE, loss=loss, seed=seed, name=f"ring-{loss}-s{seed}", runs_root=str(root)))
            names.append(f"ring-{loss}-s{seed}")
    return root, names


def open_page(root, monkeypatch, page: str | None = None, **state) -> AppTest:
    """The dashboard on runs root `root`, with `state` in the session, at `page` (None: the landing page, Runs)."""
    monkeypatch.setenv("GANCORE_RUNS", str(root))
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page:
        at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def compare(root, names, monkeypatch) -> AppTest:
    return open_page(root, monkeypatch, "compare", cmp_default=names)


def test_groups_of_seeds_show_bands_final_values_and_verdicts(grouped_root, monkeypatch):
    root, names = grouped_root
    at = compare(root, names, monkeypatch)
    assert at.toggle(key="cmp_group_True").value  # on by default when some group has several seeds
    at.multiselect(key="cmp_metrics").set_value(["loss_d", "hq_share"]).run()
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    band_charts = [c for c in charts if "95% band" in c["layout"].get("title", {}).get("text", "")]
    assert len(band_charts) == 2
    traces = band_charts[0]["data"]
    assert sum(t.get("fill") == "toself" for t in traces) == 2  # one band per group
    assert {t["name"] for t in traces if t.get("fill") != "toself" and t.get("showlegend", True)} == {
        "loss=hinge (n=3)", "loss=nonsaturating (n=3)"}
    finals = at.dataframe[0].value
    assert set(finals.index) == {"loss=nonsaturating", "loss=hinge"} and set(finals["n"]) == {3}
    assert all("±" in v for v in finals["loss_d"])
    at.selectbox(key="cmp_pair_metric").set_value("loss_d").run()
    pairs = at.dataframe[1].value
    assert list(pairs["verdict"]) == ["loss=nonsaturating better"]  # hinge's D loss starts near 2
    assert not any(c["data"][0]["type"] == "parcoords" for c in charts)  # drawn on request (WebGL)
    at.toggle(key="cmp_pc_show").set_value(True).run()
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert any(c["data"][0]["type"] == "parcoords" for c in charts)


def test_ungrouped_runs_keep_the_best_and_last_table(grouped_root, monkeypatch):
    root, names = grouped_root
    at = compare(root, names[:1] + names[3:4], monkeypatch)  # one run of each group: nothing to group
    assert not at.toggle(key="cmp_group_False").value
    assert "Best and last" in [s.value for s in at.subheader]


def test_a_loss_gets_its_final_smoothed_value_not_its_minimum():
    import pandas as pd

    from gancore import views

    frames = {"a": pd.DataFrame({"step": [1, 2, 3], "loss_d": [3.0, 1.0, 2.0], "fid": [5.0, 2.0, 3.0]})}
    t = views.best_and_last(frames, ["loss_d", "fid"], smoothing=0.6)
    assert list(t.columns) == ["loss_d final (smoothed)", "fid best", "fid last"]
    # debiased EMA with weight 0.6: (0.36 * 3 + 0.6 * 1 + 1 * 2) / (0.36 + 0.6 + 1)
    assert t.loc["a", "loss_d final (smoothed)"] == pytest.approx(3.68 / 1.96)


def test_tags_are_edited_on_runs_and_filter_compare(grouped_root, monkeypatch):
    from gancore import runs

    root, names = grouped_root
    at = open_page(root, monkeypatch, run=names[0])
    at.text_input(key="runs_notes_tags").set_value("baseline, short run")
    at.text_area(key="runs_notes_note").set_value("the reference for the hinge runs")
    [save] = [b for b in at.button if b.label == "Save"]
    save.click().run()
    assert not at.exception and not at.error
    assert runs.read_notes(root / names[0]) == {"tags": ["baseline", "short run"],
                                                "note": "the reference for the hinge runs"}
    at.text_input(key="runs_notes_tags").set_value("bad/tag")
    [save] = [b for b in at.button if b.label == "Save"]
    save.click().run()
    assert "tag 'bad/tag'" in at.error[0].value  # refused, the saved tags kept
    assert runs.read_notes(root / names[0])["tags"] == ["baseline", "short run"]

    at.switch_page("pages/compare.py").run()
    at.multiselect(key="cmp_tags").set_value(["baseline"]).run()
    assert at.multiselect(key="cmp_runs").options == [names[0]]
    labels = [b.proto.label for b in at.get("download_button")]
    assert "Download this comparison as a report (HTML)" in labels


def test_the_report_holds_charts_tables_and_grids(grouped_root):
    import pandas as pd
    import plotly.graph_objects as go

    from gancore import report, runs

    root, names = grouped_root
    grid = runs.sample_grids(root / names[0])[20]
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4], name="loss_d of ring"))
    page = report.comparison_html("ring <compared>", [fig], {"Config differences": pd.DataFrame({"a": [1.5]})},
                                  {f"{names[0]}, step 20": grid}, names)
    assert page.startswith("<!DOCTYPE html>") and "ring &lt;compared&gt;" in page
    assert "Plotly.newPlot" in page and "loss_d of ring" in page  # the chart, with plotly.js inline (offline)
    assert "<script src=" not in page
    assert "<table" in page and "1.5" in page
    import base64

    assert base64.b64encode(grid.read_bytes()).decode() in page


def test_mode_collapse_names_the_source_of_each_count_and_shows_shares_as_percents(grouped_root, monkeypatch):
    root, names = grouped_root
    at = open_page(root, monkeypatch, "mode_collapse", run=names[0])
    assert any("points saved at step 20" in c.value and "evaluations below draw samples of their own" in c.value
               for c in at.caption)
    assert at.metric[0].label == "modes captured (these points)" and "3σ" in at.metric[0].help
    table = at.dataframe[0].value
    assert list(table.index) == ["modes captured", "high-quality share"]
    assert all(str(v).endswith("%") for v in table.loc["high-quality share"])
    assert all(str(v).endswith(" / 8") for v in table.loc["modes captured"])


def test_elapsed_time_counts_every_segment_of_a_resumed_run(runs_root):
    """The trainer's clock continues across resumes; the time shown must too, not restart at the resume."""
    import torch

    from gancore import runs, views

    run_dir = gancore.train(dict(BASE, name="resumed", steps=10, ckpt_every=10, eval_every=0))
    first = torch.load(runs.checkpoint_path(run_dir, 10), weights_only=True)["elapsed"]  # where the resume continues
    gancore.train(resume=run_dir, steps=20)
    status = runs.read_status(run_dir)
    total = torch.load(runs.checkpoint_path(run_dir, 20), weights_only=True)["elapsed"]
    assert total <= views.elapsed(status) <= total + 1  # the clock at the end, just after the last checkpoint
    assert views.elapsed(status) > total > first > 0  # the second segment adds to the first (the time since the
    # resume's own start, the old rule, shows the second segment alone and fails the line above)


@pytest.fixture(scope="module")
def evaluated_root(tmp_path_factory):
    from conftest import tiny

    root = tmp_path_factory.mktemp("mon") / "runs"
    for name, every in (("once", 8), ("twice", 4)):
        gancore.train(tiny(name=name, steps=8, eval_every=every, eval_n=200, runs_root=str(root)))
    return root


def test_monitor_names_each_score_and_draws_spreads(evaluated_root, monkeypatch):
    at = open_page(evaluated_root, monkeypatch, "monitor", run="twice")
    latest = [m for m in at.metric if m.label.startswith("latest ")]
    assert latest[0].label == "latest FID · digits evaluator" and "Not an Inception FID" in latest[0].help
    assert latest[1].label == "latest KID · digits evaluator"
    picker = at.multiselect(key="monitor_scores_twice")  # the headline scores charted, the others one pick away
    assert picker.value == ["fid", "kid_mean", "is_mean"] and "precision · digits evaluator" in picker.options
    picker.set_value(["fid", "kid_mean", "precision", "coverage"]).run()
    charts = {json.loads(c.proto.spec)["layout"]["title"]["text"]: json.loads(c.proto.spec)
              for c in at.get("plotly_chart") if "title" in json.loads(c.proto.spec)["layout"]}
    assert "FID · digits evaluator" in charts and "fid_lo" not in charts and "kid_std" not in charts
    assert any(t.get("fill") == "toself" for t in charts["FID · digits evaluator"]["data"])  # the interval band
    assert charts["KID · digits evaluator"]["data"][0]["error_y"]["visible"]  # std as error bars
    # a share is charted as pages show it: in percent, on its whole range; other scores on their own scale
    assert charts["precision · digits evaluator"]["layout"]["yaxis"]["tickformat"] == ".0%"
    assert charts["coverage · digits evaluator"]["layout"]["yaxis"]["range"] == [-0.02, 1.02]
    assert "tickformat" not in charts["FID · digits evaluator"]["layout"].get("yaxis", {})


def test_monitor_shows_one_evaluation_as_numbers(evaluated_root, monkeypatch):
    at = open_page(evaluated_root, monkeypatch, "monitor", run="once")
    titles = [json.loads(c.proto.spec)["layout"].get("title", {}).get("text", "") for c in at.get("plotly_chart")]
    assert not any("evaluator" in t for t in titles)  # no one-dot score charts
    labels = [m.label for m in at.metric]
    assert "FID · digits evaluator" in labels and "precision · digits evaluator" in labels


def test_time_left_comes_from_the_rate_so_far():
    from gancore import views

    running = {"state": "running", "step": 200, "steps": 1000, "trained_s": 50.0}  # 4 steps a second
    assert views.eta(running) == 200.0 and views.duration(views.eta(running)) == "3:20"
    assert views.eta(dict(running, state="done")) is None
    assert views.eta(dict(running, step=0)) is None  # no rate yet
    assert views.duration(3 * 3600 + 61) == "3:01:01" and views.duration(None) == ""


def test_runs_and_monitor_show_time_left_for_a_running_run(evaluated_root, monkeypatch):
    from gancore import runs

    path = evaluated_root / "twice"
    status = runs.read_status(path)
    runs.update_status(path, state="running", pid=os.getpid(), step=4, steps=8, trained_s=10.0, finished=None)
    try:
        at = open_page(evaluated_root, monkeypatch, run="twice")
        table = at.dataframe[0].value
        assert table.set_index("run").loc["twice", "time left"] == "0:10"
        at.switch_page("pages/monitor.py").run()
        elapsed = next(m for m in at.metric if m.label == "elapsed")
        assert "0:10 left" in elapsed.proto.delta
    finally:
        runs.write_json_atomic(path / "status.json", status)
