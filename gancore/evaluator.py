"""The project's own evaluator classifiers: the default feature extractor behind FID/KID/IS.

Fast, offline and right for any labelled data (Inception FID, for comparison with papers, is the other
backend), image metrics use a small CNN trained on the data itself: its penultimate features (like
Inception's pool3) feed FID and KID, its logits feed the Inception-Score analogue and conditional
accuracy. A score is only meaningful together with the
evaluator that produced it, so every evaluator carries a report: held-out accuracy, the split that
measured it, the fingerprint of the data it was trained on, and the sha256 of its weights.

- Embedded labelled sets (`mnist-5k`, `digits`) ship trained weights in `gancore/evaluators/`,
  written by `scripts/train_evaluators.py`.
- Other labelled image data gets one trained on first use and cached by data fingerprint
  (`evaluator_for`).

Files are a plain `torch.save` dict of tensors and plain types, loadable with `weights_only=True`.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from gancore.data import CACHE_HOME, Dataset, as_float, cache_root  # cache_root: re-exported, its old home
from gancore.errors import GancoreError
from gancore.runs import locked, torch_save_atomic

SHIPPED_DIR = Path(__file__).resolve().parent / "evaluators"
# the weights in SHIPPED_DIR: file stem -> load_dataset arguments of the data it was trained on
SHIPPED = {"mnist-5k": dict(name="mnist-5k"), "digits": dict(name="digits"),
           "mnist-5k-32px": dict(name="mnist-5k", image_size=32)}  # 32 px: what progressive growing trains on
FILE_FORMAT = 1                       # bump when the file layout or the architecture changes
DEFAULT_EPOCHS = 15                   # enough for >= 97 % held-out accuracy on mnist-5k and digits
DEFAULT_CACHE = CACHE_HOME / "evaluators"  # when $GANCORE_CACHE is not set
_HASH_CHUNK = 1 << 22                 # float32 values hashed at a time (16 MiB): a big set never exists as floats


class EvaluatorError(GancoreError):
    """No evaluator exists for this data, or an evaluator file is unusable; the message says which."""


class Evaluator(nn.Module):
    """A small CNN classifier for (N, C, H, W) images in [-1, 1].

    Three conv stages (two of them halve the resolution), then a global average: the average of
    the last ReLU map is the feature vector, as Inception's pool3 is for FID. Global pooling makes
    one architecture fit 16-64 px; batch norm is used in eval mode only when scoring, so features
    of a sample never depend on what else is in its batch.
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, width: int = 32):
        super().__init__()
        c, h, w = input_shape
        if min(h, w) < 8:
            raise EvaluatorError(f"evaluator needs images of at least 8x8 pixels, got {h}x{w}")
        if num_classes < 2:
            raise EvaluatorError(f"evaluator needs at least 2 classes, got {num_classes}")
        self.input_shape = (int(c), int(h), int(w))
        self.num_classes = int(num_classes)
        self.width = int(width)
        self.num_features = 4 * width

        def stage(c_in, c_out):
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.body = nn.Sequential(
            *stage(c, width), nn.MaxPool2d(2),              # (N, w, H/2, W/2)
            *stage(width, 2 * width), nn.MaxPool2d(2),      # (N, 2w, H/4, W/4)
            *stage(2 * width, 4 * width),                   # (N, 4w, H/4, W/4)
        )
        self.dropout = nn.Dropout(0.3)  # on features, training only: keeps them from co-adapting
        self.classifier = nn.Linear(self.num_features, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [-1, 1] -> (N, num_features) non-negative penultimate features."""
        return self.body(x).mean(dim=(2, 3))  # (N, F)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [-1, 1] -> (N, num_classes) logits."""
        return self.classifier(self.dropout(self.features(x)))


def fingerprint(data: Dataset) -> str:
    """A short hash of the data's content (its float32 samples and labels, and their shapes): equal data,
    equal fingerprint.

    The floats are hashed as `data.images()` gives them, chunk by chunk (the same bytes in the same
    order as hashing them whole), so uint8 storage hashes as the float32 it stands for and a set
    larger than memory never exists as floats. The name is left out on purpose: the same images
    loaded as `folder` or `npz` are the same data, while `mnist-5k` resized to 32 px is not.
    """
    h = hashlib.sha256()
    h.update(f"x{(len(data), *data.shape)}".encode())
    rows = max(1, _HASH_CHUNK // max(1, math.prod(data.shape)))
    for start in range(0, len(data), rows):  # one expression: each chunk is freed before the next is made
        h.update(data.images(slice(start, start + rows)).detach().to("cpu", torch.float32).contiguous().numpy())
    if data.y is None:
        h.update(b"y:none")
    else:
        y = data.y.detach().to("cpu", torch.int64).contiguous()
        h.update(f"y{tuple(y.shape)}".encode())
        h.update(y.numpy().tobytes())
    return h.hexdigest()[:16]


def weights_sha256(model: nn.Module) -> str:
    """sha256 of the state dict (names, dtypes, shapes and bytes, in order): the evaluator's identity."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def heldout_split(n: int, seed: int = 0, holdout: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """(train_idx, holdout_idx), both sorted int64: a fixed random `holdout` share of range(n).

    Depends only on (n, seed, holdout), so metrics and tests can rebuild the exact split.
    """
    if not 0 < holdout < 1:
        raise EvaluatorError(f"holdout must be a fraction between 0 and 1, got {holdout}")
    n_hold = round(n * holdout)
    if n_hold < 1 or n_hold >= n:
        raise EvaluatorError(f"cannot hold out {holdout:.0%} of {n} samples and keep both parts non-empty")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[n_hold:].sort().values, perm[:n_hold].sort().values


def _shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by up to max_shift px in x and y; edges are replicated, not zero-filled,
    because 0 is mid-gray in [-1, 1] and would draw a frame the real data never has."""
    b, _, h, w = x.shape
    dy = torch.randint(0, 2 * max_shift + 1, (b, 1, 1), generator=gen)
    dx = torch.randint(0, 2 * max_shift + 1, (b, 1, 1), generator=gen)
    padded = F.pad(x, [max_shift] * 4, mode="replicate")  # (B, C, H+2s, W+2s)
    rows = torch.arange(h).view(1, h, 1) + dy             # (B, H, 1)
    cols = torch.arange(w).view(1, 1, w) + dx             # (B, 1, W)
    batch = torch.arange(b).view(b, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)


@torch.no_grad()
def accuracy(model: Evaluator, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Share of x (images in [-1, 1], or uint8 as a Dataset stores them) that `model` (put in eval mode)
    classifies as y."""
    model.eval()
    correct = sum(int((model(as_float(x[i:i + batch_size])).argmax(1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(x), batch_size))
    return correct / len(x)


def train_evaluator(data: Dataset, seed: int = 0, holdout: float = 0.2, epochs: int = DEFAULT_EPOCHS,
                    batch_size: int = 64, lr: float = 3e-3, log=print) -> tuple[Evaluator, dict]:
    """Train an Evaluator on labelled image data; returns (model in eval mode, report).

    Deterministic for a given seed on one machine: init, shuffling, augmentation and dropout all
    draw from RNGs seeded here, and the caller's global torch RNG is left as it was.
    """
    _check_trainable(data)
    start = time.perf_counter()
    y = data.y.detach().cpu()
    train_idx, hold_idx = heldout_split(len(data), seed, holdout)
    max_shift = max(1, round(min(data.shape[-2:]) / 14))  # 2 px at 28 px, 1 px at 16 px
    gen = torch.Generator().manual_seed(seed)

    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)  # init and dropout use the CPU's global RNG (not the GPUs')
        model = Evaluator(data.shape, data.num_classes)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        steps_per_epoch = -(-len(train_idx) // batch_size)
        # One-cycle: a fast warm-up then annealing to ~0 reaches a good optimum in few epochs.
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=epochs * steps_per_epoch)
        for epoch in range(epochs):
            model.train()
            order = train_idx[torch.randperm(len(train_idx), generator=gen)]
            total = 0.0
            for i in range(0, len(order), batch_size):
                idx = order[i:i + batch_size]
                xb = _shift(data.images(idx).cpu(), max_shift, gen)  # (B, C, H, W): floats per batch only
                loss = F.cross_entropy(model(xb), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
            if log and (epoch + 1 == epochs or (epoch + 1) % 5 == 0):
                log(f"evaluator {data.name}: epoch {epoch + 1}/{epochs} loss {total / len(order):.4f}")

    acc = accuracy(model, data.x[hold_idx].cpu(), y[hold_idx])  # as stored: accuracy() converts per batch
    report = dict(
        format=FILE_FORMAT,
        dataset=data.name,
        fingerprint=fingerprint(data),
        input_shape=list(data.shape),
        num_classes=data.num_classes,
        class_names=list(data.class_names),
        accuracy=acc,
        n_train=len(train_idx),
        n_holdout=len(hold_idx),
        seed=seed,
        holdout=holdout,
        epochs=epochs,
        weights_sha256=weights_sha256(model),
        seconds=round(time.perf_counter() - start, 1),
        torch=str(torch.__version__),  # a str subclass that weights_only refuses
    )
    if log:
        log(f"evaluator {data.name}: held-out accuracy {acc:.2%} on {len(hold_idx)} samples")
    return model, report


def _check_trainable(data: Dataset) -> None:
    if data.kind != "image":
        raise EvaluatorError(f"dataset {data.name!r} holds 2-D points; evaluators are for images "
                             f"(2-D data is scored by mode coverage)")
    if data.y is None or data.num_classes < 2:
        raise EvaluatorError(f"dataset {data.name!r} has no class labels (or only one class); an evaluator "
                             f"is a classifier and needs labelled data (class sub-folders, or y in the .npz)")


def save_evaluator(model: Evaluator, report: dict, path) -> None:
    """Write model and report to `path` atomically (temp file + rename), so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": FILE_FORMAT,
            "input_shape": list(model.input_shape), "num_classes": model.num_classes, "width": model.width,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            # through JSON: only plain types survive, which weights_only=True loading requires
            "report": json.loads(json.dumps(report))}
    torch_save_atomic(blob, path)


def load_evaluator(path) -> tuple[Evaluator, dict]:
    """(model in eval mode, report) from a file written by `save_evaluator`; the weights hash is checked."""
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise EvaluatorError(f"{path} does not exist") from None
    except Exception as e:  # a truncated zip, a pickle holding code, ...: all "not an evaluator file"
        raise EvaluatorError(f"{path} is not a readable evaluator file ({type(e).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != FILE_FORMAT:
        raise EvaluatorError(f"{path} is not an evaluator file of format {FILE_FORMAT}")
    model = Evaluator(tuple(blob["input_shape"]), blob["num_classes"], blob["width"])
    model.load_state_dict(blob["state_dict"])
    model.eval()
    report = blob["report"]
    if weights_sha256(model) != report.get("weights_sha256"):
        raise EvaluatorError(f"{path}: the weights do not match the sha256 in its report (corrupt or edited)")
    return model, report


def shipped_evaluator(stem: str) -> tuple[Evaluator, dict]:
    """An evaluator shipped in the package, by its file stem (a key of SHIPPED: "mnist-5k", "mnist-5k-32px" ...)."""
    path = SHIPPED_DIR / f"{stem}.pt"
    if stem not in SHIPPED or not path.is_file():
        have = sorted(p.stem for p in SHIPPED_DIR.glob("*.pt")) if SHIPPED_DIR.is_dir() else []
        raise EvaluatorError(f"no shipped evaluator {stem!r} (shipped: "
                             f"{', '.join(have) or 'none'}); train one with evaluator_for(data) "
                             f"or scripts/train_evaluators.py")
    return load_evaluator(path)


def evaluator_path(data: Dataset, cache_dir=None) -> Path:
    """Where `evaluator_for` caches the evaluator of data that has no shipped one."""
    return Path(cache_dir or cache_root() / "evaluators") / f"{fingerprint(data)}.pt"


def evaluator_for(data: Dataset, cache_dir=None, train_if_missing: bool = True,
                  epochs: int = DEFAULT_EPOCHS, log=print) -> tuple[Evaluator, dict]:
    """The evaluator for exactly this data: shipped, cached, or trained now and cached.

    An embedded set as loaded by default gets its shipped evaluator. Anything else (own data, or an
    embedded set resized or recoloured, whose fingerprint then differs) uses
    `<cache_dir>/<fingerprint>.pt`, default `cache_root()/evaluators`, trained on first use.
    """
    fp = fingerprint(data)
    for stem, spec in SHIPPED.items():  # an embedded set, natively or at a size some shipped weights were trained at
        if spec["name"] == data.name and (SHIPPED_DIR / f"{stem}.pt").is_file():
            model, report = shipped_evaluator(stem)
            if report["fingerprint"] == fp:
                return model, report

    path = evaluator_path(data, cache_dir)
    found, damaged = _cached_evaluator(path, fp)
    if found:
        return found
    _check_trainable(data)  # before train_if_missing: "no labels" is the more useful message
    if damaged and not train_if_missing:
        raise EvaluatorError(f"cached evaluator {damaged}; `python -m gancore train-evaluator --dataset ...` "
                             f"retrains and replaces it")
    if not train_if_missing:
        raise EvaluatorError(f"no evaluator cached for dataset {data.name!r} (fingerprint {fp}) in "
                             f"{path.parent}; train one with `python -m gancore train-evaluator --dataset ...` "
                             f"(or evaluator_for(data, train_if_missing=True))")
    # Trained once for every process that wants it (torchrun's ranks, runs launched together): the first to take
    # the lock trains and caches it, the others wait there (no collective timeout) and read the cache.
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path.with_name(path.name + ".lock")):
        found, damaged = _cached_evaluator(path, fp)
        if found:
            return found
        if damaged and log:
            log(f"evaluator {data.name}: cached {damaged}; retraining it")
        model, report = train_evaluator(data, epochs=epochs, log=log)
        save_evaluator(model, report, path)
    if log:
        log(f"evaluator {data.name}: saved to {path}")
    return model, report


def _cached_evaluator(path: Path, fp: str):
    """((model, report) or None, why the cached file is damaged or None)."""
    if not path.is_file():
        return None, None
    try:
        model, report = load_evaluator(path)
    except EvaluatorError as e:  # a torn or corrupt cache file: worth nothing, so it is retrained and replaced
        return None, str(e)
    if report.get("fingerprint") != fp:
        raise EvaluatorError(f"{path} was trained on data with fingerprint {report.get('fingerprint')}, "
                             f"not {fp}; delete it to retrain")
    return (model, report), None
