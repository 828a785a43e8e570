"""Training throughput of the default configs on this machine's device: a table of images/s.

    python bench/train_speed.py [--device auto|cpu|cuda] [--steps 100]

Each config is built exactly as `gancore.train` builds it (defaults resolved against the data),
warmed up for 10 steps, then timed over --steps full training steps (D update + G update + EMA).
images/s counts real images shown to D.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gancore.config import TrainConfig  # noqa: E402
from gancore.setup import resolve, validate  # noqa: E402
from gancore.data import load_dataset  # noqa: E402
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
}


def measure(fields, device, steps):
    cfg = TrainConfig.from_dict({**fields, "device": device})
    validate(cfg)
    data = load_dataset(cfg.dataset)
    cfg = resolve(cfg, data)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(tmp, cfg, data)
        for _ in range(10):
            trainer.step += 1
            trainer.train_step(measure=False)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.step += 1
            trainer.train_step(measure=False)
        if trainer.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    return cfg, steps / seconds, steps * cfg.batch_size * cfg.n_critic / seconds


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=100)
    args = p.parse_args()
    name = torch.cuda.get_device_name() if args.device != "cpu" and torch.cuda.is_available() else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; {args.steps} timed steps per config\n")
    print("| config | model | width G/D | batch x n_critic | steps/s | images/s |")
    print("|---|---|---|---|---|---|")
    for label, fields in CONFIGS.items():
        cfg, steps_s, img_s = measure(fields, args.device, args.steps)
        print(f"| {label} | {cfg.model} | {cfg.g_width}/{cfg.d_width} | {cfg.batch_size} x {cfg.n_critic} | {steps_s:.1f} | {img_s:,.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
