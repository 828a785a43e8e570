"""Mode collapse on stacked MNIST: plain DCGAN vs packing (PacGAN) vs minibatch stddev, beside PacGAN Table 2.

    python bench/stacked_mnist.py [--steps 5000] [--seeds 0 1 2] [--configs plain pack2 pack3 pack4 mbstd]
                                  [--n_samples 26000] [--runs_root DIR]

Each row: `python -m gancore train --dataset stacked-mnist --steps S --seed K --eval_every 0 <config flags>`
(the DCGAN defaults otherwise, unconditional), timed, then `python -m gancore eval RUN --n N` on its last
checkpoint (the EMA generator): every channel of N samples read by the MNIST-5k evaluator, modes captured
of the 1,000 digit triples, and KL(generated triple histogram || uniform) (gancore/metrics.py). Training
runs without evaluations so that its wall time is training alone; the evaluation's seconds are their own
column. Runs go to a fresh temporary root unless --runs_root says otherwise.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = {  # name -> the flags that make it; the rest is the same DCGAN
    "plain": [],
    "pack2": ["--pack", "2"],
    "pack3": ["--pack", "3", "--batch_size", "63"],  # a batch must hold whole packs: 63, the multiple of 3 below 64
    "pack4": ["--pack", "4"],
    "mbstd": ["--mbstd", "true"],
}
# PacGAN (Lin et al. 2018) Table 2, stacked MNIST, 26,000 samples, mean ± standard error over 10 trials for
# their rows (the first from VEEGAN, Srivastava et al. 2017): (modes of 1,000, reverse KL)
PACGAN_TABLE_2 = [
    ("DCGAN (VEEGAN's figure)", "99.0", "3.40"),
    ("DCGAN (PacGAN's implementation)", "78.9 ± 6.46", "4.50 ± 0.127"),
    ("PacDCGAN2", "1000.0 ± 0.00", "0.06 ± 0.003"),
    ("PacDCGAN3", "1000.0 ± 0.00", "0.06 ± 0.003"),
    ("PacDCGAN4", "1000.0 ± 0.00", "0.07 ± 0.005"),
]


def gancore(*args, env) -> str:
    """Run `python -m gancore ARGS`; its last line of output (the run directory, or eval's JSON)."""
    out = subprocess.run([sys.executable, "-m", "gancore", *map(str, args)], env=env, cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"gancore {' '.join(map(str, args))} failed:\n{out.stderr.strip()}")
    return out.stdout.strip().splitlines()[-1]


def row(config: str, seed: int, steps: int, n: int, env) -> dict:
    t0 = time.time()
    run = gancore("train", "--dataset", "stacked-mnist", "--steps", steps, "--seed", seed, "--eval_every", 0,
                  "--name", f"stacked-{config}-s{seed}", *CONFIGS[config], env=env)
    train_s = time.time() - t0
    t0 = time.time()
    scores = json.loads(gancore("eval", run, "--n", n, "--seed", 0, env=env))
    eval_s = time.time() - t0
    return {"config": config, "seed": seed, "steps": steps, "modes": scores["modes"], "kl": scores["reverse_kl"],
            "train_s": train_s, "eval_s": eval_s, "run": run}


def mean_sd(values) -> str:
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5000, help="generator steps per run (default 5,000)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--n_samples", type=int, default=26_000, help="samples scored per run (the protocol: 26,000)")
    p.add_argument("--runs_root", help="where the runs go (default: a fresh temporary directory)")
    args = p.parse_args(argv)
    root = args.runs_root or tempfile.mkdtemp(prefix="gancore-stacked-")
    env = dict(os.environ, GANCORE_RUNS=root, PYTHONPATH=str(ROOT))
    print(f"stacked-mnist, {args.steps} steps, {args.n_samples:,} samples scored per run; runs under {root}\n")
    print("| config | seed | steps | modes (of 1,000) | KL | train s | eval s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows = []
    for config in args.configs:
        for seed in args.seeds:
            r = row(config, seed, args.steps, args.n_samples, env)
            rows.append(r)
            print(f"| {config} | {seed} | {r['steps']} | {r['modes']} | {r['kl']:.3f} | {r['train_s']:.0f} | "
                  f"{r['eval_s']:.0f} |", flush=True)
    if len(args.seeds) > 1:
        print("\n| config | seeds | modes (mean ± sd) | KL (mean ± sd) | train s (mean) |")
        print("|---|---:|---:|---:|---:|")
        for config in args.configs:
            mine = [r for r in rows if r["config"] == config]
            print(f"| {config} | {len(mine)} | {mean_sd([r['modes'] for r in mine])} | "
                  f"{mean_sd([r['kl'] for r in mine])} | {statistics.mean(r['train_s'] for r in mine):.0f} |")
    print("\nPacGAN Table 2 (Lin et al. 2018; 26,000 samples; their DCGAN: 50 epochs of 128,000 images, batch 64):\n")
    print("| model | modes (of 1,000) | KL |")
    print("|---|---:|---:|")
    for name, modes, kl in PACGAN_TABLE_2:
        print(f"| {name} | {modes} | {kl} |")


if __name__ == "__main__":
    main()
