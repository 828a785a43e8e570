"""Memory and time of a 100,000-image 32x32 RGB .npz through gancore's data cache (issue 11).

    python bench/data_memory.py [--n 100000] [--batches 500] [--batch_size 64] [--keep DIR]

Writes an .npz of n random uint8 images with labels into a temporary directory (307 MB for the
default), then runs each phase in a fresh Python process, so that no phase's peak memory mixes
with another's (`resource.getrusage(RUSAGE_SELF).ru_maxrss`). The parent stays a small process that
imports neither numpy nor torch, and writes the .npz in a child too: Linux carries the parent's
high-water mark into a child's ru_maxrss across fork and exec.
- import:      python, torch and gancore imported, nothing loaded (the floor of every row)
- decode:      the first load_dataset("npz"): streamed out of the archive into the cache
- mapped:      the second load: the cached array memory-mapped
- batches:     the mapped set held (it fits): `batches` batches through data.loader(prefetch=2)
- streamed:    the same with GANCORE_DATA_IN_MEMORY_MB=0 (streamed from the map)
- no prefetch: streamed, prefetch=0 (each batch gathered when asked for)
- fingerprint: evaluator.fingerprint(data), hashed chunk by chunk as float32
- float32:     data.images(): the whole set as float32, what gancore stored before uint8 storage
- train:       gancore.train on the .npz, `train_steps` steps of the default DCGAN (batch 64, no evaluation)
- train streamed: the same with GANCORE_DATA_IN_MEMORY_MB=0
Also shown for each phase at its end: anonymous (private) RSS and file-backed RSS (pages of the
memory map, which the kernel shares between processes and may drop and re-read).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PHASES = ("import", "decode", "mapped", "batches", "streamed", "no prefetch", "fingerprint", "float32", "train",
          "train streamed")
STREAMED = ("streamed", "no prefetch", "train streamed")  # phases run with GANCORE_DATA_IN_MEMORY_MB=0


def write_npz(path: Path, n: int) -> None:
    """n random 32x32 RGB uint8 images (N, H, W, C) and labels 0..9, in 10,000-image blocks (one array in the end)."""
    import numpy as np

    rng = np.random.default_rng(0)
    x = np.empty((n, 32, 32, 3), np.uint8)
    for i in range(0, n, 10_000):
        x[i:i + 10_000] = rng.integers(0, 256, x[i:i + 10_000].shape, dtype=np.uint8)
    np.savez(path, x=x, y=np.arange(n) % 10)


def rss_now() -> dict:
    """Current anonymous and file-backed resident memory in MB (Linux), from /proc/self/status."""
    out = {}
    try:
        for line in open("/proc/self/status"):
            if line.startswith(("RssAnon:", "RssFile:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1000
    except OSError:
        pass
    return out


def run_phase(phase: str, npz: str, batches: int, batch_size: int, train_steps: int) -> dict:
    """One phase in this (fresh) process; seconds of the phase's own work, and what it drew."""
    import torch

    from gancore import evaluator
    from gancore.data import load_dataset

    result = {}
    start = time.perf_counter()
    if phase == "import":
        pass
    elif phase in ("decode", "mapped"):
        data = load_dataset("npz", npz)
        result["shape"] = [len(data), *data.shape]
    elif phase in ("batches", "streamed", "no prefetch"):
        data = load_dataset("npz", npz).to("cpu")
        result["streamed"] = data.streamed
        start = time.perf_counter()  # the load is the row above; this row times the batches
        with data.loader(batch_size, seed=0, prefetch=0 if phase == "no prefetch" else 2) as loader:
            for _ in range(batches):
                x, y = loader.next()
        assert x.dtype == torch.float32 and x.shape == (batch_size, 3, 32, 32)
        result["images_per_s"] = batches * batch_size / (time.perf_counter() - start)
    elif phase == "fingerprint":
        data = load_dataset("npz", npz)
        start = time.perf_counter()
        result["fingerprint"] = evaluator.fingerprint(data)
    elif phase == "float32":
        data = load_dataset("npz", npz)
        start = time.perf_counter()
        x = data.images()
        result["float32_mb"] = x.numel() * 4 / 1e6
    elif phase in ("train", "train streamed"):
        import gancore

        with tempfile.TemporaryDirectory() as runs_root:
            run = gancore.train({"dataset": "npz", "data_path": npz, "steps": train_steps, "batch_size": batch_size,
                                 "eval_every": 0, "sample_every": train_steps, "ckpt_every": train_steps,
                                 "device": "cpu", "runs_root": runs_root, "name": "bench"})
            result["state"] = gancore.load_run(run).status["state"]
    result["seconds"] = time.perf_counter() - start
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000  # KiB on Linux
    result.update(rss_now())
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000, help="images in the .npz")
    p.add_argument("--batches", type=int, default=500, help="batches drawn in the batch phases")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--train_steps", type=int, default=50, help="steps of the train phases")
    p.add_argument("--keep", help="write the .npz and the cache here (kept) instead of a temporary directory")
    p.add_argument("--phase", choices=("write",) + PHASES, help=argparse.SUPPRESS)  # a child: one phase
    p.add_argument("--npz", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.phase == "write":
        write_npz(Path(args.npz), args.n)
        return
    if args.phase:
        print(json.dumps(run_phase(args.phase, args.npz, args.batches, args.batch_size, args.train_steps)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        npz = work / "images.npz"
        start = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--phase", "write", "--npz", str(npz), "--n", str(args.n)],
                       check=True)
        print(f"wrote {npz} ({npz.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - start:.1f} s",
              file=sys.stderr)
        rows = []
        for phase in PHASES:
            env = dict(os.environ, GANCORE_CACHE=str(work / "cache"), PYTHONPATH=str(ROOT))
            env.pop("GANCORE_DATA_IN_MEMORY_MB", None)
            if phase in STREAMED:
                env["GANCORE_DATA_IN_MEMORY_MB"] = "0"
            out = subprocess.run([sys.executable, __file__, "--phase", phase, "--npz", str(npz),
                                  "--batches", str(args.batches), "--batch_size", str(args.batch_size),
                                  "--train_steps", str(args.train_steps)],
                                 env=env, capture_output=True, text=True, check=True)
            rows.append((phase, json.loads(out.stdout.strip().splitlines()[-1])))
            print(f"{phase}: {rows[-1][1]}", file=sys.stderr)

    uint8_mb, float_mb = args.n * 3 * 32 * 32 / 1e6, args.n * 3 * 32 * 32 * 4 / 1e6
    print(f"{args.n:,} images 32x32 RGB: uint8 {uint8_mb:,.0f} MB, float32 would be {float_mb:,.0f} MB; "
          f"{args.batches} batches of {args.batch_size}\n")
    print("| phase | seconds | peak RSS (MB) | anon RSS at end (MB) | file-backed RSS at end (MB) | note |")
    print("|---|---:|---:|---:|---:|---|")
    for phase, r in rows:
        note = ""
        if "images_per_s" in r:
            note = f"{r['images_per_s']:,.0f} images/s" + (", streamed" if r["streamed"] else ", held (fits)")
        elif phase == "fingerprint":
            note = r["fingerprint"]
        elif "state" in r:
            note = f"{args.train_steps} steps, {r['state']}"
        print(f"| {phase} | {r['seconds']:.2f} | {r['peak_rss_mb']:,.0f} | {r.get('RssAnon', 0):,.0f} | "
              f"{r.get('RssFile', 0):,.0f} | {note} |")


if __name__ == "__main__":
    main()
