"""Sampling: rebuild G from a checkpoint, draw (truncated) noise, write grids and arrays.

Also the image helpers the trainer uses for its progress grids (`image_grid`, `points_image`).
"""
import math
import secrets
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from . import runs
from .config import TrainConfig
from .data import quantize
from .errors import RunError
from .models import build_models, sampling_view


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8."""
    return quantize(x).permute(0, 2, 3, 1).cpu().numpy()


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """(n,) classes in equal sorted blocks 0 0 .. 1 1 .. k-1: every class gets n/k samples."""
    return torch.arange(n) * num_classes // n


def image_grid(images: np.ndarray, ncol: int, pad: int = 2) -> Image.Image:
    """Tile (N, H, W, C) uint8 images row by row, ncol per row, on a dark background."""
    n, h, w, c = images.shape
    nrow = math.ceil(n / ncol)
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 40, np.uint8)
    for i, img in enumerate(images):
        r, q = divmod(i, ncol)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + q * (w + pad) : pad + q * (w + pad) + w] = img
    grid = grid[..., 0] if c == 1 else grid
    out = Image.fromarray(grid)
    scale = max(1, 256 // max(grid.shape[:2]))  # tiny grids (8x8 digits) get enlarged so they are visible
    return out.resize((out.width * scale, out.height * scale), Image.NEAREST) if scale > 1 else out


def points_image(points: np.ndarray, modes: np.ndarray | None = None, size: int = 512) -> Image.Image:
    """A scatter of 2-D points (blue) over the true modes (red rings), on a square canvas."""
    ref = modes if modes is not None and len(modes) else points
    lim = float(np.abs(ref).max()) * 1.5 + 1e-6
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)

    def px(p):
        return (p[0] / lim + 1) * size / 2, (1 - p[1] / lim) * size / 2

    for p in points:
        u, v = px(p)
        draw.point((u, v), fill=(31, 119, 180))
    for m in modes if modes is not None else []:
        u, v = px(m)
        draw.ellipse((u - 5, v - 5, u + 5, v + 5), outline=(214, 39, 40), width=2)
    return img


def noise(n, z_dim, seed=None, truncation=None, device="cpu") -> torch.Tensor:
    """(n, z_dim) standard normal noise; with truncation T, entries beyond |T| are redrawn (the truncation trick)."""
    gen = torch.Generator().manual_seed(seed if seed is not None else secrets.randbits(63))
    z = torch.randn(n, z_dim, generator=gen)
    if truncation is not None:
        if truncation <= 0:
            raise RunError(f"--truncation: must be > 0 (got {truncation})")
        while (bad := z.abs() > truncation).any():
            z[bad] = torch.randn(int(bad.sum()), generator=gen)
    return z.to(device)


def warn(message: str) -> None:
    """The default for `on_skip`: a Python warning (the CLI prints `gancore: warning: ...` instead)."""
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def generator_from_state(state: dict, config: dict, info: dict, device="cpu"):
    """G in eval mode rebuilt from a checkpoint's state (EMA weights when kept): a full checkpoint or a
    sampling-only one (runs.sampling_checkpoint: the same keys, D and the optimisers left out)."""
    G, _ = build_models(TrainConfig.from_dict(config), tuple(info["shape"]), info["num_classes"])
    G.load_state_dict(state["G_ema"] if state.get("G_ema") is not None else state["G"])  # a progressive G's stage too
    return sampling_view(G).to(device).eval()


def open_run_for_sampling(run_dir) -> runs.Run:
    """A run whose config.json and data.json can rebuild G; RunError naming the file otherwise."""
    run = runs.Run(run_dir)
    if not {"shape", "num_classes", "kind"} <= set(run.data_info):
        raise RunError(f"{run.path / 'data.json'}: missing or unreadable; it says what G generates")
    return run


def load_generator(run_dir, step=None, device="cpu", on_skip=warn):
    """(G in eval mode, config dict, data info) from a run's checkpoint; EMA weights when kept.

    step None: the newest checkpoint that loads (each unreadable newer one reported through
    `on_skip(message)`); a step number or "best": exactly that file (CheckpointError if unreadable).
    """
    run = open_run_for_sampling(run_dir)
    _, state = runs.read_checkpoint(run.path, step, on_skip)
    return generator_from_state(state, run.config, run.data_info, device), run.config, run.data_info


def resolve_labels(n, labels, conditional: bool, k: int) -> torch.Tensor | None:
    """Labels for n samples of a conditional G over k classes: an int, a sequence of n, or None = classes in
    equal blocks; None for an unconditional G."""
    if not conditional:
        if labels is not None:
            raise RunError("--label: this run is unconditional; it cannot sample a chosen class")
        return None
    if labels is None:
        return balanced_labels(n, k)
    y = torch.as_tensor(labels, dtype=torch.long).flatten()
    y = y.expand(n).clone() if y.numel() == 1 else y
    if y.numel() != n:
        raise RunError(f"--label: got {y.numel()} labels for {n} samples")
    if (y < 0).any() or (y >= k).any():
        raise RunError(f"--label: classes are 0..{k - 1} (got {y.min().item()}..{y.max().item()})")
    return y


@torch.no_grad()
def generate(G, z_dim, n, labels=None, seed=None, truncation=None, device="cpu", batch=500) -> torch.Tensor:
    z = noise(n, z_dim, seed, truncation, device)
    out = []
    for i in range(0, n, batch):
        y = labels[i : i + batch].to(device) if labels is not None else None
        out.append(G(z[i : i + batch], y).float().cpu())
    return torch.cat(out)


def sample_run(run_dir, n, labels=None, seed=None, truncation=None, step=None, on_skip=warn):
    """n samples from a run: (uint8 (N, H, W, C) images or float32 (N, 2) points, int64 labels; -1 = none)."""
    if n <= 0:
        raise RunError(f"--n: must be > 0 (got {n})")
    G, cfg, info = load_generator(run_dir, step, on_skip=on_skip)
    y = resolve_labels(n, labels, runs.is_conditional(cfg), info["num_classes"])
    x = generate(G, cfg["z_dim"], n, y, seed, truncation)
    y_out = (y if y is not None else torch.full((n,), -1)).numpy().astype(np.int64)
    if info["kind"] == "points":
        return x.numpy().astype(np.float32), y_out
    return to_uint8(x), y_out


def write_samples(out, x: np.ndarray, labels: np.ndarray, info: dict) -> None:
    """Save samples: `.npz` (images+labels or points+labels) or `.png` (a grid; one row per class when balanced)."""
    out = Path(out)
    if out.suffix not in (".npz", ".png"):
        raise RunError(f"--out: {out} must end in .npz or .png")
    if not out.parent.is_dir():
        raise RunError(f"--out: directory {out.parent} does not exist")
    if out.suffix == ".npz":
        key = "points" if info["kind"] == "points" else "images"
        runs.atomic_write(out, lambda f: np.savez_compressed(f, **{key: x, "labels": labels}))
        return
    if info["kind"] == "points":
        img = points_image(x, np.asarray(info.get("modes")) if info.get("modes") else None)
    else:
        k = len(np.unique(labels))
        per_class = len(labels) // k
        balanced = labels.min() >= 0 and k > 1 and per_class * k == len(labels)
        img = image_grid(x, per_class if balanced else math.ceil(math.sqrt(len(x))))
    runs.save_png_atomic(img, out)


# --- the class-conditional demo (dashboard Samples page, notebook 3): each returns (uint8 (N, H, W, C), ncol) ---

def device_of(G) -> torch.device:
    """Where G's weights live: noise and labels are made there."""
    return next(G.parameters()).device


def class_rows(G, z_dim, classes, per_row, seed=0, truncation=None):
    """One row per class in `classes`, per_row samples each; row r uses the same noise as every other row."""
    z = noise(per_row, z_dim, seed, truncation, device_of(G)).repeat(len(classes), 1)  # (R*per_row, z_dim)
    y = torch.as_tensor(classes, dtype=torch.long, device=device_of(G)).repeat_interleave(per_row)
    with torch.no_grad():
        return to_uint8(G(z, y)), per_row


def interpolation(G, z_dim, seed_a, seed_b, steps, label=None, truncation=None):
    """A row from z(seed_a) to z(seed_b) along the great circle (slerp), for one class when conditional."""
    za, zb = noise(1, z_dim, seed_a, truncation)[0], noise(1, z_dim, seed_b, truncation)[0]
    t = torch.linspace(0, 1, steps)[:, None]  # (steps, 1): the path is made on the CPU, then moved to G
    omega = torch.arccos((za / za.norm() * zb / zb.norm()).sum().clamp(-1, 1))
    if omega.abs() < 1e-4:
        z = (1 - t) * za + t * zb
    else:
        z = (torch.sin((1 - t) * omega) * za + torch.sin(t * omega) * zb) / torch.sin(omega)  # (steps, z_dim)
    y = None if label is None else torch.full((steps,), int(label), dtype=torch.long, device=device_of(G))
    with torch.no_grad():
        return to_uint8(G(z.to(device_of(G)), y)), steps


def class_morph(G, z_dim, num_classes, seeds, truncation=None):
    """One row per seed: that z drawn as every class, 0..num_classes-1 (style held, class changed)."""
    z = torch.cat([noise(1, z_dim, s, truncation, device_of(G)).expand(num_classes, -1) for s in seeds])  # (S*K, z_dim)
    y = torch.arange(num_classes, device=device_of(G)).repeat(len(seeds))
    with torch.no_grad():
        return to_uint8(G(z, y)), num_classes


class Run(runs.Run):
    """A run directory (runs.Run: its config, status, metrics and checkpoints) whose generator also samples:
    what `gancore.load_run` returns. runs.Run, below every torch module, only reads."""

    def sample(self, n, labels=None, seed=None, truncation=None, step=None):
        """n samples from the (EMA) generator: (uint8 images (N, H, W, C) or float32 points (N, 2), int64 labels)."""
        return sample_run(self.path, n, labels=labels, seed=seed, truncation=truncation, step=step)


def load_run(path) -> Run:
    return Run(path)
