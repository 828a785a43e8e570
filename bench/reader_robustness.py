"""How the MNIST-5k evaluator reads real stacked-MNIST digits after small degradations.

    python bench/reader_robustness.py [--n 13000] [--seed 0]

Stacked MNIST's modes and reverse KL (metrics.read_channels) count each channel as the digit the evaluator
finds most likely. That evaluator learnt from clean MNIST-5k digits (shift augmentation only), so a G whose
digits are a little blurred, dim or on a grey background is read wrongly, and not evenly: the misreads pile
up on a few digits and raise the KL by themselves. This prints, for real stacked images degraded in a few
G-like ways, how often each channel is read as its true digit, the share of clear reads (p >= 0.9), and the
mean digit shares over the three channels (uniform: 0.100).
"""
import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gancore import metrics  # noqa: E402
from gancore.data import load_dataset, triple_digits  # noqa: E402
from stacked_rescore import CLEAR_P  # noqa: E402  (bench/ is this script's sys.path[0])


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (7 taps) of (N, C, H, W) levels."""
    k = torch.exp(-torch.arange(-3.0, 4.0) ** 2 / (2 * sigma**2))
    k = k / k.sum()
    n, c, h, w = x.shape
    t = x.reshape(n * c, 1, h, w)
    t = F.conv2d(F.pad(t, (3, 3, 0, 0), mode="replicate"), k.view(1, 1, 1, 7))
    t = F.conv2d(F.pad(t, (0, 0, 3, 3), mode="replicate"), k.view(1, 1, 7, 1))
    return t.reshape(n, c, h, w)


def degradations(x: torch.Tensor, gen: torch.Generator) -> dict:
    """Named versions of x ((N, 3, 28, 28) float levels 0..255)."""
    noise = torch.randn(x.shape, generator=gen)
    return {
        "none": x,
        "blur sigma 0.5": blur(x, 0.5), "blur sigma 0.7": blur(x, 0.7), "blur sigma 1": blur(x, 1.0),
        "strokes at 0.9": x * 0.9, "strokes at 0.8": x * 0.8, "strokes at 0.5": x * 0.5,
        "background +10": x * (245 / 255) + 10, "background +25": x * (230 / 255) + 25,
        "noise std 10": x + 10 * noise, "noise std 25": x + 25 * noise,
        "14 px and back": F.interpolate(F.interpolate(x, size=14, mode="area"), size=28, mode="bilinear"),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=13000, help="real stacked images to read")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data = load_dataset(metrics.STACKED)
    gen = torch.Generator().manual_seed(args.seed)
    idx = torch.randperm(len(data.x), generator=gen)[: args.n]
    x, y = data.x[idx].float(), data.y[idx]                # (n, 3, 28, 28) levels, (n,) triples
    truth = triple_digits(y)                                # (n, 3) each channel's digit
    print("| real stacked images | read as their digit | clear reads | mean digit shares 0-9 |")
    print("|---|---:|---:|---|")
    for name, v in degradations(x, gen).items():
        digits, probs = metrics.read_channels(v.round().clamp(0, 255).to(torch.uint8))
        shares = torch.bincount(digits.flatten(), minlength=10).double() / digits.numel()
        print(f"| {name} | {(digits == truth).float().mean():.3f} | {(probs >= CLEAR_P).float().mean():.3f} | "
              + " ".join(f"{s:.3f}" for s in shares) + " |", flush=True)


if __name__ == "__main__":
    main()
