"""What every page shares: the runs root, cached readers, run pickers and chart helpers.

Loading and computing live in gancore (views.py, launch.py, sample.py); this file only adds
Streamlit's caches and widgets on top.
"""
import importlib
import threading
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from gancore import runs, views

LIVE_SECONDS = 3  # how often live views refresh
PAGES: dict = {}  # page name (file stem) -> st.Page, filled by app.py


def runs_root() -> Path:
    return Path(runs.default_root()).resolve()


@st.cache_resource(show_spinner=False)
def prefetch(*modules: str) -> threading.Thread:
    """Import `modules` in a background thread, once per dashboard process: what a page's next action needs
    (Launch's button: torch and the networks; Compare's seed groups: scipy), loaded while the user reads the
    page instead of after the click. An import that fails here fails again, with its message, where the action
    imports it."""
    def imports():
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - reported by the action that imports it
                pass

    thread = threading.Thread(target=imports, name="gancore-prefetch", daemon=True)
    thread.start()
    return thread


@st.cache_resource(max_entries=256, show_spinner=False)
def _metrics(path: str, mtime: int) -> pd.DataFrame:
    return views.metrics_frame(path)


def metrics(path) -> pd.DataFrame:
    """A run's metrics, re-read only when metrics.jsonl changed (its mtime is part of the cache key).

    cache_resource rather than cache_data: one shared frame instead of a pickled copy per page run
    (20 runs of 20,000 records would cost seconds to copy); pages never modify it.
    """
    return _metrics(str(path), views.metrics_mtime(path))


@st.cache_resource(max_entries=8, show_spinner="Loading the generator ...")
def generator(path: str, step, ckpt_mtime: int):
    """(G, config, data info) of a checkpoint; reloaded when the checkpoint file changes.
    Raises GancoreError (CheckpointError naming the file when it cannot be loaded)."""
    from gancore.sample import load_generator

    return load_generator(path, step, on_skip=None)


def checkpoint_mtime(path, step) -> int:
    p = runs.best_checkpoint_path(path) if step == "best" else runs.checkpoints(path).get(step)
    try:
        return p.stat().st_mtime_ns if p else 0
    except FileNotFoundError:
        return 0


def run_names() -> list[str]:
    """Runs that have started (config.json written), newest first."""
    return [p.name for p in reversed(runs.list_runs(runs_root()))]


def pick_run(label: str, key: str, names: list[str] | None = None, help=None) -> str | None:
    """A selectbox of runs that remembers the choice across pages (st.session_state["run"])."""
    names = run_names() if names is None else names
    if not names:
        return None
    current = st.session_state.get("run")
    index = names.index(current) if current in names else 0
    name = st.selectbox(label, names, index=index, key=key, help=help)
    st.session_state["run"] = name
    return name


def open_in(page: str, run: str | None = None) -> None:
    """Switch to another page ("monitor", "launch", ...), with this run selected."""
    if run:
        st.session_state["run"] = run
    st.switch_page(PAGES[page])


def line_chart(frames: dict[str, pd.DataFrame], metric: str, x: str = "step", smoothing: float = 0.0,
               log_y: bool = False, colors: dict[str, str] | None = None, height: int = 320) -> go.Figure:
    """One metric of several runs: a faded raw line and the EMA-smoothed line per run, one colour per run."""
    colors = colors or views.colors(list(frames))
    fig = go.Figure()
    for name, df in frames.items():
        s = views.series(df, metric, x, smoothing, max_points=1000)
        if s.empty:
            continue
        color = colors[name]
        if smoothing > 0:
            fig.add_trace(go.Scatter(x=s["x"], y=s["raw"], mode="lines", line=dict(color=color, width=1),
                                       opacity=0.25, name=name, legendgroup=name, showlegend=False,
                                       hoverinfo="skip"))
        markers = "lines+markers" if len(s) < 30 else "lines"
        fig.add_trace(go.Scatter(x=s["x"], y=s["smooth"], mode=markers, line=dict(color=color, width=2),
                                   name=name, legendgroup=name))
    x_title = {v: k for k, v in views.X_AXES.items()}.get(x, x)
    fig.update_layout(title=metric, xaxis_title=x_title, hovermode="x unified")
    legend_below(fig, [n for n in frames], height)
    y_axis_as_shown(fig, metric)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def y_axis_as_shown(fig: go.Figure, metric: str) -> None:
    """The y axis by the display rule (records.display): a share in percent, on its whole range 0-100 %."""
    from gancore import records

    if records.metric(metric).share:
        fig.update_yaxes(tickformat=".0%", range=[-0.02, 1.02])


def legend_below(fig: go.Figure, entries: list[str], height: int) -> None:
    """The legend under the x axis, the figure made taller by its rows so that it never covers the plot."""
    per_row = max(1, 90 // max(12, max((len(e) for e in entries), default=12)))  # ~90 characters to a row
    rows = -(-len(entries) // per_row)
    extra = 22 * rows
    fig.update_layout(height=height + extra, margin=dict(l=10, r=10, t=40, b=50 + extra),
                      legend=dict(orientation="h", yanchor="top", y=-0.12 - extra / (height + extra), x=0))


def group_chart(groups: dict[str, dict[str, pd.DataFrame]], metric: str, x: str = "step", log_y: bool = False,
                colors: dict[str, str] | None = None, height: int = 320) -> go.Figure:
    """One metric of several groups of seeds: per group its mean curve, its 95 % t-band over the seeds, and each
    of its runs as a faint line (replicates.band)."""
    from gancore import replicates

    colors = colors or views.colors(list(groups))
    fig = go.Figure()
    for label, frames in groups.items():
        color = colors[label]
        for name, df in frames.items():
            s = views.series(df, metric, x, 0.0, max_points=1000)
            if not s.empty:
                fig.add_trace(go.Scatter(x=s["x"], y=s["raw"], mode="lines", line=dict(color=color, width=1),
                                         opacity=0.2, name=name, legendgroup=label, showlegend=False,
                                         hoverinfo="skip"))
        b = views.thin(replicates.band(list(frames.values()), metric, x), 1000)
        if b.empty:
            continue
        fig.add_trace(go.Scatter(x=list(b[x]) + list(b[x])[::-1], y=list(b["hi"]) + list(b["lo"])[::-1],
                                 fill="toself", fillcolor=color, opacity=0.2, line=dict(width=0), name=f"{label} 95%",
                                 legendgroup=label, showlegend=False, hoverinfo="skip"))
        markers = "lines+markers" if len(b) < 30 else "lines"
        fig.add_trace(go.Scatter(x=b[x], y=b["mean"], mode=markers, line=dict(color=color, width=2.5),
                                 name=f"{label} (n={len(frames)})", legendgroup=label))
    x_title = {v: k for k, v in views.X_AXES.items()}.get(x, x)
    fig.update_layout(title=f"{metric}: mean of the seeds, 95% band", xaxis_title=x_title, hovermode="x unified")
    legend_below(fig, [f"{label} (n={len(frames)})" for label, frames in groups.items()], height)
    y_axis_as_shown(fig, metric)
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def score_chart(df: pd.DataFrame, metric: str, label: str, height: int = 260) -> go.Figure:
    """One score of one run over its evaluations, with its spread where it has one (records.COMPANIONS): FID's
    interval as a band, KID's and IS's std as error bars."""
    from gancore.records import COMPANIONS

    cols = [metric, *COMPANIONS.get(metric, ())]
    d = df.dropna(subset=[metric])[["step", *[c for c in cols if c in df]]]
    spread = COMPANIONS.get(metric, ())
    fig = go.Figure()
    if len(spread) == 2 and all(c in d for c in spread):
        lo, hi = spread
        fig.add_trace(go.Scatter(x=list(d["step"]) + list(d["step"])[::-1], y=list(d[hi]) + list(d[lo])[::-1],
                                 fill="toself", fillcolor="#636EFA", opacity=0.2, line=dict(width=0),
                                 name="95% interval", hoverinfo="skip"))
    error = dict(type="data", array=d[spread[0]], visible=True) if len(spread) == 1 and spread[0] in d else None
    fig.add_trace(go.Scatter(x=d["step"], y=d[metric], mode="lines+markers", line=dict(color="#636EFA", width=2),
                             error_y=error, name=label))
    fig.update_layout(title=label, height=height, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="step",
                      showlegend=False, hovermode="x unified")
    y_axis_as_shown(fig, metric)
    return fig


def overlay_chart(df: pd.DataFrame, metric_names: list[str], title: str, colors: dict[str, str]) -> go.Figure:
    """Several metrics of one run on one chart, one line each (line_chart draws one metric of several runs)."""
    fig = go.Figure()
    for m in metric_names:
        fig.add_traces(line_chart({m: df.rename(columns={m: "_v"})}, "_v", colors={m: colors[m]}).data)
    fig.update_layout(title=title, height=320, margin=dict(l=10, r=10, t=40, b=10), xaxis_title="step", showlegend=True,
                      legend=dict(orientation="h", yanchor="bottom", y=-0.35, x=0), hovermode="x unified")
    return fig


def notes_editor(path, key: str) -> None:
    """The run's tags and note (runs.read_notes / write_notes), editable in a small form."""
    from gancore.errors import GancoreError

    notes = runs.read_notes(path)
    label = "Tags and note" + (f" · {', '.join(notes['tags'])}" if notes["tags"] else "")
    with st.expander(label, icon=":material/sell:"):
        with st.form(f"{key}_form", border=False):
            tags = st.text_input("Tags", ", ".join(notes["tags"]), key=f"{key}_tags",
                                 help="comma-separated; Compare filters by them")
            note = st.text_area("Note", notes["note"], key=f"{key}_note", height=100)
            if st.form_submit_button("Save", icon=":material/save:"):
                try:
                    runs.write_notes(path, tags.split(","), note)
                    st.toast("Saved")
                except GancoreError as e:
                    st.error(str(e))


def state_badge(state: str) -> str:
    color = {"running": "blue", "queued": "gray", "starting": "violet", "done": "green", "failed": "red",
             "stopped": "orange",
             "crashed": "red"}.get(state, "gray")
    return f":{color}-badge[{state}]"
