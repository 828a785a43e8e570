"""Samples: the class-conditional demo — a row per class, latent interpolation, class morph, truncation.

gancore's pretrained MNIST-5k generator (gancore/pretrained/, read-only) is offered too: first when the
user has no class-conditional run of their own, so a newcomer sees every digit on demand; else last.
"""
import io

import numpy as np
import streamlit as st
import torch
from PIL import Image

from common import checkpoint_mtime, generator, pick_run, run_names, runs_root
from gancore import runs, views
from gancore.errors import GancoreError
from gancore.metrics import nearest_training_images
from gancore.sample import class_morph, class_rows, generate, image_grid, interpolation, to_uint8

PRETRAINED = runs.PRETRAINED_ROOT / "mnist-5k-cgan"
PRETRAINED_LABEL = "mnist-5k-cgan (gancore's pretrained, read-only)"  # never a run name: those have no spaces

st.title("Samples")
root = runs_root()
image_runs = [n for n in run_names()
              if runs.read_json_object(root / n / "data.json").get("kind") == "image" and runs.checkpoints(root / n)]
own_conditional = any(runs.is_conditional(runs.read_json_object(root / n / "config.json")) for n in image_runs)
if (PRETRAINED / "config.json").is_file():
    image_runs = image_runs + [PRETRAINED_LABEL] if own_conditional else [PRETRAINED_LABEL] + image_runs
name = pick_run("Run", key="samples_pick", names=image_runs,
                help="image runs with at least one checkpoint, and gancore's pretrained MNIST-5k generator")
if name is None:
    st.info("No image run with a checkpoint yet. Train one (the quick start on **Runs** takes about 5 minutes).")
    st.stop()
path = PRETRAINED if name == PRETRAINED_LABEL else root / name
if name == PRETRAINED_LABEL:
    name = PRETRAINED.name  # in captions and file names
    about = ("No conditional run of yours yet: showing gancore's pretrained MNIST-5k generator (read-only)"
             if not own_conditional else "gancore's pretrained MNIST-5k generator (read-only)")
    st.info(f"{about}. It ships with gancore in `gancore/pretrained/{path.name}/` (its README.md says how it was "
            f"trained and scored); train your own with the quick start on **Runs**.", icon=":material/info:")
steps = list(runs.checkpoints(path))
unreadable = {s: problem for s in steps if (problem := runs.checkpoint_problem(runs.checkpoint_path(path, s)))}
readable = [s for s in steps if s not in unreadable]
options = (["best"] if runs.best_checkpoint_path(path).is_file() else []) + steps[::-1]
c1, c2, c3, c4, c5 = st.columns([1.3, 1, 1, 1, 1])
step = c1.selectbox("Checkpoint", options, index=options.index(readable[-1] if readable else steps[-1]),
                    format_func=lambda s: "best (by FID)" if s == "best" else
                    f"step {s}" + (" (unreadable)" if s in unreadable else ""), key="samples_step")
seed = int(c2.number_input("Seed", value=0, step=1, key="samples_seed"))
use_trunc = c3.checkbox("Truncation", key="samples_trunc_on", help="redraw latent entries beyond |T|: "
                        "less variety, cleaner samples")
truncation = c4.slider("T", 0.1, 3.0, 1.0, 0.1, key="samples_trunc", disabled=not use_trunc) if use_trunc else None
scale = c5.selectbox("PNG size", [1, 2, 4, 8], index=2, format_func=lambda s: f"{s}x (pixels per pixel)",
                     key="samples_scale", help="the downloaded PNG, each image pixel drawn as s x s pixels")
# what every caption and file name says of the noise: its seed, and the truncation when on
trunc_text, trunc_file = (f" · truncation {truncation:g}", f"-t{truncation:g}") if truncation else ("", "")
for warning in views.checkpoint_warnings(path, unreadable):  # the same warning as Monitor and `gancore sample`
    st.warning(warning, icon=":material/warning:")

try:
    G, cfg, info = generator(str(path), step, checkpoint_mtime(path, step))
except GancoreError as e:
    st.error(str(e))
    st.stop()
z_dim, k = cfg["z_dim"], info["num_classes"]
conditional = runs.is_conditional(cfg)


def show(images, ncol, caption, file_name, key):
    img = image_grid(images, ncol)
    st.image(img, caption=caption + trunc_text, width=min(900, max(img.width, 420)))
    big = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    stem, ext = file_name.rsplit(".", 1)
    st.download_button(f"Download PNG ({big.width}×{big.height} px)", buf.getvalue(),
                       file_name=f"{stem}{trunc_file}.{ext}", mime="image/png", key=key, icon=":material/download:")


@st.cache_resource(max_entries=2, show_spinner="Loading the training images ...")
def training_data(dataset: str, data_path, image_size: int, channels: int):
    from gancore.data import load_dataset

    return load_dataset(dataset, data_path, image_size, channels)


def nearest_strip(x, classes, per_row, names):
    """A chosen sample beside its nearest training images of its class (pixel distance): is it one of them?"""
    with st.expander("Nearest training images of a sample", icon=":material/compare:"):
        n1, n2 = st.columns(2)
        c = n1.selectbox("Row (class)", classes, format_func=lambda i: names[i], key="nn_class")
        j = int(n2.number_input("Sample (column)", 1, per_row, 1, key="nn_col"))
        try:
            data = training_data(cfg["dataset"], cfg.get("data_path"), cfg["image_size"], cfg["channels"])
        except GancoreError as e:
            st.caption(f"The training images cannot be loaded here: {e}")
            return
        sample = x[classes.index(c) * per_row + j - 1]  # (H, W, C) uint8
        image = torch.from_numpy(sample).permute(2, 0, 1).float() / 127.5 - 1
        idx, dist = nearest_training_images(image, data, k=8, label=c)
        strip = np.concatenate([sample[None], to_uint8(data.images(idx))])
        st.image(image_grid(strip, len(strip)), width=min(900, 60 * len(strip)),
                 caption=f"first: the sample (class {names[c]}, column {j}); then its {len(idx)} nearest training "
                         f"images of that class, at pixel distances " + ", ".join(f"{d:.1f}" for d in dist.tolist())
                         + ". A sample that copies sits at distance ~0 from the first" + trunc_text)


if conditional:
    names = [views.class_name(info, i) for i in range(k)]
    classes = st.multiselect("Classes (one row each)", list(range(k)), default=list(range(k)),
                             format_func=lambda i: names[i], key="samples_classes")
    per_row = st.slider("Samples per class", 1, 16, 10, key="samples_per_row")
    if classes:
        x, ncol = class_rows(G, z_dim, classes, per_row, seed, truncation)
        show(x, ncol, f"{name} · {('best' if step == 'best' else f'step {step}')} · seed {seed} · rows: "
             + ", ".join(names[c] for c in classes) + " (the same noise in every row)",
             f"{name}-classes-seed{seed}.png", "dl_rows")
        nearest_strip(x, classes, per_row, names)
else:
    n = st.slider("Samples", 4, 128, 64, 4, key="samples_n")
    x = to_uint8(generate(G, z_dim, n, seed=seed, truncation=truncation))
    show(x, 8, f"{name} · seed {seed}", f"{name}-seed{seed}.png", "dl_uncond")

st.subheader("Latent interpolation")
i1, i2, i3, i4 = st.columns(4)
# keyed by the Seed above, so that a new Seed moves the interpolation too (seed -> seed + 1 by default)
seed_a = int(i1.number_input("From seed", value=seed, step=1, key=f"interp_a_{seed}"))
seed_b = int(i2.number_input("To seed", value=seed + 1, step=1, key=f"interp_b_{seed}"))
n_steps = i3.slider("Steps", 3, 16, 10, key="interp_steps")
label = i4.selectbox("Class", list(range(k)), format_func=lambda i: views.class_name(info, i),
                     key="interp_class") if conditional else None
x, ncol = interpolation(G, z_dim, seed_a, seed_b, n_steps, label, truncation)
show(x, ncol, f"z(seed {seed_a}) → z(seed {seed_b}) along the sphere", f"{name}-interp-{seed_a}-{seed_b}.png",
     "dl_interp")

if conditional:
    st.subheader("Class morph")
    st.caption("Each row holds one z fixed and changes only the class: what the generator keeps as style.")
    n_rows = st.slider("Rows (seeds from the seed above)", 1, 8, 3, key="morph_rows")
    x, ncol = class_morph(G, z_dim, k, list(range(seed, seed + n_rows)), truncation)
    show(x, ncol, f"seeds {seed}..{seed + n_rows - 1}, classes 0..{k - 1}", f"{name}-morph-seed{seed}.png",
         "dl_morph")
