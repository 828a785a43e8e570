"""Tests for gancore.data: every loader on tiny files written here, and every bad input it must reject."""

import gzip
import math
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from gancore.catalogue import DATASETS, EMBEDDED, NEEDS_PATH
from gancore.data import Dataset, load_dataset
from gancore.errors import DataError


# ---- helpers that write tiny inputs ---------------------------------------------------------------

def png(path, size=(4, 4), mode="L", value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value).save(path)
    return path


def class_folder(root, mode="L"):
    """2 classes x 3 images; class "a" is black, class "b" white."""
    for cls, value in (("a", 0), ("b", 255 if mode == "L" else (255, 255, 255))):
        for i in range(3):
            png(root / cls / f"{i}.png", mode=mode, value=value)
    return root


def write_idx(path, array, magic):
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def mnist_dir(root, n=6, gz=False, labels=None):
    root.mkdir(exist_ok=True)
    ext = ".gz" if gz else ""
    images = np.arange(n * 28 * 28).reshape(n, 28, 28) % 256
    write_idx(root / f"train-images-idx3-ubyte{ext}", images, 0x803)
    write_idx(root / f"train-labels-idx1-ubyte{ext}", np.array(labels or list(range(n))), 0x801)
    return root


def cifar_batch(path, labels):
    data = np.zeros((len(labels), 3072), np.uint8)
    data[:, :1024] = 255  # red plane full, green and blue empty
    with open(path, "wb") as f:
        pickle.dump({b"data": data, b"labels": list(labels)}, f)


def raises_naming(target, **kwargs):
    """Assert load_dataset raises a one-line DataError whose message names `target`."""
    with pytest.raises(DataError) as info:
        load_dataset(**kwargs)
    msg = str(info.value)
    assert str(target) in msg and "\n" not in msg, msg
    return msg


# ---- names and embedded sets ----------------------------------------------------------------------

def test_name_lists():
    assert set(EMBEDDED) | set(NEEDS_PATH) == set(DATASETS) and not set(EMBEDDED) & set(NEEDS_PATH)


def test_unknown_name_lists_valid_names():
    with pytest.raises(DataError, match="mnist-5k.*cifar10"):
        load_dataset("imagenet")


@pytest.mark.parametrize("name", NEEDS_PATH)
def test_needs_path(name, tmp_path):
    with pytest.raises(DataError, match=name):
        load_dataset(name)
    raises_naming(tmp_path / "nope", name=name, path=str(tmp_path / "nope"))


def test_mnist_5k():
    ds = load_dataset("mnist-5k")
    assert ds.x.shape == (5000, 1, 28, 28) and ds.x.dtype == torch.uint8  # stored as 8-bit levels
    assert ds.images().dtype == torch.float32 and ds.images().min() == -1 and ds.images().max() == 1
    assert ds.y.dtype == torch.int64 and ds.y.shape == (5000,) and set(ds.y.tolist()) == set(range(10))
    assert ds.num_classes == 10 and ds.class_names == [str(i) for i in range(10)]
    assert ds.kind == "image" and ds.shape == (1, 28, 28) and ds.modes is None and ds.sigma == 0.0


def test_digits_default_and_options():
    ds = load_dataset("digits")
    assert ds.x.shape == (1797, 1, 16, 16) and ds.num_classes == 10
    assert ds.x.dtype == torch.float32  # 17 levels upsampled: not on the 8-bit grid, so kept as floats
    assert ds.x.min() >= -1 and ds.x.max() <= 1 and ds.x.min() == -1
    assert load_dataset("digits", image_size=8).x.max() == 1  # native 8x8: 16 maps to exactly 1
    assert load_dataset("digits", image_size=32, channels=3).shape == (3, 32, 32)


def test_ring_modes_and_pool():
    ds = load_dataset("ring")
    angles = torch.atan2(ds.modes[:, 1], ds.modes[:, 0]) % (2 * math.pi)
    expected = torch.arange(8) * (2 * math.pi / 8)
    assert torch.allclose(angles, expected, atol=1e-5)
    assert torch.cdist(ds.modes, ds.modes).add(torch.eye(8)).min() > 0.7  # all 8 distinct
    assert ds.x.shape == (100_000, 2) and ds.kind == "points" and ds.shape == (2,)
    assert ds.num_classes == 8 and ds.class_names[0] == "mode 0" and ds.sigma == 0.01
    dist = (ds.x - ds.modes[ds.y]).norm(dim=1)  # Rayleigh distributed: mean sigma * sqrt(pi / 2)
    assert dist.mean().item() == pytest.approx(0.01 * math.sqrt(math.pi / 2), rel=0.02)
    assert torch.bincount(ds.y).min() > 11_000  # every mode used about equally


def test_grid_and_seed():
    ds = load_dataset("grid", seed=1)
    assert ds.modes.shape == (25, 2) and ds.num_classes == 25 and ds.sigma == 0.05
    assert sorted(set(ds.modes.flatten().tolist())) == [-4, -2, 0, 2, 4]
    assert len({tuple(m) for m in ds.modes.tolist()}) == 25
    dist = (ds.x - ds.modes[ds.y]).norm(dim=1)
    assert dist.mean().item() == pytest.approx(0.05 * math.sqrt(math.pi / 2), rel=0.02)
    assert torch.equal(load_dataset("grid", seed=1).x, ds.x)
    assert not torch.equal(load_dataset("grid", seed=2).x, ds.x)


# ---- batch() and to() ------------------------------------------------------------------------------

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_batch_on_device_and_reproducible(device):
    ds = load_dataset("ring").to(device)
    assert ds.x.device.type == device and ds.y.device.type == device and ds.modes.device.type == device
    x, y = ds.batch(64, torch.Generator(device).manual_seed(3))
    assert x.shape == (64, 2) and y.shape == (64,) and x.device.type == device
    assert torch.allclose(ds.modes[y], x, atol=0.1)  # labels travel with their points
    x2, y2 = ds.batch(64, torch.Generator(device).manual_seed(3))
    assert torch.equal(x, x2) and torch.equal(y, y2)


def test_batch_unlabelled(tmp_path):
    for i in range(3):
        png(tmp_path / f"{i}.png")
    x, y = load_dataset("folder", str(tmp_path)).batch(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 4, 4) and y is None


# ---- folder ----------------------------------------------------------------------------------------

def test_folder_classes(tmp_path):
    ds = load_dataset("folder", str(class_folder(tmp_path)))
    assert ds.x.shape == (6, 1, 4, 4) and ds.class_names == ["a", "b"] and ds.num_classes == 2
    assert ds.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert (ds.images()[:3] == -1).all() and (ds.images()[3:] == 1).all()  # 0 -> -1, 255 -> 1


def test_folder_resize_and_channels(tmp_path):
    class_folder(tmp_path)
    assert load_dataset("folder", str(tmp_path), image_size=8).x.shape == (6, 1, 8, 8)
    rgb = load_dataset("folder", str(tmp_path), channels=3).images()
    assert rgb.shape == (6, 3, 4, 4) and (rgb[3:] == 1).all()


def test_folder_rgb_native_and_to_gray(tmp_path):
    for i in range(2):
        png(tmp_path / f"{i}.png", mode="RGB", value=(255, 0, 0))
    ds = load_dataset("folder", str(tmp_path))
    assert ds.x.shape == (2, 3, 4, 4) and ds.y is None and ds.num_classes == 0 and ds.class_names == []
    assert ds.images()[:, 0].eq(1).all() and ds.images()[:, 1].eq(-1).all()
    gray = load_dataset("folder", str(tmp_path), channels=1).images()
    assert gray.shape == (2, 1, 4, 4)
    assert gray[0, 0, 0, 0].item() == pytest.approx(round(0.299 * 255) / 127.5 - 1)  # PIL luminance


def test_folder_16bit_gray_keeps_full_range(tmp_path):
    a = np.full((4, 4), 65535, np.uint16)
    a[0, 0] = 0
    Image.fromarray(a).save(tmp_path / "0.png")  # opens as mode "I;16"
    x = load_dataset("folder", str(tmp_path)).images()
    assert x.shape == (1, 1, 4, 4) and x[0, 0, 0, 0] == -1 and x[0, 0, 0, 1] == 1


def test_folder_skips_hidden_and_loose_files(tmp_path):
    class_folder(tmp_path)
    (tmp_path / "a" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / "README.txt").write_text("class folders a and b")
    (tmp_path / ".hidden").mkdir()
    assert len(load_dataset("folder", str(tmp_path)).x) == 6


def test_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    raises_naming(empty, name="folder", path=str(empty))

    nested = class_folder(tmp_path / "nested")
    (nested / "c").mkdir()
    raises_naming(nested / "c", name="folder", path=str(nested))

    bad = tmp_path / "bad"
    png(bad / "0.png")
    (bad / "notes.txt").write_text("not an image")
    assert "not a readable image" in raises_naming(bad / "notes.txt", name="folder", path=str(bad))

    mixed = tmp_path / "mixed"
    png(mixed / "0.png", size=(4, 4))
    png(mixed / "1.png", size=(6, 6))
    msg = raises_naming(mixed / "1.png", name="folder", path=str(mixed))
    assert "0.png" in msg and "4x4" in msg and "6x6" in msg and "image_size" in msg
    assert load_dataset("folder", str(mixed), image_size=5).x.shape == (2, 1, 5, 5)

    wide = tmp_path / "wide"
    png(wide / "0.png", size=(6, 4))
    assert "image_size" in raises_naming(wide / "0.png", name="folder", path=str(wide))

    a_file = png(tmp_path / "x.png")
    raises_naming(a_file, name="folder", path=str(a_file))


# ---- npz -------------------------------------------------------------------------------------------

def test_npz_uint8_images_with_labels(tmp_path):
    x = np.zeros((4, 5, 5), np.uint8)
    x[1] = 255
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0, 2, 2, 1]))
    ds = load_dataset("npz", str(tmp_path / "d.npz"))
    assert ds.x.shape == (4, 1, 5, 5) and (ds.images()[0] == -1).all() and (ds.images()[1] == 1).all()
    assert ds.y.tolist() == [0, 2, 2, 1] and ds.num_classes == 3 and ds.class_names == ["0", "1", "2"]


def test_npz_channels_last_and_float(tmp_path):
    x = np.zeros((2, 4, 4, 3), np.float32)
    x[..., 0] = 1.0  # red channel, channels-last as gancore's sample output
    np.savez(tmp_path / "d.npz", x=x)
    ds = load_dataset("npz", str(tmp_path / "d.npz"), image_size=8)
    assert ds.x.shape == (2, 3, 8, 8) and ds.y is None
    assert ds.x.dtype == torch.float32  # float images are kept as floats, not rounded to 8 bits
    assert (ds.x[:, 0] == 1).all() and (ds.x[:, 1] == 0).all()


def test_npz_points(tmp_path):
    pts = np.random.default_rng(0).normal(0, 10, (50, 2))
    np.savez(tmp_path / "p.npz", x=pts)
    ds = load_dataset("npz", str(tmp_path / "p.npz"))
    assert ds.kind == "points" and ds.x.dtype == torch.float32 and ds.modes is None and ds.sigma == 0.0
    assert torch.allclose(ds.x, torch.from_numpy(pts).float())


def test_npz_errors(tmp_path):
    p = tmp_path / "d.npz"
    images = np.zeros((3, 4, 4), np.uint8)
    cases = [
        (dict(y=np.array([0, 1])), "no array 'x'"),
        (dict(x=images, y=np.array([0, -1, 1])), "labels out of range"),
        (dict(x=images, y=np.array([0, 1])), "2 labels for 3 samples"),
        (dict(x=np.linspace(0, 2.5, 48, dtype=np.float32).reshape(3, 4, 4)), "found 0..2.5"),
        (dict(x=np.zeros((3, 4, 4, 2), np.uint8)), "shape"),
    ]
    for arrays, message in cases:
        np.savez(p, **arrays)
        assert message in raises_naming(p, name="npz", path=str(p))
    p.write_text("not a zip")
    raises_naming(p, name="npz", path=str(p))


# ---- MNIST-format IDX ------------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True])
def test_idx_plain_and_gz(tmp_path, gz):
    ds = load_dataset("mnist", str(mnist_dir(tmp_path, gz=gz)))
    assert ds.x.shape == (6, 1, 28, 28) and ds.y.tolist() == list(range(6))
    assert ds.images()[0, 0, 0, 0] == -1 and ds.images()[0, 0, 9, 3] == 1  # pixel 255 = row 9, column 3
    assert ds.num_classes == 10 and ds.class_names[9] == "9"


def test_fashion_mnist_names_and_resize(tmp_path):
    ds = load_dataset("fashion-mnist", str(mnist_dir(tmp_path)), image_size=32, channels=3)
    assert ds.x.shape == (6, 3, 32, 32) and ds.class_names[0] == "T-shirt/top"
    assert ds.class_names[9] == "Ankle boot" and len(ds.class_names) == 10


def test_idx_errors(tmp_path):
    labels = mnist_dir(tmp_path / "label12", labels=[0, 1, 12, 3, 4, 5]) / "train-labels-idx1-ubyte"
    assert "labels out of range" in raises_naming(labels, name="mnist", path=str(labels.parent))

    root = mnist_dir(tmp_path / "magic")
    images = write_idx(root / "train-images-idx3-ubyte", np.zeros((6, 28, 28)), 0x801)
    assert "magic" in raises_naming(images, name="mnist", path=str(root))

    root = mnist_dir(tmp_path / "short")
    images = root / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-10])
    assert "truncated" in raises_naming(images, name="mnist", path=str(root))

    root = mnist_dir(tmp_path / "count")
    labels = write_idx(root / "train-labels-idx1-ubyte", np.zeros(5), 0x801)
    raises_naming(labels, name="mnist", path=str(root))

    root = mnist_dir(tmp_path / "missing")
    (root / "train-labels-idx1-ubyte").unlink()
    raises_naming("train-labels-idx1-ubyte", name="mnist", path=str(root))


# ---- CIFAR-10 --------------------------------------------------------------------------------------

def test_cifar10(tmp_path):
    cifar_batch(tmp_path / "data_batch_1", [0, 1, 2])
    cifar_batch(tmp_path / "data_batch_2", [9, 8])
    ds = load_dataset("cifar10", str(tmp_path))
    assert ds.x.shape == (5, 3, 32, 32) and ds.y.tolist() == [0, 1, 2, 9, 8]
    assert (ds.images()[:, 0] == 1).all() and (ds.images()[:, 1:] == -1).all()  # channel-major: red plane first
    assert ds.class_names[0] == "airplane" and ds.num_classes == 10

    with open(tmp_path / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)
    assert load_dataset("cifar10", str(tmp_path)).class_names[3] == "c3"


def test_cifar10_errors(tmp_path):
    raises_naming(tmp_path, name="cifar10", path=str(tmp_path))  # no batches at all
    cifar_batch(tmp_path / "data_batch_1", [0, 10])
    msg = raises_naming(tmp_path / "data_batch_1", name="cifar10", path=str(tmp_path))
    assert "labels out of range" in msg
    (tmp_path / "data_batch_1").write_bytes(b"garbage")
    raises_naming(tmp_path / "data_batch_1", name="cifar10", path=str(tmp_path))


def test_dataset_is_plain_dataclass():
    ds = Dataset("t", torch.zeros(3, 2), None, 0, [], None, 0.0)
    assert ds.kind == "points" and len(ds) == 3 and ds.to("cpu").x.shape == (3, 2)
