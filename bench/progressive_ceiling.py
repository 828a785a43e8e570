"""What real digits score at each progressive stage: the ceiling for a stage's FID and conditional accuracy.

    python bench/progressive_ceiling.py [--n 2000]

Real MNIST-5k images at 32 px, brought to each stage's resolution as D sees them (`fade_real`, alpha 1)
and upsampled back to 32 px as G's samples are, scored by the shipped 32 px evaluator against the
whole set, as a run's evaluation scores its samples. A 4 px or 8 px G cannot beat these figures.
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gancore.data import load_dataset  # noqa: E402
from gancore.image_metrics import scorer_for  # noqa: E402
from gancore.models.progressive import fade_real, resolution, upsample_to  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="real images scored per stage (the training evaluations' count)")
    args = p.parse_args(argv)
    data = load_dataset("mnist-5k", image_size=32)
    scorer = scorer_for(data)
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:args.n]
    x, y = data.images(idx), data.y[idx]
    print(f"| stage | real images shown at | FID (n={args.n}) | cond. acc. |")
    print("|---:|---|---:|---:|")
    for stage in range(4):
        seen = upsample_to(fade_real(x, stage, 1.0), 32)
        s = scorer.score(seen, y)
        print(f"| {stage} | {resolution(stage)} px | {s['fid']:.3g} | {s['cond_acc']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
