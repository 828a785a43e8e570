"""Starting a run, before its loop: a new run directory or a resumed one, the process group, the scorer.

`new_run(fields)` and `resumed_run(run_dir, changes)` return a `Start`: what `Trainer` is built from (trainer.train
builds it and runs it). Both resolve the config and the data with setup.load_and_resolve, the one way in that the
launcher's check (launch.check_config), `gancore eval` and the bench scripts share. Rank 0 alone writes the run
directory; a failure there reaches every rank as one line (`on_main`).
"""
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import distributed, runs
from .config import TrainConfig, check_split, coerce
from .errors import ConfigError, GancoreError, RunError
from .setup import RESUMABLE_FIELDS, default_name, load_and_resolve


@dataclass
class Start:
    """What a Trainer is built from. `undo`: the status to put back when it cannot be built (a new run: failed;
    a resumed one: the state it was in, its error saying the resume failed), so that no run is left queued
    without a process."""
    run_dir: Path
    cfg: TrainConfig
    data: object  # data.Dataset
    world: distributed.World
    state: dict | None = None  # the checkpoint state a resumed run continues from
    scorer: object = None  # image_metrics.ImageScorer, or None (2-D points, or no evaluator: then a note says why)
    notes: list = field(default_factory=list)  # lines for train.log when the run starts
    undo: dict = field(default_factory=dict)

    def failed(self, e: BaseException) -> None:
        if self.world.main:
            reason = self.undo.get("reason", "")
            runs.update_status(self.run_dir, state=self.undo.get("state", "failed"), pid=None,
                               error=f"{reason}{type(e).__name__}: {e}",
                               **({"finished": time.time()} if self.undo.get("finished") else {}))


def new_run(fields: dict) -> Start:
    """A new run: fields checked and resolved against the data, the process group joined, and (rank 0) the
    evaluator found, then the run directory claimed and written, queued. Under torchrun every process calls this
    with the same fields; rank 0 makes and writes the run directory, the others train beside it."""
    cfg, data = load_and_resolve(fields, make_root=True)  # every rank: same checks, data
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
    return Start(run_dir, cfg, data, world, scorer=scorer, notes=[note] if note else [], undo={"state": "failed", "finished": True})


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



def resumed_run(run_dir, changes: dict) -> Start:
    """A run continued in place from its newest checkpoint that loads; `changes` may only touch RESUMABLE_FIELDS.

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
    return Start(run_dir, cfg, data, world, state=state, scorer=scorer, notes=notes,
                 undo={"state": previous["state"], "reason": "resume failed: "})


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
    from .image_metrics import scorer_or_why  # torchmetrics: imported only when it will be used

    try:
        return scorer_or_why(data, cfg.fid_backend, train=cfg.eval_train_evaluator, device=cfg.device)
    except EvaluatorError as e:
        if cfg.eval_train_evaluator:
            raise ConfigError(f"--eval_train_evaluator: {e}") from None
        hint = "" if data.y is None else (
            f"; for this data: `python -m gancore train-evaluator --dataset {cfg.dataset}"
            f"{' --data_path ' + cfg.data_path if cfg.data_path else ''} --image_size {cfg.image_size} "
            f"--channels {cfg.channels}`, or launch with --eval_train_evaluator true")
        return None, f"image metrics off: {e}{hint}"



def data_info(data, cfg) -> dict:
    return {
        "kind": data.kind,
        "shape": list(data.shape),
        "num_classes": data.num_classes,
        "class_names": list(data.class_names),
        "size": len(data),
        "modes": data.modes.tolist() if data.modes is not None else None,
        "sigma": data.sigma,
    }
