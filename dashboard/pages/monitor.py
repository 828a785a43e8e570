"""Monitor: one run, live — progress, losses, D's outputs, gradient norms, speed, samples, metrics, log."""
import streamlit as st

from common import (LIVE_SECONDS, metrics, notes_editor, overlay_chart, pick_run, run_names,
                    runs_root, score_chart, state_badge)
from gancore import launch, records, runs, views

LINE_COLORS = {"loss_d": "#EF553B", "loss_g": "#636EFA", "d_real": "#00CC96", "d_fake": "#AB63FA",
               "grad_norm_d": "#EF553B", "grad_norm_g": "#636EFA"}

st.title("Monitor")
pending = [p["name"] for p in launch.pending_runs(runs_root())]
name = pick_run("Run", key="monitor_pick", names=pending + run_names())
if name is None:
    st.info("No runs yet: start one on **Launch** or with the quick start on **Runs**.")
    st.stop()
path = runs_root() / name

if name in pending:
    @st.fragment(run_every=2)
    def starting():
        """A launched run before its trainer has written config.json: loading data, building networks."""
        p = next((p for p in launch.pending_runs(runs_root()) if p["name"] == name), None)
        if p is None:
            st.rerun()  # it has started (or was deleted): draw the full page
        if p["state"] == "failed":
            st.error(f"{name} did not start: {p['error']}")
        elif views.is_waiting(p["status"]):  # in the queue: no GPU or sweep slot free yet
            st.info(f"**{name}** is {views.placement_text(p['status'])}; it starts by itself when one frees up "
                    f"(Runs can cancel it).", icon=":material/schedule:")
        else:
            st.info(f"**{name}** is starting: loading the data and building the networks ...",
                    icon=":material/hourglass_top:")
        st.code("\n".join(launch.log_tail(path, 15)) or "(no output yet)", language=None)

    starting()
    st.stop()
live = views.state_of(runs.read_status(path)) in ("running", "queued")
notes_editor(path, key="monitor_notes")


@st.fragment(run_every=LIVE_SECONDS if live else None)
def monitor():
    status = runs.read_status(path)
    config = runs.read_json_object(path / "config.json")
    info = runs.read_json_object(path / "data.json")
    df = metrics(path)
    state = views.state_of(status)
    step, steps = status.get("step", 0), status.get("steps") or config.get("steps") or 1

    procs = status.get("world_size", 1)
    where = views.placement_text(status)  # "GPU 2", "1 of 2 cores", "queued: waiting for a GPU"
    st.markdown(f"{state_badge(state)} **{name}** · {config.get('dataset')} · {config.get('model')} · "
                f"{config.get('loss')} · conditioning {config.get('conditioning')}"
                + (f" · {procs} processes (torchrun)" if procs > 1 else "") + (f" · {where}" if where else ""))
    st.progress(min(1.0, step / steps), text=f"step {step:,} of {steps:,}")
    if "resolution" in df and df["resolution"].notna().any():  # progressive growing: the stage and its fade
        last = df.dropna(subset=["resolution"]).iloc[-1]
        fading = last["alpha"] < 1
        st.progress(float(last["alpha"]), text=f"progressive growing: {int(last['resolution'])} px of "
                    f"{info.get('shape', [0, 0])[-1]} px, " + (f"fading in (alpha {last['alpha']:.2f})" if fading
                                                             else "stable"))
    cols = st.columns(3)
    cols[0].metric("images seen", f"{status.get('images_seen', 0):,}")
    if "img_per_s" in df and df["img_per_s"].notna().any():
        cols[1].metric("images/s", f"{df['img_per_s'].dropna().iloc[-1]:,.0f}")
    elapsed = views.elapsed(status)
    left = views.eta(status)
    if elapsed is not None:
        cols[2].metric("elapsed", views.duration(elapsed),
                       delta=f"{views.duration(left)} left" if left is not None else None, delta_color="off",
                       help="training time across resumes; time left at the rate so far")
    latest = views.latest_scores(df)
    provenance = views.run_provenance(df)
    if latest:  # a row of their own: a label that names the evaluator needs the width
        for col, (k, v) in zip(st.columns(3), list(latest.items())[:3]):
            col.metric(f"latest {records.score_label(k, provenance)}", records.display(k, v),
                       help=records.score_help(k, provenance))
    best = status.get("best")
    if best:
        st.caption(f"best so far: step {best['step']:,} · {views.format_scores(best['value'])}")

    for warning in views.health_warnings(df, status, config, info) + views.checkpoint_warnings(path):
        st.warning(warning, icon=":material/warning:")

    if df.empty:
        st.info("No metrics yet: the first record comes after `log_every` steps.")
    else:
        left, right = st.columns(2)
        for col, metric_names, title in ((left, ["loss_d", "loss_g"], "loss_d and loss_g"),
                                         (right, ["d_real", "d_fake"], "D(x) and D(G(z))")):
            present = [m for m in metric_names if m in df]
            if present:
                col.plotly_chart(overlay_chart(df, present, title, LINE_COLORS), key=f"chart_{metric_names[0]}")
        grads = [m for m in ("grad_norm_d", "grad_norm_g") if m in df]
        if grads:  # (the speed is the images/s above; Compare charts it over runs)
            st.columns(2)[0].plotly_chart(overlay_chart(df, grads, "gradient norms", LINE_COLORS), key="chart_grads")
        scores = [m for m in views.numeric_metrics(df) if m in views.SCORES and m not in records.SPREADS
                  and df[m].notna().any()]
        if scores:
            st.subheader("Evaluations")
            if df[scores[0]].notna().sum() == 1:  # one evaluation: numbers, not one-dot charts
                cols = st.columns(min(5, len(scores)))
                for i, m in enumerate(scores):
                    v = df[m].dropna().iloc[-1]
                    cols[i % len(cols)].metric(records.score_label(m, provenance), records.display(m, v),
                                               help=records.score_help(m, provenance))
            else:  # the headline scores charted (those of the "latest" row); the others one pick away
                headline = [m for m in latest if m in scores][:3] or scores[:3]
                charted = st.multiselect("Scores charted", scores, default=headline, key=f"monitor_scores_{name}",
                                         format_func=lambda m: records.score_label(m, provenance),
                                         help="every evaluated score of this run; each chart costs the page time")
                cols = st.columns(3)
                for i, m in enumerate(charted):
                    fig = score_chart(df, m, records.score_label(m, provenance))
                    cols[i % len(cols)].plotly_chart(fig, key=f"chart_eval_{m}")

    grids = runs.sample_grids(path)
    st.subheader("Samples (fixed noise)")
    if not grids:
        every = int(config.get("sample_every") or 0)
        first = min(every, int(steps)) if every else int(steps)
        rate = (status.get("trained_s") or 0) / step if step else None  # training seconds per step so far
        when = f", in about {views.duration((first - step) * rate)}" if rate and first > step else ""
        st.info(f"No sample grid yet: the first comes at step {first:,}{when} (then every {every:,} steps).")
    else:
        steps_with = list(grids)
        if len(steps_with) > 1:
            chosen = st.select_slider("grid at step", steps_with, value=steps_with[-1], key=f"grid_{name}")
        else:
            chosen = steps_with[0]
        img = views.load_grid(grids[chosen])
        if img is None:
            st.warning(f"The grid of step {chosen} cannot be read (being replaced, or damaged).",
                       icon=":material/warning:")
        else:
            st.image(img, caption=f"step {chosen}" + (" · one row per class" if runs.is_conditional(config) else ""),
                     width=560)

    with st.expander("Log", expanded=state == "failed"):
        st.code("\n".join(launch.log_tail(path, 25)) or "(empty)", language=None)


monitor()
