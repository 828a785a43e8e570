"""Quality of the default configs, measured end to end through the CLI.

    python bench/quality.py [--seeds 0 1 2] [--skip-mnist]

1. `python -m gancore train --dataset ring --steps 3000` (defaults otherwise), per seed: modes
   captured and high-quality share of 2,500 samples (PacGAN/VEEGAN protocol), wall time.
2. `python -m gancore train --dataset mnist-5k --conditioning concat` (defaults): wall time, then
   `sample --label k` for every k into bench-out/mnist-label-<k>.png to look at.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from gancore.runs import read_metrics  # noqa: E402


def gancore(*args, env):
    out = subprocess.run([sys.executable, "-m", "gancore", *map(str, args)], env=env, cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return out.stdout.strip().splitlines()[-1]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--skip-mnist", action="store_true")
    p.add_argument("--out", default="bench-out")
    args = p.parse_args()
    root = tempfile.mkdtemp(prefix="gancore-bench-")
    env = dict(os.environ, GANCORE_RUNS=root, PYTHONPATH=str(ROOT))

    print("| run | seed | modes (of 8) | high-quality share | wall s |")
    print("|---|---|---|---|---|")
    for seed in args.seeds:
        t0 = time.time()
        run = gancore("train", "--dataset", "ring", "--steps", 3000, "--seed", seed, env=env)
        last = [r for r in read_metrics(run) if "modes" in r][-1]
        print(f"| ring, defaults, 3000 steps | {seed} | {last['modes']} | {last['hq_share']:.3f} | {time.time() - t0:.0f} |",
              flush=True)

    if not args.skip_mnist:
        t0 = time.time()
        run = gancore("train", "--dataset", "mnist-5k", "--conditioning", "concat", env=env)
        wall = time.time() - t0
        out = Path(args.out)
        out.mkdir(exist_ok=True)
        for k in range(10):
            gancore("sample", run, "--n", 16, "--label", k, "--seed", 0, "--out", out / f"mnist-label-{k}.png", env=env)
        print(f"\nmnist-5k, conditioning concat, defaults: {wall:.0f} s wall (train command end to end); "
              f"grids per label in {out}/")


if __name__ == "__main__":
    main()
