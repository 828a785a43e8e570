"""How long evaluation takes on this machine: 10,000 MNIST-5k samples through features + FID/KID/IS.

    python bench/eval_speed.py [--n 10000] [--threads 0]

Stages, each timed on its own (the evaluator runs once per batch; FID, KID and IS share it):
- reference, cold:   features and FID/KID states of the 5,000 real images (first use on a machine)
- reference, cached: the same, loaded from the on-disk cache (every later process)
- score, unconditional: n images -> FID, KID, IS and the class histogram
- score, conditional:   n images with labels -> also conditional accuracy and per-class FID
- generate:          n samples from the default mnist-5k DCGAN generator (untrained weights; same cost)
The images scored are real ones drawn with replacement, with their true labels: the cost does not
depend on what they show (and FID is near 0, the accuracy the evaluator's).
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gancore import image_metrics  # noqa: E402
from gancore.config import TrainConfig  # noqa: E402
from gancore.setup import resolve_with  # noqa: E402
from gancore.data import load_dataset  # noqa: E402
from gancore.evaluator import evaluator_for  # noqa: E402
from gancore.models import build_models  # noqa: E402
from gancore.sample import generate  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset("mnist-5k")
    model, report = evaluator_for(data)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(len(data), (args.n,), generator=g)
    x, y = data.x[idx], data.y[idx]

    rows = []
    with tempfile.TemporaryDirectory() as cache:
        os.environ["GANCORE_CACHE"] = cache  # a cold start: nothing cached on disk ...
        image_metrics._REFERENCES.clear()    # ... or in this process
        t, _ = timed(lambda: image_metrics.ImageScorer(data, model, report))
        rows.append((f"reference, cold ({len(data)} real images)", t, len(data)))
        image_metrics._REFERENCES.clear()
        t, scorer = timed(lambda: image_metrics.ImageScorer(data, model, report))
        rows.append(("reference, cached on disk", t, None))
    t, out = timed(lambda: scorer.score(x))
    rows.append((f"score, unconditional: FID {out['fid']:.3g}, KID, IS, class histogram", t, args.n))
    t, out = timed(lambda: scorer.score(x, y))
    rows.append((f"score, conditional: + accuracy {out['cond_acc']:.3f}, per-class FID", t, args.n))
    cfg = resolve_with(TrainConfig(dataset="mnist-5k", device="cpu"), data)
    G, _ = build_models(cfg, data.shape, data.num_classes)
    t, _ = timed(lambda: generate(G.eval(), cfg.z_dim, args.n, seed=0))
    rows.append((f"generate with the default DCGAN G (width {cfg.g_width})", t, args.n))

    print(f"device: CPU, {torch.get_num_threads()} threads; torch {torch.__version__}; evaluator "
          f"{report['dataset']} ({report['weights_sha256'][:12]})\n")
    print("| stage | seconds | images/s |")
    print("|---|---:|---:|")
    for label, seconds, n in rows:
        print(f"| {label} | {seconds:.2f} | {f'{n / seconds:,.0f}' if n else ''} |")
    total = rows[1][1] + rows[2][1] + rows[4][1]
    print(f"\n`gancore eval` of an unconditional run with a warm cache, n={args.n}: about {total:.1f} s "
          f"(+ {rows[0][1]:.1f} s once per machine for the reference)")


if __name__ == "__main__":
    main()
