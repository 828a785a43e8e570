"""Sample-quality metrics during and after training, and the provenance that makes scores comparable.

2-D mixtures use the PacGAN/VEEGAN protocol: draw 2,500 samples; a sample is high quality when
it lies within 3 sigma of its nearest mode; a mode is captured when it is the nearest mode of at
least one high-quality sample; reverse KL compares the mode histogram of high-quality samples
with the uniform one. Images get FID, KID, IS, conditional accuracy, per-class FID or the class
histogram from the project's evaluator (image_metrics.py).

Every evaluation returns its scores plus `provenance`: which network scored them (name, weights
sha256), against which reference (data, split, fingerprint, number of real samples), on how many
generated samples, with which seed. Two scores are the same metric only when their provenance
agrees (`check_comparable`, in records.py with the rest of the provenance rules); the seed is the
exception, as it only picks which samples are drawn.
"""
import math

import torch

from .records import COMPARED, ProvenanceMismatch, check_comparable, primary_score, provenance_difference  # noqa: F401
from .sample import balanced_labels, generate, quantize

N_POINTS = 2500          # the PacGAN/VEEGAN sample count
N_IMAGES = 10_000        # images scored by `gancore eval` unless --n says otherwise
N_IMAGES_TRAINING = 2000  # images per evaluation during training (eval_n 0): under 5 % of training time


def mode_coverage(points: torch.Tensor, modes: torch.Tensor, sigma: float) -> dict:
    """Modes captured, high-quality share and reverse KL of (N, 2) points against (M, 2) modes."""
    dist = torch.cdist(points.float(), modes.float())  # (N, M)
    nearest_d, nearest = dist.min(dim=1)
    hq = nearest_d <= 3 * sigma
    counts = torch.bincount(nearest[hq], minlength=len(modes)).double()
    p = counts / counts.sum().clamp(min=1)
    q = 1.0 / len(modes)
    nz = p > 0
    reverse_kl = float((p[nz] * (p[nz] / q).log()).sum()) if nz.any() else math.inf
    return {
        "modes": int((counts > 0).sum()),
        "hq_share": float(hq.double().mean()),
        "reverse_kl": reverse_kl,
    }


def points_provenance(data, n_gen: int, seed: int) -> dict:
    """Mode coverage has no network: its 'evaluator' is the protocol, its reference the true modes."""
    return {"evaluator": f"mode-coverage(3sigma, sigma={data.sigma:g})", "weights_sha256": None,
            "reference": f"{data.name}:modes", "data_fingerprint": None, "n_real": 0,
            "n_gen": int(n_gen), "seed": int(seed)}


@torch.no_grad()
def evaluate(G, z_dim: int, data, conditional: bool, n: int = 0, seed: int = 0, scorer=None,
             device="cpu") -> dict:
    """The metrics that exist for this data, from n fixed-seed samples of G, with their provenance.

    n: 0 = N_POINTS for 2-D data, N_IMAGES for images. Conditional samples are balanced over the
    classes. Images need `scorer` (an image_metrics.ImageScorer); without one they get {}.
    Generated images are rounded to 8-bit levels first, as saved samples are, so a run and an .npz
    exported from it score the same.
    """
    n = n or (N_POINTS if data.kind == "points" else N_IMAGES)
    if data.kind == "image" and scorer is None:
        return {}
    labels = balanced_labels(n, data.num_classes) if conditional else None
    x = generate(G, z_dim, n, labels, seed=seed, device=device)  # (n, ...) float on the CPU
    if data.kind == "points":
        return {**mode_coverage(x, data.modes.cpu(), data.sigma), "provenance": points_provenance(data, n, seed)}
    x = quantize(x).float() / 127.5 - 1  # (n, C, H, W) on the 8-bit grid
    return scorer.score(x, labels, seed=seed)


# ---------------------------------------------------------------- scoring from outside the trainer
def score_run(run_dir, n: int = 0, step=None, seed: int = 0, on_skip=None) -> dict:
    """`gancore eval RUN_DIR`: the metrics of a run's checkpoint (latest that loads, a step, or "best") as one dict.

    on_skip(message): told about each unreadable checkpoint newer than the one scored (default: a warning).
    """
    from . import runs
    from .image_metrics import scorer_for
    from .sample import generator_from_state, open_run_for_sampling, warn
    from .setup import load_and_resolve

    run = open_run_for_sampling(run_dir)
    step, state = runs.read_checkpoint(run.path, step, on_skip or warn)
    # scored on the CPU whatever the run trained on (autocast does not apply to scoring)
    cfg, data = load_and_resolve(dict(run.config, device="cpu", precision="fp32"), source=str(run.path / "config.json"))
    G = generator_from_state(state, run.config, run.data_info)
    scorer = scorer_for(data, cfg.fid_backend) if data.kind == "image" else None
    return {"run": str(run_dir), "step": step,
            **evaluate(G, cfg.z_dim, data, run.data_info.get("conditional", False), n, seed, scorer)}


def score_npz(path, dataset: str, data_path=None, image_size: int = 0, channels: int = 0, n: int = 0,
              seed: int = 0, backend: str = "evaluator") -> dict:
    """`gancore eval --npz FILE`: images from anywhere scored against `dataset`, on the same footing as runs.

    FILE holds `images` uint8 (N, H, W, C) (or (N, H, W)) and optionally `labels` int (N,): the class
    each image was made for, -1 throughout for unconditional samples (as `gancore sample` writes).
    """
    import numpy as np

    from .data import load_dataset
    from .errors import DataError
    from .image_metrics import scorer_for

    try:
        with np.load(path) as z:
            images = z["images"] if "images" in z.files else None
            labels = z["labels"] if "labels" in z.files else None
    except FileNotFoundError:
        raise DataError(f"--npz: {path} does not exist") from None
    except Exception:  # not a zip, a pickle, a plain .npy ...
        raise DataError(f"--npz: {path} is not a readable .npz archive") from None
    if images is None:
        raise DataError(f"--npz: {path} has no array 'images'")
    images = images[..., None] if images.ndim == 3 else images
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(f"--npz: {path}: images must be uint8 (N, H, W, C) with C 1 or 3, "
                        f"got {images.dtype} {images.shape}")
    n = n or len(images)
    if not 0 < n <= len(images):
        raise DataError(f"--n: {path} holds {len(images)} images, cannot score {n}")
    data = load_dataset(dataset, data_path, image_size, channels)
    if data.kind != "image":
        raise DataError(f"--dataset: {dataset!r} is 2-D points; --npz scores images")
    y = None
    if labels is not None:
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"--npz: {path}: labels must be int (N,) with N = {len(images)}, "
                            f"got {labels.dtype} {labels.shape}")
        labels = labels[:n]
        if (labels >= 0).any():  # -1 throughout: unconditional
            if labels.min() < 0 or labels.max() >= data.num_classes:
                raise DataError(f"--npz: {path}: labels must be 0..{data.num_classes - 1} (or -1 throughout), "
                                f"found {labels.min()}..{labels.max()}")
            y = torch.from_numpy(labels.astype(np.int64))
    x = torch.from_numpy(images[:n]).permute(0, 3, 1, 2).float() / 127.5 - 1  # (n, C, H, W) in [-1, 1]
    if tuple(x.shape[1:]) != tuple(data.shape):
        raise DataError(f"--npz: images are {tuple(x.shape[1:])} (C, H, W) but dataset {dataset!r} loads as "
                        f"{tuple(data.shape)}; pass --image_size / --channels to load it at the images' size")
    return {"npz": str(path), "dataset": dataset,
            **scorer_for(data, backend).score(x, y, seed=seed)}
