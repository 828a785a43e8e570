"""Starting, stopping, resuming and deleting runs as separate processes (what the dashboard's buttons do).

A launch reserves the run directory first, so a run is visible from the moment it is asked for:

    <root>/<name>/launch.json   the fields it was launched with (a plain --config file)
    <root>/<name>/launch.log    stdout and stderr of the training process (and of later resumes)
    <root>/<name>/status.json   {"state": "queued", "pid": <the process that will train it>, ...}

then starts `python -m gancore train --config <dir>/launch.json` in a new session, so training goes
on when the browser closes or the dashboard restarts. The trainer takes over the reserved
directory (runs.create_run_dir) and writes config.json; until then the directory is *pending*.
A sweep reserves every run of a cross-product of field values and starts one `python -m gancore
sweep` process that trains them, at most `max_parallel` at a time.
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
from pathlib import Path

from . import runs
from .config import TrainConfig
from .errors import ConfigError, RunError

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
    from .setup import load_and_resolve

    return load_and_resolve(fields, source="form")[0]


def child_env() -> dict:
    path = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, PYTHONPATH=f"{PACKAGE_ROOT}{os.pathsep}{path}" if path else str(PACKAGE_ROOT),
                PYTHONUNBUFFERED="1")


def spawn(args: list[str], log_path: Path, detach: bool = True, processes: int = 1) -> subprocess.Popen:
    """Start `python -m gancore <args>` with output appended to log_path; detach: in its own session.

    processes > 1: under torchrun (`python -m torch.distributed.run --standalone`), one machine, that many
    training processes; on a CPU each gets an equal share of the cores as its thread count.
    """
    cmd = [sys.executable, "-m", "gancore", *args]
    env = child_env()
    if processes > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "gancore", *args]
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=PACKAGE_ROOT, start_new_session=detach)
    _children.append(proc)
    return proc


def default_processes() -> int:
    """What Launch offers: one process per visible GPU when there are several, else 1."""
    import torch

    return torch.cuda.device_count() if torch.cuda.device_count() > 1 else 1


def check_processes(processes: int, fields: dict) -> None:
    """processes must be >= 1 and split the (global) batch evenly, as the trainer will check."""
    if processes < 1:
        raise ConfigError(f"processes: must be >= 1 (got {processes})")
    batch = TrainConfig.from_dict(fields, source="form").batch_size
    if batch % processes:
        raise ConfigError(f"processes: the batch_size {batch} (the global batch) must split evenly over "
                          f"{processes} processes")


def reap() -> None:
    """Collect the exit status of finished children, so their pids stop looking alive."""
    for proc in list(_children):
        if proc.poll() is not None:
            _children.remove(proc)


def reserve(root, fields: dict, cfg: TrainConfig | None = None) -> Path:
    """Check the fields (unless `cfg` is their checked config), pick the name, and make the pending run
    directory (launch.json, empty launch.log)."""
    from .setup import default_name

    cfg = cfg or check_config(fields)
    root = runs.ensure_root(root).resolve()
    name = run_path(root, fields.get("name") or default_name(cfg)).name
    path = runs.reserve_run_dir(root, name, numbered=not fields.get("name"))  # atomic: one process wins a name
    launch = {k: v for k, v in fields.items() if v != ""} | {"name": path.name, "runs_root": str(root)}
    runs.write_json_atomic(path / "launch.json", launch)
    (path / "launch.log").touch()
    runs.update_status(path, state="queued", pid=None, host=socket.gethostname(), step=0, steps=cfg.steps,
                       images_seen=0, error=None, created=time.time())
    return path


def launch(fields: dict, root=None, processes: int = 1) -> Path:
    """Start training a run from `fields` (TrainConfig fields, a preset among them) in its own process,
    or in `processes` processes under torchrun."""
    check_processes(processes, fields)
    path = reserve(root or runs.default_root(), fields)
    proc = spawn(["train", "--config", str(path / "launch.json")], path / "launch.log", processes=processes)
    runs.update_status(path, pid=proc.pid, world_size=processes)
    return path


def sweep_fields(base: dict, grid: dict[str, list]) -> list[dict]:
    """The cross-product of `grid`'s values over `base`, each with a name saying its values."""
    keys = [k for k, values in grid.items() if values]
    out = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        fields = dict(base, **dict(zip(keys, combo)))
        if base.get("name"):
            suffix = "-".join(f"{k}{v}" if k == "seed" else str(v) for k, v in zip(keys, combo))
            fields["name"] = re.sub(r"[^A-Za-z0-9._-]", "_", f"{base['name']}-{suffix}")
        out.append(fields)
    return out


def launch_sweep(base: dict, grid: dict[str, list], root=None, max_parallel: int = 2) -> list[Path]:
    """Reserve every run of the cross-product, then train them from one process, max_parallel at a time.

    Every combination is checked before anything is made: one bad combination launches nothing.
    """
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
    paths = [reserve(root or runs.default_root(), fields, cfg) for fields, cfg in zip(combos, checked)]
    proc = spawn(["sweep", "--max_parallel", str(max_parallel), *map(str, paths)], paths[0].parent / ".sweep.log")
    for path in paths:
        runs.update_status(path, pid=proc.pid)
    return paths


def run_sweep(paths: list[str], max_parallel: int) -> int:
    """The sweep process: train each pending run (skipping deleted ones), at most max_parallel at once."""
    todo = [Path(p) for p in paths]
    active: list[subprocess.Popen] = []
    while todo or active:
        active = [p for p in active if p.poll() is None]
        while todo and len(active) < max_parallel:
            path = todo.pop(0)
            if (path / "launch.json").is_file() and not (path / "config.json").exists():
                active.append(spawn(["train", "--config", str(path / "launch.json")], path / "launch.log",
                                    detach=False))
        time.sleep(0.5)
    return 0


def pending_runs(root=None) -> list[dict]:
    """Reserved directories whose trainer has not written config.json yet: waiting, starting, or failed to start.

    Each: {"path", "name", "fields" (launch.json), "status", "state" (queued | failed), "error"}.
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
        state, error = "queued", None
        if status.get("pid") and not runs.is_active(status):
            state, error = "failed", (log_tail(path, 1) or ["the process ended before training started"])[0]
        out.append({"path": path, "name": path.name, "fields": runs.read_json_object(path / "launch.json"),
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
        raise RunError(f"{Path(run_dir).name}: still waiting to start; delete it to cancel")
    os.kill(int(status["pid"]), signal.SIGTERM)


def resume(run_dir, steps: int | None = None, processes: int = 1) -> subprocess.Popen:
    """Continue a stopped, failed or crashed run (from its latest checkpoint) in a new detached process
    (or `processes` under torchrun; a run may resume with another number than it trained with)."""
    reap()
    run_dir = runs.check_run_dir(run_dir)
    status = runs.read_status(run_dir)
    if runs.is_active(status):
        raise RunError(f"{run_dir.name}: still running (pid {status.get('pid')})")
    if not runs.checkpoints(run_dir):
        raise RunError(f"{run_dir.name}: no checkpoint to resume from")
    args = ["train", "--resume", str(run_dir)] + (["--steps", str(steps)] if steps else [])
    check_processes(processes, runs.read_json_object(run_dir / "config.json"))
    before = {"state": status.get("state"), "error": status.get("error")}  # put back if the resume cannot start
    runs.update_status(run_dir, state="queued", pid=None, before_resume=before)
    proc = spawn(args, run_dir / "launch.log", processes=processes)
    runs.update_status(run_dir, pid=proc.pid)
    return proc


def delete(run_dir, root=None) -> None:
    """Remove a run directory that nothing is training, and only one directly under the runs root."""
    reap()
    path = Path(run_dir).resolve()
    root = Path(root or runs.default_root()).resolve()
    if path.parent != root or not ((path / "config.json").exists() or (path / "launch.json").exists()):
        raise RunError(f"{path}: not a run directory under {root}")
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
    explicit = TrainConfig.from_dict(runs.read_json_object(run_dir / "config.json")).explicit_fields()
    return {k: v for k, v in explicit.items() if k not in ("name", "runs_root")}
