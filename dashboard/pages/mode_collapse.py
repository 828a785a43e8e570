"""Mode collapse (2-D runs): generated points over the true modes, step by step through training."""
import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from common import metrics, pick_run, run_names, runs_root
from gancore import runs, views
from gancore.metrics import mode_coverage

st.title("Mode collapse")
st.caption("On the 8-Gaussian ring and the 25-Gaussian grid the true distribution is known: a GAN that "
           "collapses puts its points on a few modes and leaves the others empty. Red circles are the true "
           "modes (radius 3σ, the protocol's high-quality distance); blue dots are 2,500 generated points "
           "from the run's fixed noise.")
root = runs_root()
point_runs = [n for n in run_names() if runs.read_json_object(root / n / "data.json").get("kind") == "points"]
name = pick_run("Run", key="mc_pick", names=point_runs, help="runs on 2-D data (ring, grid)")
if name is None:
    st.info("No 2-D runs yet. Launch one with the preset *WGAN-GP on the 25-Gaussian grid* or "
            "*PacGAN on the 8-Gaussian ring* (a minute or two on 2 CPU cores).")
    st.stop()
path = root / name
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
c1, c2, c3 = st.columns(3)
if cov:
    c1.metric("modes captured", f"{cov['modes']} / {len(modes)}")
    c2.metric("high-quality share", f"{cov['hq_share']:.1%}", help="points within 3σ of a mode")
    c3.metric("reverse KL", f"{cov['reverse_kl']:.3f}", help="of the mode histogram against uniform; 0 is ideal")

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
    hist = df.dropna(subset=["modes"])[["step", "modes", "hq_share"]]
    st.subheader("Over training (evaluations)")
    st.dataframe(hist.set_index("step").T, width="stretch")
