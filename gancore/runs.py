"""The run directory: the one contract between the trainer and everything that reads runs.

    <runs_root>/<name>/
        config.json          resolved TrainConfig (every field, no "auto" left)
        data.json            what G needs to know of the data: kind, shape, num_classes, class_names, modes, sigma
        status.json          {schema, state, pid, host, heartbeat, step, steps, images_seen, error, resumes, best, ...}
        metrics.jsonl        one JSON object per logged or evaluated step, appended and flushed as written
        train.log            the human-readable log
        samples/step_NNNNNNN.png   grids from one fixed noise batch (2-D runs: also .npz with `points`)
        checkpoints/ckpt_NNNNNNN.pt
        checkpoints/best.pt  the checkpoint of the best evaluation so far (status.json "best" says which)

The trainer writes; readers only read. JSON files are replaced atomically (temp file + rename);
a reader of metrics.jsonl skips a half-written last line. docs/ARCHITECTURE.md is the full spec.
"""
import json
import os
import re
import socket
import time
from pathlib import Path

import orjson

from .errors import RunError

SCHEMA_VERSION = 1
STATES = ("queued", "running", "done", "failed", "stopped")
CKPT_RE = re.compile(r"ckpt_(\d+)\.pt$")


def write_json_atomic(path, obj) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def torch_save_atomic(obj, path) -> None:
    """torch.save through a temp file and a rename: a crash leaves the previous file (or none), never half of one."""
    import torch

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # not mkstemp: that makes the file private
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path, default=None):
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def read_status(run_dir) -> dict:
    return read_json(Path(run_dir) / "status.json", {})


def update_status(run_dir, **fields) -> dict:
    """Merge fields into status.json (with a fresh heartbeat) and write it atomically."""
    status = read_status(run_dir)
    status.update(fields, schema=SCHEMA_VERSION, heartbeat=time.time())
    write_json_atomic(Path(run_dir) / "status.json", status)
    return status


def pid_alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_active(status: dict) -> bool:
    """True when a live process on this host is (or is about to be) training this run."""
    if status.get("state") not in ("queued", "running"):
        return False
    if status.get("host") not in (None, socket.gethostname()):
        return time.time() - status.get("heartbeat", 0) < 120  # cannot see the pid; trust a fresh heartbeat
    return pid_alive(status.get("pid"))


def read_metrics(run_dir) -> list[dict]:
    """Every complete record of metrics.jsonl; a half-written or corrupt line is skipped."""
    try:
        with open(Path(run_dir) / "metrics.jsonl") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    text = text[: text.rfind("\n") + 1]  # a last line without its newline is still being written
    whole = "[" + ",".join(text.splitlines()) + "]"
    try:  # one parse of the whole file: a 20,000-step log in ~0.1 s instead of ~0.4 s line by line
        return orjson.loads(whole)
    except orjson.JSONDecodeError:
        pass
    try:  # orjson refuses Infinity/NaN, which json.dumps writes for a reverse KL of inf
        return json.loads(whole)
    except json.JSONDecodeError:
        pass
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(run_dir, last_step: int) -> None:
    """Drop records after `last_step` (the resume point) so the resumed history has no duplicates."""
    path = Path(run_dir) / "metrics.jsonl"
    keep = [r for r in read_metrics(run_dir) if r.get("step", 0) <= last_step]
    tmp = path.with_name(".metrics.jsonl.tmp")
    with open(tmp, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in keep)
    os.replace(tmp, path)


def checkpoints(run_dir) -> dict[int, Path]:
    """{step: path} of the checkpoints in a run, in step order."""
    found = {}
    for p in (Path(run_dir) / "checkpoints").glob("ckpt_*.pt"):
        m = CKPT_RE.search(p.name)
        if m:
            found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def checkpoint_path(run_dir, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"ckpt_{step:07d}.pt"


def best_checkpoint_path(run_dir) -> Path:
    return Path(run_dir) / "checkpoints" / "best.pt"


def sample_grids(run_dir) -> dict[int, Path]:
    """{step: png path} of the progress grids, in step order."""
    grids = {}
    for p in (Path(run_dir) / "samples").glob("step_*.png"):
        grids[int(p.stem.split("_")[1])] = p
    return dict(sorted(grids.items()))


def default_root() -> str:
    return os.environ.get("GANCORE_RUNS", "runs")


def list_runs(root=None) -> list[Path]:
    """Run directories (those with a config.json) under root, oldest first."""
    root = Path(root or default_root())
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / "config.json").is_file()]
    return sorted(runs, key=lambda p: (p / "config.json").stat().st_mtime)


def create_run_dir(root, name) -> Path:
    """Make <root>/<name> for a new run; never reuse an existing directory."""
    path = Path(root) / name
    if path.exists() and not is_reservation(path):
        raise RunError(f"--name: run directory {path} already exists (use --resume {path} to continue it)")
    (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    (path / "samples").mkdir(exist_ok=True)
    return path


def is_reservation(path) -> bool:
    """A directory launch.py made for a run that has not started: launch.json, launch.log, status.json only."""
    names = {p.name for p in Path(path).iterdir()}
    return "launch.json" in names and names <= {"launch.json", "launch.log", "status.json"}


def check_run_dir(path) -> Path:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise RunError(f"{path}: not a gancore run directory (no config.json)")
    return path


class Run:
    """A run directory opened for reading: config, data info, status, metrics, checkpoints, sampling."""

    def __init__(self, path):
        self.path = check_run_dir(path)
        self.config = read_json(self.path / "config.json")
        self.data_info = read_json(self.path / "data.json", {})

    def __repr__(self):
        return f"Run({str(self.path)!r}, state={self.status.get('state')!r}, step={self.status.get('step')})"

    @property
    def status(self) -> dict:
        return read_status(self.path)

    @property
    def metrics(self):
        """The metrics log as a pandas DataFrame, one row per logged step."""
        import pandas as pd

        return pd.DataFrame(read_metrics(self.path))

    @property
    def checkpoints(self) -> dict[int, Path]:
        return checkpoints(self.path)

    @property
    def sample_grids(self) -> dict[int, Path]:
        return sample_grids(self.path)

    def sample(self, n, labels=None, seed=None, truncation=None, step=None):
        """n samples from the (EMA) generator: (uint8 images (N, H, W, C) or float32 points (N, 2), int64 labels)."""
        from .sample import sample_run

        return sample_run(self.path, n, labels=labels, seed=seed, truncation=truncation, step=step)


def load_run(path) -> Run:
    return Run(path)
