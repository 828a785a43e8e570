"""Sample-quality metrics during and after training, and the provenance that makes scores comparable.

2-D mixtures use the PacGAN/VEEGAN protocol: draw 2,500 samples; a sample is high quality when
it lies within 3 sigma of its nearest mode; a mode is captured when it is the nearest mode of at
least one high-quality sample; reverse KL compares the mode histogram of high-quality samples
with the uniform one. Images get FID (with its bootstrap interval), KID, IS, precision, recall, density,
coverage, per-class recall, conditional accuracy, per-class FID or the class histogram from the
project's evaluator (image_metrics.py).

Stacked MNIST (`stacked-mnist`) uses the same protocol on images, as PacGAN and VEEGAN do: draw 26,000
samples; read each colour channel with the shipped MNIST-5k evaluator; a mode (one of the 1,000 digit
triples) is captured when at least one sample reads as it; reverse KL is KL(p_model || uniform) of the
triple histogram: PacGAN's Table 2 ("reverse KL divergence over the generated mode distribution") and its
code (KLD(p, q), p the generated histogram, q uniform). The stacked-mnist data hold every triple equally
often, so uniform is also the data's histogram.

Every evaluation returns its scores plus `provenance`: which network scored them (name, weights
sha256), against which reference (data, split, fingerprint, number of real samples), on how many
generated samples, with which seed. Two scores are the same metric only when their provenance
agrees (`check_comparable`, in records.py with the rest of the provenance rules); the seed is the
exception, as it only picks which samples are drawn.
"""
import functools
import math

import torch
import torch.nn.functional as F

from .catalogue import STACKED, default_n
from .data import as_float, quantize
from .records import COMPARED, ProvenanceMismatch, check_comparable, primary_score, provenance_difference  # noqa: F401
from .sample import balanced_labels, generate

COPY_MAX_GEN = 1_000  # samples behind an evaluation's copy_ratio at most
COPY_MAX_REAL = 10_000   # the copying check compares every sample with every training image: only sets this small
TRIPLES = 1000           # stacked MNIST's modes: (R, G, B) digit triples
DIGIT_READER = "mnist-5k"  # the shipped evaluator that reads each channel of a stacked-MNIST image


def reverse_kl(counts: torch.Tensor) -> float:
    """KL(p || uniform) of a histogram of counts (M,): sum of p log(p / (1/M)) over the bins hit; inf when empty."""
    counts = counts.double()
    p = counts / counts.sum().clamp(min=1)
    q = 1.0 / len(counts)
    nz = p > 0
    return float((p[nz] * (p[nz] / q).log()).sum()) if nz.any() else math.inf


def mode_coverage(points: torch.Tensor, modes: torch.Tensor, sigma: float) -> dict:
    """Modes captured, high-quality share and reverse KL of (N, 2) points against (M, 2) modes."""
    dist = torch.cdist(points.float(), modes.float())  # (N, M)
    nearest_d, nearest = dist.min(dim=1)
    hq = nearest_d <= 3 * sigma
    counts = torch.bincount(nearest[hq], minlength=len(modes))
    return {
        "modes": int((counts > 0).sum()),
        "hq_share": float(hq.double().mean()),
        "reverse_kl": reverse_kl(counts),
    }


def points_provenance(data, n_gen: int, seed: int) -> dict:
    """Mode coverage has no network: its 'evaluator' is the protocol, its reference the true modes."""
    return {"evaluator": f"mode-coverage(3sigma, sigma={data.sigma:g})", "weights_sha256": None,
            "reference": f"{data.name}:modes", "data_fingerprint": None, "n_real": 0,
            "n_gen": int(n_gen), "seed": int(seed)}


@functools.lru_cache(maxsize=None)
def _digit_reader(device: str):
    """(the shipped MNIST-5k evaluator in eval mode on `device`, its weights sha256), loaded once per process."""
    from .evaluator import shipped_evaluator

    model, report = shipped_evaluator(DIGIT_READER)
    # channels_last: a third faster on a CPU for this small conv net
    return model.to(device, memory_format=torch.channels_last).eval(), report["weights_sha256"]


@torch.no_grad()
def read_channels(x: torch.Tensor, device="cpu", batch: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Each channel of the stacked-MNIST images x read as one digit: (digits (N, 3) int64, their probability
    (N, 3) float), on the CPU.

    x: (N, 3, H, W) uint8 levels or floats in [-1, 1]. Each channel is one MNIST digit for the MNIST-5k
    evaluator (28 px; other sizes are resized to 28 first), read as its most likely digit.
    """
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"stacked MNIST images are (N, 3, H, W), got {tuple(x.shape)}")
    model, _ = _digit_reader(str(device))
    digits, probs = [], []
    for i in range(0, len(x), batch):
        xb = as_float(x[i:i + batch].to(device))  # (B, 3, H, W)
        b, _, h, w = xb.shape
        xb = xb.reshape(b * 3, 1, h, w)             # (3B, 1, H, W): R, G, B of each image in turn
        if (h, w) != (28, 28):
            xb = F.interpolate(xb, size=(28, 28), mode="bilinear", align_corners=False, antialias=True)
        p, d = model(xb.contiguous(memory_format=torch.channels_last)).float().softmax(1).max(1)  # (3B,) each
        digits.append(d.view(b, 3).cpu())
        probs.append(p.view(b, 3).cpu())
    return torch.cat(digits), torch.cat(probs)


def triple_counts(x: torch.Tensor, device="cpu", batch: int = 500) -> torch.Tensor:
    """How many of the stacked-MNIST images x read as each digit triple: (1000,) int64, index 100 r + 10 g + b
    (x as `read_channels` takes it)."""
    return triple_histogram(read_channels(x, device, batch)[0])


def triple_histogram(digits: torch.Tensor) -> torch.Tensor:
    """(1000,) int64 counts of the (N, 3) channel digits' triples, index 100 r + 10 g + b."""
    return torch.bincount((digits * torch.tensor([100, 10, 1])).sum(1), minlength=TRIPLES)


def channel_counts(counts):
    """(R, G, B): each channel's digit counts, (10,) each, from the 1,000 triple counts (index 100 r + 10 g + b);
    a torch tensor or a numpy array alike."""
    cube = counts.reshape(10, 10, 10)  # (red, green, blue)
    return cube.sum((1, 2)), cube.sum((0, 2)), cube.sum((0, 1))


def triple_coverage(counts: torch.Tensor) -> dict:
    """Modes captured (triples read at least once, of 1,000), reverse KL against uniform, and the counts."""
    return {"modes": int((counts > 0).sum()), "reverse_kl": reverse_kl(counts), "triple_counts": counts.tolist()}


def triples_provenance(n_gen: int, seed: int, device="cpu") -> dict:
    """The mode count's network is the MNIST-5k evaluator, its reference the 1,000 triples (no real images)."""
    return {"evaluator": f"{DIGIT_READER} per channel", "weights_sha256": _digit_reader(str(device))[1],
            "reference": f"{STACKED}:triples", "data_fingerprint": None, "n_real": 0, "n_gen": int(n_gen),
            "seed": int(seed)}


def score_images(x: torch.Tensor, labels, data, scorer, seed: int, device="cpu") -> dict:
    """The metrics of images x (uint8 levels or [-1, 1] floats) against `data`, with their provenance.

    `scorer`'s (an ImageScorer, or None), and for stacked-mnist the triples. With both, the provenance
    is the scorer's and names the mode counter as `mode_counter`.
    """
    out = scorer.score(x, labels, seed=seed) if scorer is not None else {}
    if data.name == STACKED:
        counted = triples_provenance(len(x), seed, device)
        provenance = out.pop("provenance", None)
        if provenance is not None:
            provenance["mode_counter"] = f"{counted['evaluator']} {counted['weights_sha256'][:16]}"
        out.update(triple_coverage(triple_counts(x, device)), provenance=provenance or counted)
    return out


_REAL_NN: dict[tuple, torch.Tensor] = {}  # per (data fingerprint, class): real images' nearest-other distances


def _nearest(rows: torch.Tensor, real: torch.Tensor, exclude_self: bool = False, chunk: int = 1000) -> torch.Tensor:
    """(len(rows),) L2 distance from each row to its nearest row of `real` (itself left out when rows is real)."""
    out = []
    for i in range(0, len(rows), chunk):
        d = torch.cdist(rows[i:i + chunk], real)  # (chunk, N)
        if exclude_self:
            d[torch.arange(len(d)), torch.arange(i, i + len(d))] = math.inf
        out.append(d.min(1).values)
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def copying(x: torch.Tensor, data, chunk: int = 1000) -> dict:
    """Does G copy its training set? x: samples (n, C, H, W) in [-1, 1].

    The median L2 distance (pixels in [-1, 1]) from each sample to its nearest
    training image, and the same median for the training images themselves, each to its nearest *other* one:
    a fresh real image sits about that far from the set. nn_ratio = the first over the second; a generator
    that memorises scores far below 1. {} for sets over COPY_MAX_REAL images (the all-pairs cost).
    """
    if data.kind != "image" or len(data) > COPY_MAX_REAL:
        return {}
    real = data.images().cpu().flatten(1)  # (N, D)
    gen = x.float().cpu().flatten(1)  # (n, D)
    fake_nn = _nearest(gen, real, chunk=chunk).median().item()
    real_nn = _nearest(real, real, exclude_self=True, chunk=chunk).median().item()
    return {"nn_median": fake_nn, "nn_real_median": real_nn, "nn_ratio": fake_nn / real_nn}


@torch.no_grad()
def copy_ratio(x: torch.Tensor, labels, data) -> dict:
    """The copying check of an evaluation: {"copy_ratio": median distance from a sample to its nearest training
    image / the same median for real images (each to its nearest other one)}. Class-matched when the samples were
    made for classes (each against the training images of its class: 1s sit far closer together than 8s, so an
    unmatched mix misleads). About 1 or above: no sign of copying; well below 1: samples sit closer to training
    images than real images do to each other. {} for points, and for sets over COPY_MAX_REAL images."""
    if data.kind != "image" or len(data) > COPY_MAX_REAL:
        return {}
    from .evaluator import fingerprint

    real = data.images().cpu().flatten(1)  # (N, D)
    step = max(1, len(x) // COPY_MAX_GEN)  # a spread-out subset: the median needs no more
    gen = x[::step].float().cpu().flatten(1)  # (n, D)
    labels = labels[::step] if labels is not None else None
    matched = labels is not None and data.y is not None
    classes = labels.cpu().unique().tolist() if matched else [None]
    fake_nn, real_nn = [], []
    for c in classes:
        real_c = real if c is None else real[data.y.cpu() == c]
        if len(real_c) < 2:
            continue
        key = (fingerprint(data), c)
        if key not in _REAL_NN:  # a property of the data alone: once per process
            _REAL_NN[key] = _nearest(real_c, real_c, exclude_self=True)
        real_nn.append(_REAL_NN[key])
        fake_nn.append(_nearest(gen if c is None else gen[labels.cpu() == c], real_c))
    yardstick = torch.cat(real_nn).median().item() if real_nn else 0.0
    if not fake_nn or yardstick == 0:  # no class with two images, or most images duplicated: no yardstick
        return {}
    return {"copy_ratio": torch.cat(fake_nn).median().item() / yardstick}


@torch.no_grad()
def nearest_training_images(image: torch.Tensor, data, k: int = 8, label: int | None = None):
    """The k training images nearest to `image` (C, H, W) in [-1, 1] by pixel L2, among those of class `label`
    when given: (indices into data, distances), nearest first."""
    real = data.images().cpu().flatten(1)
    pool = torch.arange(len(real)) if label is None or data.y is None else torch.nonzero(data.y.cpu() == label)[:, 0]
    d = torch.cdist(image.float().cpu().flatten()[None], real[pool])[0]
    best = d.topk(min(k, len(pool)), largest=False)
    return pool[best.indices], best.values


@torch.no_grad()
def evaluate(G, z_dim: int, data, conditional: bool, n: int = 0, seed: int = 0, scorer=None,
             device="cpu", check_copying: bool = False) -> dict:
    """The metrics that exist for this data, from n fixed-seed samples of G, with their provenance.

    n: 0 = `default_n(data)`. Conditional samples are balanced over the classes. Images need `scorer`
    (an image_metrics.ImageScorer); without one they get {}, except stacked-mnist, which always gets its
    mode count (`score_images`).
    Generated images are rounded to 8-bit levels first, as saved samples are, so a run and an .npz
    exported from it score the same. check_copying adds `copying`'s nearest-neighbour distances (images).
    """
    n = n or default_n(data)
    if data.kind == "image" and scorer is None and data.name != STACKED:
        return {}
    labels = balanced_labels(n, data.num_classes) if conditional else None
    x = generate(G, z_dim, n, labels, seed=seed, device=device)  # (n, ...) float on the CPU
    if data.kind == "points":
        return {**mode_coverage(x, data.modes.cpu(), data.sigma), "provenance": points_provenance(data, n, seed)}
    x = quantize(x).float() / 127.5 - 1  # (n, C, H, W) on the 8-bit grid
    out = {**score_images(x, labels, data, scorer, seed, device), **copy_ratio(x, labels, data)}
    return {**out, **copying(x, data)} if check_copying else out


# ---------------------------------------------------------------- scoring from outside the trainer
def score_run(run_dir, n: int = 0, step=None, seed: int = 0, on_skip=None) -> dict:
    """`gancore eval RUN_DIR`: the metrics of a run's checkpoint (latest that loads, a step, or "best") as one dict.

    on_skip(message): told about each unreadable checkpoint newer than the one scored (default: a warning).
    """
    from . import runs
    from .image_metrics import scorer_or_why
    from .sample import generator_from_state, open_run_for_sampling, warn
    from .setup import load_and_resolve

    run = open_run_for_sampling(run_dir)
    step, state = runs.read_checkpoint(run.path, step, on_skip or warn)
    # scored on the CPU whatever the run trained on (autocast does not apply to scoring)
    cfg, data = load_and_resolve(dict(run.config, device="cpu", precision="fp32"), source=str(run.path / "config.json"))
    G = generator_from_state(state, run.config, run.data_info)
    scorer = scorer_or_why(data, cfg.fid_backend)[0] if data.kind == "image" else None
    return {"run": str(run_dir), "step": step,
            **evaluate(G, cfg.z_dim, data, runs.is_conditional(run.config), n, seed, scorer,
                       check_copying=True)}


def score_npz(path, dataset: str, data_path=None, image_size: int = 0, channels: int = 0, n: int = 0,
              seed: int = 0, backend: str = "evaluator") -> dict:
    """`gancore eval --npz FILE`: images from anywhere scored against `dataset`, on the same footing as runs.

    FILE holds `images` uint8 (N, H, W, C) (or (N, H, W)) and optionally `labels` int (N,): the class
    each image was made for, -1 throughout for unconditional samples (as `gancore sample` writes).
    """
    import numpy as np

    from .data import load_dataset
    from .errors import DataError
    from .image_metrics import scorer_or_why

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
    return {"npz": str(path), "dataset": dataset, **score_images(x, y, data, scorer_or_why(data, backend)[0], seed),
            **copying(x, data)}
