"""What the dashboard shows, as plain functions of run directories (no Streamlit here).

The pages in dashboard/ only lay these out: run tables, metric frames, EMA smoothing, best/last
tables, config diffs, provenance grouping, health warnings. Everything reads the run-directory
contract (runs.py) and tolerates a run that is still being written.
"""
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import records, runs
from .catalogue import OBJECTIVES, POINT_SETS
from .config import declared_defaults
from .launch import pending_runs
from .placement import describe as placement_text, is_waiting
from .records import HIGHER_IS_BETTER, SCORES, format_scores, provenance_difference  # noqa: F401
from .replicates import REPLICATE_FIELDS, comparable

# The metric groups the pages draw, from the one metrics table (records.METRICS).
LOSS_KEYS = records.names("loss")
TRAINING_KEYS = LOSS_KEYS + records.names("d_output") + records.names("grad")  # must stay finite
X_AXES = {"step": "step", "images seen": "images_seen", "wall time (s)": "time"}
# Plotly's default qualitative palette, then a second one: run i keeps colour i on every chart.
PALETTE = ["#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880", "#FF97FF",
           "#FECB52", "#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2", "#7F7F7F",
           "#BCBD22", "#17BECF"]


def metrics_mtime(run_dir) -> float:
    """The cache key of a run's metrics: changes whenever a line is appended."""
    try:
        return (Path(run_dir) / "metrics.jsonl").stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def metrics_frame(run_dir) -> pd.DataFrame:
    """metrics.jsonl as a DataFrame, one row per record (a half-written last line is left out)."""
    df = pd.DataFrame(runs.read_metrics(run_dir))
    if df.empty:
        return pd.DataFrame(columns=["step", "images_seen", "time"])
    return df


def state_of(status: dict) -> str:
    """The state to show: a queued/running run whose process is gone is "crashed" (resume continues it)."""
    state = status.get("state", "?")
    if state in ("queued", "running") and not runs.is_active(status) and not is_waiting(status):
        return "crashed"
    return state


def run_rows(root=None) -> list[dict]:
    """One dict per run for the Runs table (pending launches first, then newest first)."""
    rows = []
    for p in pending_runs(root):
        f = {**p["fields"], **p["resolved"]}  # the resolved config where the launch recorded it
        rows.append({"run": p["name"], "path": str(p["path"]), "state": p["state"], "progress": 0.0, "step": 0,
                     "steps": p["status"].get("steps"), "dataset": f.get("dataset", "mnist-5k"),
                     "model": f.get("model", "auto"), "loss": f.get("loss", f.get("preset", "")),
                     "conditioning": f.get("conditioning", "none"), "latest": "", "best": "", "elapsed_s": None,
                     "error": p["error"], "pending": True, "processes": p["status"].get("world_size", 1),
                     "placement": placement_text(p["status"]), "waiting": is_waiting(p["status"]), "tags": "",
                     "eta_s": None})
    for path in reversed(runs.list_runs(root)):
        c = runs.read_json_object(path / "config.json")
        st = runs.read_status(path)
        step, steps = st.get("step", 0), st.get("steps", c.get("steps", 0)) or 1
        rows.append({"run": path.name, "path": str(path), "state": state_of(st),
                     "progress": min(1.0, step / steps), "step": step, "steps": steps,
                     "dataset": c.get("dataset"), "model": c.get("model"), "loss": c.get("loss"),
                     "conditioning": c.get("conditioning"), "latest": format_scores(headline(st.get("latest")), short=True),
                     "best": format_scores((st.get("best") or {}).get("value"), short=True),
                     "elapsed_s": elapsed(st), "error": st.get("error"), "pending": False,
                     "processes": st.get("world_size", 1), "placement": placement_text(st),
                     "waiting": is_waiting(st), "tags": ", ".join(runs.read_notes(path)["tags"]),
                     "eta_s": eta(st) if state_of(st) == "running" else None})
    return rows


def elapsed(status: dict) -> float | None:
    """Seconds the run has trained, across its resumes: the trainer's own clock (status.json `trained_s`, written
    at each heartbeat) plus, while it runs, the time since that heartbeat. Runs written before `trained_s`
    existed: the time since their last start."""
    ended = status.get("state") in ("done", "failed", "stopped")
    if status.get("trained_s") is not None:
        since = 0.0 if ended or not status.get("heartbeat") else max(0.0, time.time() - status["heartbeat"])
        return round(status["trained_s"] + since, 3)
    start = status.get("started") or status.get("created")
    if not start:
        return None
    end = status.get("finished") if ended else None
    return round((end or status.get("heartbeat") or time.time()) - start, 1)


def eta(status: dict) -> float | None:
    """Seconds until a running run reaches its last step, at the rate it has trained so far (steps per training
    second, evaluations and checkpoints included, across resumes); None when it is not running or has no rate."""
    trained, step, steps = status.get("trained_s"), status.get("step") or 0, status.get("steps") or 0
    if status.get("state") != "running" or not trained or step <= 0:
        return None
    return max(0.0, (steps - step) * trained / step)  # trained_s and step are written together, at each heartbeat


def preset_estimate(root, preset: str, steps: int) -> float | None:
    """Seconds `steps` steps of `preset` take on this machine, from the runs of that preset under `root` (their
    training time per step, evaluations and checkpoints included; the median over runs); None when none trained."""
    rates = []
    for path in runs.list_runs(root):
        if runs.read_json_object(path / "config.json").get("preset") != preset:
            continue
        status = runs.read_status(path)
        if status.get("trained_s") and (status.get("step") or 0) > 0:
            rates.append(status["trained_s"] / status["step"])
    return float(np.median(rates)) * steps if rates else None


def duration(seconds: float | None) -> str:
    """`1:05:03`, `4:07` or `0:09`: hours only when there are some; empty for None."""
    if seconds is None:
        return ""
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def setup_text(row) -> str:
    """What a run trains, in one short column: its dataset, then its network, loss and conditioning where they are
    not the defaults (the network auto picks for the data, nonsaturating, none): `digits · concat`,
    `ring · hinge`, `mnist-5k · resnet · hinge · projection`."""
    default = declared_defaults()
    usual = {"model": ("mlp" if row.get("dataset") in POINT_SETS else "dcgan", "auto"), "loss": (default["loss"],),
             "conditioning": (default["conditioning"],)}
    parts = [row.get("dataset")] + [row.get(k) for k, skip in usual.items() if row.get(k) not in skip]
    return " · ".join(str(p) for p in parts if p not in (None, ""))


def headline(scores: dict | None) -> dict:
    """The scores a run list shows (records.LISTED): FID and conditional accuracy, or modes and high-quality share."""
    return {k: v for k, v in (scores or {}).items() if k in records.LISTED}


def latest_scores(df: pd.DataFrame) -> dict:
    """The last evaluated record's headline scores (records.LATEST)."""
    keys = [k for k in records.LATEST if k in df]
    if not keys:
        return {}
    evaluated = df.dropna(subset=keys, how="all")
    if evaluated.empty:
        return {}
    last = evaluated.iloc[-1]
    return {k: last[k] for k in keys if pd.notna(last[k])}


def numeric_metrics(df: pd.DataFrame) -> list[str]:
    """Columns that are scalar numbers over steps (what a chart can overlay), losses first."""
    skip = {"step", "images_seen", "time", "eval_s"}
    cols = [c for c in df.columns if c not in skip and pd.api.types.is_numeric_dtype(df[c])]
    order = {k: i for i, k in enumerate(LOSS_KEYS + records.names("d_output") + SCORES)}
    return sorted(cols, key=lambda c: (order.get(c, len(order)), c))


def ema_smooth(values, weight: float) -> np.ndarray:
    """TensorBoard-style debiased exponential moving average; NaNs are skipped (and stay NaN).

    s_t = sum_i w^(t-i) (1-w) v_i / sum_i w^(t-i) (1-w): pandas' ewm with adjust=True, alpha = 1 - w.
    """
    values = np.asarray(values, dtype=float)
    if weight <= 0:
        return values.copy()
    out = pd.Series(values).ewm(alpha=1 - weight, adjust=True, ignore_na=True).mean().to_numpy(copy=True)
    out[np.isnan(values)] = np.nan
    return out


def thin(df: pd.DataFrame, max_points: int) -> pd.DataFrame:
    """At most ~max_points rows, evenly spaced, always keeping the last (what a chart needs of 20,000 steps)."""
    if len(df) <= max_points:
        return df
    idx = np.unique(np.r_[np.linspace(0, len(df) - 1, max_points).astype(int), len(df) - 1])
    return df.iloc[idx]


def series(df: pd.DataFrame, metric: str, x: str = "step", smoothing: float = 0.0,
           max_points: int = 2000) -> pd.DataFrame:
    """(x, raw, smooth) of one metric, rows where it was recorded; smoothed on every point, then thinned."""
    if metric not in df or x not in df:
        return pd.DataFrame(columns=["x", "raw", "smooth"])
    part = df[[x, metric]].dropna()
    out = pd.DataFrame({"x": part[x].to_numpy(), "raw": part[metric].to_numpy(dtype=float)})
    out["smooth"] = ema_smooth(out["raw"], smoothing)
    return thin(out, max_points)


def best_and_last(frames: dict[str, pd.DataFrame], metrics: list[str], smoothing: float = 0.6) -> pd.DataFrame:
    """A row per run. A score (a metric with a direction: records.METRICS) gets its best value (max where higher is
    better, else min) and its last; any other metric (losses, D outputs: their minimum would be the first record,
    not the best) its final value, EMA-smoothed with `smoothing` as the charts draw it."""
    rows = []
    for name, df in frames.items():
        row = {"run": name}
        for m in metrics:
            if m not in df or df[m].dropna().empty:
                continue
            s = df[m].dropna()
            if m in SCORES and records.METRICS[m].higher_is_better is not None:
                row[f"{m} best"] = s.max() if m in HIGHER_IS_BETTER else s.min()
                row[f"{m} last"] = s.iloc[-1]
            else:
                row[f"{m} final (smoothed)"] = float(ema_smooth(s.to_numpy(), smoothing)[-1])
        rows.append(row)
    return pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()


def displayed(table: pd.DataFrame) -> pd.DataFrame:
    """A table of metric values as pages show them (records.display): each column named after its metric
    (`fid best`, `loss_d final (smoothed)`, or the metric itself) formatted by that metric's rule."""
    out = table.copy()
    for col in out.columns:
        name = str(col).split(" ")[0]
        out[col] = [records.display(name, v) if isinstance(v, (int, float)) and not pd.isna(v) else ("" if v is None
                    or (isinstance(v, float) and pd.isna(v)) else v) for v in table[col]]
    return out


def config_diff(configs: dict[str, dict]) -> pd.DataFrame:
    """Fields (rows) whose values differ between runs (columns); `name` and `runs_root` left out, and floats that
    differ past their third significant digit only (derived values: point_scale 0.7072 / 0.7071)."""
    keys = sorted({k for c in configs.values() for k in c} - {"name", "runs_root"})
    diff = {k: [c.get(k) for c in configs.values()] for k in keys}
    diff = {k: v for k, v in diff.items() if len({repr(comparable(x)) for x in v}) > 1}
    return pd.DataFrame(diff, index=list(configs)).T.astype(str) if diff else pd.DataFrame()


def parcoords_frame(configs: dict[str, dict], final: dict[str, float], outcome: str) -> pd.DataFrame | None:
    """The config fields that differ among runs, and each run's final `outcome`, as numbers for a parallel-coordinates
    chart: a row per run; a text field coded 0, 1, ... with its values in `attrs["labels"][field]`. None when no
    field differs."""
    names = [n for n in configs if n in final]
    fields = sorted({k for n in names for k in configs[n]} - set(REPLICATE_FIELDS) | {"seed"})
    varying = [f for f in fields if len({repr(comparable(configs[n].get(f))) for n in names}) > 1]
    if not varying:
        return None
    out, labels = {}, {}
    for f in varying:
        values = [configs[n].get(f) for n in names]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[f] = values
        else:
            labels[f] = sorted({str(v) for v in values})
            out[f] = [labels[f].index(str(v)) for v in values]
    out[outcome] = [final[n] for n in names]
    frame = pd.DataFrame(out, index=names)
    frame.attrs["labels"] = labels
    return frame


def metrics_csv(frames: dict[str, pd.DataFrame]) -> str:
    """Every record of the selected runs, one row each, with a `run` column first (lists/dicts left out)."""
    parts = []
    for name, df in frames.items():
        scalar = [c for c in df.columns if not df[c].map(lambda v: isinstance(v, (list, dict))).any()]
        parts.append(df[scalar].assign(run=name))
    if not parts:
        return ""
    out = pd.concat(parts, ignore_index=True)
    return out[["run"] + [c for c in out.columns if c != "run"]].to_csv(index=False)


def run_provenance(df: pd.DataFrame) -> dict | None:
    """The provenance of a run's last evaluation (None when it has none)."""
    if "provenance" not in df:
        return None
    p = df["provenance"].dropna()
    return p.iloc[-1] if len(p) else None


def comparable_groups(frames: dict[str, pd.DataFrame]) -> list[tuple[dict | None, list[str]]]:
    """Runs grouped by the provenance of their scores: [(provenance, [run names])], biggest group first.

    Scores are only overlaid within a group (metrics.check_comparable's rule: every field but seed).
    """
    groups: list[tuple[dict | None, list[str]]] = []
    for name, df in frames.items():
        prov = run_provenance(df)
        for gp, names in groups:
            if (gp is None and prov is None) or (gp is not None and prov is not None
                                                  and provenance_difference(gp, prov) is None):
                names.append(name)
                break
        else:
            groups.append((prov, [name]))
    return sorted(groups, key=lambda g: (g[0] is None, -len(g[1])))


def nearest(steps: list[int], step: int) -> int | None:
    """The latest of `steps` at or before `step` (else the first)."""
    if not steps:
        return None
    before = [s for s in steps if s <= step]
    return before[-1] if before else steps[0]


def health_warnings(df: pd.DataFrame, status: dict, config: dict, data_info: dict) -> list[str]:
    """What a user should look at: non-finite values, D winning outright, class collapse, a dead process."""
    out = []
    if status.get("state") == "failed":
        out.append(f"failed: {status.get('error')}")
    if state_of(status) == "crashed":
        out.append("the training process is gone without saying why (killed?); Resume continues from the "
                   "last checkpoint")
    if df.empty:
        return out
    trained = [c for c in TRAINING_KEYS if c in df]
    for col in trained:  # scores may be inf by definition (reverse KL with no mode hit); training values not
        s = df[col].dropna()
        if len(s) and not np.isfinite(s.to_numpy(dtype=float)).all():
            out.append(f"{col} is not finite at step {int(df.loc[s.index[~np.isfinite(s)][0], 'step'])}")
    loss = config.get("loss")
    recent = df.dropna(subset=[c for c in ("d_real", "d_fake") if c in df]).tail(5)
    if getattr(OBJECTIVES.get(loss), "probability", False) and len(recent) >= 3 and {"d_real", "d_fake"} <= set(df):
        if recent["d_real"].mean() > 0.95 and recent["d_fake"].mean() < 0.05:
            out.append(f"D is winning outright: D(x) {recent['d_real'].mean():.2f}, D(G(z)) "
                       f"{recent['d_fake'].mean():.2f} over the last {len(recent)} records; G gets no gradient "
                       f"(try label smoothing, spectral norm, a lower lr_d, or DiffAugment)")
    if "class_hist" in df:
        hist = df["class_hist"].dropna()
        if len(hist):
            h = np.asarray(hist.iloc[-1], dtype=float)
            k = len(h)
            if k and h.max() > 0.5:
                out.append(f"class collapse: {h.max():.0%} of samples look like class "
                           f"{class_name(data_info, int(h.argmax()))} (evaluator's class histogram)")
            missing = [class_name(data_info, i) for i in np.flatnonzero(h < 0.1 / max(k, 1))]
            if missing and k:
                out.append(f"classes barely drawn (< {10 / k:.0f}% of their share): {', '.join(missing)}")
    if "cond_acc_per_class" in df:
        acc = df["cond_acc_per_class"].dropna()
        if len(acc):
            a = np.asarray([np.nan if v is None else v for v in acc.iloc[-1]], dtype=float)
            poor = [class_name(data_info, i) for i in np.flatnonzero(a < 0.2)]
            if poor:
                out.append(f"classes G does not draw when asked (conditional accuracy < 20%): {', '.join(poor)}")
    if "modes" in df:
        last = df["modes"].dropna()
        n_modes = len(data_info.get("modes") or []) or (  # 2-D mixtures; a run that counts triples: its classes
            data_info.get("num_classes", 0) if "triple_counts" in df else 0)
        if len(last) and n_modes and last.iloc[-1] < n_modes / 2:
            out.append(f"mode collapse: {int(last.iloc[-1])} of {n_modes} modes captured")
    return out


def class_name(data_info: dict, k: int) -> str:
    names = data_info.get("class_names") or []
    return str(names[k]) if k < len(names) else str(k)


def filter_runs(names: list[str], pattern: str = "", configs: dict[str, dict] | None = None,
                where: dict[str, list] | None = None, tags: dict[str, list[str]] | None = None,
                wanted_tags=()) -> list[str]:
    """Names matching the regex `pattern` (case-insensitive) whose config has one of the values in `where`, and,
    when `wanted_tags` are given, one of them among its `tags` (runs.read_notes)."""
    try:
        rx = re.compile(pattern, re.I) if pattern else None
    except re.error as e:
        raise ValueError(f"filter: not a regular expression ({e})") from None
    out = []
    for n in names:
        if rx and not rx.search(n):
            continue
        c = (configs or {}).get(n, {})
        if where and any(vals and c.get(k) not in vals for k, vals in where.items()):
            continue
        if wanted_tags and not set(wanted_tags) & set((tags or {}).get(n, [])):
            continue
        out.append(n)
    return out


def colors(names: list[str]) -> dict[str, str]:
    """One colour per run, by its position in `names` (the selection): the same on every chart."""
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def points_at(run_dir, step: int) -> np.ndarray | None:
    """The 2,500 generated points saved with a 2-D run's grid at `step`; None when missing or unreadable."""
    p = Path(run_dir) / "samples" / f"step_{step:07d}.npz"
    try:
        with np.load(p) as f:
            points = np.asarray(f["points"], dtype=np.float32)
    except Exception:  # missing, torn, not an npz, no "points": nothing to draw
        return None
    return points if points.ndim == 2 and points.shape[1] == 2 else None


def load_grid(path):
    """A sample grid PNG, decoded now (a PIL image), or None when it is missing, torn or not an image."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            return img.copy()
    except Exception:  # OSError, PIL's UnidentifiedImageError, a truncated stream ...
        return None


def checkpoint_warnings(run_dir, problems: dict[int, str] | None = None) -> list[str]:
    """Unreadable checkpoints newer than the newest readable one, and which step resume/sampling use instead.

    A cheap check (runs.checkpoint_problem reads no tensors), fit for a page that refreshes every few seconds.
    `problems` (step -> why, for the unreadable ones) when the caller has checked every checkpoint already.
    """
    bad = []
    for step, path in reversed(runs.checkpoints(run_dir).items()):
        problem = problems.get(step) if problems is not None else runs.checkpoint_problem(path)
        if problem is None:
            return [f"{p}; Resume and Samples use step {step}, the newest checkpoint that loads" for p in bad]
        bad.append(problem)
    return [f"{p}; no checkpoint of this run loads" for p in bad]


def triple_evaluations(df: pd.DataFrame) -> dict[int, np.ndarray]:
    """A stacked-mnist run's evaluations: step -> (1000,) counts of samples read as each digit triple.

    Records whose `triple_counts` is missing or not 1,000 non-negative numbers are left out.
    """
    if "triple_counts" not in df:
        return {}
    out = {}
    for step, counts in zip(df["step"], df["triple_counts"]):
        if isinstance(counts, list) and len(counts) == 1000:
            a = np.asarray(counts, dtype=float)
            if np.isfinite(a).all() and (a >= 0).all():
                out[int(step)] = a
    return out
