"""A training run's side of its run directory: what the loop writes while it trains, and what a checkpoint holds.

The Trainer (trainer.py) owns the devices, networks, optimisers and the step, and hands this module what is due:

- `Recorder`: train.log and metrics.jsonl (opened once per run), the progress bar, status.json's start,
  heartbeat and final state, the best checkpoint (checkpoints/best.pt and status.json's "best"), the progress
  grids, and the share of the CPU cores of a run the launcher placed;
- `evaluate`: the scores of this step, on the sampling G;
- `checkpoint_state` / `save_checkpoint` / `load_checkpoint`: everything a checkpoint holds (weights, optimisers,
  grad scalers, counters, every random stream) and continuing from it exactly;
- `RunningMeans`: the logged scalars since the last record, kept on the device until a record reads them.

Only rank 0 writes: the other ranks' log and metrics lines go to os.devnull (runs.py has the directory's contract).
"""
import contextlib
import json
import math
import os
import random
import socket
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import distributed, placement, runs
from .metrics import evaluate as score
from .records import LATEST, format_record, primary_score
from .sample import image_grid, points_image, to_uint8

HEARTBEAT_SECONDS = 10  # status.json's step is written at every record and at least this often
SHARE_SECONDS = 2  # a run placed on the CPU looks this often whether runs started or ended beside it


class Recorder:
    """What one run writes into its directory while it trains (rank 0; the others write to os.devnull)."""

    def __init__(self, run_dir, world: distributed.World = distributed.SINGLE):
        self.run_dir, self.world = Path(run_dir), world
        self.best = None  # status.json's "best": the evaluation behind checkpoints/best.pt
        self.log_file = self.metrics_file = self.bar = None
        self.last_beat = self.last_share = 0.0
        self.interval_start = (0.0, 0)  # (time, images seen) at the last logged record

    @contextlib.contextmanager
    def open(self, steps: int, step: int, images_seen: int):
        """train.log, metrics.jsonl and the progress bar, for the duration of the loop."""
        main = self.world.main
        with open(self.run_dir / "train.log" if main else os.devnull, "a") as self.log_file, \
                open(self.run_dir / "metrics.jsonl" if main else os.devnull, "a") as self.metrics_file, \
                tqdm(total=steps, initial=step, disable=not (main and sys.stderr.isatty()), dynamic_ncols=True) as bar:
            self.bar = bar
            self.last_beat = time.monotonic()
            self.interval_start = (time.monotonic(), images_seen)  # the speed of the first record is since now
            yield self

    def log(self, line, to_console=True):
        """A line in train.log and, unless a progress bar shows it, on stderr."""
        stamped = f"{datetime.now():%H:%M:%S} {line}"
        self.log_file.write(stamped + "\n")
        self.log_file.flush()
        if to_console and self.world.main:
            tqdm.write(stamped, file=sys.stderr)

    def begin(self, t, notes=()):
        """status.json says running; train.log says where and what, then the notes (a skipped checkpoint, ...)."""
        cfg = t.cfg
        if self.world.main:
            runs.update_status(self.run_dir, state="running", pid=os.getpid(), host=socket.gethostname(),
                               step=t.step, steps=cfg.steps, images_seen=t.images_seen, started=time.time(),
                               world_size=self.world.size)
        procs = f" x {self.world.size} processes" if self.world.multi else ""
        self.log(f"{'resumed at' if t.step else 'started'} step {t.step}/{cfg.steps} on {t.device}{procs} "
                 f"({cfg.dataset}, {cfg.model}, {cfg.loss}, conditioning={cfg.conditioning})")
        for note in notes:
            self.log(note)

    def record(self, t, due: set, means: dict, grad_norms: dict):
        """A due step's metrics line: the logged means (and speed, learning rates, gradient norms) when "log" is
        due, this step's scores when "eval" is (rank 0 alone evaluates); then its grid when "sample" is."""
        record = {}
        if "log" in due:
            now = time.monotonic()
            record = stats_record(t, means, grad_norms, self.interval_start, now)
            self.interval_start = (now, t.images_seen)
            self.bar.set_postfix({k: f"{means[k]:.3f}" for k in ("loss_d", "loss_g") if k in means})
        if "eval" in due and self.world.main:  # the other ranks go on to the next step's gradient exchange and wait
            scores = evaluate(t)
            record.update(scores)
            self.keep_best(t, scores)
            self.latest(t.step, scores)
        if record:
            self.write({"step": t.step, "images_seen": t.images_seen, "time": round(t.clock(), 3), **record},
                       logged="log" in due)
        if "sample" in due and self.world.main:
            self.save_samples(t)

    def write(self, record: dict, logged: bool):
        """A metrics line; `logged`: also train.log's line for it (4 significant digits)."""
        self.metrics_file.write(json.dumps(record) + "\n")
        self.metrics_file.flush()
        if logged:
            self.log(format_record(record), to_console=self.bar.disable)

    def latest(self, step: int, scores: dict):
        runs.update_status(self.run_dir, latest={"step": step, **{k: scores[k] for k in LATEST
                                                                   if scores.get(k) is not None}})

    def beat(self, t):
        """status.json's step, at every record and at least every HEARTBEAT_SECONDS; and the share of the cores."""
        if self.world.main:
            runs.update_status(self.run_dir, step=t.step, images_seen=t.images_seen,
                               trained_s=round(t.clock(), 3))  # training seconds, across resumes
            if not self.world.multi and time.monotonic() - self.last_share >= SHARE_SECONDS:
                self.share_cores(t.device)
                self.last_share = time.monotonic()
        self.last_beat = time.monotonic()

    def due_beat(self) -> bool:
        return time.monotonic() - self.last_beat > HEARTBEAT_SECONDS

    def share_cores(self, device):
        """A run the launcher placed on the CPU (status.json `placement`, no GPU) keeps its share of the cores
        as runs start and end beside it: threads = cores // processes training under the runs root, written to
        status.json `threads`. A run started by hand has no placement and keeps its threads."""
        if device.type != "cpu":
            return
        where = runs.read_status(self.run_dir).get("placement")
        if not where or where.get("gpus"):
            return
        threads = placement.cpu_share(Path(self.run_dir).resolve().parent)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
            runs.update_status(self.run_dir, threads=threads)  # now; `placement` stays the launcher's decision
            self.log(f"threads: now {threads} of {where.get('cores')} cores (runs beside it started or ended)")

    def finish(self, t, state: str, line: str, error: str | None = None):
        """The run's final state, written once (by rank 0): done, stopped or failed (with the reason)."""
        self.log(line)
        if self.world.main:
            runs.update_status(self.run_dir, state=state, step=t.step, images_seen=t.images_seen, error=error,
                               finished=time.time(), trained_s=round(t.clock(), 3))

    def keep_best(self, t, scores: dict):
        """Write checkpoints/best.pt (atomically) when this evaluation beats the best so far.

        Non-finite scores never replace it; status.json's "best" says which step it holds and why.
        """
        primary = primary_score(scores)
        if primary is None:
            return
        name, key = primary
        if self.best is not None and key <= primary_score(self.best["value"])[1]:
            return
        runs.torch_save_atomic(checkpoint_state(t, t.clock()), runs.best_checkpoint_path(self.run_dir))
        value = {k: scores[k] for k in name.split(",")}
        self.best = {"step": t.step, "metric": name, "value": value, "path": "checkpoints/best.pt",
                     "provenance": scores.get("provenance")}
        runs.update_status(self.run_dir, best=self.best)

    def resume_best(self, step: int):
        """The best so far when resuming: kept if it is at or before the resumed step, else forgotten (its
        checkpoint is from steps that are being redone)."""
        if not self.world.main:
            return
        best = runs.read_status(self.run_dir).get("best")
        if isinstance(best, dict) and isinstance(best.get("value"), dict) and best.get("step", math.inf) <= step \
                and primary_score(best["value"]):
            self.best = best
            return
        runs.best_checkpoint_path(self.run_dir).unlink(missing_ok=True)
        runs.update_status(self.run_dir, best=None)

    @torch.no_grad()
    def save_samples(self, t):
        """The progress grid of this step, always from the same fixed noise batch."""
        with t.sampling_generator() as G:
            out = G(t.fixed_z, t.fixed_y).float().cpu()
        stem = self.run_dir / "samples" / f"step_{t.step:07d}"
        if t.data.kind == "points":
            runs.save_npz_atomic(stem.with_suffix(".npz"), points=out.numpy())
            img = points_image(out.numpy(), t.data.modes.cpu().numpy())
        else:
            img = image_grid(to_uint8(out), ncol=10 if t.conditional else 8)
        runs.save_png_atomic(img, stem.with_suffix(".png"))


def stats_record(t, means: dict, grad_norms: dict, interval_start: tuple, now: float) -> dict:
    """A logged record: the means since the last one, the measured step's gradient norms (none when fp16's scaler
    skipped that step: they are inf), the learning rates, the speed, and progressive growing's stage."""
    t_start, seen_start = interval_start
    skipped = grad_norms.get("skipped")
    norms = {} if skipped is not None and bool(skipped) else {k: float(v) for k, v in grad_norms.items()
                                                              if k != "skipped"}
    return {
        **means,  # loss_d, loss_g, d_real, d_fake, and gp / r1 / the conditioning's terms when on
        **norms,
        "lr_d": t.opt_d.param_groups[0]["lr"],
        "lr_g": t.opt_g.param_groups[0]["lr"],
        "img_per_s": (t.images_seen - seen_start) / max(now - t_start, 1e-9),
        **({"resolution": 4 * 2 ** t.phase[0], "alpha": round(t.phase[1], 4)} if t.schedule else {}),
    }


def evaluate(t) -> dict:
    """The metrics of this step (metrics.evaluate), with `eval_s`, the seconds they took."""
    start = time.perf_counter()
    # training RNG untouched: the CPU's, and the GPU's when training on one
    gpus = [t.device.index if t.device.index is not None else torch.cuda.current_device()] \
        if t.device.type == "cuda" else []
    with t.sampling_generator() as G, torch.random.fork_rng(devices=gpus):
        scores = score(G, t.cfg.z_dim, t.data, t.conditional, n=t.cfg.eval_n, seed=t.cfg.seed, scorer=t.scorer,
                       device=t.device)
    return {**scores, "eval_s": round(time.perf_counter() - start, 3)} if scores else {}


# ---------------------------------------------------------------- checkpoints
def save_checkpoint(t, elapsed):
    """Every rank hands its RNG streams to rank 0 (a collective), which writes the checkpoint; every rank takes
    rank 0's batch-norm statistics, the ones the checkpoint holds."""
    distributed.broadcast_buffers(t.world, t.G, t.D)
    ranks = distributed.gather(rng_state(t), t.world) if t.world.multi else None
    if t.world.main:
        runs.torch_save_atomic(checkpoint_state(t, elapsed, ranks), runs.checkpoint_path(t.run_dir, t.step))


def checkpoint_state(t, elapsed, ranks=None) -> dict:
    """What a checkpoint holds. `rng` is this rank's streams; with several processes `rng["ranks"]` holds
    every rank's, so a resume with as many processes continues each one exactly."""
    rng = rng_state(t)
    if ranks is not None:
        rng["ranks"] = ranks
    t.settle_ema_norms()  # the EMA G that `gancore sample` and the dashboard load
    return {
        "step": t.step,
        "images_seen": t.images_seen,
        "elapsed": elapsed,
        "world_size": t.world.size,
        "config": t.cfg.to_dict(),
        "G": t.G.state_dict(),
        "D": t.D.state_dict(),
        "G_ema": t.G_ema.state_dict() if t.G_ema is not None else None,
        "opt_g": t.opt_g.state_dict(),
        "opt_d": t.opt_d.state_dict(),
        "scaler_g": t.scaler_g.state_dict(),
        "scaler_d": t.scaler_d.state_dict(),
        "rng": rng,
    }


def rng_state(t) -> dict:
    """This process's random streams, with the kind of device its generators live on."""
    return {
        "device": t.device.type,  # CPU generators are MT19937, CUDA ones Philox: states do not cross
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(t.device) if t.device.type == "cuda" else None,
        "numpy": numpy_rng_state(),
        "python": random.getstate(),
        "data": t.gen_data.get_state(),
        "z": t.gen_z.get_state(),
        "loader": t.loader.state() if t.loader else None,  # streamed data: batches consumed
    }


def load_checkpoint(t, state: dict):
    """Continue from a checkpoint's state (runs.load_checkpoint: tensors on the CPU).

    Weights, optimisers and counters always continue exactly; so do the batches and noise (global streams,
    the same on every rank) on the same kind of device. The other random streams (dropout, augmentation,
    penalties' draws: each rank's own) continue when as many processes resume; otherwise each rank starts
    them fresh, seeded from (seed, step, rank), and train.log says so. A run moved between CPU and GPU
    starts every stream fresh (MT19937 and Philox states do not cross).
    """
    t.G.load_state_dict(state["G"])
    t.D.load_state_dict(state["D"])
    if t.G_ema is not None and state["G_ema"] is not None:
        t.G_ema.load_state_dict(state["G_ema"])
    load_optimizer(t.opt_g, state["opt_g"])
    load_optimizer(t.opt_d, state["opt_d"])
    for scaler, saved in ((t.scaler_g, state["scaler_g"]), (t.scaler_d, state["scaler_d"])):
        if saved or not scaler.is_enabled():  # fp16 now, no scaler then (another device): it starts afresh
            scaler.load_state_dict(saved)
    t.step, t.images_seen, t.elapsed = state["step"], state["images_seen"], state["elapsed"]
    rng, saved_world = state["rng"], state.get("world_size", 1)
    shared = rng["ranks"][0] if "ranks" in rng else rng  # batches and noise: the same on every rank
    mine = (rng["ranks"][t.world.rank] if "ranks" in rng else rng) if saved_world == t.world.size else None
    saved_device = shared.get("device", state["config"].get("device"))  # older checkpoints: the run's device
    fresh = t.cfg.seed + 7919 * t.step
    if saved_device != t.device.type:
        torch.manual_seed(distributed.rank_seed(fresh, t.world.rank))
        t.gen_data.manual_seed(fresh + 1)
        t.gen_z.manual_seed(fresh + 2)
        t.notes.append(f"resume: it was trained on {saved_device}, it resumes on {t.device.type}; weights, "
                       f"optimisers and counters continue exactly, batches and noise from fresh streams "
                       f"seeded from (seed, step {t.step})")
        if t.loader:
            t.loader.close()
            t.loader = t.data.loader(t.cfg.batch_size, fresh + 1, t.device, part=t.part)
        return
    t.gen_data.set_state(shared["data"].cpu())  # generator states are CPU byte tensors, whatever the device
    t.gen_z.set_state(shared["z"].cpu())
    if t.loader:  # one batch per D update so far (checkpoints from before streaming have no count)
        t.loader.load_state(shared.get("loader") or {"k": t.step * t.cfg.n_critic})
    if mine is None:
        torch.manual_seed(distributed.rank_seed(fresh, t.world.rank))
        t.notes.append(f"resume: {saved_world} process(es) trained it, {t.world.size} resume it; weights, "
                       f"optimisers, counters, batches and noise continue exactly, dropout and augmentation "
                       f"draws from fresh streams seeded from (seed, step {t.step}, rank)")
        return
    torch.set_rng_state(mine["torch"].cpu())
    cuda = mine.get("cuda")
    if isinstance(cuda, list):  # older checkpoints: every visible GPU's state; ours is the first
        cuda = cuda[0] if cuda else None
    if cuda is not None and t.device.type == "cuda":
        torch.cuda.set_rng_state(cuda.cpu(), t.device)
    name, key, *rest = mine["numpy"]
    np.random.set_state((name, np.array(key, dtype=np.uint32), *rest))
    random.setstate((mine["python"][0], tuple(mine["python"][1]), mine["python"][2]))


def load_optimizer(opt, state: dict) -> None:
    """An optimiser's saved state, with the kernel flags of this device (make_optimizer's), not of the one that
    saved it: a CPU run's Adam (fused None) resumed on a GPU keeps the fused kernel, and a GPU run's on a CPU
    drops it. Set before loading, so that Adam places its step counters where that kernel wants them."""
    flags = ("fused", "foreach", "capturable")
    groups = [{**saved, **{k: mine[k] for k in flags if k in mine}}
              for saved, mine in zip(state["param_groups"], opt.param_groups)]
    opt.load_state_dict({**state, "param_groups": groups})


def numpy_rng_state() -> list:
    """numpy's RNG state with its key array as a list, so checkpoints load with weights_only=True."""
    name, key, pos, has_gauss, cached = np.random.get_state()
    return [name, key.tolist(), pos, has_gauss, cached]


class RunningMeans:
    """Sums of per-step scalar tensors; read back (one device sync) only when a record is due.

    fp16: a step the grad scaler skipped (its gradients overflowed; `skipped` a device bool) is left out of the
    means (its values may be inf or NaN while nothing was wrong) and counted as `amp_skipped`; when every step
    since the last record was skipped the means hold that count alone."""

    def __init__(self):
        self.sums, self.n, self.skipped = {}, 0, None

    def add(self, values: dict, skipped=None):
        if skipped is not None:
            values = {k: torch.where(skipped, torch.zeros_like(v), v) for k, v in values.items()}
            self.skipped = skipped.float() if self.skipped is None else self.skipped + skipped.float()
        for k, v in values.items():
            self.sums[k] = self.sums[k] + v if k in self.sums else v
        self.n += 1

    def means(self) -> dict:
        if not self.n:
            return {}
        skipped = self.skipped if self.skipped is not None else torch.zeros(())
        *sums, skipped = torch.stack([*self.sums.values(), skipped.to(torch.float32)]).tolist()
        kept = self.n - skipped
        means = {k: v / kept for k, v in zip(self.sums, sums)} if kept else {}
        return {**means, "amp_skipped": int(skipped)} if self.skipped is not None else means

    def reset(self):
        self.sums, self.n, self.skipped = {}, 0, None
