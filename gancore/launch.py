"""Starting, stopping, resuming and deleting runs as separate processes (what the dashboard's buttons do).

A launch reserves the run directory first, so a run is visible from the moment it is asked for:

    <root>/<name>/launch.json   the fields it was launched with (a plain --config file)
    <root>/<name>/launch.log    stdout and stderr of the training process (and of later resumes)
    <root>/<name>/status.json   {"state": "queued", "pid": null, "waiting": ..., "request": ...}: in the queue

then `dispatch` places it (placement.py: its own GPU(s), or its share of the CPU cores) and starts
`python -m gancore train --config <dir>/launch.json` in a new session, so training goes on when the
browser closes or the dashboard restarts. A run that cannot start yet (every GPU busy, its sweep at its
limit) stays queued in its directory; a detached `python -m gancore dispatch` process starts it when a
run ends, and every launch and every dashboard refresh makes sure one is alive (`kick`). The trainer
takes over the reserved directory (runs.claim_run_dir) and writes config.json; until then the
directory is *pending*. A sweep reserves every run of a cross-product of field values at once.
"""
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from . import placement, runs
from .config import TrainConfig, check_split
from .errors import ConfigError, RunError
from .setup import default_name, load_and_resolve

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # so children import this gancore, installed or not
_children: list[subprocess.Popen] = []  # processes started here; polled so that finished ones are reaped


def run_path(root, name: str) -> Path:
    """<root>/<name>, refusing a name that breaks runs.check_name or would land outside root."""
    root = Path(root).resolve()
    path = (root / runs.check_name(name.strip())).resolve()
    if path.parent != root:
        raise ConfigError(f"--name: {name!r} points outside the runs root {root}")
    return path


def check_config(fields: dict) -> TrainConfig:
    """The resolved config these fields would train, or ConfigError naming the first bad field.

    The trainer's own setup (setup.load_and_resolve, data-dependent checks included), so a form
    refuses exactly what the trainer would refuse.
    """
    return load_and_resolve(fields, source="form")[0]


def child_env() -> dict:
    path = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, PYTHONPATH=f"{PACKAGE_ROOT}{os.pathsep}{path}" if path else str(PACKAGE_ROOT),
                PYTHONUNBUFFERED="1")


def spawn(args: list[str], log_path: Path, detach: bool = True, processes: int = 1,
          env: dict | None = None) -> subprocess.Popen:
    """Start `python -m gancore <args>` with output appended to log_path; detach: in its own session.

    processes > 1: under torchrun (`python -m torch.distributed.run --standalone`), one machine, that many
    training processes. `env`: variables to set on top of child_env(); for a training run the placement's
    (placement.child_env: its GPUs and its threads per process).
    """
    cmd = [sys.executable, "-m", "gancore", *args]
    env = child_env() | (env or {})
    if processes > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "gancore", *args]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=PACKAGE_ROOT, start_new_session=detach)
    _children.append(proc)
    return proc


def default_processes() -> int:
    """What Launch offers: one process per visible GPU when there are several, else 1."""
    gpus = len(placement.machine()["gpus"])
    return gpus if gpus > 1 else 1


def check_processes(processes: int, fields: dict) -> None:
    """processes must be >= 1 and split the (global) batch evenly, as the trainer will check."""
    if processes < 1:
        raise ConfigError(f"processes: must be >= 1 (got {processes})")
    check_split(TrainConfig.from_dict(fields, source="form"), processes)


def reap() -> None:
    """Collect the exit status of finished children, so their pids stop looking alive."""
    for proc in list(_children):
        if proc.poll() is not None:
            _children.remove(proc)


def reserve(root, fields: dict, cfg: TrainConfig | None = None, request: dict | None = None,
            numbered: bool | None = None) -> Path:
    """Check the fields (unless `cfg` is their checked config), pick the name, and make the pending run
    directory (launch.json, empty launch.log); with a `request` (see queue_request) it waits in the queue.
    numbered: a taken name gets -2, -3 ... (default: when the fields name no run)."""
    cfg = cfg or check_config(fields)
    root = runs.ensure_root(root).resolve()
    name = run_path(root, fields.get("name") or default_name(cfg)).name
    numbered = not fields.get("name") if numbered is None else numbered
    path = runs.reserve_run_dir(root, name, numbered=numbered)  # atomic: one process wins a name
    launch = {k: v for k, v in fields.items() if v != ""} | {"name": path.name, "runs_root": str(root)}
    runs.write_json_atomic(path / "launch.json", launch)
    (path / "launch.log").touch()
    queue = {"waiting": "start", "request": request} if request else {}
    resolved = {k: getattr(cfg, k) for k in ("dataset", "model", "loss", "conditioning", "steps", "batch_size")}
    runs.update_status(path, state="queued", pid=None, host=socket.gethostname(), step=0, steps=cfg.steps,
                       images_seen=0, error=None, created=time.time(), resolved=resolved, **queue)
    return path


def queue_request(fields: dict, processes: int = 1, **more) -> dict:
    """What dispatch needs to start a run (status.json's `request`): its processes, whether it takes GPUs
    (device auto or cuda on a machine that has them), and `resume`/`steps`/`sweep`/`max_parallel` if given.
    ConfigError when it asks for more GPUs than the machine has (it would wait forever)."""
    m = placement.machine()
    device = TrainConfig.from_dict(fields, source="form").device
    placement.check_gpus(processes, device, m)
    return {"processes": processes, "gpu": placement.uses_gpu(device, m), "since": time.time(), **more}


def launch(fields: dict, root=None, processes: int = 1) -> Path:
    """Train a run from `fields` (TrainConfig fields, a preset among them) in its own process, or in
    `processes` processes under torchrun: at once, or when a GPU frees up (it waits in the queue)."""
    check_processes(processes, fields)
    request = queue_request(fields, processes)
    path = reserve(root or runs.default_root(), fields, request=request)
    kick(path.parent, dispatch_now=True)
    return path


def sweep_fields(base: dict, grid: dict[str, list]) -> list[dict]:
    """The cross-product of `grid`'s values over `base`, each named by the values it varies: `<name>-hinge-seed1`,
    or without a base name `<dataset>-hinge-seed1` (numbered -2, -3 ... if taken), so runs that differ only in
    their seed are told apart by name too."""
    keys = [k for k, values in grid.items() if values]
    out = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        fields = dict(base, **dict(zip(keys, combo)))
        suffix = "-".join(f"{k}{v}" if k == "seed" else str(v) for k, v in zip(keys, combo))
        prefix = base.get("name") or fields.get("preset") or fields.get("dataset") or "run"
        fields["name"] = re.sub(r"[^A-Za-z0-9._-]", "_", f"{prefix}-{suffix}")[:120]
        out.append(fields)
    return out


def launch_sweep(base: dict, grid: dict[str, list], root=None, max_parallel: int | None = None) -> list[Path]:
    """Reserve every run of the cross-product in the queue as one sweep: at most max_parallel of them train at
    once (default: placement.default_parallel()), each placed like any launch.

    Every combination is checked before anything is made: one bad combination launches nothing.
    """
    max_parallel = placement.default_parallel() if max_parallel is None else max_parallel
    if max_parallel < 1:
        raise ConfigError(f"max_parallel: must be >= 1 (got {max_parallel})")
    combos = sweep_fields(base, grid)
    if len(combos) > 100:
        raise ConfigError(f"sweep: {len(combos)} runs; at most 100 in one sweep")
    names = [c.get("name") for c in combos if c.get("name")]
    if len(set(names)) != len(names):
        raise ConfigError("sweep: two runs would get the same name; give distinct values")
    checked = []
    for fields in combos:
        try:
            checked.append(check_config(fields))
        except ConfigError as e:
            values = ", ".join(f"{k}={fields[k]}" for k in grid if grid[k])
            raise ConfigError(f"{e} (sweep run {values})") from None
    sweep = uuid.uuid4().hex[:8]
    requests = [queue_request(fields, sweep=sweep, max_parallel=max_parallel) for fields in combos]
    paths = [reserve(root or runs.default_root(), fields, cfg, request, numbered=not base.get("name"))
             for fields, cfg, request in zip(combos, checked, requests)]
    kick(paths[0].parent, dispatch_now=True)
    return paths


def queue_sweep(paths: list, max_parallel: int) -> list[Path]:
    """Put reserved run directories (launch.json, not started) in the queue as one sweep (`gancore sweep`)."""
    paths, sweep = [Path(p).resolve() for p in paths], uuid.uuid4().hex[:8]
    for path in paths:
        if not (path / "launch.json").is_file() or (path / "config.json").exists():
            raise RunError(f"{path}: not a reserved run directory (launch.json, no config.json)")
    for path in paths:
        fields = runs.read_json_object(path / "launch.json")
        runs.update_status(path, state="queued", pid=None, waiting="start",
                           request=queue_request(fields, sweep=sweep, max_parallel=max_parallel))
    for root in {p.parent for p in paths}:
        kick(root, dispatch_now=True)
    return paths


# ---------------------------------------------------------------- the queue
def dispatch(root) -> dict[Path, subprocess.Popen]:
    """Start every queued run under root that fits now (placement.place), oldest first; {run dir: process}.

    Safe to call from any process at any time: it holds the runs root's lock from reading what is alive
    to writing the started runs' pids, so two callers never hand out one GPU twice.
    """
    reap()
    root = Path(root)
    started = {}
    if not root.is_dir():
        return started
    with placement.locked(root):
        waiting = placement.waiting_runs(root)
        if not waiting:
            return started
        m = placement.machine()
        decisions = placement.place(waiting, placement.alive_runs(root, m), m)
        for w, (where, reason) in zip(waiting, decisions):
            path, r = w["path"], w["request"]
            if where is None:
                if w["status"].get("waiting") != reason:
                    runs.update_status(path, waiting=reason)
                continue
            if r.get("resume"):
                args = ["train", "--resume", str(path)] + (["--steps", str(r["steps"])] if r.get("steps") else [])
            else:
                args = ["train", "--config", str(path / "launch.json")]
            proc = spawn(args, path / "launch.log", processes=where["processes"], env=placement.child_env(where))
            runs.update_status(path, pid=proc.pid, waiting=None, placement=where, world_size=where["processes"])
            started[path] = proc
    return started


def kick(root, dispatch_now: bool = False) -> None:
    """Make sure queued runs under root will start: dispatch now (dispatch_now), and keep a dispatcher
    process alive while any still waits. Cheap when nothing waits; the Runs page calls it on every refresh."""
    root = Path(root)
    if dispatch_now:
        dispatch(root)
    if not placement.waiting_runs(root):
        return
    with placement.locked(root, DISPATCHER_LOG, wait=False) as free:
        if not free:
            return  # a dispatcher holds it: alive
    spawn(["dispatch", "--root", str(root)], root / DISPATCHER_LOG)


DISPATCHER_LOG = ".dispatcher.log"  # the dispatcher's output; it holds a lock on this file while alive


def run_dispatcher(root, poll: float = 1.0) -> int:
    """`python -m gancore dispatch`: start queued runs as GPUs and sweep slots free up, until none waits.

    One per runs root: it holds the lock on <root>/.dispatcher.log while it runs (another exits at once).
    After letting go it looks once more, so a run queued while it was leaving is never stranded.
    """
    root = Path(root)
    while root.is_dir():
        with placement.locked(root, DISPATCHER_LOG, wait=False) as mine:
            if not mine:
                return 0
            while root.is_dir() and placement.waiting_runs(root):
                dispatch(root)
                time.sleep(poll)
        if not placement.waiting_runs(root):
            return 0
    return 0


def cancel(run_dir) -> None:
    """Take a run out of the queue: a launch that never started is removed (its directory held only the
    reservation); a queued resume goes back to what the run was. Nothing else is touched."""
    path = Path(run_dir).resolve()
    with placement.locked(path.parent):  # so that no dispatcher starts it meanwhile
        status = runs.read_status(path)
        if not placement.is_waiting(status):
            raise RunError(f"{path.name}: not waiting in the queue")
        if (path / "config.json").exists():
            before = status.get("before_resume") or {}
            runs.update_status(path, state=before.get("state", "stopped"), error=before.get("error"), waiting=None,
                               request=None, before_resume=None)
        elif runs.is_reservation(path):
            shutil.rmtree(path)
        else:
            raise RunError(f"{path}: not a reservation (it holds more than launch.json, launch.log, status.json)")


def pending_runs(root=None) -> list[dict]:
    """Reserved directories whose trainer has not written config.json yet: waiting, starting, or failed to start.

    Each: {"path", "name", "fields" (launch.json), "resolved" (the config it will train, as the launch resolved it:
    dataset, model, loss, conditioning, steps, batch_size), "status", "state", "error"}. state: queued (waiting
    for a GPU or a sweep slot), starting (its process is up: loading data, building networks), failed.
    """
    reap()
    root = Path(root or runs.default_root())
    out = []
    if not root.is_dir():
        return out
    for path in sorted(root.iterdir()):
        if not (path / "launch.json").is_file() or (path / "config.json").exists():
            continue
        status = runs.read_status(path)
        state, error = ("starting" if status.get("pid") else "queued"), None
        if status.get("pid") and not runs.is_active(status):
            state, error = "failed", (log_tail(path, 1) or ["the process ended before training started"])[0]
        fields = runs.read_json_object(path / "launch.json")
        out.append({"path": path, "name": path.name, "fields": fields, "resolved": status.get("resolved") or {},
                    "status": status, "state": state, "error": error})
    return out


def log_tail(run_dir, n: int = 20) -> list[str]:
    """The last n non-empty lines of the run's train.log, else of its launch.log."""
    for name in ("train.log", "launch.log"):
        p = Path(run_dir) / name
        if p.is_file() and p.stat().st_size:
            with open(p, "rb") as f:
                f.seek(max(0, p.stat().st_size - 64 * 1024))
                lines = f.read().decode("utf-8", "replace").splitlines()
            # tqdm redraws its bar with carriage returns: keep each line's last state
            return [ln.split("\r")[-1] for ln in lines if ln.strip()][-n:]
    return []


def stop(run_dir) -> None:
    """Ask the training process to checkpoint and stop (SIGTERM). Under torchrun status.json names rank 0,
    which tells the other ranks: they all stop at the same step."""
    reap()
    status = runs.read_status(run_dir)
    if not (runs.pid_alive(status.get("pid")) and runs.is_active(status)):
        raise RunError(f"{Path(run_dir).name}: not running")
    if not (Path(run_dir) / "config.json").exists():
        raise RunError(f"{Path(run_dir).name}: still waiting to start; cancel or delete it instead")
    os.kill(int(status["pid"]), signal.SIGTERM)


def resume(run_dir, steps: int | None = None, processes: int = 1) -> subprocess.Popen | None:
    """Continue a stopped, failed or crashed run (from its latest checkpoint) in a new detached process
    (or `processes` under torchrun; a run may resume with another number than it trained with).

    Placed like a launch: the process started, or None when it waits in the queue for a GPU.
    """
    reap()
    run_dir = runs.check_run_dir(run_dir)
    if runs.is_pretrained(run_dir):  # before anything is written into the package
        raise RunError(f"{run_dir}: a pretrained run shipped with gancore (read-only); it cannot be resumed")
    status = runs.read_status(run_dir)
    if runs.is_active(status):
        raise RunError(f"{run_dir.name}: still running (pid {status.get('pid')})")
    if not runs.checkpoints(run_dir):
        raise RunError(f"{run_dir.name}: no checkpoint to resume from")
    config = runs.read_json_object(run_dir / "config.json")
    check_processes(processes, config)
    request = queue_request({"device": config.get("device", "auto")}, processes, resume=True, steps=steps)
    before = {"state": status.get("state"), "error": status.get("error")}  # put back if the resume cannot start
    runs.update_status(run_dir, state="queued", pid=None, before_resume=before, waiting="start", request=request)
    started = dispatch(run_dir.resolve().parent)
    kick(run_dir.resolve().parent)
    return started.get(run_dir.resolve())


def delete(run_dir, root=None) -> None:
    """Remove a run directory that nothing is training, and only one directly under the runs root."""
    reap()
    path = Path(run_dir).resolve()
    if runs.is_pretrained(path):
        raise RunError(f"{path}: a pretrained run shipped with gancore (read-only); it cannot be deleted")
    root = Path(root or runs.default_root()).resolve()
    if path.parent != root or not ((path / "config.json").exists() or (path / "launch.json").exists()):
        raise RunError(f"{path}: not a run directory under {root}")
    with placement.locked(root):  # not while a dispatcher starts it
        status = runs.read_status(path)
        if runs.is_active(status) and (path / "config.json").exists():
            raise RunError(f"{path.name}: still running; stop it first")
        shutil.rmtree(path)


def clone_fields(run_dir) -> dict:
    """The fields to launch a copy of a run with: what it was launched with, else its explicit config."""
    run_dir = Path(run_dir)
    launched = runs.read_json_object(run_dir / "launch.json")
    if launched:
        return {k: v for k, v in launched.items() if k not in ("name", "runs_root")}
    explicit = TrainConfig.from_dict(runs.read_config(run_dir)).explicit_fields()
    return {k: v for k, v in explicit.items() if k not in ("name", "runs_root")}
