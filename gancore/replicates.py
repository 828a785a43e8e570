"""Seeds as replicates: runs that differ only in their seed form a group, and groups are compared by their means
with 95 % intervals, so a difference between two configurations is called real only beyond seed noise.

    groups = group_runs(configs)                      # {label: [run names]}, from the configs, not the names
    summary = group_summary(values_by_group)          # mean, 95 % half-width, n per group
    table = pairwise(values_by_group, higher_is_better=False)   # difference, interval, verdict per pair

Intervals are Student-t intervals over the seeds (the seeds are the replicates; GAN outcomes are roughly
normal across seeds at these n, and a bootstrap over 3 values would only echo them): a group's mean
± t(0.975, n-1) s/sqrt(n), and for a pair Welch's interval of the difference of means. With fewer than
2 seeds in a group there is no interval. Plain numpy/scipy: the dashboard reads this without torch.
"""
import json
import math
from itertools import combinations

import numpy as np
import pandas as pd

# Fields that never make two runs different configurations: who they are and where they are written.
REPLICATE_FIELDS = ("seed", "name", "runs_root")
FLOAT_DIGITS = 3  # significant digits a float field is compared at: derived values (point_scale 0.7072 / 0.7071)


def comparable(value):
    """A config value as two configs are compared: a float at FLOAT_DIGITS significant digits, the rest as is."""
    if isinstance(value, float) and math.isfinite(value) and value != 0:
        return float(f"{value:.{FLOAT_DIGITS}g}")
    return value


def config_key(config: dict) -> str:
    """What a run's config says about training, as one string: every field but REPLICATE_FIELDS, floats rounded."""
    return json.dumps({k: comparable(v) for k, v in sorted(config.items()) if k not in REPLICATE_FIELDS},
                      sort_keys=True)


def group_runs(configs: dict[str, dict]) -> dict[str, list[str]]:
    """{label: run names} for runs whose configs differ only in REPLICATE_FIELDS; groups in order of first run.

    A label names the fields that set a group apart from the others (`loss=hinge, lr_d=0.0004`), or
    `all runs` when every run has the same config."""
    keyed: dict[str, list[str]] = {}
    for name, config in configs.items():
        keyed.setdefault(config_key(config), []).append(name)
    if len(keyed) == 1:
        return {"all runs": next(iter(keyed.values()))}
    fields = [json.loads(k) for k in keyed]
    varying = sorted({f for d in fields for f in d if len({json.dumps(e.get(f)) for e in fields}) > 1})
    labels = {}
    for key, d in zip(keyed, fields):
        label = ", ".join(f"{f}={d.get(f)}" for f in varying)
        labels[label if label not in labels else f"{label} ({len(labels) + 1})"] = keyed[key]
    return labels


def t_quantile(dof):
    """The 0.975 quantile of Student's t with `dof` degrees of freedom (a number or an array): the half-width
    factor of a 95 % interval. scipy.special's stdtrit is the function scipy.stats.t.ppf calls; importing it
    alone takes a quarter of the time scipy.stats does (the first Compare with groups waits for it)."""
    from scipy.special import stdtrit

    return stdtrit(dof, 0.975)


def interval(values) -> tuple[float, float | None, int]:
    """(mean, 95 % half-width or None when n < 2, n) of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    n = len(v)
    if n == 0:
        return math.nan, None, 0
    if n < 2:
        return float(v[0]), None, 1
    return float(v.mean()), float(t_quantile(n - 1) * v.std(ddof=1) / math.sqrt(n)), n


def welch(a, b) -> tuple[float, float | None]:
    """(mean(b) - mean(a), 95 % half-width of Welch's interval, None when either has fewer than 2 values)."""
    a, b = (np.asarray([x for x in v if x is not None and math.isfinite(x)], dtype=float) for v in (a, b))
    diff = float(b.mean() - a.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return diff, None
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, 0.0
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return diff, float(t_quantile(dof) * se)


def verdict(a: str, b: str, diff: float, half: float | None, n: tuple[int, int], higher_is_better: bool) -> str:
    """What the interval of mean(b) - mean(a) says, in words."""
    if half is None:
        return f"{min(n)} seed{'s' if min(n) != 1 else ''}: no interval"
    if abs(diff) <= half:
        return "no difference shown"
    better = b if (diff > 0) == higher_is_better else a
    return f"{better} better"


def group_summary(values: dict[str, list[float]], metric: str = "") -> pd.DataFrame:
    """A row per group: mean, 95 % half-width, n, and `mean ± half` as text (formatted as `metric` is shown:
    records.Metric.display_interval)."""
    from .records import metric as declared

    rows = []
    for label, v in values.items():
        mean, half, n = interval(v)
        text = declared(metric).display_interval(mean, half) if half is not None else \
            f"{declared(metric).display(mean)} (n={n})"
        rows.append({"group": label, "mean": mean, "half_width": half, "n": n, "mean ± 95%": text})
    return pd.DataFrame(rows).set_index("group") if rows else pd.DataFrame()


def pairwise(values: dict[str, list[float]], higher_is_better: bool) -> pd.DataFrame:
    """A row per pair of groups (A, B): mean(B) - mean(A), its 95 % Welch interval, n of each, and the verdict;
    a caution where a group has fewer than 3 seeds."""
    rows = []
    for a, b in combinations(values, 2):
        diff, half = welch(values[a], values[b])
        n = (interval(values[a])[2], interval(values[b])[2])
        rows.append({"A": a, "B": b, "B - A": diff,
                     "95% interval": None if half is None else (diff - half, diff + half),
                     "n A": n[0], "n B": n[1], "verdict": verdict(a, b, diff, half, n, higher_is_better),
                     "caution": "fewer than 3 seeds: the interval is wide and itself uncertain" if min(n) < 3 else ""})
    return pd.DataFrame(rows)


def band(frames: list[pd.DataFrame], metric: str, x: str = "step") -> pd.DataFrame:
    """A group's curve: at each x where a run of the group has `metric`, the mean over its runs and the 95 %
    t-interval (lo = hi = mean where only one run has a value). Columns x, mean, lo, hi, n."""
    parts = [df[[x, metric]].dropna() for df in frames if metric in df and x in df]
    if not parts:
        return pd.DataFrame(columns=[x, "mean", "lo", "hi", "n"])
    stacked = pd.concat(parts)
    stats = stacked.groupby(x)[metric].agg(["mean", "std", "count"]).reset_index()
    q = t_quantile(np.maximum(stats["count"] - 1, 1))
    half = np.where(stats["count"] > 1, q * stats["std"].fillna(0) / np.sqrt(stats["count"]), 0.0)
    return pd.DataFrame({x: stats[x], "mean": stats["mean"], "lo": stats["mean"] - half, "hi": stats["mean"] + half,
                         "n": stats["count"]})


def final_scores(frames: dict[str, pd.DataFrame], metric: str) -> dict[str, float]:
    """Each run's last recorded value of `metric` (its final evaluation for a score); runs without one left out."""
    out = {}
    for name, df in frames.items():
        if metric in df:
            s = df[metric].dropna()
            if len(s):
                out[name] = float(s.iloc[-1])
    return out
