"""Seeded numbers of short runs, as JSON: run it on two commits and compare the output to check that a
refactoring left training and evaluation bit-identical.

    python bench/same_numbers.py [CHECKOUT] > after.json     # CHECKOUT: a gancore checkout (default: this one)
    git worktree add /tmp/before <commit> && python bench/same_numbers.py /tmp/before > before.json
    cmp before.json after.json

Runs (10 steps each, on the CPU): acgan + hinge + spectral norm (acgan_fake_weight 0.5), concat,
projection on ResNet, wgan-gp + R1, wgan on the ring (losses per record); concat and unconditional
DCGAN on digits and MNIST-5k with evaluations (FID, KID, IS, conditional accuracy), and the ring's
mode coverage.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path


def checkout() -> str:
    """The checkout to measure, read from the command line before gancore is imported: the import comes from it."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the first sentence spans two lines
    p.add_argument("checkout", nargs="?", default=str(Path(__file__).resolve().parents[1]),
                   help="a gancore checkout (default: this one)")
    return p.parse_args().checkout


sys.path.insert(0, checkout())
import gancore  # noqa: E402

BASE = dict(dataset="digits", z_dim=8, g_width=8, d_width=8, embed_dim=4, batch_size=16, steps=10, log_every=5,
            sample_every=5, ckpt_every=5, eval_every=0, device="cpu")
LOSS_RUNS = [("acgan", "hinge", dict(sn_d=True, acgan_fake_weight=0.5)), ("concat", "nonsaturating", {}),
             ("projection", "hinge", dict(model="resnet")), ("none", "wgan-gp", dict(r1_gamma=1.0)),
             ("none", "wgan", dict(dataset="ring"))]
SCORES = ("fid", "kid_mean", "is_mean", "cond_acc", "class_hist", "modes", "hq_share", "reverse_kl")


def main():
    root, out = tempfile.mkdtemp(), {}
    for cond, loss, extra in LOSS_RUNS:
        d = gancore.train({**BASE, "runs_root": root, "conditioning": cond, "loss": loss, "name": f"{cond}-{loss}",
                           **extra})
        out[f"{cond}-{loss}"] = [(r["loss_d"], r["loss_g"], r.get("loss_cls_d")) for r in runs_of(d)]
    for dataset in ("digits", "mnist-5k"):
        for cond in ("concat", "none"):
            d = gancore.train({**BASE, "runs_root": root, "dataset": dataset, "conditioning": cond, "eval_every": 5,
                               "eval_n": 200, "name": f"eval-{dataset}-{cond}"})
            out[f"eval-{dataset}-{cond}"] = [{k: r.get(k) for k in SCORES} for r in runs_of(d)]
    d = gancore.train({**BASE, "runs_root": root, "dataset": "ring", "eval_every": 5, "name": "eval-ring"})
    out["eval-ring"] = [{k: r.get(k) for k in SCORES} for r in runs_of(d)]
    print(json.dumps(out))


def runs_of(run_dir):
    return gancore.load_run(run_dir).metrics.to_dict("records")


if __name__ == "__main__":
    main()
