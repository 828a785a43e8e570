"""Where a launched run trains: its own GPU(s), or its share of the CPU cores (what launch.py asks before starting one).

The queue lives in the run directories, so it survives a dashboard restart. A launch (or a resume)
marks its run waiting in status.json:

    {"state": "queued", "pid": null, "waiting": "gpu",
     "request": {"processes": 1, "gpu": true, "resume": false, "steps": null, "sweep": "3f9c1a2b",
                 "max_parallel": 4, "since": 1795251948.2}}

and `launch.dispatch` starts every waiting run that fits now, oldest first, under the runs root's lock
(`locked`), recording where it went (kept after the run ends, as the record of where it trained):

    "placement": {"gpus": [2], "processes": 1, "threads": 8, "cores": 16}    (GPU 2, 8 threads)
    "placement": {"gpus": [], "processes": 1, "threads": 1, "cores": 2}      (1 of 2 cores)

- GPUs: a run that will use CUDA gets `processes` GPUs that no live run holds, through
  CUDA_VISIBLE_DEVICES; with too few free it waits ("queued: waiting for a GPU").
- CPU: the cores are divided among the training processes alive at once, those starting now included:
  each gets max(1, cores // processes alive) threads (OMP_NUM_THREADS, `threads_for`). A placed CPU run
  takes its share again as runs start and end beside it (`cpu_share`, called by Trainer.share_cores, which
  writes the count in use to status.json `threads`; `placement` stays the decision made at the start).
- Sweeps: at most `max_parallel` runs of one sweep train at once; `default_parallel()` is the default.
- Runs started by hand (`python -m gancore train`) under the same runs root count with their live pid
  (their GPUs read from their environment) but are never moved.

`machine()` is the one place that reads the machine's devices (tests fake it with GANCORE_FAKE_GPUS).
"""
import functools
import os
import socket
import sys
from collections import Counter
from pathlib import Path

from . import runs
from .errors import ConfigError

# Runs of one sweep training at once on a CPU, per core: on 2 cores, 2 runs of 1 thread each finished a
# sweep of 4 ring runs in 118 s, 1 run of 2 threads at a time in 192 s (docs/benchmarks.md, issue 14).
CPU_RUNS_PER_CORE = 1
# present whenever an NVIDIA driver (or ROCm's amdgpu kernel driver) is loaded: without one torch sees no GPU
GPU_DRIVER_FILES = ("/dev/nvidiactl", "/proc/driver/nvidia/version", "/dev/kfd")
WAITING = {"gpu": "waiting for a GPU", "sweep": "waiting for its turn in the sweep", "start": "starting"}


def machine() -> dict:
    """{"gpus": the ids CUDA_VISIBLE_DEVICES takes, "cores": CPU cores this process may use}.

    The one place that reads the devices. GANCORE_FAKE_GPUS=N (a test hook, inherited by the processes
    launch.py starts) pretends there are N GPUs, 0 ... N-1, whatever torch sees.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    fake = os.environ.get("GANCORE_FAKE_GPUS")
    if fake:
        if not fake.isdigit():
            raise ConfigError(f"GANCORE_FAKE_GPUS: expected a number of GPUs, got {fake!r}")
        return {"gpus": list(range(int(fake))), "cores": cores}
    return {"gpus": _visible_gpus(), "cores": cores}


@functools.cache
def _visible_gpus() -> list:
    if not _gpu_driver():  # known without torch, which takes a second or more to load (the Launch page asks)
        return []
    import torch  # only here: a launcher that never asks about devices does not load torch

    visible = [t.strip() for t in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if t.strip()]
    ids = visible if "CUDA_VISIBLE_DEVICES" in os.environ else None
    return [_gpu_id(ids[i] if ids else i) for i in range(torch.cuda.device_count())]


def _gpu_driver() -> bool:
    """Whether a GPU driver torch could use is present: on Linux NVIDIA's (or ROCm's kernel driver), whose device
    files exist whenever one is loaded, in containers too; elsewhere torch is asked (never on macOS: no CUDA)."""
    if sys.platform == "darwin":
        return False
    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(p) for p in GPU_DRIVER_FILES)


def _gpu_id(token):
    return int(token) if str(token).isdigit() else str(token)  # "2" -> 2; a GPU UUID stays a string


def default_parallel(m: dict | None = None) -> int:
    """A sweep's runs at once when none is given: one per GPU, else CPU_RUNS_PER_CORE per core."""
    m = m or machine()
    return len(m["gpus"]) or max(1, m["cores"] * CPU_RUNS_PER_CORE)


def uses_gpu(device: str, m: dict) -> bool:
    """Whether a run with this `device` field trains on a GPU of this machine (auto and cuda do when there is one)."""
    return bool(m["gpus"]) and device != "cpu"


def check_gpus(processes: int, device: str, m: dict) -> None:
    if uses_gpu(device, m) and processes > len(m["gpus"]):
        raise ConfigError(f"processes: {processes} processes need {processes} GPUs; this machine has "
                          f"{len(m['gpus'])}")


# ---------------------------------------------------------------- what the run directories say
def is_waiting(status: dict) -> bool:
    """A run in the queue: launched (or resumed) but not started, because no GPU or sweep slot is free yet."""
    return status.get("state") == "queued" and bool(status.get("waiting")) and not status.get("pid")


def waiting_runs(root) -> list[dict]:
    """The queue under root, oldest first: [{"path", "status", "request"}]."""
    out = []
    for path, status in _statuses(root):
        if is_waiting(status) and isinstance(status.get("request"), dict):
            out.append({"path": path, "status": status, "request": status["request"]})
    return sorted(out, key=lambda w: (w["request"].get("since") or 0, w["path"].name))


def alive_runs(root, m: dict) -> list[dict]:
    """What the live runs of this host under root hold: [{"path", "gpus", "processes", "sweep", "by_hand"}].

    A run is live when its status says queued/running and its pid lives (a crashed or stopped run holds
    nothing). A run started by hand has no placement: its GPUs are read from its process's environment.
    """
    out = []
    for path, status in _statuses(root):
        if status.get("host") not in (None, socket.gethostname()) or not _alive(status):
            continue
        where = status.get("placement")
        processes = int(status.get("world_size") or (where or {}).get("processes") or 1)
        if where:
            gpus, sweep = list(where.get("gpus") or []), (status.get("request") or {}).get("sweep")
        else:
            gpus, sweep = _gpus_by_hand(path, status, processes, m), None
        out.append({"path": path, "gpus": gpus, "processes": processes, "sweep": sweep, "by_hand": not where})
    return out


def _statuses(root):
    try:
        entries = sorted(Path(root).iterdir())
    except OSError:
        return
    for path in entries:
        if not path.name.startswith("."):
            status = runs.read_status(path)
            if status:
                yield path, status


def _alive(status: dict) -> bool:
    """runs.is_active, and not a zombie (a finished child its parent has not collected yet)."""
    if not runs.is_active(status):
        return False
    try:
        with open(f"/proc/{int(status['pid'])}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError, ValueError, TypeError):
        return True


def _gpus_by_hand(path, status, processes: int, m: dict) -> list:
    """The GPUs a run started by hand uses: its CUDA_VISIBLE_DEVICES, else torch's first `processes` devices."""
    fields = runs.read_json_object(path / "config.json") or runs.read_json_object(path / "launch.json")
    if not uses_gpu(fields.get("device", "auto"), m):
        return []
    try:
        with open(f"/proc/{int(status['pid'])}/environ", "rb") as f:
            env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
    except (OSError, ValueError, TypeError):
        env = {}
    visible = env.get(b"CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [_gpu_id(t.strip()) for t in visible.decode().split(",") if t.strip()][:processes]
    return m["gpus"][:processes]


# ---------------------------------------------------------------- the decision
def place(waiting: list[dict], alive: list[dict], m: dict) -> list[tuple[dict | None, str | None]]:
    """For each waiting run (oldest first): (its placement, None) if it starts now, else (None, what it waits for).

    GPU requests are served in order: when the oldest cannot get its GPUs, later GPU runs wait too, so a
    run asking for 4 GPUs is not starved by single-GPU runs queued after it. The threads are decided
    last, once it is known how many processes will train at once.
    """
    held = {g for a in alive for g in a["gpus"]}
    free = [g for g in m["gpus"] if g not in held]
    in_sweep = Counter(a["sweep"] for a in alive if a["sweep"])
    gpus_blocked = False
    out = []
    for w in waiting:
        r = w["request"]
        processes, sweep, gpu = int(r.get("processes") or 1), r.get("sweep"), bool(r.get("gpu") and m["gpus"])
        if gpu and (gpus_blocked or len(free) < processes):
            gpus_blocked = True
            out.append((None, "gpu"))
            continue
        if sweep and in_sweep[sweep] >= int(r.get("max_parallel") or 1):
            out.append((None, "sweep"))
            continue
        gpus, free = (free[:processes], free[processes:]) if gpu else ([], free)
        in_sweep[sweep] += 1
        out.append(({"gpus": gpus, "processes": processes}, None))
    threads = threads_for(m["cores"], sum(a["processes"] for a in alive) + sum(p["processes"] for p, _ in out if p))
    for p, _ in out:
        if p:
            p.update(threads=threads, cores=m["cores"])
    return out


def threads_for(cores: int, processes: int) -> int:
    """Threads per process when `processes` train at once on `cores` cores: an equal share, never 0."""
    return max(1, cores // max(1, processes))


def cpu_share(root, m: dict | None = None) -> int:
    """Threads per process that divide this machine's cores among the processes training under root now."""
    m = m or machine()
    return threads_for(m["cores"], sum(a["processes"] for a in alive_runs(root, m)))


def child_env(where: dict) -> dict:
    """The environment a placed run starts with: its GPUs and its share of the cores."""
    env = {"OMP_NUM_THREADS": str(where["threads"])}
    if where["gpus"]:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, where["gpus"]))
    return env


def describe(status: dict) -> str:
    """Where a run trains (or why it waits), in words: "GPU 2", "1 of 2 cores", "queued: waiting for a GPU"."""
    if is_waiting(status):
        r = status.get("request") or {}
        n = int(r.get("processes") or 1)
        if status["waiting"] == "gpu" and n > 1:
            return f"queued: waiting for {n} GPUs"
        if status["waiting"] == "sweep":
            return f"queued: waiting for its turn in the sweep ({r.get('max_parallel')} at once)"
        return f"queued: {WAITING.get(status['waiting'], status['waiting'])}"
    where = status.get("placement")
    if not where:
        return ""
    n = int(where.get("processes") or 1)
    if where.get("gpus"):
        return ("GPU " if len(where["gpus"]) == 1 else "GPUs ") + ", ".join(map(str, where["gpus"]))
    share = f"{status.get('threads') or where.get('threads')} of {where.get('cores')} cores"  # now, else at start
    return f"{n} processes × {share} each" if n > 1 else share


# ---------------------------------------------------------------- locks
def locked(root, name: str = ".placement.lock", wait: bool = True):
    """Hold the runs root's lock <root>/<name> (runs.locked: flock, never stale)."""
    return runs.locked(Path(root) / name, wait)
