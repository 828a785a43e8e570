"""Compare: overlay any logged metric of several runs; best/last table, config diff, CSV, sample grids."""
import streamlit as st

from common import line_chart, metrics, run_names, runs_root
from gancore import runs, views
from gancore.records import provenance_difference

st.title("Compare")
root = runs_root()
names = run_names()
if not names:
    st.info("No runs yet: start some on **Launch** (a sweep gives several at once).")
    st.stop()
configs = {n: runs.read_json_object(root / n / "config.json") for n in names}

with st.expander("Filter", expanded=False):
    pattern = st.text_input("Run name (regular expression)", key="cmp_pattern", placeholder="e.g. grid|ring")
    fcols = st.columns(4)
    where = {}
    for col, field in zip(fcols, ("dataset", "model", "loss", "conditioning")):
        values = sorted({str(c.get(field)) for c in configs.values()})
        where[field] = col.multiselect(field, values, key=f"cmp_{field}")
try:
    shown = views.filter_runs(names, pattern, configs, where)
except ValueError as e:
    st.error(str(e))
    shown = names

default = [n for n in st.session_state.get("cmp_default", [st.session_state.get("run") or names[0]]) if n in shown]
selected = st.multiselect("Runs", shown, default=default, key="cmp_runs",
                          help="in the order picked: the first keeps the first colour on every chart")
if not selected:
    st.info("Pick two or more runs to compare.")
    st.stop()
frames = {n: metrics(root / n) for n in selected}
colors = views.colors(selected)

first = views.numeric_metrics(frames[selected[0]])  # its order (losses first), then the others' extras
available = sorted({m for df in frames.values() for m in views.numeric_metrics(df)},
                   key=lambda m: first.index(m) if m in first else len(first))
c1, c2, c3, c4 = st.columns([3, 1.2, 1.2, 0.8])
default_metrics = [m for m in ("loss_d", "loss_g", "fid", "cond_acc", "modes", "hq_share") if m in available]
chosen = c1.multiselect("Metrics", available, default=default_metrics, key="cmp_metrics")
x_label = c2.radio("x axis", list(views.X_AXES), horizontal=False, key="cmp_x")
smoothing = c3.slider("EMA smoothing", 0.0, 0.99, 0.6, 0.01, key="cmp_smooth",
                      help="the faded line is the raw value")
log_y = c4.checkbox("log y", key="cmp_log")

# Scores are overlaid only among runs whose provenance agrees (metrics.check_comparable's rule).
groups = views.comparable_groups(frames)
score_runs = groups[0][1] if groups else selected
excluded = [n for _, group in groups[1:] for n in group]
if excluded and any(m in views.SCORES for m in chosen):
    ref = groups[0][0]
    reasons = []
    for n in excluded:
        prov = views.run_provenance(frames[n])
        why = "no evaluations" if prov is None or ref is None else provenance_difference(ref, prov)
        reasons.append(f"**{n}** ({why})")
    st.warning("Scores with different provenance are not overlaid; left out of the score charts: "
               + "; ".join(reasons), icon=":material/block:")

cols = st.columns(2)
for i, m in enumerate(chosen):
    use = {n: frames[n] for n in (score_runs if m in views.SCORES else selected)}
    fig = line_chart(use, m, views.X_AXES[x_label], smoothing if m not in views.SCORES else 0.0, log_y, colors)
    cols[i % 2].plotly_chart(fig, key=f"cmp_chart_{m}")

st.subheader("Best and last")
table = views.best_and_last(frames, chosen)
st.dataframe(table, width="stretch")

st.subheader("Config differences")
diff = views.config_diff({n: configs[n] for n in selected})
if diff.empty:
    st.caption("Every config field is the same.")
else:
    st.dataframe(diff, width="stretch")

st.download_button("Download the selected runs' metrics (CSV)", lambda: views.metrics_csv(frames),
                   file_name="metrics.csv", mime="text/csv", icon=":material/download:")

st.subheader("Samples at the same step")
grids = {n: runs.sample_grids(root / n) for n in selected}
steps = sorted({s for g in grids.values() for s in g})
if not steps:
    st.caption("These runs have no sample grids yet.")
else:
    step = st.select_slider("step", steps, value=steps[-1], key="cmp_step") if len(steps) > 1 else steps[0]
    cols = st.columns(min(len(selected), 4))
    for i, n in enumerate(selected):
        shown_step = views.nearest(list(grids[n]), step)
        with cols[i % len(cols)]:
            note = "" if shown_step == step else f" (its grid at step {shown_step})" if shown_step else " (no grid)"
            st.markdown(f"<span style='color:{colors[n]}'>■</span> {n}{note}", unsafe_allow_html=True)
            if shown_step is not None:
                img = views.load_grid(grids[n][shown_step])
                if img is None:
                    st.caption(f"grid of step {shown_step} unreadable")
                else:
                    st.image(img, width="stretch")
    st.caption("Each run draws its grids from its own fixed noise batch (seeded by the run's seed): runs with the "
               "same seed and z_dim show the same noise. A run without a grid at the chosen step shows its latest "
               "one before it.")
