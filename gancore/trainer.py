"""The training loop: the networks, optimisers and random streams of a run, then D update(s) and a G update per step.

`train(config)` starts a new run directory; `train(resume=RUN_DIR)` continues one from its latest
checkpoint, exactly (weights, optimisers, grad scalers, EMA, counters and every RNG state come
back). What comes before the loop is start.py's (the run directory, the process group, the scorer); what the
loop writes into the run directory, and what a checkpoint holds, recorder.py's; the EMA of G, ema.py's.
"""
import contextlib
import copy
import functools
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from . import distributed, ema, runs
from .augment import diff_augment, parse_policy
from .conditioning import METHODS
from .config import TrainConfig
from .data import share
from .catalogue import OBJECTIVES
from .losses import d_output, feature_matching, functions
from .models import build_models, sampling_view
from .models.progressive import ProgressiveGenerator, Schedule, fade_real
from .recorder import Recorder, RunningMeans, load_checkpoint, save_checkpoint
from .regularizers import clip_weights, gradient_penalty, r1_penalty
from .start import new_run, resumed_run

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
    """Train a GAN; returns the run directory. `config`: a TrainConfig, a dict of fields, or None (defaults);
    `resume`: a run directory to continue from its latest checkpoint (`config` and `overrides` then change only
    setup.RESUMABLE_FIELDS). Under torchrun every process calls this with the same fields (start.py)."""
    if resume is not None:
        changes = dict(config or {}) if not isinstance(config, TrainConfig) else {}
        begun = resumed_run(resume, {**changes, **overrides})
    else:
        if isinstance(config, TrainConfig):
            config = config.explicit_fields()  # so that a preset fills only the fields left at their defaults
        begun = new_run({**(config or {}), **overrides})
    try:
        trainer = Trainer(begun.run_dir, begun.cfg, begun.data, resume_state=begun.state, scorer=begun.scorer,
                          notes=begun.notes, world=begun.world)
    except BaseException as e:  # never leave "queued" behind without a process
        begun.failed(e)
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


def make_optimizer(cfg, model, lr):
    """Adam or RMSprop; on a GPU, Adam's fused kernel (one launch for all parameters)."""
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    fused = {"fused": True} if next(model.parameters()).is_cuda else {}
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay,
                            **fused)


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
        self.objective = OBJECTIVES[cfg.loss]  # what it implies: a gradient penalty, weight clipping ...
        self.d_loss, self.g_loss = functions(cfg.loss)

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
        self.recorder = Recorder(self.run_dir, world)
        if resume_state is not None:
            load_checkpoint(self, resume_state)
            self.recorder.resume_best(self.step)

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
                if self.objective.gradient_penalty:
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
            if self.objective.clip:
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
            ema.update(self.G_ema, self.G, cfg.ema_decay, cfg.ema_rampup, self.step)

        out.update(loss_d=loss_d, loss_g=loss_g,
                   d_real=d_output(cfg.loss, real_logits.float()).mean(),
                   d_fake=d_output(cfg.loss, fake_logits.float()).mean())
        out = {k: v.detach().float() for k, v in out.items()}
        if measure:
            out.update(grad_norm_d=norm, grad_norm_g=norm_g)
        if skipped is not None:
            out["skipped"] = skipped
        return out

    # ---------------------------------------------------------------- the loop
    def run(self) -> str:
        """Train to cfg.steps (or until SIGTERM/SIGINT), recording as scheduled; returns the run directory.

        Raises RunFailed on a non-finite loss. The final state (done, stopped, failed) is written in
        one place, `Recorder.finish`. Only rank 0 writes the run directory.
        """
        cfg, main, rec = self.cfg, self.world.main, self.recorder
        self.clock0 = time.monotonic() - self.elapsed  # training seconds continue across resumes
        self.sums = RunningMeans()  # losses, D outputs and penalties since the last record, kept on the device
        self.stopping = False  # a stop request every rank has agreed on
        with rec.open(cfg.steps, self.step, self.images_seen), distributed.StopRequested() as stop:
            rec.begin(self, self.notes)
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
                    rec.bar.update(1)
                    due = self.due()
                    self.stopping = self.agree_to_stop(stop, checkpoint_due=bool(due))
                    if self.stopping:
                        due.add("ckpt")
                    if due:
                        self.record(due, grad_norms)
                    elif rec.due_beat():
                        rec.beat(self)
                self.check_ranks_agree()
            except NonFinite as e:
                good = runs.latest_loadable_checkpoint(self.run_dir) if main else None
                bad = ", ".join(f"{k}={v}" for k, v in e.means.items() if not math.isfinite(v) or k == "grad_scale")
                msg = (f"{e.why} ({bad}) by step {self.step}; "
                       f"last good checkpoint: {'step ' + str(good[0]) if good else 'none'}")
                rec.finish(self, "failed", "FAILED: " + msg, error=msg)
                raise RunFailed(f"{self.run_dir}: {msg}", str(self.run_dir)) from None
            except BaseException as e:
                rec.finish(self, "failed", f"FAILED: {type(e).__name__}: {e}", error=f"{type(e).__name__}: {e}")
                raise
            if self.stopping:
                rec.finish(self, "stopped", f"stopped by {stop.signal or 'another rank'} at step {self.step}; "
                                            f"checkpoint saved")
            else:
                rec.finish(self, "done", f"done: {self.step} steps, {self.images_seen} images, {self.elapsed:.1f} s")
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
        rec = self.recorder
        means = distributed.mean_over_ranks(self.sums.means(), self.world)  # the one device sync per record
        if not all(map(math.isfinite, means.values())):
            raise NonFinite(means)
        if self.scaler_d.is_enabled() and min(self.scaler_d.get_scale(), self.scaler_g.get_scale()) < MIN_GRAD_SCALE:
            raise NonFinite({"grad_scale": min(self.scaler_d.get_scale(), self.scaler_g.get_scale())},
                            why="fp16 gradients overflow at any scale")
        if "log" in due:
            self.sums.reset()
        rec.record(self, due, means, grad_norms)  # the metrics line, the evaluation, the grid
        if "ckpt" in due:
            save_checkpoint(self, self.clock())
        rec.beat(self)

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
        self.recorder.log(f"ranks agree: G, D and G_ema are identical on all {self.world.size} processes (sha1 {prints[0][:12]})")

    def clock(self) -> float:
        self.elapsed = time.monotonic() - self.clock0
        return self.elapsed

    def settle_ema_norms(self):
        """The EMA G's own batch-norm statistics (ema.settle_norms), measured once per step, before any use."""
        if self.G_ema is not None and self.settled_step != self.step:
            ema.settle_norms(self.G_ema, self.cfg.z_dim, self.data.num_classes if self.conditional else 0,
                             self.cfg.seed, self.device, self.autocast)
            self.settled_step = self.step

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

class NonFinite(Exception):
    def __init__(self, means, why="non-finite loss"):
        self.means, self.why = means, why
