"""The training loop: build everything from a config, then D update(s) and a G update per step.

`train(config)` starts a new run directory; `train(resume=RUN_DIR)` continues one from its latest
checkpoint, exactly (weights, optimisers, grad scalers, EMA, counters and every RNG state come
back). The loop writes only into the run directory (see runs.py for the contract).
"""
import contextlib
import copy
import functools
import json
import math
import os
import random
import signal
import socket
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import distributed, runs
from .augment import diff_augment, parse_policy
from .conditioning import METHODS
from .data import share
from .config import TrainConfig, check_split, coerce
from .errors import ConfigError, GancoreError, RunError
from .losses import LOSSES, d_output, feature_matching
from .metrics import evaluate
from .models import build_models, sampling_view
from .models.progressive import ProgressiveGenerator, Schedule, fade_real
from .records import LATEST, format_record, primary_score
from .regularizers import clip_weights, gradient_penalty, r1_penalty
from .sample import image_grid, points_image, to_uint8
from .setup import RESUMABLE_FIELDS, default_name, load_and_resolve

HEARTBEAT_SECONDS = 10
SHARE_SECONDS = 2  # a run placed on the CPU looks this often whether runs started or ended beside it
STOP_CHECK_STEPS = 10  # several processes agree on a stop request this often (and at every record)
# Test-only: torch.compile's backend ("eager" checks graph capture and recompiles without a C compiler)
COMPILE_BACKEND_ENV = "GANCORE_COMPILE_BACKEND"
# fp16: a grad scale backed off below this (from 2^16, 24 skipped steps in a row) means the gradients overflow
# however small the scale: the run has diverged, and fails as a non-finite loss does
MIN_GRAD_SCALE = 2.0 ** -8


class RunFailed(RuntimeError):
    """Training stopped on a non-finite loss; `run_dir` holds the run, marked failed."""

    def __init__(self, message, run_dir):
        super().__init__(message)
        self.run_dir = run_dir


def train(config=None, *, resume=None, **overrides) -> str:
    """Train a GAN; returns the run directory. `config`: a TrainConfig, a dict of fields, or None (defaults).

    Under torchrun every process calls this with the same fields; rank 0 makes and writes the run
    directory, the others train beside it (distributed.py).
    """
    if resume is not None:
        changes = dict(config or {}) if not isinstance(config, TrainConfig) else {}
        return resume_run(resume, {**changes, **overrides})
    if isinstance(config, TrainConfig):
        config = config.explicit_fields()  # so that a preset fills only the fields left at their defaults
    cfg, data = load_and_resolve({**(config or {}), **overrides}, make_root=True)  # every rank: same checks, data
    train_evaluator_first(cfg, data)
    world = distributed.start(cfg.device)
    check_split(cfg, world.size)
    scorer, note = None, None

    def create():  # rank 0: the evaluator, then the run directory (a failure in the first leaves nothing behind)
        nonlocal scorer, note
        scorer, note = image_scorer(cfg, data)
        run_dir = runs.claim_run_dir(cfg.runs_root, cfg.name or default_name(cfg), numbered=not cfg.name)
        cfg.name = run_dir.name
        runs.write_json_atomic(run_dir / "config.json", cfg.to_dict())
        runs.write_json_atomic(run_dir / "data.json", data_info(data, cfg))
        runs.update_status(run_dir, state="queued", pid=os.getpid(), host=socket.gethostname(), step=0,
                           steps=cfg.steps, images_seen=0, error=None, resumes=[], created=time.time(),
                           world_size=world.size)
        return str(run_dir)

    run_dir = Path(on_main(create, world))
    cfg.name = run_dir.name
    try:
        trainer = Trainer(run_dir, cfg, data, scorer=scorer, notes=[note] if note else [], world=world)
    except BaseException as e:  # never leave "queued" behind without a process
        if world.main:
            runs.update_status(run_dir, state="failed", pid=None, error=f"{type(e).__name__}: {e}",
                               finished=time.time())
        raise
    return run_and_leave(trainer)


def run_and_leave(trainer) -> str:
    """trainer.run(), then leave the process group (several processes) whatever the outcome."""
    ok = False
    try:
        run_dir = trainer.run()
        ok = True
        return run_dir
    finally:
        if trainer.loader:
            trainer.loader.close()
        distributed.stop(trainer.world, ok)


def on_main(make, world):
    """make() on rank 0 only; its result, or its one-line error, reaches every rank (which then all stop)."""
    result, error = None, None
    if world.main:
        try:
            result = make()
        except GancoreError as e:
            error = e
    result, message = distributed.broadcast((result, None if error is None else str(error)), world)
    if message is not None:
        raise error if world.main else RunError(message)
    return result


def resume_run(run_dir, changes: dict) -> str:
    """Continue a run in place from its newest checkpoint that loads; `changes` may only touch RESUMABLE_FIELDS.

    Unreadable newer checkpoints are skipped (and said so in train.log and on stderr) and kept on disk;
    when none loads, nothing changes and RunError names them. A resume that fails before training
    puts back the run's previous state, with the reason in `error`. A run may resume with another
    number of processes than it trained with.
    """
    world = distributed.env_world()
    if world.multi:
        world = join_to_resume(run_dir, changes, world)
    run_dir = runs.check_run_dir(run_dir)
    status = runs.read_status(run_dir)
    # the pid launch.resume recorded is this process, or under torchrun its parent (the torchrun agent)
    if world.main and runs.is_active(status) and status.get("pid") not in (os.getpid(), os.getppid()):
        raise RunError(f"--resume: {run_dir} is still being trained by pid {status.get('pid')}")
    # launch.resume marks the run queued before this process starts, keeping what it was in before_resume
    before = status.get("before_resume") if status.get("state") == "queued" else None
    previous = before or {"state": status.get("state"), "error": status.get("error")}
    try:
        stored = runs.read_config(run_dir)
        TrainConfig.from_dict(changes, source="--resume")  # unknown fields and bad types fail here
        for key, value in changes.items():
            if key not in RESUMABLE_FIELDS and coerce(key, value) != stored.get(key):
                raise ConfigError(f"--{key}: cannot change when resuming (only {', '.join(RESUMABLE_FIELDS)} can)")
        fields, moved = moved_device(stored, changes)
        cfg, data = load_and_resolve(fields, source=str(run_dir / "config.json"))
        if moved:
            moved.append(f"precision {stored.get('precision')} -> {cfg.precision}")
        train_evaluator_first(cfg, data)
        skipped = []
        loaded = runs.latest_loadable_checkpoint(run_dir, on_skip=skipped.append)
        if loaded:
            runs.check_resumable(loaded[1], loaded[2])  # a sampling-only checkpoint (gancore/pretrained/)
        if loaded is None and runs.checkpoints(run_dir):
            raise runs.CheckpointError(f"--resume: no checkpoint of {run_dir} loads; " + "; ".join(skipped)
                                       + " (nothing was changed or deleted)")
        start, _, state = loaded or (0, None, None)
        if cfg.steps < start:
            raise ConfigError(f"--steps: {cfg.steps} is before the latest checkpoint (step {start})")
        world = distributed.start(cfg.device)
        check_split(cfg, world.size)
        scorer, note = image_scorer(cfg, data) if world.main else (None, None)
        distributed.broadcast(None, world)  # every rank has read the run before rank 0 writes to it
    except BaseException as e:
        if before is not None and world.main:  # the launcher said "queued": put back what the run was, saying why
            reason = str(e) if isinstance(e, GancoreError) else f"{type(e).__name__}: {e}"
            runs.update_status(run_dir, state=previous["state"], error=f"resume failed: {reason}", before_resume=None)
        raise
    if world.main:
        runs.write_json_atomic(run_dir / "config.json", cfg.to_dict())
        runs.truncate_metrics(run_dir, start)
        resumes = status.get("resumes", []) + [{"step": start, "time": time.time()}]
        runs.update_status(run_dir, state="queued", pid=os.getpid(), host=socket.gethostname(),
                           steps=cfg.steps, error=None, resumes=resumes, before_resume=None, world_size=world.size)
    notes = [f"resume: {msg}; continuing from step {start}" for msg in skipped] + ([note] if note else []) \
        + ([f"resume: {'; '.join(moved)}"] if moved else [])
    try:
        trainer = Trainer(run_dir, cfg, data, resume_state=state, scorer=scorer, notes=notes, world=world)
    except BaseException as e:
        if world.main:
            runs.update_status(run_dir, state=previous["state"], pid=None,
                               error=f"resume failed: {type(e).__name__}: {e}")
        raise
    return run_and_leave(trainer)


def moved_device(stored: dict, changes: dict) -> tuple[dict, list[str]]:
    """The fields a resume resolves, and what moved when the run changes the kind of device it trains on.

    A run trained on a GPU resumes on a machine without one on the CPU (its stored device says cuda); and
    wherever the device kind changes (that, or --device), the precision is chosen again for the new device
    (`precision auto`: a GPU's bf16 does not exist on a CPU, and a CPU run moved to a GPU takes its fast path)."""
    fields = {**stored, **changes}
    notes = []
    if "device" not in changes and stored.get("device") == "cuda" and not torch.cuda.is_available():
        fields["device"] = "cpu"
        notes.append("it trained on cuda and this machine has no CUDA device: it continues on the cpu")
    kind = fields.get("device", "auto")
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    if stored.get("device") not in (None, kind):
        fields["precision"] = "auto"
        notes = notes or [f"device {stored.get('device')} -> {kind}"]
    return fields, notes


def join_to_resume(run_dir, changes: dict, world):
    """Several processes resuming, maybe on several machines: join the process group first, then check that every
    rank sees the run directory. On several machines a resume needs it on a filesystem they all share; a rank
    that cannot see it must not stop alone, leaving the others waiting at the rendezvous: all stop, one line."""
    path = runs.check_run_dir(run_dir) if (Path(run_dir) / "config.json").is_file() else Path(run_dir)
    visible = (path / "config.json").is_file() and not distributed.injected(world, "no-run-dir")
    if visible:
        fields, _ = moved_device(runs.read_config(path), changes)
        device = fields.get("device", "auto")
    else:  # the device the others will most likely pick: this machine's
        device = changes.get("device", "auto")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    world = distributed.start(device)
    seen = distributed.gather((visible, socket.gethostname()), world)
    blind = [f"{host} (rank {rank})" for rank, (ok, host) in enumerate(seen) if not ok]
    if blind:
        raise RunError(f"--resume: {run_dir} is not visible on {', '.join(blind)}; resuming on several machines "
                       f"needs the run directory on a filesystem all of them share")
    return world


def train_evaluator_first(cfg, data) -> None:
    """--eval_train_evaluator: train (or find) the evaluator before the process group starts. The first process
    to get there trains it and the others wait for it on its cache's file lock, which has no timeout; waiting in a
    collective instead (while rank 0 alone trained it) would hit the group's timeout on a slow machine."""
    if not (cfg.eval_train_evaluator and data.kind == "image" and cfg.eval_every and cfg.fid_backend == "evaluator"):
        return
    from .evaluator import EvaluatorError, evaluator_for

    try:
        evaluator_for(data, train_if_missing=True)
    except EvaluatorError as e:
        raise ConfigError(f"--eval_train_evaluator: {e}") from None


def image_scorer(cfg, data):
    """(ImageScorer or None, note): what computes this run's image metrics, or why nothing does.

    The shipped or cached evaluator of this data; with eval_train_evaluator, one trained now. Without
    one the run trains anyway, with a note in train.log saying how to get one.
    """
    if data.kind != "image" or cfg.eval_every == 0:
        return None, None
    from .evaluator import EvaluatorError
    from .image_metrics import scorer_for  # torchmetrics: imported only when it will be used

    try:
        return scorer_for(data, cfg.fid_backend, train=cfg.eval_train_evaluator, device=cfg.device), None
    except EvaluatorError as e:
        if cfg.eval_train_evaluator:
            raise ConfigError(f"--eval_train_evaluator: {e}") from None
        from .metrics import STACKED

        if data.name == STACKED:  # its mode count needs no evaluator of its own (metrics.triple_counts)
            return None, "FID/KID/IS off (no stacked-mnist evaluator); modes and reverse KL are counted"
        hint = "" if data.y is None else (
            f"; for this data: `python -m gancore train-evaluator --dataset {cfg.dataset}"
            f"{' --data_path ' + cfg.data_path if cfg.data_path else ''} --image_size {cfg.image_size} "
            f"--channels {cfg.channels}`, or launch with --eval_train_evaluator true")
        return None, f"image metrics off: {e}{hint}"


def make_optimizer(cfg, model, lr):
    """Adam or RMSprop; on a GPU, Adam's fused kernel (one launch for all parameters)."""
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    fused = {"fused": True} if next(model.parameters()).is_cuda else {}
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay,
                            **fused)


def load_optimizer(opt, state: dict) -> None:
    """An optimiser's saved state, with the kernel flags of this device (make_optimizer's), not of the one that
    saved it: a CPU run's Adam (fused None) resumed on a GPU keeps the fused kernel, and a GPU run's on a CPU
    drops it. Set before loading, so that Adam places its step counters where that kernel wants them."""
    flags = ("fused", "foreach", "capturable")
    groups = [{**saved, **{k: mine[k] for k in flags if k in mine}}
              for saved, mine in zip(state["param_groups"], opt.param_groups)]
    opt.load_state_dict({**state, "param_groups": groups})


def data_info(data, cfg) -> dict:
    return {
        "kind": data.kind,
        "shape": list(data.shape),
        "num_classes": data.num_classes,
        "class_names": list(data.class_names),
        "conditional": cfg.conditioning != "none",
        "size": len(data),
        "modes": data.modes.tolist() if data.modes is not None else None,
        "sigma": data.sigma,
    }


class StopRequested:
    """Turns SIGTERM/SIGINT into a flag the loop checks once per step (handlers only in the main thread)."""

    def __init__(self):
        self.signal = None
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def handle(self, signum, frame):
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class Trainer:
    """One run's networks, optimisers and RNG streams, and the loop that trains them into `run_dir`.

    resume_state: a checkpoint's state (runs.load_checkpoint) to continue from exactly.
    notes: lines for train.log (and stderr) when the run starts: a skipped checkpoint, metrics off.
    """

    def __init__(self, run_dir, cfg: TrainConfig, data, resume_state=None, scorer=None, notes=(),
                 world: distributed.World = distributed.SINGLE):
        self.run_dir, self.cfg, self.world = Path(run_dir), cfg, world
        self.device = torch.device("cuda", world.local_rank) if cfg.device == "cuda" and world.multi \
            else torch.device(cfg.device)
        if self.device.type == "cuda":  # the fast path: TF32 matmuls and convolutions, cuDNN's autotuner
            # (the fp32_precision settings: torch 2.9+ deprecates allow_tf32, and inductor refuses a mix of both)
            torch.backends.cuda.matmul.fp32_precision = "tf32"
            torch.backends.cudnn.conv.fp32_precision = "tf32"
            torch.backends.cudnn.benchmark = True
        self.data = data.to(self.device)
        self.batch = cfg.batch_size // world.size  # batch_size is global: each process draws its share
        self.part = (world.rank, world.size)  # this process's slice of every global batch of images and noise
        self.conditional = cfg.conditioning != "none"
        self.method = METHODS[cfg.conditioning]  # owns its extra loss terms (ACGAN's class loss)
        self.d_loss, self.g_loss = LOSSES[cfg.loss]

        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        np.random.seed(cfg.seed)
        random.seed(cfg.seed)
        self.G, self.D = build_models(cfg, data.shape, data.num_classes)
        # conv nets: channels_last, the layout tensor cores read without a transpose and oneDNN's CPU kernels run
        # fastest in (1.12-1.32x the CPU steps/s of the default layout, docs/benchmarks.md)
        layout = torch.channels_last if cfg.model != "mlp" else torch.contiguous_format
        self.G.to(self.device, memory_format=layout)
        self.D.to(self.device, memory_format=layout)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if cfg.ema else None
        self.opt_g = make_optimizer(cfg, self.G, cfg.lr_g)
        self.opt_d = make_optimizer(cfg, self.D, cfg.lr_d)
        if world.rank:  # every other rank: its own dropout, augmentation and penalty draws (rank 0 keeps the run's)
            torch.manual_seed(distributed.rank_seed(cfg.seed, world.rank))
        self.augment_policy = parse_policy(cfg.diffaug)
        fp16 = cfg.precision == "fp16"
        # One scaler per optimiser: D steps n_critic times per G step, and a scaler updates once per step.
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
        self.autocast = lambda: torch.autocast(self.device.type, dtype=amp_dtype, enabled=amp_dtype is not None)

        # What each update calls. Several processes: DDP wrappers that average gradients over the ranks and
        # broadcast rank 0's buffers (batch-norm statistics, spectral-norm vectors) at every forward. The G
        # step judges with the plain D: its parameters are frozen there, and DDP must not wait for their
        # gradients. --compile: torch.compile on top (the plain modules keep the weights and the checkpoints).
        self.G_step, self.D_step, self.D_frozen = self.G, self.D, self.D
        if world.multi:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            # progressive growing: the layers of stages not reached yet get no gradient, which DDP must expect
            unused = isinstance(self.G, ProgressiveGenerator)
            self.G_step = DDP(self.G, device_ids=ids, find_unused_parameters=unused)  # buffers follow rank 0
            self.D_step = DDP(self.D, device_ids=ids, find_unused_parameters=unused)
        if cfg.compile:
            compile = functools.partial(torch.compile, backend=os.environ.get(COMPILE_BACKEND_ENV, "inductor"))
            self.G_step, self.D_step = compile(self.G_step), compile(self.D_step)
            self.D_frozen = self.D_step if not world.multi else compile(self.D)

        # Separate generators: batch indices and training noise are reproducible and resumable,
        # and sampling/evaluation never disturb the training stream. Every rank draws the same global batch
        # and keeps its slice (`part`): N processes train on the images and noise one process would draw.
        self.gen_data = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        self.gen_z = torch.Generator(device=self.device).manual_seed(cfg.seed + 2)
        self.fixed_z, self.fixed_y = self.fixed_batch()
        # Progressive growing: the stage and fade follow the real images seen (so a resume lands mid-fade exactly)
        self.schedule = Schedule(self.G.stages, cfg.fade_images, cfg.stable_images) \
            if isinstance(self.G, ProgressiveGenerator) else None
        self.phase = (0, 1.0)
        # A dataset too large for the device streams from its memory map: batch k's indices are a function of
        # (seed, k), gathered ahead by a background thread (data.Loader); in memory, indices come from gen_data.
        self.loader = self.data.loader(cfg.batch_size, cfg.seed + 1, self.device, part=self.part) \
            if self.data.streamed else None

        self.scorer, self.notes = scorer, list(notes)  # scorer: image metrics (None: 2-D data, or no evaluator)
        self.step, self.images_seen, self.elapsed = 0, 0, 0.0
        self.settled_step = None  # the step whose EMA G has its own batch-norm statistics (settle_ema_norms)
        self.best = None  # status.json's "best": the evaluation behind checkpoints/best.pt
        if resume_state is not None:
            self.load_checkpoint(resume_state)
            self.best = self.resumed_best() if world.main else None

    def fixed_batch(self):
        """The noise (and labels) behind every progress grid: a row of 10 per class, 8x8, or 2,500 points."""
        gen = torch.Generator().manual_seed(self.cfg.seed + 3)
        if self.data.kind == "points":
            n, y = 2500, None
        elif self.conditional:
            k = min(self.data.num_classes, 20)
            n, y = 10 * k, torch.arange(k).repeat_interleave(10)
        else:
            n, y = 64, None
        if y is None and self.conditional:
            y = torch.randint(0, self.data.num_classes, (n,), generator=gen)
        z = torch.randn(n, self.cfg.z_dim, generator=gen)
        return z.to(self.device), (y.to(self.device) if y is not None else None)

    # ---------------------------------------------------------------- one training step
    def noise(self):
        """This process's share of a global batch of noise, and of random labels when conditional."""
        n = self.cfg.batch_size
        z = torch.randn(n, self.cfg.z_dim, generator=self.gen_z, device=self.device)
        y = None
        if self.conditional:
            y = share(torch.randint(0, self.data.num_classes, (n,), generator=self.gen_z, device=self.device),
                      self.part)
        return share(z, self.part), y

    def D_judge(self, x, y, D=None):
        """D's (logits, class_logits, features) on what it sees: DiffAugment first when on (real and fake alike).
        D always gets y; the conditioning method decides whether it looks at it. D: the D step's by default."""
        if self.augment_policy:
            x = diff_augment(x, self.augment_policy)
        return (D if D is not None else self.D_step)(x, y)

    def optimizer_step(self, loss, model, opt, scaler, measure: bool):
        """Backward, optional gradient clipping, step. Returns (the gradient norm before clipping when measured,
        whether fp16's grad scaler skipped the step as a device bool tensor, or None without a scaler)."""
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        norm = None
        if measure or self.cfg.grad_clip:
            scaler.unscale_(opt)
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), self.cfg.grad_clip or math.inf)
        if not scaler.is_enabled():
            opt.step()
            return norm, None
        # A step with inf/NaN gradients is skipped and the scale backs off: a smaller scale after update() says
        # so, read on the device (get_scale() and found_inf's .item() would each wait for the GPU).
        before = scaler._get_scale_async().clone()
        scaler.step(opt)
        scaler.update()
        return norm, scaler._get_scale_async() < before

    def train_step(self, measure: bool) -> dict:
        """One G step and its D steps; returns detached scalars to log (and gradient norms when measured)."""
        cfg = self.cfg
        out = {}

        # (1) Update D: n_critic times on fresh real and fake batches.
        self.D.requires_grad_(True)
        skipped = None  # fp16: whether the grad scaler skipped any of this step's updates (a device tensor)
        for _ in range(cfg.n_critic):
            # (B, ...) and labels or None: this process's share of a global batch
            x, y = self.loader.next() if self.loader else self.data.batch(cfg.batch_size, self.gen_data, self.part)
            if self.schedule:  # real images at the stage's resolution, faded as G's output is
                x = fade_real(x, *self.phase)
            z, _ = self.noise()
            y = y if self.conditional else None  # fakes get the real batch's labels
            with self.autocast():
                with torch.no_grad():
                    fake = self.G_step(z, y)
                real_logits, real_cls, real_features = self.D_judge(x, y)
                fake_logits, fake_cls, _ = self.D_judge(fake, y)
                loss_d = self.d_loss(real_logits.float(), fake_logits.float(), cfg.label_smoothing)
                extra, logs = self.method.d_loss(cfg, real_cls, fake_cls, y)  # ACGAN's class loss; 0 for the others
                loss_d = loss_d + extra
                out.update(logs)
                if cfg.loss == "wgan-gp":
                    gp = gradient_penalty(self.D_judge, x, fake, y, self.scaler_d)
                    loss_d = loss_d + cfg.gp_weight * gp
                    out["gp"] = gp
                if cfg.drift:  # keeps the critic's scores near 0 (WGAN's D is otherwise free to drift)
                    drift = real_logits.float().pow(2).mean()
                    loss_d = loss_d + cfg.drift * drift
                    out["drift"] = drift
                if cfg.r1_gamma:
                    r1 = r1_penalty(self.D_judge, x, y, self.scaler_d)
                    loss_d = loss_d + cfg.r1_gamma / 2 * r1
                    out["r1"] = r1
            norm, skip = self.optimizer_step(loss_d, self.D, self.opt_d, self.scaler_d, measure)
            skipped = skip if skipped is None else skipped | skip
            if cfg.loss == "wgan":
                clip_weights(self.D, cfg.clip_value)
            self.images_seen += cfg.batch_size  # all ranks' real images

        # (2) Update G: make D call fakes real. D's weights are frozen so no D gradients are computed.
        self.D.requires_grad_(False)
        z, y_fake = self.noise()
        with self.autocast():
            logits, cls, features = self.D_judge(self.G_step(z, y_fake), y_fake, D=self.D_frozen)
            loss_g = self.g_loss(logits.float())
            extra, logs = self.method.g_loss(cfg, cls, y_fake)
            loss_g = loss_g + extra
            out.update(logs)
            if cfg.fm_weight:  # against the last D step's real batch, as D saw it then (no extra D pass)
                fm = feature_matching(real_features.detach(), features)
                loss_g = loss_g + cfg.fm_weight * fm
                out["fm"] = fm
        norm_g, skip = self.optimizer_step(loss_g, self.G, self.opt_g, self.scaler_g, measure)
        skipped = skip if skipped is None else skipped | skip
        if self.G_ema is not None:
            self.update_ema()

        out.update(loss_d=loss_d, loss_g=loss_g,
                   d_real=d_output(cfg.loss, real_logits.float()).mean(),
                   d_fake=d_output(cfg.loss, fake_logits.float()).mean())
        out = {k: v.detach().float() for k, v in out.items()}
        if measure:
            out.update(grad_norm_d=norm, grad_norm_g=norm_g)
        if skipped is not None:
            out["skipped"] = skipped
        return out

    @torch.no_grad()
    def update_ema(self):
        # Early on G moves fast and an average over 1/(1-decay) steps would drag in stale weights:
        # cap the averaging horizon at ema_rampup * steps so far (as StyleGAN2-ADA does).
        horizon = 1 / (1 - self.cfg.ema_decay)
        if self.cfg.ema_rampup > 0:
            horizon = min(horizon, self.cfg.ema_rampup * self.step)
        ema_p, p = list(self.G_ema.parameters()), list(self.G.parameters())
        torch._foreach_lerp_(ema_p, p, 1 / max(horizon, 1.0))
        # batch-norm statistics follow G directly (this rank's; settle_ema_norms replaces them before any use)
        buffers = list(self.G_ema.buffers())
        if buffers:
            torch._foreach_copy_(buffers, list(self.G.buffers()))

    # ---------------------------------------------------------------- the loop
    def run(self) -> str:
        """Train to cfg.steps (or until SIGTERM/SIGINT), recording as scheduled; returns the run directory.

        Raises RunFailed on a non-finite loss. The final state (done, stopped, failed) is written in
        one place, `finish`. Only rank 0 writes the run directory; the other ranks' log and metrics
        lines go to os.devnull.
        """
        cfg, main = self.cfg, self.world.main
        self.clock0 = time.monotonic() - self.elapsed  # training seconds continue across resumes
        self.sums = RunningMeans()  # losses, D outputs and penalties since the last record, kept on the device
        self.interval_start = (time.monotonic(), self.images_seen)
        self.last_beat = time.monotonic()
        self.last_share = 0.0  # when share_cores last looked
        self.saved_step = self.step  # the step of the newest checkpoint this process can vouch for
        self.stopping = False  # a stop request every rank has agreed on
        with open(self.run_dir / "train.log" if main else os.devnull, "a") as self.log_file, \
                open(self.run_dir / "metrics.jsonl" if main else os.devnull, "a") as self.metrics_file, \
                tqdm(total=cfg.steps, initial=self.step, disable=not (main and sys.stderr.isatty()),
                     dynamic_ncols=True) as bar, \
                StopRequested() as stop:
            self.bar = bar
            self.begin()
            try:
                # --- the loop: one step, then whatever the schedule (or a stop request) asks of it
                while self.step < cfg.steps and not self.stopping:
                    self.step += 1
                    distributed.injected_fault(self.world, self.step)
                    self.grow()
                    self.schedule_lr()
                    scalars = self.train_step(measure=self.is_due(cfg.log_every))
                    grad_norms = {k: scalars.pop(k) for k in ("grad_norm_d", "grad_norm_g") if k in scalars}
                    skipped = scalars.pop("skipped", None)  # fp16: a step the grad scaler skipped is not averaged in
                    if skipped is not None and grad_norms:
                        grad_norms["skipped"] = skipped
                    self.sums.add(scalars, skipped)
                    bar.update(1)
                    due = self.due()
                    self.stopping = self.agree_to_stop(stop, checkpoint_due=bool(due))
                    if self.stopping:
                        due.add("ckpt")
                    if due:
                        self.record(due, grad_norms)
                    elif time.monotonic() - self.last_beat > HEARTBEAT_SECONDS:
                        self.beat()
                self.check_ranks_agree()
            except NonFinite as e:
                good = runs.latest_loadable_checkpoint(self.run_dir) if main else None
                bad = ", ".join(f"{k}={v}" for k, v in e.means.items() if not math.isfinite(v) or k == "grad_scale")
                msg = (f"{e.why} ({bad}) by step {self.step}; "
                       f"last good checkpoint: {'step ' + str(good[0]) if good else 'none'}")
                self.finish("failed", "FAILED: " + msg, error=msg)
                raise RunFailed(f"{self.run_dir}: {msg}", str(self.run_dir)) from None
            except BaseException as e:
                self.finish("failed", f"FAILED: {type(e).__name__}: {e}", error=f"{type(e).__name__}: {e}")
                raise
            if self.stopping:
                self.finish("stopped", f"stopped by {stop.signal or 'another rank'} at step {self.step}; "
                                       f"checkpoint saved")
            else:
                self.finish("done", f"done: {self.step} steps, {self.images_seen} images, {self.elapsed:.1f} s")
        return str(self.run_dir)

    def grow(self):
        """Progressive growing: set this step's stage and fade on G, D and the EMA copy (from images seen)."""
        if self.schedule:
            self.phase = self.schedule.stage_alpha(self.images_seen)
            for m in (self.G, self.D, self.G_ema):
                if m is not None:
                    m.set_stage(*self.phase)

    def schedule_lr(self):
        """--lr_decay f: both learning rates fall linearly to 0 over the last f of the steps. A function of the
        step alone, so a resumed run trains at the rates the uninterrupted one would have."""
        if self.cfg.lr_decay:
            left = (self.cfg.steps - self.step + 1) / (self.cfg.lr_decay * self.cfg.steps)
            for opt, lr in ((self.opt_g, self.cfg.lr_g), (self.opt_d, self.cfg.lr_d)):
                for group in opt.param_groups:
                    group["lr"] = lr * min(1.0, left)

    def begin(self):
        cfg = self.cfg
        if self.world.main:
            runs.update_status(self.run_dir, state="running", pid=os.getpid(), host=socket.gethostname(),
                               step=self.step, steps=cfg.steps, images_seen=self.images_seen, started=time.time(),
                               world_size=self.world.size)
        procs = f" x {self.world.size} processes" if self.world.multi else ""
        self.log(f"{'resumed at' if self.step else 'started'} step {self.step}/{cfg.steps} on {self.device}{procs} "
                 f"({cfg.dataset}, {cfg.model}, {cfg.loss}, conditioning={cfg.conditioning})")
        for note in self.notes:
            self.log(note)

    def is_due(self, every: int) -> bool:
        return every > 0 and (self.step % every == 0 or self.step == self.cfg.steps)

    def due(self) -> set:
        """What this step must do besides training: log, eval, sample, ckpt."""
        cfg = self.cfg
        return {name for name, every in (("log", cfg.log_every), ("eval", cfg.eval_every),
                                         ("sample", cfg.sample_every), ("ckpt", cfg.ckpt_every)) if self.is_due(every)}

    def agree_to_stop(self, stop, checkpoint_due: bool) -> bool:
        """Whether to checkpoint and stop after this step. One process: as soon as SIGTERM/SIGINT arrives.
        Several: when any rank has one, decided together every STOP_CHECK_STEPS steps and at every record
        (ranks receive the signal at slightly different moments, and must stop at the same step)."""
        if not self.world.multi:
            return stop.signal is not None
        if not checkpoint_due and self.step % STOP_CHECK_STEPS:
            return False
        return distributed.any_rank(stop.signal is not None, self.world, self.device)

    def record(self, due: set, grad_norms: dict):
        """Everything a due step writes, in order: metrics line (log, eval), grid, checkpoint, status.

        The one place that checks for non-finite values: nothing is saved after one appears. Every rank
        comes here at the same steps; only rank 0 evaluates and writes.
        """
        main = self.world.main
        means = distributed.mean_over_ranks(self.sums.means(), self.world)  # the one device sync per record
        if not all(map(math.isfinite, means.values())):
            raise NonFinite(means)
        if self.scaler_d.is_enabled() and min(self.scaler_d.get_scale(), self.scaler_g.get_scale()) < MIN_GRAD_SCALE:
            raise NonFinite({"grad_scale": min(self.scaler_d.get_scale(), self.scaler_g.get_scale())},
                            why="fp16 gradients overflow at any scale")
        record = {}
        if "log" in due:
            now = time.monotonic()
            record = self.stats_record(means, grad_norms, self.interval_start, now)
            self.interval_start = (now, self.images_seen)
            self.sums.reset()
            self.bar.set_postfix({k: f"{means[k]:.3f}" for k in ("loss_d", "loss_g") if k in means})
        if "eval" in due and main:  # rank 0 alone: the others go on to the next step's gradient exchange and wait
            scores = self.evaluate()
            record.update(scores)
            self.keep_best(scores, self.clock())
            runs.update_status(self.run_dir, latest={"step": self.step, **{
                k: scores[k] for k in LATEST if scores.get(k) is not None}})
        if record:
            record = {"step": self.step, "images_seen": self.images_seen, "time": round(self.clock(), 3), **record}
            self.metrics_file.write(json.dumps(record) + "\n")
            self.metrics_file.flush()
            if "log" in due:
                self.log(format_record(record), to_console=self.bar.disable)
        if "sample" in due and main:
            self.save_samples()
        if "ckpt" in due:
            self.save_checkpoint(self.clock())
            self.saved_step = self.step
        self.beat()

    def share_cores(self):
        """A run the launcher placed on the CPU (status.json `placement`, no GPU) keeps its share of the cores
        as runs start and end beside it: threads = cores // processes training under the runs root, written to
        status.json `threads`. A run started by hand has no placement and keeps its threads."""
        if self.device.type != "cpu":
            return
        where = runs.read_status(self.run_dir).get("placement")
        if not where or where.get("gpus"):
            return
        from . import placement

        threads = placement.cpu_share(Path(self.run_dir).resolve().parent)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
            runs.update_status(self.run_dir, threads=threads)  # now; `placement` stays the launcher's decision
            self.log(f"threads: now {threads} of {where.get('cores')} cores (runs beside it started or ended)")

    def beat(self):
        """status.json's step, at every record and at least every HEARTBEAT_SECONDS; and the share of the cores."""
        if self.world.main:
            runs.update_status(self.run_dir, step=self.step, images_seen=self.images_seen,
                               trained_s=round(self.clock(), 3))  # training seconds, across resumes
            if not self.world.multi and time.monotonic() - self.last_share >= SHARE_SECONDS:
                self.share_cores()
                self.last_share = time.monotonic()
        self.last_beat = time.monotonic()

    def finish(self, state: str, line: str, error: str | None = None):
        """The run's final state, written once (by rank 0): done, stopped or failed (with the reason)."""
        self.log(line)
        if self.world.main:
            runs.update_status(self.run_dir, state=state, step=self.step, images_seen=self.images_seen, error=error,
                               finished=time.time(), trained_s=round(self.clock(), 3))

    def check_ranks_agree(self):
        """Several processes: G, D and the EMA copy must be identical on every rank; say so in train.log."""
        if not self.world.multi:
            return
        distributed.broadcast_buffers(self.world, self.G, self.D)  # running statistics of each rank's own batches
        self.settle_ema_norms()  # rank 0 may have settled them for its last samples; the others now do the same
        modules = [m for m in (self.G, self.D, self.G_ema) if m is not None]
        prints = distributed.gather(distributed.fingerprint(*modules), self.world)
        if len(set(prints)) != 1:
            raise RuntimeError(f"the {self.world.size} processes hold different weights (sha1 {', '.join(prints)})")
        self.log(f"ranks agree: G, D and G_ema are identical on all {self.world.size} processes (sha1 {prints[0][:12]})")

    def clock(self) -> float:
        self.elapsed = time.monotonic() - self.clock0
        return self.elapsed

    def stats_record(self, means, grad_norms, interval_start, now) -> dict:
        t_start, seen_start = interval_start
        return {
            **means,  # loss_d, loss_g, d_real, d_fake, and gp / r1 / the conditioning's terms when on
            **self.read_grad_norms(grad_norms),
            "lr_d": self.opt_d.param_groups[0]["lr"],
            "lr_g": self.opt_g.param_groups[0]["lr"],
            "img_per_s": (self.images_seen - seen_start) / max(now - t_start, 1e-9),
            **({"resolution": 4 * 2 ** self.phase[0], "alpha": round(self.phase[1], 4)} if self.schedule else {}),
        }

    @staticmethod
    def read_grad_norms(grad_norms: dict) -> dict:
        """The measured step's gradient norms as floats; none when fp16's scaler skipped that step (they are inf)."""
        skipped = grad_norms.get("skipped")
        if skipped is not None and bool(skipped):
            return {}
        return {k: float(v) for k, v in grad_norms.items() if k != "skipped"}

    @torch.no_grad()
    def settle_ema_norms(self):
        """Give the EMA G batch-norm statistics of its own ("standing statistics", Brock et al. 2019).

        update_ema copies G's running statistics, which describe G's activations, not those of the averaged
        weights; sampling the EMA G with them costs quality (an earlier shipped demo: FID 0.243 with G's,
        0.209 with its own). Measured once per step on 4,096 samples from a fixed noise stream, so they
        depend on the EMA weights alone (a resumed run settles them the same) and no training stream is
        touched."""
        if self.G_ema is None or self.settled_step == self.step:
            return
        norms = [m for m in self.G_ema.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                 and m.track_running_stats]
        self.settled_step = self.step
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a plain average over the batches below
        gen = torch.Generator().manual_seed(self.cfg.seed + 4)
        self.G_ema.train()
        try:
            for _ in range(16):
                z = torch.randn(256, self.cfg.z_dim, generator=gen).to(self.device)
                y = torch.randint(0, self.data.num_classes, (256,), generator=gen).to(self.device) \
                    if self.conditional else None
                with self.autocast():
                    self.G_ema(z, y)
        finally:
            self.G_ema.eval()
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum

    @contextlib.contextmanager
    def sampling_generator(self):
        """G for samples and metrics: the EMA copy when kept (with its own batch-norm statistics), in eval mode
        for the duration."""
        self.settle_ema_norms()
        G = self.G_ema if self.G_ema is not None else self.G
        was_training = G.training
        G.eval()
        try:
            yield sampling_view(G)  # a progressive G: upsampled to the final size
        finally:
            G.train(was_training)

    def evaluate(self) -> dict:
        """The metrics of this step (see metrics.evaluate), with `eval_s`, the seconds they took."""
        start = time.perf_counter()
        # training RNG untouched: the CPU's, and the GPU's when training on one
        gpus = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
            if self.device.type == "cuda" else []
        with self.sampling_generator() as G, torch.random.fork_rng(devices=gpus):
            scores = evaluate(G, self.cfg.z_dim, self.data, self.conditional, n=self.cfg.eval_n,
                              seed=self.cfg.seed, scorer=self.scorer, device=self.device)
        return {**scores, "eval_s": round(time.perf_counter() - start, 3)} if scores else {}

    def keep_best(self, scores: dict, elapsed: float):
        """Write checkpoints/best.pt (atomically) when this evaluation beats the best so far.

        Non-finite scores never replace it; status.json's "best" says which step it holds and why.
        """
        primary = primary_score(scores)
        if primary is None:
            return
        name, key = primary
        if self.best is not None and key <= primary_score(self.best["value"])[1]:
            return
        runs.torch_save_atomic(self.checkpoint_state(elapsed), runs.best_checkpoint_path(self.run_dir))
        value = {k: scores[k] for k in name.split(",")}
        self.best = {"step": self.step, "metric": name, "value": value, "path": "checkpoints/best.pt",
                     "provenance": scores.get("provenance")}
        runs.update_status(self.run_dir, best=self.best)

    def resumed_best(self):
        """The best so far when resuming: kept if it is at or before the resumed step, else forgotten
        (its checkpoint is from steps that are being redone)."""
        best = runs.read_status(self.run_dir).get("best")
        if isinstance(best, dict) and isinstance(best.get("value"), dict) and best.get("step", math.inf) <= self.step \
                and primary_score(best["value"]):
            return best
        runs.best_checkpoint_path(self.run_dir).unlink(missing_ok=True)
        runs.update_status(self.run_dir, best=None)
        return None

    @torch.no_grad()
    def save_samples(self):
        """The progress grid of this step, always from the same fixed noise batch."""
        with self.sampling_generator() as G:
            out = G(self.fixed_z, self.fixed_y).float().cpu()
        stem = self.run_dir / "samples" / f"step_{self.step:07d}"
        if self.data.kind == "points":
            runs.save_npz_atomic(stem.with_suffix(".npz"), points=out.numpy())
            img = points_image(out.numpy(), self.data.modes.cpu().numpy())
        else:
            img = image_grid(to_uint8(out), ncol=10 if self.conditional else 8)
        runs.save_png_atomic(img, stem.with_suffix(".png"))

    def save_checkpoint(self, elapsed):
        """Every rank hands its RNG streams to rank 0 (a collective), which writes the checkpoint; every rank takes
        rank 0's batch-norm statistics, the ones the checkpoint holds."""
        distributed.broadcast_buffers(self.world, self.G, self.D)
        ranks = distributed.gather(self.rng_state(), self.world) if self.world.multi else None
        if self.world.main:
            runs.torch_save_atomic(self.checkpoint_state(elapsed, ranks), runs.checkpoint_path(self.run_dir, self.step))

    def checkpoint_state(self, elapsed, ranks=None) -> dict:
        """What a checkpoint holds. `rng` is this rank's streams; with several processes `rng["ranks"]` holds
        every rank's, so a resume with as many processes continues each one exactly."""
        rng = self.rng_state()
        if ranks is not None:
            rng["ranks"] = ranks
        self.settle_ema_norms()  # the EMA G that `gancore sample` and the dashboard load
        return {
            "step": self.step,
            "images_seen": self.images_seen,
            "elapsed": elapsed,
            "world_size": self.world.size,
            "config": self.cfg.to_dict(),
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict() if self.G_ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "rng": rng,
        }

    def rng_state(self) -> dict:
        """This process's random streams, with the kind of device its generators live on."""
        return {
            "device": self.device.type,  # CPU generators are MT19937, CUDA ones Philox: states do not cross
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "numpy": numpy_rng_state(),
            "python": random.getstate(),
            "data": self.gen_data.get_state(),
            "z": self.gen_z.get_state(),
            "loader": self.loader.state() if self.loader else None,  # streamed data: batches consumed
        }

    def load_checkpoint(self, state: dict):
        """Continue from a checkpoint's state (runs.load_checkpoint: tensors on the CPU).

        Weights, optimisers and counters always continue exactly; so do the batches and noise (global streams,
        the same on every rank) on the same kind of device. The other random streams (dropout, augmentation,
        penalties' draws: each rank's own) continue when as many processes resume; otherwise each rank starts
        them fresh, seeded from (seed, step, rank), and train.log says so. A run moved between CPU and GPU
        starts every stream fresh (MT19937 and Philox states do not cross).
        """
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        if self.G_ema is not None and state["G_ema"] is not None:
            self.G_ema.load_state_dict(state["G_ema"])
        load_optimizer(self.opt_g, state["opt_g"])
        load_optimizer(self.opt_d, state["opt_d"])
        for scaler, saved in ((self.scaler_g, state["scaler_g"]), (self.scaler_d, state["scaler_d"])):
            if saved or not scaler.is_enabled():  # fp16 now, no scaler then (another device): it starts afresh
                scaler.load_state_dict(saved)
        self.step, self.images_seen, self.elapsed = state["step"], state["images_seen"], state["elapsed"]
        rng, saved_world = state["rng"], state.get("world_size", 1)
        shared = rng["ranks"][0] if "ranks" in rng else rng  # batches and noise: the same on every rank
        mine = (rng["ranks"][self.world.rank] if "ranks" in rng else rng) if saved_world == self.world.size else None
        saved_device = shared.get("device", state["config"].get("device"))  # older checkpoints: the run's device
        fresh = self.cfg.seed + 7919 * self.step
        if saved_device != self.device.type:
            torch.manual_seed(distributed.rank_seed(fresh, self.world.rank))
            self.gen_data.manual_seed(fresh + 1)
            self.gen_z.manual_seed(fresh + 2)
            self.notes.append(f"resume: it was trained on {saved_device}, it resumes on {self.device.type}; weights, "
                              f"optimisers and counters continue exactly, batches and noise from fresh streams "
                              f"seeded from (seed, step {self.step})")
            if self.loader:
                self.loader.close()
                self.loader = self.data.loader(self.cfg.batch_size, fresh + 1, self.device, part=self.part)
            return
        self.gen_data.set_state(shared["data"].cpu())  # generator states are CPU byte tensors, whatever the device
        self.gen_z.set_state(shared["z"].cpu())
        if self.loader:  # one batch per D update so far (checkpoints from before streaming have no count)
            self.loader.load_state(shared.get("loader") or {"k": self.step * self.cfg.n_critic})
        if mine is None:
            torch.manual_seed(distributed.rank_seed(fresh, self.world.rank))
            self.notes.append(f"resume: {saved_world} process(es) trained it, {self.world.size} resume it; weights, "
                              f"optimisers, counters, batches and noise continue exactly, dropout and augmentation "
                              f"draws from fresh streams seeded from (seed, step {self.step}, rank)")
            return
        torch.set_rng_state(mine["torch"].cpu())
        cuda = mine.get("cuda")
        if isinstance(cuda, list):  # older checkpoints: every visible GPU's state; ours is the first
            cuda = cuda[0] if cuda else None
        if cuda is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(cuda.cpu(), self.device)
        name, key, *rest = mine["numpy"]
        np.random.set_state((name, np.array(key, dtype=np.uint32), *rest))
        random.setstate((mine["python"][0], tuple(mine["python"][1]), mine["python"][2]))

    def log(self, line, to_console=True):
        """A line in train.log (opened once by run) and, unless a progress bar shows it, on stderr."""
        stamped = f"{datetime.now():%H:%M:%S} {line}"
        self.log_file.write(stamped + "\n")
        self.log_file.flush()
        if to_console and self.world.main:
            tqdm.write(stamped, file=sys.stderr)


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


class NonFinite(Exception):
    def __init__(self, means, why="non-finite loss"):
        self.means, self.why = means, why
