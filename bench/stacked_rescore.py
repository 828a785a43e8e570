"""Stacked MNIST: score a run's saved G and its EMA G apart, with the per-channel digit shares.

    python bench/stacked_rescore.py RUN_DIR [RUN_DIR ...] [--steps 3800] [--n 26000] [--seed 0]

A run's own evaluation scores the EMA G when the run keeps one. This scores both weight sets each checkpoint
holds (the EMA changes nothing in training, so the two rows are the same run), as `gancore eval` does
(`metrics.evaluate`: fixed-seed samples, rounded to 8 bits, every channel read by the MNIST-5k evaluator).
"marginals" is the reverse KL of the product of the three channels' digit shares against uniform: the part
of the reverse KL that over-drawing some digits in a channel explains. "clear reads" is the share of channel
digits the evaluator reads with probability >= 0.9 (real stacked images: 0.93). Modes and KL count a scribble
as whatever digit it most resembles; this says how many reads were clear. It is a diagnostic for digit-like
samples only: the evaluator also reads noise and blank channels with probability 1. "dark pixels" is the share of
pixels below level 5 (real stacked images: 0.811): a G that leaves a faint grey background has fewer, and the
evaluator misreads digits on a grey background (bench/reader_robustness.py).
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gancore import metrics, runs  # noqa: E402
from gancore.data import quantize  # noqa: E402
from gancore.sample import generate, generator_from_state, open_run_for_sampling  # noqa: E402
from gancore.setup import load_and_resolve  # noqa: E402


CLEAR_P = 0.9  # a channel digit read with at least this probability is a clear read
DARK = 5  # a pixel below this level (of 255) counts as background


def channel_shares(counts: torch.Tensor) -> list[torch.Tensor]:
    """Each channel's digit shares (R, G, B; (10,) each) from the (1000,) triple counts."""
    return [c.double() / counts.sum() for c in metrics.channel_counts(counts)]


def marginals_kl(shares) -> float:
    """Reverse KL against uniform of the product of the channels' shares: triples drawn independently per channel."""
    r, g, b = shares
    return metrics.reverse_kl((r[:, None, None] * g[None, :, None] * b[None, None, :]).flatten())  # (1000,)


def score(run_dir, step, n: int, seed: int) -> list[dict]:
    run = open_run_for_sampling(run_dir)
    step, state = runs.read_checkpoint(run.path, step)
    cfg, data = load_and_resolve(dict(run.config, device="cpu", precision="fp32"),
                                 source=str(run.path / "config.json"))
    if data.name != metrics.STACKED:
        raise SystemExit(f"{run_dir}: dataset {data.name!r}, not {metrics.STACKED}")
    rows = []
    for weights in ("G", "G_ema"):
        if state.get(weights) is None:
            continue
        G = generator_from_state({**state, "G_ema": state[weights]}, run.config, run.data_info)
        x = quantize(generate(G, cfg.z_dim, n, None, seed=seed))  # (n, 3, H, W) uint8, as metrics.evaluate draws them
        digits, probs = metrics.read_channels(x)                   # (n, 3) each
        out = metrics.triple_coverage(metrics.triple_histogram(digits))
        shares = channel_shares(torch.tensor(out["triple_counts"]))
        rows.append({"run": Path(run_dir).name, "step": step, "weights": weights, "modes": out["modes"],
                     "reverse_kl": out["reverse_kl"], "marginals": marginals_kl(shares),
                     "clear": float((probs >= CLEAR_P).float().mean()), "dark": float((x < DARK).float().mean()),
                     "shares": " ".join(f"{c} {s.min():.3f} ({s.argmin()})-{s.max():.3f} ({s.argmax()})"
                                       for c, s in zip("RGB", shares))})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--steps", type=int, nargs="*", default=[None], help="checkpoint steps (default: the latest)")
    ap.add_argument("--n", type=int, default=26000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print("| run | step | weights | modes | reverse KL | marginals | clear reads | dark pixels "
          "| per-channel digit shares: least (digit)-most (digit) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---|")
    for run_dir in args.runs:
        for step in args.steps:
            for r in score(run_dir, step, args.n, args.seed):
                print(f"| {r['run']} | {r['step']} | {r['weights']} | {r['modes']} | {r['reverse_kl']:.3f} | "
                      f"{r['marginals']:.3f} | {r['clear']:.3f} | {r['dark']:.3f} | {r['shares']} |", flush=True)


if __name__ == "__main__":
    main()
