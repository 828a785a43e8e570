"""Training throughput of the default configs on this machine's device: a table of images/s.

    python bench/train_speed.py [--device auto|cpu|cuda] [--steps 100] [--precision fp32|bf16|fp16]
                                [--compile] [--batch_size N[,N...]] [--nproc N] [--configs "NAME, NAME"]
                                [--warmup 10]
                                [--extra '{"label": {"field": value}}']

Each config is built exactly as `gancore.train` builds it (defaults resolved against the data),
warmed up for --warmup steps (compilation happens there), then timed over --steps full training steps
(D update + G update + EMA). images/s counts real images shown to D, all processes together.
Config names hold spaces ("ring mlp"): --configs takes them comma-separated, or space-separated
("ring mlp grid mlp": each run of words is read as the longest names it starts with).
--batch_size 64,256,1024 measures every config at each global batch (a row each).
After the timed steps, two short passes that would disturb the clock if they were part of it:
host syncs per step (reads of a tensor's value into Python, gancore.syncs.count_syncs, over
SYNC_STEPS steps; on a GPU each one stalls the queue) and the share of step time spent in the
optimiser steps (each `scaler.step`/`opt.step` timed over OPT_STEPS steps, with the GPU synchronised
around every step and every optimiser step so that the times are the GPU's). On CUDA the table also
gives the peak GPU memory from building the trainer to the end of the timed steps
(torch.cuda.max_memory_allocated; "-" on the CPU).
--nproc N re-runs this script under torchrun with N processes (gloo on CPU, nccl on CUDA): the
global batch is split over them, as in training, and rank 0 prints the table.
--layouts R measures each config R times in the trainer's memory layout (channels_last for conv nets) and R
times with G, D and the EMA copy put back in the default contiguous layout, alternating, and prints both
rates (mean of the R) and their ratio: the layout's speed-up side by side in one run.
"""
import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gancore import distributed  # noqa: E402
from gancore.config import TrainConfig, check_split  # noqa: E402
from gancore.errors import GancoreError  # noqa: E402
from gancore.setup import load_and_resolve  # noqa: E402
from gancore.syncs import count_syncs  # noqa: E402
from gancore.trainer import Trainer  # noqa: E402

CONFIGS = {
    "mnist-5k dcgan": dict(dataset="mnist-5k"),
    "mnist-5k dcgan concat": dict(dataset="mnist-5k", conditioning="concat"),
    "digits dcgan concat": dict(dataset="digits", conditioning="concat"),
    "ring mlp": dict(dataset="ring"),
    "grid mlp": dict(dataset="grid"),
    "preset acgan": dict(preset="acgan"),
    "preset sngan-projection-hinge": dict(preset="sngan-projection-hinge"),
    "preset wgan-gp-grid": dict(preset="wgan-gp-grid"),
    "preset pacgan-grid": dict(preset="pacgan-grid"),
    # the GPU table's rows (issue 11): dcgan at 28 and 64 px, resnet at 32 px
    "mnist-5k dcgan 64px": dict(dataset="mnist-5k", image_size=64),
    "mnist-5k resnet 32px": dict(dataset="mnist-5k", model="resnet", image_size=32),
}


WARMUP_STEPS = 10  # compilation and cuDNN's autotuning happen here, outside the clock
SYNC_STEPS = 5  # steps counted for host syncs (the step makes the same calls every time); at most --steps
OPT_STEPS = 10  # steps timed with the GPU synchronised around each optimiser step; at most --steps


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pick_configs(text: str, known) -> list[str]:
    """The config names --configs gives: comma-separated, or space-separated. Names hold spaces themselves
    ("ring mlp"), so each run of words is read greedily as the longest known names it starts with."""
    names = []
    for part in text.split(","):
        words = part.split()
        while words:
            n = next((n for n in range(len(words), 0, -1) if " ".join(words[:n]) in known), 0)
            if not n:
                fail(f"--configs: no config is named {' '.join(words)!r} or starts it (known: {', '.join(known)})")
            names.append(" ".join(words[:n]))
            words = words[n:]
    return names


def batch_sizes(text: str) -> list[int]:
    """--batch_size: one global batch or a comma list of them ("" or 0: each config's own)."""
    try:
        sizes = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        fail(f"--batch_size: {text!r} is not a batch size or a comma list of them")
    if any(b < 0 for b in sizes):
        fail(f"--batch_size: {text!r} has a negative batch size")
    return sizes or [0]


def fail(message: str):
    """One line on stderr and exit code 2, as gancore's own CLI does."""
    print(f"train_speed.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


class OptimiserClock:
    """Wraps a trainer's optimiser steps (each scaler's `step`, which calls its optimiser's, and the optimisers'
    own `step` for a trainer that calls them directly) and adds up their seconds. A step inside another
    (scaler.step -> opt.step) counts once. The GPU is synchronised around each timed step, which serialises
    the queue, so this is installed for its own pass after the timed one."""

    def __init__(self, trainer):
        self.device, self.seconds, self.depth = trainer.device, 0.0, 0
        for obj in (trainer.scaler_d, trainer.scaler_g, trainer.opt_d, trainer.opt_g):
            obj.step = self.timed(obj.step)  # an instance attribute: shadows the class's method for this object only

    def timed(self, step):
        def wrapper(*args, **kwargs):
            if self.depth:
                return step(*args, **kwargs)
            self.depth += 1
            try:
                sync(self.device)
                t0 = time.perf_counter()
                result = step(*args, **kwargs)
                sync(self.device)
                self.seconds += time.perf_counter() - t0
            finally:
                self.depth -= 1
            return result
        return wrapper


def run_steps(trainer, n: int):
    for _ in range(n):
        trainer.step += 1
        trainer.grow()  # progressive: the stage and fade of the images seen (a no-op for the others)
        trainer.train_step(measure=False)


def measure(fields, args, world, batch_size: int = 0, contiguous: bool = False, extras: bool = True) -> dict:
    """One config's rates over the timed steps; with `extras`, also host syncs per step, the optimiser's share of
    step time and the peak GPU memory."""
    fields = {**fields, "device": args.device, "precision": args.precision, "compile": args.compile}
    if batch_size:
        fields["batch_size"] = batch_size
    cfg, data = load_and_resolve(TrainConfig.from_dict(fields))
    check_split(cfg, world.size)
    cuda = args.device == "cuda"
    if args.compile:  # each config and batch compiles as its training run would: its own static-shape graphs
        torch._dynamo.reset()
    if cuda:  # the peak of this config alone: the previous trainer (held in reference cycles) collected first
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(tmp, cfg, data, world=world)
        if contiguous:
            for m in (trainer.G, trainer.D, trainer.G_ema):
                if m is not None:
                    m.to(memory_format=torch.contiguous_format)
        run_steps(trainer, args.warmup)
        sync(trainer.device)
        distributed.broadcast(None, world)  # every rank starts the clock together
        t0 = time.perf_counter()
        run_steps(trainer, args.steps)
        sync(trainer.device)
        distributed.broadcast(None, world)
        seconds = time.perf_counter() - t0
        out = dict(cfg=cfg, steps_s=args.steps / seconds, img_s=args.steps * cfg.batch_size * cfg.n_critic / seconds,
                   peak=torch.cuda.max_memory_allocated() if cuda else None, syncs=None, where=None, opt_share=None)
        if not extras:
            return out
        n = min(SYNC_STEPS, args.steps)
        with count_syncs() as syncs:  # this rank's syncs; every rank makes the same calls
            run_steps(trainer, n)
        out.update(syncs=syncs.count / n, where=syncs.where, sync_steps=n)
        clock, step_seconds = OptimiserClock(trainer), 0.0
        for _ in range(min(OPT_STEPS, args.steps)):
            sync(trainer.device)
            t0 = time.perf_counter()
            run_steps(trainer, 1)
            sync(trainer.device)
            step_seconds += time.perf_counter() - t0
        out["opt_share"] = clock.seconds / step_seconds
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--steps", type=int, default=100, help="timed steps per config")
    p.add_argument("--warmup", type=int, default=WARMUP_STEPS, help="untimed steps first (compilation happens there)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--compile", action="store_true")
    p.add_argument("--batch_size", default="", help="global batch, or a comma list of them: a row each "
                   "(default: each config's own)")
    p.add_argument("--nproc", type=int, default=1, help="processes under torchrun")
    p.add_argument("--configs", default="", help='config names, comma- or space-separated (default: all): '
                   + ", ".join(CONFIGS))
    p.add_argument("--layouts", type=int, default=0, help="R: the trainer's layout against contiguous, R times each")
    p.add_argument("--extra", default="", help='more configs as JSON, {"label": {"field": value, ...}, ...}; '
                   "run with the named ones (or alone when --configs is empty)")
    args = p.parse_args()
    if args.steps < 1:
        fail(f"--steps: {args.steps}; at least 1 step is timed")
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS",
                                                             str(max(1, (os.cpu_count() or 1) // args.nproc))))
        # torchrun would take --nproc for its own option: the children get the other arguments
        rest = [a for a, prev in zip(sys.argv[1:], [""] + sys.argv[1:]) if a != "--nproc" and prev != "--nproc"
                and not a.startswith("--nproc=")]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
               __file__, *rest]
        raise SystemExit(subprocess.call(cmd, env=env))
    if args.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: torch sees no CUDA device here")
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    args.device = device
    extra = json.loads(args.extra) if args.extra else {}
    CONFIGS.update(extra)
    names = pick_configs(args.configs, CONFIGS) or list(extra) or list(CONFIGS)
    sizes = batch_sizes(args.batch_size)
    world = distributed.start(device)
    say = print if world.main else (lambda *a, **k: None)
    gpu = torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads per process"
    say(f"device: {gpu}; {world.size} process(es); torch {torch.__version__}; precision {args.precision}; "
        f"compile {args.compile}; {args.steps} timed steps per config\n")
    if args.layouts:
        say("| config | model | steps/s, trainer's layout | steps/s, contiguous | ratio |")
        say("|---|---|---|---|---|")
        for label in names:
            rates = {False: [], True: []}
            for _ in range(args.layouts):
                for contiguous in (False, True):
                    m = measure(CONFIGS[label], args, world, sizes[0], contiguous, extras=False)
                    rates[contiguous].append(m["steps_s"])
            mine, plain = (sum(r) / len(r) for r in (rates[False], rates[True]))
            say(f"| {label} | {m['cfg'].model} | {mine:.2f} | {plain:.2f} | {mine / plain:.2f} |", flush=True)
        return distributed.stop(world, ok=True)
    say("| config | model | width G/D | batch x n_critic | steps/s | images/s | host syncs/step | optimiser share "
        "| peak GPU memory |")
    say("|---|---|---|---|---|---|---|---|---|")
    synced = []  # (label, batch, where, steps counted) of the rows whose step reads values back
    for label in names:
        for batch in sizes:
            m = measure(CONFIGS[label], args, world, batch)
            cfg = m["cfg"]
            peak = f"{m['peak'] / 2**30:.2f} GiB" if m["peak"] is not None else "-"
            say(f"| {label} | {cfg.model} | {cfg.g_width}/{cfg.d_width} | {cfg.batch_size} x {cfg.n_critic} | "
                f"{m['steps_s']:.1f} | {m['img_s']:,.0f} | {m['syncs']:g} | {m['opt_share']:.1%} | {peak} |",
                flush=True)
            if m["syncs"]:
                synced.append((label, cfg.batch_size, m["where"], m["sync_steps"]))
    if synced:  # what to fix: each read's place in the code
        say()
    for label, batch, where, n in synced:
        say(f"host syncs of {label} (batch {batch}), per {n} steps: "
            + ", ".join(f"{place} x{count}" for place, count in where.most_common()))  # place: "file:line kind"
    distributed.stop(world, ok=True)


if __name__ == "__main__":
    try:
        main()
    except GancoreError as e:  # a config this device cannot train (bf16 on the CPU, ...): one line, as the CLI says it
        fail(str(e))
