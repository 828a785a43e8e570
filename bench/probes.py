"""Short training probes, several at once: a design-space search whose every row is a plain CLI run.

    python bench/probes.py --set NAME [--only LABEL ...] [--seeds 0 1 ...] [--parallel 2] [--threads 1]
                           [--device cpu|cuda] [--precision fp32] [--out bench-out/probes]

Each probe is `python -m gancore train <flags> --seed S` in its own process, then `python -m gancore eval`
of the checkpoints the set names: images with 10,000 samples (FID and conditional accuracy by the
project's evaluator, and the copying check: median distance from samples to their nearest training image
over the same figure for real images, `metrics.copying`), stacked-mnist with 26,000 (modes, reverse KL),
2-D points with 2,500 (modes, high-quality share, reverse KL). A row prints as each probe ends and every
result is appended to <out>/results.jsonl; --summary prints mean ± std per label over the seeds.

--parallel N probes run at once with OMP_NUM_THREADS=--threads each (on a GPU they share it). The step
counts in SETS are what the acceptance budgets allow on the 2-core CPU (docs/benchmarks.md gives the
measured steps/s): a probe run on a GPU measures quality per step, not the time.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The defaults before the 28 px recipe became them (config.RECIPE_28PX): rounds 1-5 and the unconditional baseline
# ran with these, so they are pinned here and those rounds re-run what was measured. Every MNIST round up to
# mnist-cond-10 ran with Adam's beta1 at 0.5 (the recipe's 0.2 came from mnist-cond-11): pinned too; a round that
# sets --beta1 later overrides it (the last flag wins).
OLD_DEFAULTS = ["--pad_to", "28", "--batch_size", "64", "--steps", "5000", "--lr_g", "2e-4", "--lr_d", "2e-4",
                "--beta1", "0.5", "--beta2", "0.999"]
MNIST = ["--dataset", "mnist-5k", "--conditioning", "concat", "--eval_every", "0", "--sample_every", "1000",
         *OLD_DEFAULTS]


def mnist_cond():
    """Issue 13 part 1: what lifts the default class-conditional MNIST-5k run at its CPU budget.

    Constant-rate probes run 6,000 steps and are scored at 3,000 (about 5 minutes of the default network on
    the 2-core CPU) and 6,000; a decaying rate depends on the run's length, so those probes run the budget.
    """
    long, ckpts = [*MNIST, "--steps", "6000", "--ckpt_every", "1000"], [3000, 6000]
    probes = {
        "defaults": [],
        "lr 4e-4": ["--lr_g", "4e-4", "--lr_d", "4e-4"],
        "TTUR g 1e-4 d 4e-4": ["--lr_g", "1e-4", "--lr_d", "4e-4"],
        "betas 0/0.9": ["--beta1", "0", "--beta2", "0.9"],
        "betas 0.5/0.99": ["--beta2", "0.99"],
        "width 48": ["--g_width", "48", "--d_width", "48"],
        "width 64": ["--g_width", "64", "--d_width", "64"],
        "hinge": ["--loss", "hinge"],
        "hinge + SN D, Adam(0, 0.9), TTUR": ["--loss", "hinge", "--sn_d", "true", "--beta1", "0", "--beta2", "0.9",
                                             "--lr_g", "1e-4", "--lr_d", "4e-4"],
        "projection": ["--conditioning", "projection"],
        "acgan preset": ["--preset", "acgan"],
        "EMA off": ["--ema", "false"],
        "EMA 0.99": ["--ema_decay", "0.99"],
        "EMA 0.9999 ramp 0.1": ["--ema_decay", "0.9999", "--ema_rampup", "0.1"],
        "batch 128": ["--batch_size", "128"],
        "DiffAugment translation,cutout": ["--diffaug", "translation,cutout"],
        "mbstd": ["--mbstd", "true"],
        "32 px (3 stages)": ["--image_size", "32", "--pad_to", "32"],
    }
    rows = [(label, long + flags, ckpts) for label, flags in probes.items()]
    budget = {  # whole runs at the CPU budget (steps at the measured CPU rate of each network)
        "3000 steps": ["--steps", "3000"],
        "3000 steps, lr decay last 50 %": ["--steps", "3000", "--lr_decay", "0.5"],
        "3000 steps, lr decay all": ["--steps", "3000", "--lr_decay", "1"],
        "batch 32, 5000 steps": ["--batch_size", "32", "--steps", "5000"],
        "batch 32, 5000 steps, lr decay last 50 %": ["--batch_size", "32", "--steps", "5000", "--lr_decay", "0.5"],
    }
    return rows + [(label, [*MNIST, "--ckpt_every", "1000"] + flags, None) for label, flags in budget.items()]


def ring():
    """Issue 13 part 2: the 8-Gaussian ring, all modes with >= 95 % of samples within 3 sigma."""
    base = ["--dataset", "ring", "--eval_every", "0", "--sample_every", "1000"]
    probes = {
        "defaults 3000": ["--steps", "3000"],
        "3000, lr decay 0.5": ["--steps", "3000", "--lr_decay", "0.5"],
        "3000, lr decay 1": ["--steps", "3000", "--lr_decay", "1"],
        "3000, EMA off, lr decay 0.5": ["--steps", "3000", "--ema", "false", "--lr_decay", "0.5"],
        "6000, lr decay 0.5": ["--steps", "6000", "--lr_decay", "0.5"],
        "pack 2, 6000, lr decay 0.5": ["--steps", "6000", "--pack", "2", "--lr_decay", "0.5"],
        "pack 2, 6000": ["--preset", "pacgan-ring"],
    }
    return [(label, base + flags, None) for label, flags in probes.items()]


def grid():
    """Issue 13 part 2: the 25-Gaussian grid, 25/25 modes with >= 90 % of samples within 3 sigma."""
    base = ["--dataset", "grid", "--eval_every", "0", "--sample_every", "5000", "--ckpt_every", "5000"]
    probes = {
        "pacgan-grid": ["--preset", "pacgan-grid"],
        "pack 2, 20000, lr decay 0.5": ["--preset", "pacgan-grid", "--lr_decay", "0.5"],
        "pack 4, 20000, lr decay 0.5": ["--preset", "pacgan-grid", "--pack", "4", "--lr_decay", "0.5"],
        "pack 1, 20000, lr decay 0.5": ["--steps", "20000", "--lr_decay", "0.5"],
        "pack 2, 20000, lr decay 0.5, EMA off": ["--preset", "pacgan-grid", "--lr_decay", "0.5", "--ema", "false"],
        "pack 2, 20000, lr decay 0.5, D 512": ["--preset", "pacgan-grid", "--lr_decay", "0.5", "--d_width", "512"],
        "pack 2, 20000, lr decay 0.5, batch 256": ["--preset", "pacgan-grid", "--lr_decay", "0.5",
                                                   "--batch_size", "256"],
    }
    return [(label, base + flags, None) for label, flags in probes.items()]


def mnist_cond_2():
    """Second round of part 1, around the first round's best: a higher rate, whole runs at the CPU budget."""
    fast = [*MNIST, "--ckpt_every", "1000", "--lr_g", "4e-4", "--lr_d", "4e-4"]
    probes = {
        "lr 4e-4, 6000": (["--steps", "6000"], [2000, 3000, 4000, 5000, 6000]),
        "lr 4e-4, 3000": (["--steps", "3000"], None),
        "lr 4e-4, 3000, lr decay 0.3": (["--steps", "3000", "--lr_decay", "0.3"], None),
        "lr 6e-4, 3000": (["--steps", "3000", "--lr_g", "6e-4", "--lr_d", "6e-4"], None),
        "lr 8e-4, 3000": (["--steps", "3000", "--lr_g", "8e-4", "--lr_d", "8e-4"], None),
        "lr 4e-4, 3000, DiffAugment translation": (["--steps", "3000", "--diffaug", "translation"], None),
        "lr 4e-4, 3000, betas 0.5/0.99": (["--steps", "3000", "--beta2", "0.99"], None),
        "lr 4e-4, 3000, hinge": (["--steps", "3000", "--loss", "hinge"], None),
        "lr 4e-4, 2000, width 48": (["--steps", "2000", "--g_width", "48", "--d_width", "48"], None),
        "lr 4e-4, 1500, batch 128": (["--steps", "1500", "--batch_size", "128"], None),
    }
    return [(label, fast + flags, ckpts) for label, (flags, ckpts) in probes.items()]


def ring_2():
    base = ["--dataset", "ring", "--eval_every", "0", "--sample_every", "2000", "--lr_decay", "0.5"]
    probes = {
        "10000, lr decay 0.5": ["--steps", "10000"],
        "6000, lr decay 0.5, batch 256": ["--steps", "6000", "--batch_size", "256"],
        "10000, lr decay 0.5, batch 128": ["--steps", "10000", "--batch_size", "128"],
    }
    return [(label, base + flags, None) for label, flags in probes.items()]


def grid_2():
    base = ["--dataset", "grid", "--eval_every", "0", "--sample_every", "5000", "--ckpt_every", "5000"]
    return [("20000, lr decay 0.5", base + ["--steps", "20000", "--lr_decay", "0.5"], None)]


def stacked():
    """Issue 13 part 3: plain DCGAN against packing and minibatch stddev on stacked MNIST (26,000 samples)."""
    base = ["--dataset", "stacked-mnist", "--model", "dcgan", "--loss", "nonsaturating", "--eval_every", "0",
            "--sample_every", "1000", "--ckpt_every", "1000", "--steps", "6000"]
    probes = {"DCGAN": [], "pack 2": ["--pack", "2"], "pack 3": ["--pack", "3", "--batch_size", "63"], "pack 4": ["--pack", "4"],
              "minibatch stddev": ["--mbstd", "true"]}
    return [(label, base + flags, [2000, 4000, 6000]) for label, flags in probes.items()]


def mnist_cond_3():
    """Third round of part 1: the higher rates with hinge, smaller batches and longer averaging."""
    fast = [*MNIST, "--ckpt_every", "1000", "--lr_g", "8e-4", "--lr_d", "8e-4"]
    probes = {
        "lr 8e-4, 3000, hinge": ["--steps", "3000", "--loss", "hinge"],
        "lr 8e-4, 4800, batch 32": ["--steps", "4800", "--batch_size", "32"],
        "lr 8e-4, 4800, batch 32, hinge": ["--steps", "4800", "--batch_size", "32", "--loss", "hinge"],
        "lr 8e-4, 3000, EMA 0.9999": ["--steps", "3000", "--ema_decay", "0.9999"],
        "lr 1e-3, 3000, betas 0.5/0.99": ["--steps", "3000", "--lr_g", "1e-3", "--lr_d", "1e-3", "--beta2", "0.99"],
        "lr 8e-4, 3000, lr decay 0.2": ["--steps", "3000", "--lr_decay", "0.2"],
    }
    return [(label, fast + flags, None) for label, flags in probes.items()]


def stacked_2():
    base = ["--dataset", "stacked-mnist", "--model", "dcgan", "--loss", "nonsaturating", "--eval_every", "0",
            "--sample_every", "2000", "--ckpt_every", "2000", "--steps", "10000", "--lr_decay", "0.5"]
    return [("DCGAN, 10000, lr decay 0.5", base, None), ("pack 2, 10000, lr decay 0.5", base + ["--pack", "2"], None)]


def ring_3():
    """The ring's hard seed (3): what closes the bridges a 2-D latent leaves between modes."""
    base = ["--dataset", "ring", "--eval_every", "0", "--sample_every", "2000", "--lr_decay", "0.5"]
    probes = {
        "10000, lr decay 0.5, n_critic 2": ["--steps", "10000", "--n_critic", "2"],
        "10000, lr decay 0.5, D 512": ["--steps", "10000", "--d_width", "512"],
        "10000, lr decay 0.5, pack 2": ["--steps", "10000", "--pack", "2"],
        "20000, lr decay 0.5": ["--steps", "20000"],
    }
    return [(label, base + flags, None) for label, flags in probes.items()]


def ring_seeds():
    """The ring over 10 seeds (--seeds 0 ... 9): batch 128 (first, on the GPU machine's cores), then the preset."""
    base = ["--dataset", "ring", "--eval_every", "0", "--sample_every", "2000"]
    return [("10000, lr decay 0.5, batch 128", base + ["--steps", "10000", "--lr_decay", "0.5", "--batch_size", "128"],
             None),
            ("preset ring-lr-decay", base + ["--preset", "ring-lr-decay"], None)]


def grid_seeds():
    return [("20000, lr decay 0.5, batch 128", ["--dataset", "grid", "--eval_every", "0", "--sample_every", "5000",
             "--ckpt_every", "5000", "--steps", "20000", "--lr_decay", "0.5", "--batch_size", "128"], None)]


def mnist_cond_4():
    """Fourth round of part 1, after the EMA G got its own batch-norm statistics (Trainer.settle_ema_norms):
    the cgan-concat preset's rate (1e-3, Adam(0.5, 0.99)) with longer averaging, a short decay, smaller
    batches (cheaper steps) and the 32 px network (more accurate per step in round 1; 1.93x the CPU cost per step)."""
    fast = [*MNIST, "--ckpt_every", "1000", "--lr_g", "1e-3", "--lr_d", "1e-3", "--beta2", "0.99"]
    probes = {
        "preset cgan-concat": ["--steps", "2800"],
        "2800, EMA ramp 0.2": ["--steps", "2800", "--ema_rampup", "0.2"],
        "2800, EMA 0.9995 ramp 0.3": ["--steps", "2800", "--ema_decay", "0.9995", "--ema_rampup", "0.3"],
        "2800, EMA off": ["--steps", "2800", "--ema", "false"],
        "2800, lr decay 0.15": ["--steps", "2800", "--lr_decay", "0.15"],
        "2800, hinge": ["--steps", "2800", "--loss", "hinge"],
        "2800, lr 1.5e-3": ["--steps", "2800", "--lr_g", "1.5e-3", "--lr_d", "1.5e-3"],
        "3500": ["--steps", "3500"],
        "batch 32, 4800": ["--steps", "4800", "--batch_size", "32"],
        "batch 32, 4800, lr 6e-4": ["--steps", "4800", "--batch_size", "32", "--lr_g", "6e-4", "--lr_d", "6e-4"],
        "32 px, 1450": ["--steps", "1450", "--image_size", "32", "--pad_to", "32"],
    }
    return [(label, fast + flags, None) for label, flags in probes.items()]


def ring_4():
    """The ring's weak seeds (2, 3, 4, 9 under ring-lr-decay): a wider latent, a bigger batch, a longer run."""
    base = ["--dataset", "ring", "--eval_every", "0", "--sample_every", "2000", "--preset", "ring-lr-decay"]
    probes = {
        "ring-lr-decay, z_dim 8": ["--z_dim", "8"],
        "ring-lr-decay, batch 128": ["--batch_size", "128"],
        "ring-lr-decay, 15000": ["--steps", "15000"],
    }
    return [(label, base + flags, None) for label, flags in probes.items()]


def stacked_3():
    """Stacked MNIST after the EMA G got its own batch-norm statistics: the preset, longer averaging, batch 128."""
    base = ["--dataset", "stacked-mnist", "--preset", "stacked-mnist-pacgan", "--eval_every", "0"]
    probes = {"preset stacked-mnist-pacgan": [], "preset, EMA ramp 0.2": ["--ema_rampup", "0.2"],
              "preset, batch 128, 4500": ["--batch_size", "128", "--steps", "4500"]}
    return [(label, base + flags, None) for label, flags in probes.items()]


def mnist_cond_5():
    """Round 4's leaders on three more seeds (--seeds 2 3 4)."""
    fast = [*MNIST, "--ckpt_every", "1000", "--lr_g", "1e-3", "--lr_d", "1e-3", "--beta2", "0.99"]
    probes = {"preset cgan-concat": ["--steps", "2800"], "2800, EMA ramp 0.2": ["--steps", "2800", "--ema_rampup", "0.2"],
              "3000": ["--steps", "3000"]}
    return [(label, fast + flags, None) for label, flags in probes.items()]


def ring_seeds_2():
    """ring-lr-decay (n_critic 2) with batch 128 over 10 seeds (round ring-4 ran seeds 2, 3, 4, 9), and 15,000 steps."""
    base = ["--dataset", "ring", "--eval_every", "0", "--sample_every", "2000", "--preset", "ring-lr-decay",
            "--batch_size", "128"]
    return [("ring-lr-decay, batch 128", base, None), ("ring-lr-decay, batch 128, 15000", base + ["--steps", "15000"], None)]


def stacked_4():
    """Stacked MNIST with bigger batches (batch 128 at 4,500 steps: KL 0.174 in stacked-3) at the CPU budget."""
    base = ["--dataset", "stacked-mnist", "--preset", "stacked-mnist-pacgan", "--eval_every", "0"]
    probes = {"preset, batch 128, 3800": ["--batch_size", "128", "--steps", "3800"],
              "preset, batch 256, 2000": ["--batch_size", "256", "--steps", "2000"],
              "preset, batch 128, 3800, lr 2e-3": ["--batch_size", "128", "--steps", "3800", "--lr_g", "2e-3",
                                                   "--lr_d", "2e-3"]}
    return [(label, base + flags, None) for label, flags in probes.items()]


def mnist_cond_6():
    """Part 1 with the 3-stage network of 32 px on the 28 px data (--pad_to 32: G's images cropped, D's inputs
    padded), at its CPU budget (1.93x the cost per step of the 2-stage network); and the unconditional DCGAN at
    the defaults against the cgan-concat rate (is the faster rate a better default for every MNIST run?)."""
    fast = [*MNIST, "--ckpt_every", "500", "--lr_g", "1e-3", "--lr_d", "1e-3", "--beta2", "0.99", "--pad_to", "32"]
    uncond = ["--dataset", "mnist-5k", "--eval_every", "0", "--sample_every", "1000", "--ckpt_every", "1000",
              *OLD_DEFAULTS]
    return [("pad 32, 1450", fast + ["--steps", "1450"], None), ("pad 32, 1700", fast + ["--steps", "1700"], None),
            ("unconditional, defaults (5000)", uncond, [3000, 5000]),
            ("unconditional, lr 1e-3, betas 0.5/0.99, 2800", uncond + ["--steps", "2800", "--lr_g", "1e-3", "--lr_d",
                                                                      "1e-3", "--beta2", "0.99"], None)]


def stacked_5():
    """Around stacked-4's best (batch 128, 3,800 steps, lr 2e-3: KL 0.154)."""
    base = ["--dataset", "stacked-mnist", "--preset", "stacked-mnist-pacgan", "--eval_every", "0", "--batch_size",
            "128", "--steps", "3800"]
    probes = {"batch 128, 3800, lr 2e-3, EMA ramp 0.2": ["--lr_g", "2e-3", "--lr_d", "2e-3", "--ema_rampup", "0.2"],
              "batch 128, 3800, lr 3e-3": ["--lr_g", "3e-3", "--lr_d", "3e-3"],
              "batch 128, 3800, lr 2e-3, no decay": ["--lr_g", "2e-3", "--lr_d", "2e-3", "--lr_decay", "0"]}
    return [(label, base + flags, None) for label, flags in probes.items()]


def mnist_cond_7():
    """--pad_to 32 at the CPU budget (5.4 steps/s on the 2-core CPU against 10.1 for 28 px: 1,600 steps in 5
    minutes, 2,000 at batch 48), with longer averaging."""
    fast = [*MNIST, "--ckpt_every", "500", "--lr_g", "1e-3", "--lr_d", "1e-3", "--beta2", "0.99", "--pad_to", "32"]
    probes = {"pad 32, 1600": ["--steps", "1600"], "pad 32, 1600, EMA ramp 0.2": ["--steps", "1600", "--ema_rampup", "0.2"],
              "pad 32, batch 48, 2000": ["--steps", "2000", "--batch_size", "48"]}
    return [(label, fast + flags, None) for label, flags in probes.items()]


def stacked_6():
    """stacked-5's best at the 15-minute CPU budget (batch 128: 5.8 steps/s, so 4,600 steps and the evaluation)."""
    base = ["--dataset", "stacked-mnist", "--preset", "stacked-mnist-pacgan", "--eval_every", "0", "--batch_size",
            "128", "--steps", "4600", "--lr_g", "2e-3", "--lr_d", "2e-3"]
    probes = {"batch 128, 4600, lr 2e-3, EMA ramp 0.2": ["--ema_rampup", "0.2"],
              "batch 128, 4600, lr 2e-3, EMA 0.9995 ramp 0.3": ["--ema_decay", "0.9995", "--ema_rampup", "0.3"]}
    return [(label, base + flags, None) for label, flags in probes.items()]


def mnist_cond_8():
    """The 28 px DCGAN recipe (--pad_to 32, batch 48, lr 1e-3, Adam(0.5, 0.99), 2,000 steps) on more seeds, and on
    unconditional MNIST-5k (against mnist-cond-6's unconditional rows)."""
    recipe = ["--pad_to", "32", "--batch_size", "48", "--lr_g", "1e-3", "--lr_d", "1e-3", "--beta1", "0.5",
              "--beta2", "0.99", "--steps", "2000", "--ckpt_every", "500"]
    return [("recipe, concat", [*MNIST, *recipe], None),
            ("recipe, unconditional", ["--dataset", "mnist-5k", "--eval_every", "0", "--sample_every", "1000", *recipe],
             None)]


def mnist_cond_9():
    """The recipe's neighbours: batch 32 (more, cheaper steps) and a lower rate."""
    base = [*MNIST, "--pad_to", "32", "--lr_g", "1e-3", "--lr_d", "1e-3", "--beta2", "0.99", "--ckpt_every", "500"]
    return [("recipe, batch 32, 2600", base + ["--batch_size", "32", "--steps", "2600"], None),
            ("recipe, lr 7e-4", base + ["--batch_size", "48", "--steps", "2000", "--lr_g", "7e-4", "--lr_d", "7e-4"],
             None)]


def mnist_cond_10():
    """Third session: the recipe's levers not yet measured at its budget (2,000 steps at 6.8 steps/s on the 2-core
    CPU; a dearer probe gets the steps its measured CPU rate buys in the same time)."""
    recipe = [*MNIST, "--pad_to", "32", "--batch_size", "48", "--lr_g", "1e-3", "--lr_d", "1e-3", "--beta2", "0.99",
              "--ckpt_every", "500"]
    probes = {"recipe": ["--steps", "2000"],
              "recipe, sn_d": ["--steps", "2000", "--sn_d", "true"],
              "recipe, hinge": ["--steps", "2000", "--loss", "hinge"],
              "recipe, g_width 48, 1600": ["--steps", "1600", "--g_width", "48"],
              "recipe, d_width 48, 1300": ["--steps", "1300", "--d_width", "48"],
              "recipe, r1 1.0, 1500": ["--steps", "1500", "--r1_gamma", "1.0"],
              "recipe, label smoothing 0.1": ["--steps", "2000", "--label_smoothing", "0.1"],
              "recipe, z 128": ["--steps", "2000", "--z_dim", "128"],
              "recipe, mbstd": ["--steps", "2000", "--mbstd", "true"],
              "recipe, lr_d 2e-3": ["--steps", "2000", "--lr_d", "2e-3"],
              "recipe, beta1 0.3": ["--steps", "2000", "--beta1", "0.3"],
              "recipe, EMA 0.998": ["--steps", "2000", "--ema_decay", "0.998"]}
    return [(label, recipe + flags, None) for label, flags in probes.items()]


def stacked_7():
    """Third session: the preset (3,800 steps at 6.4 steps/s on the 2-core CPU) against a larger or stricter D at
    the same CPU time (pad 32: 3.0 steps/s; d_width 48: 3.9; n_critic 2: 4.0)."""
    base = ["--preset", "stacked-mnist-pacgan", "--eval_every", "0"]
    probes = {"preset": [], "pad 32, 1800": ["--pad_to", "32", "--steps", "1800"],
              "d_width 48, 2300": ["--d_width", "48", "--steps", "2300"],
              "n_critic 2, 2400": ["--n_critic", "2", "--steps", "2400"],
              "hinge": ["--loss", "hinge"], "sn_d": ["--sn_d", "true"], "mbstd": ["--mbstd", "true"],
              "z 128": ["--z_dim", "128"], "pack 2": ["--pack", "2"]}
    return [(label, base + flags, None) for label, flags in probes.items()]


def mnist_cond_11():
    """Adam's beta1 below the DCGAN 0.5 (mnist-cond-10: 0.3 scored best), with and without a larger latent."""
    recipe = [*MNIST, "--pad_to", "32", "--batch_size", "48", "--lr_g", "1e-3", "--lr_d", "1e-3", "--beta2", "0.99",
              "--ckpt_every", "500", "--steps", "2000"]
    probes = {f"recipe, beta1 {b}": ["--beta1", b] for b in ("0.3", "0.2", "0.1", "0.0")}
    probes["recipe, beta1 0.3, z 128"] = ["--beta1", "0.3", "--z_dim", "128"]
    return [(label, recipe + flags, None) for label, flags in probes.items()]


def stacked_8():
    """stacked-7's lead (d_width 48) and part 1's (a lower Adam beta1) on the preset."""
    base = ["--preset", "stacked-mnist-pacgan", "--eval_every", "0"]
    probes = {"beta1 0.3": ["--beta1", "0.3"], "beta1 0.1": ["--beta1", "0.1"], "beta1 0.0": ["--beta1", "0.0"],
              "beta1 0.3, d_width 48, 2300": ["--beta1", "0.3", "--d_width", "48", "--steps", "2300"]}
    return [(label, base + flags, None) for label, flags in probes.items()]


def stacked_9():
    """beta1 0 (stacked-8's lead) on more seeds, with a wider D, a lower rate or minibatch stddev."""
    base = ["--preset", "stacked-mnist-pacgan", "--eval_every", "0"]
    probes = {"preset": [], "beta1 0.0": ["--beta1", "0.0"],
              "beta1 0.0, d_width 48, 2300": ["--beta1", "0.0", "--d_width", "48", "--steps", "2300"],
              "beta1 0.0, lr 1e-3": ["--beta1", "0.0", "--lr_g", "1e-3", "--lr_d", "1e-3"],
              "beta1 0.0, mbstd": ["--beta1", "0.0", "--mbstd", "true"]}
    return [(label, base + flags, None) for label, flags in probes.items()]


def mnist_cond_12():
    """beta1 0.2 (mnist-cond-11's choice) with the steps a faster CPU step would buy, and on unconditional MNIST-5k."""
    recipe = ["--pad_to", "32", "--batch_size", "48", "--lr_g", "1e-3", "--lr_d", "1e-3", "--beta2", "0.99",
              "--ckpt_every", "500"]
    uncond = ["--dataset", "mnist-5k", "--eval_every", "0", "--sample_every", "1000", *recipe, "--steps", "2000"]
    return [("recipe, beta1 0.2, 2200", [*MNIST, *recipe, "--beta1", "0.2", "--steps", "2200"], None),
            ("recipe, beta1 0.2, 2400", [*MNIST, *recipe, "--beta1", "0.2", "--steps", "2400"], None),
            ("recipe, unconditional, beta1 0.5", [*uncond, "--beta1", "0.5"], None),
            ("recipe, unconditional, beta1 0.2", [*uncond, "--beta1", "0.2"], None)]


def stacked_10():
    """Bolder levers on the preset's per-channel digit balance, on 4 seeds (one seed's KL varies by +-0.04)."""
    base = ["--preset", "stacked-mnist-pacgan", "--eval_every", "0"]
    probes = {"lr decay 1.0": ["--lr_decay", "1.0"], "lr_d 4e-3": ["--lr_d", "4e-3"],
              "lr_g 1e-3": ["--lr_g", "1e-3"], "beta2 0.999": ["--beta2", "0.999"],
              "DiffAugment translation": ["--diffaug", "translation"], "EMA 0.9999 ramp 0.5": ["--ema_decay", "0.9999",
                                                                                         "--ema_rampup", "0.5"]}
    return [(label, base + flags, None) for label, flags in probes.items()]


def stacked_11():
    """Feature matching (--fm_weight) on the preset as it was before it took fm_weight 1 (fm 0 is that preset)."""
    base = ["--preset", "stacked-mnist-pacgan", "--eval_every", "0"]
    return [(f"fm {w}", base + ["--fm_weight", str(w)], None) for w in (0, 0.1, 1, 3)]


SETS = {"mnist-cond": mnist_cond, "mnist-cond-2": mnist_cond_2, "ring": ring, "ring-2": ring_2, "grid": grid,
        "grid-2": grid_2, "stacked": stacked, "mnist-cond-3": mnist_cond_3, "ring-seeds": ring_seeds,
        "grid-seeds": grid_seeds,
        "stacked-2": stacked_2, "ring-3": ring_3, "mnist-cond-4": mnist_cond_4, "ring-4": ring_4,
        "stacked-3": stacked_3, "mnist-cond-5": mnist_cond_5, "ring-seeds-2": ring_seeds_2, "stacked-4": stacked_4,
        "mnist-cond-6": mnist_cond_6, "stacked-5": stacked_5,
        "mnist-cond-7": mnist_cond_7, "stacked-6": stacked_6,
        "mnist-cond-8": mnist_cond_8, "mnist-cond-9": mnist_cond_9,
        "mnist-cond-10": mnist_cond_10, "stacked-7": stacked_7,
        "mnist-cond-11": mnist_cond_11, "stacked-8": stacked_8, "stacked-9": stacked_9,
        "mnist-cond-12": mnist_cond_12, "stacked-10": stacked_10, "stacked-11": stacked_11}


def gancore(*args, env, log):
    out = subprocess.run([sys.executable, "-m", "gancore", *map(str, args)], env=env, cwd=ROOT,
                         capture_output=True, text=True)
    log.write(f"$ gancore {' '.join(map(str, args))}\n{out.stderr[-3000:]}\n")
    if out.returncode != 0:
        raise RuntimeError(f"gancore {args[0]} exited {out.returncode}: {out.stderr.strip().splitlines()[-1:]}")
    return out.stdout.strip().splitlines()[-1]


def summary(result: dict) -> str:
    if "hq_share" in result:
        return f"{result['modes']} modes, HQ {result['hq_share']:.3f}, KL {result['reverse_kl']:.3f}"
    if "modes" in result:  # stacked-mnist
        return f"{result['modes']} modes, KL {result['reverse_kl']:.3f}"
    s = f"FID {result['fid']:.3f}"
    if "cond_acc" in result:
        s += f", acc {result['cond_acc']:.3f}"
    if "nn_ratio" in result:
        s += f", NN ratio {result['nn_ratio']:.2f}"
    return s


KEEP = ("fid", "kid_mean", "is_mean", "cond_acc", "nn_median", "nn_real_median", "nn_ratio", "modes", "hq_share",
        "reverse_kl")


def probe(label, flags, ckpts, seed, args, root, log_dir):
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS=str(args.threads), GANCORE_RUNS=str(root))
    name = "".join(c if c.isalnum() or c in "-." else "_" for c in f"{label}-s{seed}").strip("_")[:100]
    t0 = time.time()
    with open(log_dir / f"{name}.log", "w") as log:
        try:
            run = gancore("train", *flags, "--seed", seed, "--name", name, "--device", args.device,
                          "--precision", args.precision, env=env, log=log)
            wall = time.time() - t0
            rows = []
            for step in ckpts or [None]:
                extra = ["--step", step] if step else []
                result = json.loads(gancore("eval", run, "--n", args.n or 0, *extra, env=env, log=log))
                rows.append({"label": label, "seed": seed, "step": result["step"], "train_s": round(wall, 1),
                             "flags": flags, **{k: result[k] for k in KEEP if k in result}})
        except RuntimeError as e:
            rows = [{"label": label, "seed": seed, "error": str(e), "flags": flags}]
    return rows


def print_summary(path: Path):
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    groups = {}
    for r in rows:
        if "error" not in r:
            groups.setdefault((r["label"], r["step"]), []).append(r)
    keys = [k for k in KEEP if any(k in r for r in rows)]
    print("| probe | step | seeds | " + " | ".join(keys) + " |")
    print("|---|---:|---:|" + "---:|" * len(keys))
    for (label, step), rs in groups.items():
        cells = []
        for k in keys:
            v = [r[k] for r in rs if k in r]
            if not v:
                cells.append("")
            elif len(v) == 1:
                cells.append(f"{v[0]:.3f}" if isinstance(v[0], float) else str(v[0]))
            elif not all(math.isfinite(x) for x in v):
                cells.append(f"{sum(not math.isfinite(x) for x in v)} of {len(v)} infinite (max finite "
                             f"{max((x for x in v if math.isfinite(x)), default=math.nan):.3f})")
            else:
                cells.append(f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f} (min {min(v):.3f}, "
                             f"max {max(v):.3f})")
        print(f"| {label} | {step} | {len(rs)} | " + " | ".join(cells) + " |")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", choices=sorted(SETS))
    p.add_argument("--only", nargs="+", default=[], help="run these labels of the set only")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--parallel", type=int, default=max(1, (os.cpu_count() or 1)))
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS per probe")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--n", type=int, default=0, help="samples per evaluation (default: gancore eval's)")
    p.add_argument("--out", default="bench-out/probes")
    p.add_argument("--summary", action="store_true", help="print mean ± std per probe from <out>/results.jsonl")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    if args.summary:
        return print_summary(results)
    if not args.set:
        raise SystemExit("--set: name a probe set (" + ", ".join(sorted(SETS)) + ")")
    jobs = [(label, flags, ckpts, seed) for label, flags, ckpts in SETS[args.set]()
            if not args.only or label in args.only for seed in args.seeds]
    if args.only and not jobs:
        raise SystemExit(f"--only: no such label in set {args.set!r}")
    root = Path(tempfile.mkdtemp(prefix="gancore-probes-"))
    (out / "logs").mkdir(exist_ok=True)
    print(f"{len(jobs)} probes, {args.parallel} at once, {args.threads} thread(s) each, device {args.device}; "
          f"runs under {root}", flush=True)
    with ThreadPoolExecutor(args.parallel) as pool, open(results, "a") as sink:
        futures = [pool.submit(probe, *job[:3], job[3], args, root, out / "logs") for job in jobs]
        for f in as_completed(futures):
            for row in f.result():
                sink.write(json.dumps(row) + "\n")
                sink.flush()
                what = row.get("error") or summary(row)
                print(f"{row['label']} | seed {row['seed']} | step {row.get('step', '-')} | {what} | "
                      f"train {row.get('train_s', '-')} s", flush=True)


if __name__ == "__main__":
    main()
