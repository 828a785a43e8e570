"""What the image metrics say about obviously good and obviously bad "generators": a table to read scores by.

    python bench/eval_calibration.py [--datasets mnist-5k digits] [--n 2000] [--seed 1] [--threads 0]

Rows, each n images scored against the dataset's reference (all of it, as training evaluations do):
- real:            n real images drawn without replacement (they are also in the reference: the floor
                   a perfect sampler would reach, slightly flattered by the overlap)
- real, held out:  the evaluator's held-out split scored against its training split (independent real
                   samples; n is the held-out size)
- blur s=1, s=1.5, s=2: the real rows blurred with a Gaussian of sigma 1, 1.5 and 2 px
- one class:       n real images of class 1 only (mode collapse)
- noise:           uniform noise in [-1, 1]
n is capped at half the dataset so that "real" stays a strict subset. `top class` is the largest share
of the class histogram (0.10 for a balanced 10-class sample, 1.0 for full collapse). FID's bracket is
its 95 % bootstrap interval (fid_lo, fid_hi); precision and recall (k = 3), density and coverage (k = 5)
compare n generated with n reference features; `min class recall` is the lowest of recall_per_class
(and the class it belongs to).
"""
import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gancore.data import load_dataset  # noqa: E402
from gancore.evaluator import evaluator_for, heldout_split  # noqa: E402
from gancore.image_metrics import ImageScorer  # noqa: E402
from gancore.catalogue import N_IMAGES_TRAINING  # noqa: E402


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W), edges replicated."""
    r = max(1, round(3 * sigma))
    t = torch.arange(-r, r + 1.0)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).repeat(x.shape[1], 1, 1, 1)  # (C, 1, 1, K)
    x = F.conv2d(F.pad(x, [r, r, 0, 0], mode="replicate"), k, groups=x.shape[1])
    return F.conv2d(F.pad(x, [0, 0, r, r], mode="replicate"), k.transpose(2, 3), groups=x.shape[1])


def rows(data, n, seed):
    # Not the scoring seed itself: the scorer draws its n reference features for precision and recall with
    # randperm(seed), which on mnist-5k (stored class by class, as the reference is) would pick exactly
    # the "real" row's images and score it a perfect 1.
    g = torch.Generator().manual_seed(1000 + seed)
    real = data.images(torch.randperm(len(data), generator=g)[:n])
    ones = data.images(data.y == 1)
    return {
        "real": real,
        "blur s=1": blur(real, 1.0),
        "blur s=1.5": blur(real, 1.5),
        "blur s=2": blur(real, 2.0),
        "one class": ones[torch.randint(len(ones), (n,), generator=g)],
        "noise": torch.rand(real.shape, generator=g) * 2 - 1,
    }


def num(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["mnist-5k", "digits"])
    p.add_argument("--n", type=int, default=N_IMAGES_TRAINING, help="images per row (capped at half the dataset)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; seed {args.seed}\n")
    print("| dataset | images | n | FID [95 %] | KID (mean ± std) | IS | top class | precision | recall | density "
          "| coverage | min class recall |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    start = time.perf_counter()
    for name in args.datasets:
        data = load_dataset(name)
        model, report = evaluator_for(data)
        scorer = ImageScorer(data, model, report)
        n = min(args.n, len(data) // 2)
        table = [(label, scorer.score(x, seed=args.seed)) for label, x in rows(data, n, args.seed).items()]
        held = ImageScorer(data, model, report, split="train")  # reference: the evaluator's training split
        hold_idx = heldout_split(len(data), report["seed"], report["holdout"])[1]
        table.insert(1, ("real, held out vs train split", held.score(data.x[hold_idx], seed=args.seed)))
        for label, s in table:
            worst = min(range(len(s["recall_per_class"])), key=lambda c: s["recall_per_class"][c])
            print(f"| {name} | {label} | {s['provenance']['n_gen']} | {num(s['fid'])} [{num(s['fid_lo'])}, "
                  f"{num(s['fid_hi'])}] | {num(s['kid_mean'])} ± {s['kid_std']:.2g} | {s['is_mean']:.2f} | "
                  f"{max(s['class_hist']):.2f} | {s['precision']:.2f} | {s['recall']:.2f} | {s['density']:.2f} | "
                  f"{s['coverage']:.2f} | {s['recall_per_class'][worst]:.2f} ({worst}) |", flush=True)
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
