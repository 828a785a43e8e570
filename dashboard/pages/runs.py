"""Runs: every run with its state and progress, and what can be done with it (the landing page)."""
import pandas as pd
import streamlit as st

from common import LIVE_SECONDS, notes_editor, open_in, runs_root, state_badge
from gancore import launch, views
from gancore.errors import GancoreError

IDLE_SECONDS = 5  # how often the table looks for new runs when none trains
SCORES_HELP = ("the last (or best) evaluation's headline scores: FID, acc (conditional accuracy), modes (modes "
               "captured), HQ (high-quality share)")
QUICK_START = {"preset": "cgan-concat"}  # class-conditional DCGAN on MNIST-5k
QUICK_START_MEASURED = "about 3 minutes on an idle 2-core CPU (docs/benchmarks.md, Quick start on this machine)"

st.title("Runs")
root = runs_root()
launch.kick(root)  # queued runs start even when no launch or run's end is around to start them


def quick_start(key: str):
    from gancore.presets import preset_fields

    steps = preset_fields(QUICK_START["preset"])["steps"]
    took = views.preset_estimate(root, QUICK_START["preset"], steps)
    when = (f"about {views.duration(took)} here (the rate of the earlier runs of this preset on this machine)"
            if took else QUICK_START_MEASURED)
    if st.button("Quick start: train a class-conditional DCGAN on MNIST-5k", type="primary", key=key,
                 icon=":material/play_arrow:", help=f"preset {QUICK_START['preset']}: {steps:,} steps, {when}"):
        try:
            path = launch.launch(QUICK_START, root)
        except GancoreError as e:
            st.error(str(e))
            return
        open_in("monitor", path.name)


rows = views.run_rows(root)
if not rows:
    st.info(f"No runs yet under `{root}`. Start one here, or from **Launch**.")
    quick_start("quick_start_empty")
    st.stop()


if st.session_state.get("run") not in [r["run"] for r in rows]:
    st.session_state["run"] = rows[0]["run"]


# live while anything trains; otherwise still every IDLE_SECONDS, so a run started elsewhere (the CLI) shows up
@st.fragment(run_every=LIVE_SECONDS if any(r["state"] in ("running", "queued", "starting") for r in rows)
             else IDLE_SECONDS)
def table():
    launch.kick(root)
    rows = views.run_rows(root)
    df = pd.DataFrame(rows)
    df["elapsed"] = df["elapsed_s"].map(lambda s: "" if pd.isna(s) else views.duration(s))
    df["time left"] = df["eta_s"].map(lambda s: "" if pd.isna(s) else views.duration(s))
    df["progress"] = (100 * df["progress"]).round()  # whole percents, as every page shows a share
    df["setup"] = df.apply(views.setup_text, axis=1)
    counts = df["state"].value_counts()
    st.caption(" · ".join(f"{n} {s}" for s, n in counts.items()))
    picked = next((r for r in rows if r["run"] == st.session_state.get("run")), None)
    if picked:  # the selected run's state, live (the table itself is a canvas)
        acted_on = st.session_state.get("runs_acted_on")  # None during a full run: the buttons come after
        if acted_on is not None and acted_on != (picked["run"], picked["state"], picked["pending"]):
            st.rerun()  # the buttons below were drawn for another state of this run: redraw the whole page
        where = picked["placement"] and f" · {picked['placement']}"
        st.markdown(f"{state_badge(picked['state'])} **{picked['run']}** · {picked['state']} · step "
                    f"{picked['step']:,} of {int(picked['steps'] or 0):,}{where}")
    # what fits 1,400 px: dataset, model, loss and conditioning as one "setup" column, short time columns
    columns = ["run", "state", "progress", "setup", "latest", "best", "elapsed", "time left", "placement"] \
        + (["tags"] if df["tags"].astype(bool).any() else []) + (["processes"] if (df["processes"] > 1).any() else []) \
        + (["error"] if df["error"].notna().any() else [])
    st.dataframe(
        df[columns],
        hide_index=True, width="stretch",
        column_config={
            "run": st.column_config.TextColumn("run", width=160),
            "state": st.column_config.TextColumn("state", width=60),
            "progress": st.column_config.ProgressColumn("progress", min_value=0, max_value=100, format="%d%%",
                                                        width=75),
            "setup": st.column_config.TextColumn("setup", help="the dataset, then the network, loss and conditioning where they are not the defaults (the network auto "
                     "picks for the data, nonsaturating, none)", width=170),
            "latest": st.column_config.TextColumn("latest", width=125, help=SCORES_HELP),
            "best": st.column_config.TextColumn("best", width=125, help=SCORES_HELP),
            "elapsed": st.column_config.TextColumn("elapsed", help="training time, across resumes", width=60),
            "time left": st.column_config.TextColumn("time left", help="at the rate so far", width=60),
            "placement": st.column_config.TextColumn("placement", help="where it trains (its GPU, or its share "
                                                     "of the CPU cores), or what it waits for"),
            "error": st.column_config.TextColumn("error", width="medium"),
        })


st.session_state["runs_acted_on"] = None
table()

st.subheader("Act on a run")
names = [r["run"] for r in rows]
current = st.session_state.get("run")
name = st.selectbox("Run", names, index=names.index(current) if current in names else 0, key="runs_pick")
row = next(r for r in rows if r["run"] == name)
st.session_state["run"] = name
st.session_state["runs_acted_on"] = (name, row["state"], row["pending"])
st.caption(f"`{row['path']}`")
if row["error"]:
    st.error(row["error"])

resumable = row["state"] in ("stopped", "failed", "crashed", "done") and not row["pending"]
more = st.number_input("Resume to step", min_value=1, value=max(int(row["steps"] or 1), 1), step=1000,
                       disabled=not resumable, width=220, key=f"runs_resume_to_{name}",
                       help="total steps for Resume (raise it to train a finished run longer)")
cols = st.columns(6)
if cols[0].button("Monitor", icon=":material/monitoring:", width="stretch"):  # a pending run: Monitor shows it starting
    open_in("monitor", name)
if cols[1].button("Stop", icon=":material/stop:", disabled=row["state"] != "running", width="stretch",
                  help="checkpoint and stop (SIGTERM); Resume continues it"):
    try:
        launch.stop(row["path"])
        st.toast(f"Stopping {name} (it checkpoints first)")
    except GancoreError as e:
        st.error(str(e))
if cols[2].button("Resume", icon=":material/play_arrow:", disabled=not resumable, width="stretch",
                  help="continue from its last checkpoint up to the step above"):
    try:
        launch.resume(row["path"], steps=int(more), processes=int(row.get("processes") or 1))  # as it trained
        st.toast(f"Resumed {name}")
        st.rerun()
    except GancoreError as e:
        st.error(str(e))
if cols[3].button("Cancel", icon=":material/cancel:", disabled=not row["waiting"], width="stretch",
                  help="take it out of the queue (a queued resume goes back to what the run was)"):
    try:
        launch.cancel(row["path"])
        st.toast(f"Cancelled {name}")
        st.rerun()
    except GancoreError as e:
        st.error(str(e))
if cols[4].button("Clone", icon=":material/content_copy:", width="stretch",
                  help="open Launch with this run's settings, to change some and launch"):
    st.session_state["clone_fields"] = launch.clone_fields(row["path"])
    open_in("launch")
with cols[5].popover("Delete", icon=":material/delete:", disabled=row["state"] in ("running",) and not row["pending"],
                     width="stretch"):
    st.write(f"Delete **{name}** and everything in it (checkpoints, samples, logs)? This cannot be undone.")
    if st.button("Yes, delete it", type="primary", key="confirm_delete"):
        try:
            launch.delete(row["path"], root)
            st.session_state.pop("run", None)
            st.rerun()
        except GancoreError as e:
            st.error(str(e))

if not row["pending"]:
    notes_editor(row["path"], key="runs_notes")
with st.expander("Log tail"):
    st.code("\n".join(launch.log_tail(row["path"], 30)) or "(empty)", language=None, wrap_lines=True)

st.divider()
quick_start("quick_start_more")
