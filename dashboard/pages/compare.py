"""Compare: overlay any logged metric of several runs, or of groups of seeds (mean, 95 % band, pairwise verdicts);
best/last table, config diff, parallel coordinates, CSV, sample grids."""
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from common import group_chart, line_chart, metrics, prefetch, run_names, runs_root
from gancore import records, replicates, report, runs, views
from gancore.records import provenance_difference

FOLLOW_SECONDS = 5  # how often the page looks whether a selected running run has new records

st.title("Compare")
root = runs_root()
names = run_names()
if not names:
    st.info("No runs yet: start some on **Launch** (a sweep gives several at once).")
    st.stop()
configs = {n: runs.read_json_object(root / n / "config.json") for n in names}

with st.expander("Filter", expanded=False):
    pattern = st.text_input("Run name (regular expression)", key="cmp_pattern", placeholder="e.g. grid|ring")
    fcols = st.columns(5)
    where = {}
    for col, field in zip(fcols, ("dataset", "model", "loss", "conditioning")):
        values = sorted({str(c.get(field)) for c in configs.values()})
        where[field] = col.multiselect(field, values, key=f"cmp_{field}")
    tags = {n: runs.read_notes(root / n)["tags"] for n in names}
    wanted_tags = fcols[4].multiselect("tags", sorted({t for ts in tags.values() for t in ts}), key="cmp_tags")
try:
    shown = views.filter_runs(names, pattern, configs, where, tags, wanted_tags)
except ValueError as e:
    st.error(str(e))
    shown = names

default = [n for n in st.session_state.get("cmp_default", [st.session_state.get("run") or names[0]]) if n in shown]
selected = st.multiselect("Runs", shown, default=default, key="cmp_runs",
                          help="in the order picked: the first keeps the first colour on every chart")
prefetch("scipy.special")  # the seed groups' t quantiles (replicates.t_quantile), once two runs are picked
if not selected:
    st.info("Pick two or more runs to compare.")
    st.stop()
frames = {n: metrics(root / n) for n in selected}
live = [n for n in selected if views.state_of(runs.read_status(root / n)) in ("running", "queued")]


@st.fragment(run_every=FOLLOW_SECONDS if live else None)
def follow():
    """While a selected run trains, redraw the page when its metrics grow (the charts follow it, as Monitor's do)."""
    stamp = tuple(views.metrics_mtime(root / n) for n in live)
    if st.session_state.get("cmp_stamp", stamp) != stamp:
        st.session_state["cmp_stamp"] = stamp
        st.rerun()
    st.session_state["cmp_stamp"] = stamp


follow()
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
seed_groups = replicates.group_runs({n: configs[n] for n in selected})
groupable = any(len(g) > 1 for g in seed_groups.values())
# on by default once some group has several seeds (a key of its own then, so the default takes effect)
grouping = st.toggle("Group seeds", key=f"cmp_group_{groupable}", value=groupable,
                     help="runs whose configs differ only in seed form a group: its mean curve, a 95% band "
                          "(Student t over the seeds) and its single runs, faint")

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

figures, tables, images = [], {}, {}  # what the HTML report holds
cols = st.columns(2)
group_colors = views.colors(list(seed_groups))
for i, m in enumerate(chosen):
    use = {n: frames[n] for n in (score_runs if m in views.SCORES else selected)}
    if grouping:
        by_group = {g: {n: use[n] for n in members if n in use} for g, members in seed_groups.items()}
        fig = group_chart({g: f for g, f in by_group.items() if f}, m, views.X_AXES[x_label], log_y, group_colors)
    else:
        fig = line_chart(use, m, views.X_AXES[x_label], smoothing if m not in views.SCORES else 0.0, log_y, colors)
    cols[i % 2].plotly_chart(fig, key=f"cmp_chart_{m}")
    figures.append(fig)

if grouping:
    st.subheader("Groups: final values")
    st.caption("Each run's last value (a score: its final evaluation), then per group the mean ± the half-width of "
               "its 95% t-interval over the seeds, and n.")
    finals = {m: replicates.final_scores({n: frames[n] for n in (score_runs if m in views.SCORES else selected)}, m)
              for m in chosen}
    rows = {g: {"n": len(members), "runs": ", ".join(members)} for g, members in seed_groups.items()}
    for m, final in finals.items():
        summary = replicates.group_summary({g: [final[n] for n in members if n in final]
                                            for g, members in seed_groups.items()}, m)
        for g in seed_groups:
            if g in summary.index and summary.loc[g, "n"]:
                rows[g][m] = summary.loc[g, "mean ± 95%"]
    tables["Groups: final values (mean ± 95% t-interval half-width over the seeds)"] = pd.DataFrame(rows).T
    st.dataframe(tables["Groups: final values (mean ± 95% t-interval half-width over the seeds)"], width="stretch")

    st.subheader("Which group is better")
    scores = [m for m in chosen if m in views.SCORES or m in views.LOSS_KEYS] or chosen
    if len(seed_groups) > 1 and scores:
        metric = st.selectbox("Final value compared", scores, key="cmp_pair_metric")
        values = {g: [finals[metric][n] for n in members if n in finals[metric]]
                  for g, members in seed_groups.items()}
        higher = metric in views.HIGHER_IS_BETTER
        pairs = replicates.pairwise(values, higher_is_better=higher)
        shown = records.metric(metric)
        pairs["95% interval"] = pairs["95% interval"].map(lambda iv: "-" if iv is None else shown.display_range(*iv))
        pairs["B - A"] = pairs["B - A"].map(shown.display)
        st.caption(f"B - A of the groups' mean final {metric} ({'higher' if higher else 'lower'} is better), with "
                   f"Welch's 95% interval; a verdict only where the interval excludes 0.")
        st.dataframe(pairs, width="stretch", hide_index=True)
        tables[f"Which group is better: final {metric}"] = pairs.set_index(["A", "B"])
    else:
        st.caption("One group only: nothing to compare (group runs by giving them several seeds).")
else:
    st.subheader("Best and last")
    table = views.displayed(views.best_and_last(frames, chosen, smoothing))
    st.dataframe(table, width="stretch")
    tables["Best and last"] = table

st.subheader("Config differences")
diff = views.config_diff({n: configs[n] for n in selected})
if diff.empty:
    st.caption("Every config field is the same.")
else:
    st.dataframe(diff, width="stretch")
    tables["Config differences"] = diff

st.subheader("Settings against outcome")
score_choices = [m for m in available if m in views.SCORES] or chosen
# Plotly draws parallel coordinates with WebGL: without graphics acceleration (a VM, a remote desktop, a headless
# browser) each redraw takes a second or more (docs/benchmarks.md, "Dashboard walk"), so it is drawn on request
if len(selected) > 1 and score_choices and st.toggle(
        "Parallel coordinates: each run a line through its settings to its final value", key="cmp_pc_show",
        help="drawn with WebGL: instant with graphics acceleration, a second or more per redraw without"):
    outcome = st.selectbox("Final value", score_choices, key="cmp_pc_metric")
    final = replicates.final_scores({n: frames[n] for n in selected}, outcome)
    pc = views.parcoords_frame({n: configs[n] for n in selected if n in final}, final, outcome)
    if pc is None:
        st.caption("The selected runs differ in no config field.")
    else:
        dims = [dict(label=c, values=pc[c], **({"tickvals": list(range(len(pc.attrs["labels"][c]))),
                                                "ticktext": pc.attrs["labels"][c]} if c in pc.attrs["labels"] else {}))
                for c in pc.columns]
        fig = go.Figure(go.Parcoords(line=dict(color=pc[outcome], colorscale="Viridis", showscale=True),
                                     dimensions=dims))
        fig.update_layout(height=360, margin=dict(l=60, r=40, t=40, b=20))
        st.plotly_chart(fig, key="cmp_parcoords")
        figures.append(fig)

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
                    images[f"{n}, step {shown_step}"] = grids[n][shown_step]
    st.caption("Each run draws its grids from its own fixed noise batch (seeded by the run's seed): runs with the "
               "same seed and z_dim show the same noise. A run without a grid at the chosen step shows its latest "
               "one before it.")

st.download_button("Download this comparison as a report (HTML)",
                   lambda: report.comparison_html(f"gancore: {len(selected)} runs compared", figures, tables, images,
                                                  selected),
                   file_name="comparison.html", mime="text/html", icon=":material/download:",
                   help="the charts, tables and grids above in one file that opens in any browser, offline")
