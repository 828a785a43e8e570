"""Mode collapse: where the modes are known. 2-D runs: generated points over the true modes, step by step.
Stacked-MNIST runs: which of the 1,000 digit triples the samples hit, evaluation by evaluation."""
import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from common import line_chart, metrics, pick_run, run_names, runs_root
from gancore import records, runs, views
from gancore.metrics import STACKED, TRIPLES, channel_counts, mode_coverage, reverse_kl

st.title("Mode collapse")
st.caption("Where the true modes are known, a GAN that collapses shows it: on the 8-Gaussian ring and the "
           "25-Gaussian grid its points sit on a few modes; on stacked MNIST (a digit in each colour channel) its "
           "samples read as a few of the 1,000 digit triples.")
root = runs_root()


def kind(name: str) -> str | None:
    if runs.read_json_object(root / name / "config.json").get("dataset") == STACKED:
        return "stacked"
    return "points" if runs.read_json_object(root / name / "data.json").get("kind") == "points" else None


kinds = {n: kind(n) for n in run_names()}
name = pick_run("Run", key="mc_pick", names=[n for n, k in kinds.items() if k],
                help="runs on 2-D data (ring, grid) or on stacked-mnist")
if name is None:
    st.info("No 2-D or stacked-MNIST runs yet. Launch one with the preset *WGAN-GP on the 25-Gaussian grid* or "
            "*PacGAN on the 8-Gaussian ring* (a minute or two on 2 CPU cores), or train on the dataset "
            "`stacked-mnist`.")
    st.stop()
path = root / name


def stacked_page():
    """The triple histogram of one evaluation (read by the MNIST-5k evaluator, channel by channel) and the
    modes and reverse KL over training."""
    st.caption("Each evaluation reads every colour channel of its samples (26,000 by default, the PacGAN/VEEGAN "
               "protocol) with the MNIST-5k evaluator. A triple is captured when at least one sample reads as it; "
               "reverse KL compares the triple histogram with the uniform one (PacGAN Table 2: DCGAN 99 modes, "
               "KL 3.40; PacDCGAN2 1,000 modes, KL 0.06).")
    df = metrics(path)
    evals = views.triple_evaluations(df)
    if not evals:
        st.info("No evaluation yet: the first comes after `eval_every` steps.")
        st.stop()
    steps = list(evals)
    step = st.select_slider("evaluation at step", steps, value=steps[-1], key=f"mc_eval_{name}") \
        if len(steps) > 1 else steps[0]
    counts = evals[step]
    c1, c2, c3 = st.columns(3)
    c1.metric("modes captured", f"{int((counts > 0).sum())} / {TRIPLES}")
    c2.metric("reverse KL", records.display("reverse_kl", reverse_kl(torch.from_numpy(counts))),
              help="KL(generated triple histogram || uniform); 0 is ideal, log 1000 = 6.91 is one triple")
    c3.metric("samples read", f"{int(counts.sum()):,}")

    grid = counts.reshape(10, 100)  # (red digit, 10 green + blue)
    fig = go.Figure(go.Heatmap(z=grid, x=[f"{k:02d}" for k in range(100)], y=[str(r) for r in range(10)],
                               colorscale=[[0, "#FFFFFF"], [1e-9, "#FDE0C5"], [1, "#B2182B"]], zmin=0,
                               hovertemplate="triple %{y}%{x}: %{z} samples<extra></extra>",
                               colorbar=dict(title="samples")))
    fig.update_layout(title=f"samples per triple at step {step} (white: never drawn)", height=330,
                      margin=dict(l=10, r=10, t=40, b=10), xaxis=dict(title="green and blue digits", type="category",
                                                                      dtick=10),
                      yaxis=dict(title="red digit", type="category", autorange="reversed"))
    st.plotly_chart(fig, width="stretch", key="mc_triples")

    marginals = dict(zip(("red", "green", "blue"), channel_counts(counts)))
    left, right = st.columns(2)
    bars = go.Figure([go.Bar(x=[str(d) for d in range(10)], y=m / max(m.sum(), 1), name=c, marker_color=color)
                      for (c, m), color in zip(marginals.items(), ("#D62728", "#2CA02C", "#1F77B4"))])
    bars.add_hline(y=0.1, line_dash="dot", line_color="#7F7F7F")
    bars.update_layout(title="digit shares per channel (0.1 each for the data)", height=300, barmode="group",
                       margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.25))
    left.plotly_chart(bars, width="stretch", key="mc_marginals")
    missed = np.flatnonzero(counts == 0)
    right.markdown(f"**Triples never drawn** ({len(missed)})")
    right.write(", ".join(f"{k:03d}" for k in missed[:200]) + (" ..." if len(missed) > 200 else "")
                if len(missed) else "none")

    if len(steps) > 1:
        st.subheader("Over training (evaluations)")
        left, right = st.columns(2)
        left.plotly_chart(line_chart({name: df}, "modes", height=260), key="mc_modes")
        right.plotly_chart(line_chart({name: df}, "reverse_kl", height=260), key="mc_kl")


if kinds[name] == "stacked":
    stacked_page()
    st.stop()

info = runs.read_json_object(path / "data.json")
modes = np.asarray(info.get("modes") or [], dtype=float)
sigma = float(info.get("sigma") or 0.0)
steps = list(runs.sample_points(path))
if not steps:
    st.info("No saved points yet: the first come with the first sample grid (every `sample_every` steps).")
    st.stop()
step = st.select_slider("step", steps, value=steps[-1], key=f"mc_step_{name}") if len(steps) > 1 else steps[0]
points = views.points_at(path, step)
if points is None:
    st.warning(f"The points saved at step {step} cannot be read (samples/step_{step:07d}.npz is torn or corrupt); "
               f"pick another step.", icon=":material/warning:")
    st.stop()

cov = mode_coverage(torch.from_numpy(points), torch.from_numpy(modes), sigma) if len(modes) else {}
MODES_HELP = ("a mode counts as captured when at least one point lies within 3σ of it, so a few stray points can "
              "capture a mode while the high-quality share (points within 3σ of any mode) stays small")
st.caption(f"The {len(points):,} points saved at step {step} (the progress grid's fixed noise batch, the same "
           f"noise at every step). The evaluations below draw samples of their own, so their counts can differ.")
c1, c2, c3 = st.columns(3)
if cov:
    c1.metric("modes captured (these points)", f"{cov['modes']} / {len(modes)}", help=MODES_HELP)
    c2.metric("high-quality share", records.display("hq_share", cov["hq_share"]), help="points within 3σ of a mode")
    c3.metric("reverse KL", records.display("reverse_kl", cov["reverse_kl"]), help="of the mode histogram against uniform; 0 is ideal")

fig = go.Figure()
fig.add_trace(go.Scattergl(x=points[:, 0], y=points[:, 1], mode="markers", name="generated",
                           marker=dict(size=3, color="#1F77B4", opacity=0.5)))
if len(modes):
    r = 3 * sigma
    shapes = [dict(type="circle", x0=m[0] - r, x1=m[0] + r, y0=m[1] - r, y1=m[1] + r,
                   line=dict(color="#D62728", width=1.5)) for m in modes]
    fig.add_trace(go.Scatter(x=modes[:, 0], y=modes[:, 1], mode="markers", name="true modes",
                             marker=dict(symbol="x", size=7, color="#D62728")))
    lim = float(np.abs(modes).max()) * 1.4 + 0.5
    fig.update_layout(shapes=shapes, xaxis=dict(range=[-lim, lim]), yaxis=dict(range=[-lim, lim]))
fig.update_layout(height=620, width=620, margin=dict(l=10, r=10, t=30, b=10), title=f"{name} · step {step}")
fig.update_yaxes(scaleanchor="x", scaleratio=1)
st.plotly_chart(fig, width="content", key="mc_scatter")

df = metrics(path)
if "modes" in df and df["modes"].notna().any():
    hist = df.dropna(subset=["modes"])[["step", "modes", "hq_share"]].set_index("step")
    st.subheader("Over training (evaluations)")
    st.caption("Each evaluation's own fresh samples (eval_n of them): the scores Runs, Monitor and Compare show.")
    shown = hist.assign(modes=hist["modes"].map(lambda v: f"{int(v)} / {len(modes)}"),
                        hq_share=hist["hq_share"].map(lambda v: records.display("hq_share", v)))
    st.dataframe(shown.rename(columns={"modes": "modes captured", "hq_share": "high-quality share"}).T,
                 width="stretch")
