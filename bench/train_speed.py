"""Training throughput of the default configs on this machine's device: a table of images/s.

    python bench/train_speed.py [--device auto|cpu|cuda] [--steps 100] [--precision fp32|bf16|fp16]
                                [--compile] [--batch_size N] [--nproc N] [--configs NAME,NAME]
                                [--extra '{"label": {"field": value}}']

Each config is built exactly as `gancore.train` builds it (defaults resolved against the data),
warmed up for 10 steps (compilation happens there), then timed over --steps full training steps
(D update + G update + EMA). images/s counts real images shown to D, all processes together.
--nproc N re-runs this script under torchrun with N processes (gloo on CPU, nccl on CUDA): the
global batch is split over them, as in training, and rank 0 prints the table.
--layouts R measures each config R times in the trainer's memory layout (channels_last for conv nets) and R
times with G, D and the EMA copy put back in the default contiguous layout, alternating, and prints both
rates (mean of the R) and their ratio: the layout's speed-up side by side in one run.
"""
import argparse
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
from gancore.config import TrainConfig  # noqa: E402
from gancore.setup import load_and_resolve  # noqa: E402
from gancore.trainer import Trainer, check_world  # noqa: E402

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


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fields, args, world, contiguous: bool = False):
    fields = {**fields, "device": args.device, "precision": args.precision, "compile": args.compile}
    if args.batch_size:
        fields["batch_size"] = args.batch_size
    cfg, data = load_and_resolve(TrainConfig.from_dict(fields))
    check_world(cfg, world)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(tmp, cfg, data, world=world)
        if contiguous:
            for m in (trainer.G, trainer.D, trainer.G_ema):
                if m is not None:
                    m.to(memory_format=torch.contiguous_format)
        for _ in range(10):
            trainer.step += 1
            trainer.grow()  # progressive: the stage and fade of the images seen (a no-op for the others)
            trainer.train_step(measure=False)
        sync(trainer.device)
        distributed.broadcast(None, world)  # every rank starts the clock together
        t0 = time.perf_counter()
        for _ in range(args.steps):
            trainer.step += 1
            trainer.grow()
            trainer.train_step(measure=False)
        sync(trainer.device)
        distributed.broadcast(None, world)
        seconds = time.perf_counter() - t0
    return cfg, args.steps / seconds, args.steps * cfg.batch_size * cfg.n_critic / seconds


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--compile", action="store_true")
    p.add_argument("--batch_size", type=int, default=0, help="global batch (default: each config's own)")
    p.add_argument("--nproc", type=int, default=1, help="processes under torchrun")
    p.add_argument("--configs", default="", help="comma list of config names (default: all)")
    p.add_argument("--layouts", type=int, default=0, help="R: the trainer's layout against contiguous, R times each")
    p.add_argument("--extra", default="", help='more configs as JSON, {"label": {"field": value, ...}, ...}; '
                   "run with the named ones (or alone when --configs is empty)")
    args = p.parse_args()
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS",
                                                             str(max(1, (os.cpu_count() or 1) // args.nproc))))
        # torchrun would take --nproc for its own option: the children get the other arguments
        rest = [a for a, prev in zip(sys.argv[1:], [""] + sys.argv[1:]) if a != "--nproc" and prev != "--nproc"
                and not a.startswith("--nproc=")]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}",
               __file__, *rest]
        raise SystemExit(subprocess.call(cmd, env=env))
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    args.device = device
    world = distributed.start(device)
    extra = json.loads(args.extra) if args.extra else {}
    CONFIGS.update(extra)
    names = [n.strip() for n in args.configs.split(",") if n.strip()] or list(extra) or list(CONFIGS)
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
                    cfg, steps_s, _ = measure(CONFIGS[label], args, world, contiguous)
                    rates[contiguous].append(steps_s)
            mine, plain = (sum(r) / len(r) for r in (rates[False], rates[True]))
            say(f"| {label} | {cfg.model} | {mine:.2f} | {plain:.2f} | {mine / plain:.2f} |", flush=True)
        return distributed.stop(world, ok=True)
    say("| config | model | width G/D | batch x n_critic | steps/s | images/s |")
    say("|---|---|---|---|---|---|")
    for label in names:
        cfg, steps_s, img_s = measure(CONFIGS[label], args, world)
        say(f"| {label} | {cfg.model} | {cfg.g_width}/{cfg.d_width} | {cfg.batch_size} x {cfg.n_critic} | "
            f"{steps_s:.1f} | {img_s:,.0f} |", flush=True)
    distributed.stop(world, ok=True)


if __name__ == "__main__":
    main()
