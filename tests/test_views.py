"""The dashboard's readers as plain functions: run tables, smoothing, best/last, config diff, CSV,
provenance groups, health warnings, filters."""
import io
import math

import numpy as np
import pandas as pd
import pytest

import runs_fixture
from gancore import records, runs, views


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("views") / "runs"
    runs_fixture.build(root)
    return root


def test_run_rows_show_every_kind_of_run(root):
    rows = {r["run"]: r for r in views.run_rows(root)}
    assert rows["digits-concat-done"]["state"] == "done" and rows["digits-concat-done"]["progress"] == 1.0
    assert rows["digits-concat-done"]["latest"].startswith("FID ") and " · acc " in rows["digits-concat-done"]["latest"]
    assert rows["digits-concat-done"]["best"].startswith("FID ")
    assert rows["digits-concat-running"]["state"] == "running" and rows["digits-concat-running"]["progress"] == 0.5
    assert rows["digits-concat-failed"]["state"] == "failed" and "non-finite" in rows["digits-concat-failed"]["error"]
    assert rows["digits-concat-halfwritten"]["state"] == "crashed"  # running with a dead pid
    assert rows["waiting-to-start"]["state"] == "starting" and rows["waiting-to-start"]["pending"]  # its pid lives
    assert list(rows)[0] == "waiting-to-start"  # pending launches first
    latest = runs.read_status(root / "ring-done")["latest"]  # the list shows modes and high-quality share only
    assert {"modes", "hq_share", "reverse_kl"} <= set(latest) and isinstance(latest["modes"], int)
    assert rows["ring-done"]["latest"] == f"modes {latest['modes']} · HQ {100 * latest['hq_share']:.1f}%"


def test_run_rows_write_the_headline_scores_by_the_display_rule(root, tmp_path):
    import shutil

    copy = tmp_path / "runs" / "ring-done"
    shutil.copytree(root / "ring-done", copy)
    runs.update_status(copy, latest={"step": 40, "modes": 7, "hq_share": 0.987654, "reverse_kl": 0.123456},
                       best={"step": 20, "metric": "modes,hq_share", "value": {"modes": 8, "hq_share": 0.912345}})
    [row] = views.run_rows(tmp_path / "runs")
    # the run list's headline (no reverse KL), by short names, a share as a percent
    assert row["latest"] == "modes 7 · HQ 98.8%"
    assert row["best"] == "modes 8 · HQ 91.2%"
    assert records.format_scores({"step": 1200, "modes": 7, "hq_share": 0.987654}) == \
        "step 1,200 · modes captured 7 · high-quality share 98.8%"


@pytest.mark.parametrize("name, value, shown", [
    ("loss_d", 1.3456, "1.35"), ("loss_g", -0.012345, "-0.0123"), ("kid_mean", 0.0815812, "0.0816"),
    ("fid", 327.66, "328"), ("fid", 1234.5, "1,234"), ("fid", 12345.0, "12,345"), ("modes", 7, "7"),
    ("modes", 7.0, "7"), ("step", 12000, "12,000"), ("hq_share", 0.0076, "0.8%"), ("cond_acc", 0.9, "90.0%"),
    ("precision", 0.5, "50.0%"), ("density", 1.25, "1.25"), ("reverse_kl", float("inf"), "inf"),
    ("never_declared", 0.123456, "0.123"), ("fid", None, "-")])
def test_one_display_rule_for_every_number_a_page_shows(name, value, shown):
    assert records.display(name, value) == shown


@pytest.mark.parametrize("name, mean, half, shown", [
    ("loss_d", 1.954, 1.6, "2.0 ± 1.6"), ("loss_d", 1.1642, 0.2871, "1.16 ± 0.29"), ("fid", 31.7, 12.4, "32 ± 12"),
    ("fid", 1234.5, 210.0, "1,234 ± 210"), ("hq_share", 0.001467, 0.004, "0.15 ± 0.40%"),
    ("modes", 2.6667, 2.9, "2.7 ± 2.9"), ("loss_d", 1.5, 0.0, "1.5 ± 0"), ("loss_d", 1.5, None, "1.5")])
def test_a_mean_and_its_interval_share_the_half_widths_precision(name, mean, half, shown):
    assert records.metric(name).display_interval(mean, half) == shown


def test_half_written_metrics_show_what_is_complete(root):
    df = views.metrics_frame(root / "digits-concat-halfwritten")
    assert df["step"].tolist() == [2, 4, 6, 8]  # the half line (step 10) is left out
    assert views.metrics_frame(root / "no-such-run").empty


def test_ema_smoothing():
    x = np.array([1.0, 3.0, np.nan, 3.0, 3.0])
    assert np.allclose(views.ema_smooth(x, 0.0)[[0, 1, 3]], x[[0, 1, 3]])
    s = views.ema_smooth(x, 0.5)
    assert s[0] == 1.0  # debiased: the first value is the first raw value, not 0.5 of it
    assert s[1] == pytest.approx((0.5 * 0.5 * 1 + 0.5 * 3) / 0.75)
    assert math.isnan(s[2]) and 1 < s[3] < s[4] < 3
    assert np.allclose(views.ema_smooth(np.full(50, 7.0), 0.9), 7.0)


def test_series_thins_long_runs_but_keeps_the_last_point():
    df = pd.DataFrame({"step": np.arange(1, 20001) * 50, "loss_d": np.random.default_rng(0).random(20000)})
    s = views.series(df, "loss_d", "step", smoothing=0.9, max_points=2000)
    assert len(s) <= 2001 and s["x"].iloc[-1] == 20000 * 50 and s["x"].iloc[0] == 50
    assert abs(s["smooth"].iloc[-1] - 0.5) < 0.1  # smoothed over every point before thinning


def test_best_and_last_use_the_metric_direction():
    frames = {"a": pd.DataFrame({"step": [1, 2, 3], "fid": [5.0, 2.0, 3.0], "cond_acc": [0.2, 0.9, 0.5]}),
              "b": pd.DataFrame({"step": [1, 2], "fid": [np.nan, 4.0]})}
    t = views.best_and_last(frames, ["fid", "cond_acc"])
    assert t.loc["a", "fid best"] == 2.0 and t.loc["a", "fid last"] == 3.0
    assert t.loc["a", "cond_acc best"] == 0.9 and t.loc["b", "fid best"] == 4.0
    assert pd.isna(t.loc["b", "cond_acc best"])


def test_config_diff_shows_only_differing_fields(root):
    configs = {n: runs.read_json(root / n / "config.json") for n in ("digits-concat-done", "digits-plain-done")}
    diff = views.config_diff(configs)
    assert "conditioning" in diff.index and diff.loc["conditioning", "digits-concat-done"] == "concat"
    assert "dataset" not in diff.index and "name" not in diff.index
    assert views.config_diff({"a": {"x": 1}, "b": {"x": 1}}).empty


def test_metrics_csv_has_every_record_of_every_run(root):
    frames = {n: views.metrics_frame(root / n) for n in ("digits-concat-done", "ring-done")}
    out = pd.read_csv(io.StringIO(views.metrics_csv(frames)))
    assert out.columns[0] == "run" and set(out["run"]) == set(frames)
    assert len(out) == sum(len(f) for f in frames.values())
    assert "loss_d" in out and "provenance" not in out  # nested values are left out


def test_scores_are_grouped_by_provenance(root):
    frames = {n: views.metrics_frame(root / n) for n in ("digits-concat-done", "digits-plain-done", "ring-done")}
    groups = views.comparable_groups(frames)
    assert sorted(len(g) for _, g in groups) == [1, 2]  # two digits runs agree; the 2-D run is its own group
    assert set(groups[0][1]) == {"digits-concat-done", "digits-plain-done"}
    frames["other-n"] = frames["digits-plain-done"].copy()
    frames["other-n"]["provenance"] = frames["other-n"]["provenance"].map(
        lambda p: dict(p, n_gen=999) if isinstance(p, dict) else p)
    assert len(views.comparable_groups(frames)) == 3  # a different sample count is a different metric


def test_health_warnings():
    df = pd.DataFrame({"step": [1, 2, 3, 4], "loss_d": [0.1] * 4, "loss_g": [5, 6, 7, 8],
                       "d_real": [0.99] * 4, "d_fake": [0.01] * 4})
    warn = views.health_warnings(df, {"state": "done"}, {"loss": "nonsaturating"}, {})
    assert any("D is winning outright" in w for w in warn)
    assert not views.health_warnings(df, {"state": "done"}, {"loss": "hinge"}, {})  # raw scores: no probabilities
    hist = pd.DataFrame({"step": [4], "class_hist": [[0.91] + [0.01] * 9]})
    warn = views.health_warnings(hist, {"state": "done"}, {}, {"class_names": list("0123456789")})
    assert any("class collapse: 91% of samples look like class 0" in w for w in warn)
    acc = pd.DataFrame({"step": [4], "cond_acc_per_class": [[0.9, 0.05, None]]})
    assert any("conditional accuracy < 20%): 1" in w for w in views.health_warnings(acc, {}, {}, {}))
    inf = pd.DataFrame({"step": [2, 4], "loss_d": [0.5, float("inf")]})
    assert any("loss_d is not finite at step 4" in w for w in views.health_warnings(inf, {}, {}, {}))
    failed = views.health_warnings(pd.DataFrame(), {"state": "failed", "error": "non-finite loss (loss_d=nan)"}, {}, {})
    assert failed == ["failed: non-finite loss (loss_d=nan)"]  # the trainer never logs a NaN; it fails the run
    ring = pd.DataFrame({"step": [4], "modes": [3]})
    assert any("mode collapse: 3 of 8 modes" in w for w in views.health_warnings(ring, {}, {}, {"modes": [[0, 1]] * 8}))
    stacked = pd.DataFrame({"step": [4], "modes": [420], "triple_counts": [[26] * 1000]})  # its classes are its modes
    info = {"num_classes": 1000}
    assert any("mode collapse: 420 of 1000 modes" in w for w in views.health_warnings(stacked, {}, {}, info))
    assert not views.health_warnings(stacked.assign(modes=[990]), {}, {}, info)
    ok = pd.DataFrame({"step": [2], "loss_d": [0.7], "d_real": [0.6], "d_fake": [0.4], "class_hist": [[0.1] * 10]})
    assert views.health_warnings(ok, {"state": "running", "pid": __import__("os").getpid()},
                                 {"loss": "nonsaturating"}, {}) == []


def test_filter_runs(root):
    names = [p.name for p in runs.list_runs(root)]
    configs = {n: runs.read_json(root / n / "config.json") for n in names}
    assert views.filter_runs(names, "^ring") == ["ring-done"]
    assert set(views.filter_runs(names, "", configs, {"conditioning": ["none"]})) == {"digits-plain-done", "ring-done"}
    with pytest.raises(ValueError, match="regular expression"):
        views.filter_runs(names, "(")


def test_colours_are_stable_per_position():
    a = views.colors(["x", "y", "z"])
    assert a == views.colors(["x", "y", "z"]) and len(set(a.values())) == 3


def test_nearest_grid_and_points(root):
    assert views.nearest([3, 6, 8], 7) == 6 and views.nearest([3, 6], 1) == 3
    pts = views.points_at(root / "ring-done", 40)
    assert pts.shape == (2500, 2) and views.points_at(root / "ring-done", 41) is None


@pytest.mark.parametrize("row, shown", [
    (dict(dataset="ring", model="mlp", loss="hinge", conditioning="none"), "ring · hinge"),
    (dict(dataset="digits", model="dcgan", loss="nonsaturating", conditioning="concat"), "digits · concat"),
    (dict(dataset="digits", model="mlp", loss="nonsaturating", conditioning="none"), "digits · mlp"),
    (dict(dataset="mnist-5k", model="resnet", loss="hinge", conditioning="projection"),
     "mnist-5k · resnet · hinge · projection"),
    (dict(dataset="ring", model="auto", loss="nonsaturating", conditioning="none"), "ring")])  # a pending launch
def test_the_runs_setup_column_names_what_differs_from_the_defaults(row, shown):
    assert views.setup_text(row) == shown


def test_the_quick_start_estimate_comes_from_this_machines_runs_of_the_preset(tmp_path):
    root = tmp_path / "runs"
    assert views.preset_estimate(root, "cgan-concat", 2000) is None  # nothing measured yet: the page says so
    for name, preset, trained_s, step in [("a", "cgan-concat", 120.0, 1000), ("b", "cgan-concat", 90.0, 500),
                                          ("c", "cgan-concat", 100.0, 1000), ("other", "dcgan-ns", 10.0, 1000)]:
        (root / name).mkdir(parents=True)
        runs.write_json_atomic(root / name / "config.json", {"preset": preset})
        runs.write_json_atomic(root / name / "status.json", {"state": "done", "trained_s": trained_s, "step": step})
    # seconds per step 0.12, 0.18, 0.10 -> median 0.12, times 2,000 steps; the other preset's runs do not count
    assert views.preset_estimate(root, "cgan-concat", 2000) == pytest.approx(240.0)
