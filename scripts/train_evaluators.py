"""Train the shipped evaluator classifiers and write gancore/evaluators/<dataset>.pt.

    python scripts/train_evaluators.py [--datasets mnist-5k digits mnist-5k-32px] [--epochs 15] [--out DIR]

Fixed seed 0 and a 20 % held-out split, so the numbers it prints are reproducible; it prints a
markdown table (held-out accuracy, weights hash, seconds) for docs/benchmarks.md. One CPU thread:
it is small enough, and runs the same on any machine.
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install needed

from gancore.data import load_dataset  # noqa: E402
from gancore.evaluator import DEFAULT_EPOCHS, SHIPPED, SHIPPED_DIR, save_evaluator, train_evaluator  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=list(SHIPPED), choices=SHIPPED)
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=SHIPPED_DIR)
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    rows = []
    for name in args.datasets:
        start = time.perf_counter()
        model, report = train_evaluator(load_dataset(**SHIPPED[name]), seed=args.seed, epochs=args.epochs)
        path = args.out / f"{name}.pt"
        save_evaluator(model, report, path)
        rows.append((name, report, time.perf_counter() - start, path.stat().st_size))
        print(f"wrote {path}", flush=True)

    print("\n| dataset | n_train | n_holdout | held-out accuracy | weights sha256 | file | seconds |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for name, r, seconds, size in rows:
        print(f"| {name} | {r['n_train']} | {r['n_holdout']} | {r['accuracy']:.2%} | "
              f"`{r['weights_sha256'][:12]}` | {size / 1024:.0f} KiB | {seconds:.0f} |")


if __name__ == "__main__":
    main()
