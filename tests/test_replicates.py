"""Seeds as replicates (gancore.replicates): groups found from the configs, means and 95 % intervals against a
direct computation, and the verdicts of the pairwise table, on 3 groups x 3 seeds of tiny real runs."""
import math

import numpy as np
import pytest

import gancore
from gancore import replicates, runs, views

SEEDS = (0, 1, 2)
BASE = dict(dataset="ring", model="mlp", g_width=16, d_width=16, batch_size=32, steps=20, log_every=10,
            sample_every=20, ckpt_every=20, eval_every=0, device="cpu")
GROUPS = {  # C differs from A only in a field that does not change training: its outcomes are A's
    "A": dict(BASE),
    "B": dict(BASE, loss="hinge"),  # hinge's D loss starts near 2, the nonsaturating one near 2 log 2
    "C": dict(BASE, sample_every=10),
}
T_975 = {2: 4.302652729911275}  # Student t's 0.975 quantile at 2 degrees of freedom (3 seeds), from tables


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    names = {}
    for group, fields in GROUPS.items():
        for seed in SEEDS:
            names[gancore.train(dict(fields, seed=seed, name=f"{group}-s{seed}", runs_root=str(root)))] = group
    configs = {n: runs.read_config(n) for n in names}
    frames = {n: views.metrics_frame(n) for n in names}
    return names, configs, frames


def test_runs_that_differ_only_in_seed_form_one_group(grouped):
    names, configs, _ = grouped
    groups = replicates.group_runs(configs)
    assert sorted(sorted(g) for g in groups.values()) == sorted(
        sorted(n for n, g in names.items() if g == label) for label in GROUPS)
    labels = {names[members[0]]: label for label, members in groups.items()}
    assert labels["B"] == "loss=hinge, sample_every=20" and labels["C"] == "loss=nonsaturating, sample_every=10"
    assert replicates.group_runs({n: configs[n] for n in names if names[n] == "A"}) == {
        "all runs": [n for n in names if names[n] == "A"]}


def test_group_means_and_intervals_are_the_t_intervals_over_seeds(grouped):
    names, configs, frames = grouped
    final = replicates.final_scores(frames, "loss_d")
    for group in GROUPS:
        v = np.array([final[n] for n in names if names[n] == group])
        mean, half, n = replicates.interval(v)
        assert n == 3 and mean == pytest.approx(v.mean())
        assert half == pytest.approx(T_975[2] * v.std(ddof=1) / math.sqrt(3))


def test_the_pairwise_verdicts(grouped):
    names, configs, frames = grouped
    final = replicates.final_scores(frames, "loss_d")
    values = {g: [final[n] for n in names if names[n] == g] for g in GROUPS}
    table = replicates.pairwise(values, higher_is_better=False).set_index(["A", "B"])
    assert table.loc[("A", "B"), "verdict"] == "A better"  # lower D loss, far beyond seed noise
    assert table.loc[("B", "C"), "verdict"] == "C better"
    assert table.loc[("A", "C"), "verdict"] == "no difference shown"
    assert values["A"] == values["C"]  # sample_every changes no number of training
    a, b = np.array(values["A"]), np.array(values["B"])  # Welch's interval, by hand
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 3
    dof = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    from scipy.stats import t

    lo, hi = table.loc[("A", "B"), "95% interval"]
    half = t.ppf(0.975, dof) * math.sqrt(va + vb)
    assert (lo, hi) == pytest.approx((b.mean() - a.mean() - half, b.mean() - a.mean() + half))
    assert lo > 0  # B's D loss is higher: the interval excludes 0


def test_one_seed_gives_no_interval_and_a_caution():
    table = replicates.pairwise({"A": [1.0], "B": [2.0, 2.1, 2.2]}, higher_is_better=True)
    row = table.iloc[0]
    assert row["verdict"] == "1 seed: no interval" and row["95% interval"] is None
    assert "fewer than 3 seeds" in row["caution"]
    assert replicates.interval([1.0]) == (1.0, None, 1)


def test_higher_is_better_turns_the_verdict():
    values = {"A": [1.0, 1.1, 0.9], "B": [5.0, 5.1, 4.9]}
    assert replicates.pairwise(values, higher_is_better=True).iloc[0]["verdict"] == "B better"
    assert replicates.pairwise(values, higher_is_better=False).iloc[0]["verdict"] == "A better"


def test_derived_float_noise_does_not_split_a_group():
    a = dict(BASE, seed=0, point_scale=0.70721)
    b = dict(BASE, seed=1, point_scale=0.70714)
    assert len(replicates.group_runs({"a": a, "b": b})) == 1


def test_the_band_is_the_mean_and_t_interval_at_each_step():
    import pandas as pd

    frames = [pd.DataFrame({"step": [1, 2, 3], "loss_d": [1.0, 2.0, 3.0]}),
              pd.DataFrame({"step": [1, 2, 3], "loss_d": [3.0, 2.0, 5.0]}),
              pd.DataFrame({"step": [1, 2], "loss_d": [2.0, 2.0]})]
    band = replicates.band(frames, "loss_d").set_index("step")
    assert band.loc[1, "mean"] == 2.0 and band.loc[1, "hi"] - 2.0 == pytest.approx(T_975[2] * 1.0 / math.sqrt(3))
    assert band.loc[2, "lo"] == band.loc[2, "hi"] == 2.0  # no spread
    assert band.loc[3, "n"] == 2 and band.loc[3, "mean"] == 4.0


def test_the_cli_trains_one_run_per_seed(runs_root):
    import subprocess
    import sys

    from conftest import ROOT, subprocess_env

    args = [sys.executable, "-m", "gancore", "train", "--dataset", "ring", "--steps", "4", "--g_width", "8",
            "--d_width", "8", "--eval_every", "0", "--name", "rep"]
    out = subprocess.run(args + ["--seeds", "2", "--seed", "5"], env=subprocess_env(runs_root), cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(runs_root / "rep-seed5"), str(runs_root / "rep-seed6")]
    assert [runs.read_config(runs_root / f"rep-seed{s}")["seed"] for s in (5, 6)] == [5, 6]
    configs = {n: runs.read_config(runs_root / n) for n in ("rep-seed5", "rep-seed6")}
    assert replicates.group_runs(configs) == {"all runs": ["rep-seed5", "rep-seed6"]}
    bad = subprocess.run(args + ["--seeds", "0,0"], env=subprocess_env(runs_root), cwd=ROOT, capture_output=True,
                         text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--seeds" in bad.stderr


def test_sweep_runs_are_named_by_the_values_they_vary():
    from gancore.launch import sweep_fields

    unnamed = sweep_fields({"dataset": "ring"}, {"loss": ["nonsaturating", "hinge"], "seed": [0, 1]})
    assert [f["name"] for f in unnamed] == ["ring-nonsaturating-seed0", "ring-nonsaturating-seed1",
                                            "ring-hinge-seed0", "ring-hinge-seed1"]
    named = sweep_fields({"dataset": "ring", "name": "sw"}, {"seed": [0, 1]})
    assert [f["name"] for f in named] == ["sw-seed0", "sw-seed1"]
