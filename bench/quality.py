"""Quality of the defaults and of every preset, measured end to end through the CLI.

    python bench/quality.py [--parts ring grid presets mnist] [--seeds 0 1 2] [--out bench-out]

ring:    `train --dataset ring --steps 3000` (defaults otherwise), per seed.
grid:    `train --dataset grid` (defaults otherwise), per seed.
presets: `train --preset NAME` for every preset at its full size (2-D presets per seed).
mnist:   `train --dataset mnist-5k --conditioning concat` (defaults), then `sample --label k` for every k
         into <out>/mnist-label-<k>.png to look at.
2-D rows: modes captured (of 8 or 25) and high-quality share of 2,500 samples (PacGAN/VEEGAN
protocol, metrics.py) at the last step, and reverse KL of the mode histogram. Image rows: FID with
the project's evaluator and conditional accuracy at the last evaluation (2,000 samples), wall time;
look at the saved grids too.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from gancore.presets import PRESETS  # noqa: E402
from gancore.runs import read_metrics, sample_grids  # noqa: E402


def gancore(*args, env):
    out = subprocess.run([sys.executable, "-m", "gancore", *map(str, args)], env=env, cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return out.stdout.strip().splitlines()[-1]


def train_row(label, args, seed, env, out):
    t0 = time.time()
    run = gancore("train", *args, "--seed", seed, env=env)
    wall = time.time() - t0
    records = read_metrics(run)
    evals = [r for r in records if "modes" in r]
    config = json.loads((Path(run) / "config.json").read_text())
    if evals:
        e = evals[-1]
        n_modes = 8 if config["dataset"] == "ring" else 25
        quality = f"{e['modes']}/{n_modes} | {e['hq_share']:.3f} | {e['reverse_kl']:.3f}"
    else:  # images: the last evaluation's FID (project evaluator) and conditional accuracy
        scored = [r for r in records if "fid" in r]
        e = scored[-1] if scored else {}
        acc = f"cond. acc. {e['cond_acc']:.3f}" if "cond_acc" in e else ""
        quality = f"FID {e['fid']:.2f} | {acc} | " if e else "no evaluator | | "
    grid = sample_grids(run)[max(sample_grids(run))]
    name = f"{label.replace(' ', '_')}-seed{seed}.png"
    shutil.copy(grid, out / name)
    print(f"| {label} | {seed} | {config['steps']} | {quality} | {wall:.0f} | {name} |", flush=True)
    return run


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", default=["ring", "grid", "presets", "mnist"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--presets", nargs="+", default=list(PRESETS), help="which presets (default: all)")
    p.add_argument("--out", default="bench-out")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    env = dict(os.environ, GANCORE_RUNS=tempfile.mkdtemp(prefix="gancore-bench-"), PYTHONPATH=str(ROOT))

    print("| run | seed | steps | modes / FID | high-quality share / cond. acc. | reverse KL | wall s | last grid |")
    print("|---|---|---|---|---|---|---|---|")
    if "ring" in args.parts:
        for seed in args.seeds:
            train_row("ring defaults", ["--dataset", "ring", "--steps", 3000], seed, env, out)
    if "grid" in args.parts:
        for seed in args.seeds:
            train_row("grid defaults", ["--dataset", "grid"], seed, env, out)
    if "presets" in args.parts:
        for name in args.presets:
            fields = PRESETS[name]
            seeds = args.seeds if fields["dataset"] in ("ring", "grid") else args.seeds[:1]
            for seed in seeds:
                train_row(f"preset {name}", ["--preset", name], seed, env, out)
    if "mnist" in args.parts:
        run = train_row("mnist-5k concat defaults", ["--dataset", "mnist-5k", "--conditioning", "concat"],
                        args.seeds[0], env, out)
        for k in range(10):
            gancore("sample", run, "--n", 16, "--label", k, "--seed", 0, "--out", out / f"mnist-label-{k}.png", env=env)
        print(f"\nper-label samples: {out}/mnist-label-<k>.png")


if __name__ == "__main__":
    main()
