"""The run directory: the one contract between the trainer and everything that reads runs.

    <runs_root>/<name>/
        config.json          resolved TrainConfig (every field, no "auto" left)
        data.json            what G needs to know of the data: kind, shape, num_classes, class_names, modes, sigma
        status.json          {schema, state, pid, host, heartbeat, step, steps, images_seen, error, resumes, best, ...}
        .status.lock         held while status.json is updated (update_status: read, merge, write)
        metrics.jsonl        one JSON object per logged or evaluated step, appended and flushed as written
        train.log            the human-readable log
        samples/step_NNNNNNN.png   grids from one fixed noise batch (2-D runs: also .npz with `points`)
        checkpoints/ckpt_NNNNNNN.pt
        checkpoints/best.pt  the checkpoint of the best evaluation so far (status.json "best" says which)

A sampling-only checkpoint (`sampling_checkpoint`) holds G's weights and the counters, no D, optimiser
or RNG state: sample, eval and the dashboard load it; resume refuses it. gancore ships one such run,
read-only, under gancore/pretrained/ (`PRETRAINED_ROOT`; `Run("pretrained:<name>")` opens it).

The trainer writes, and the launcher too (status.json's queue and placement fields, and the run's state
while no trainer runs it): both only through `update_status`, one locked merge. Readers only read. Every file
but the two logs is replaced atomically
(`atomic_write`: temp file + rename); a reader of metrics.jsonl skips a half-written last line, and
every reader here survives a file that is missing, torn or corrupt. docs/ARCHITECTURE.md is the full spec.
"""
import json
import os
import re
import socket
import time
from contextlib import contextmanager
from pathlib import Path

import orjson

from .errors import ConfigError, RunError

SCHEMA_VERSION = 1
STATES = ("queued", "running", "done", "failed", "stopped")
# One pattern per kind of file a reader looks for. Temp files (`.<name>.<pid>.tmp`, see atomic_write)
# start with a dot and end in .tmp, so they never match any of these.
CKPT_RE = re.compile(r"ckpt_(\d+)\.pt")
GRID_RE = re.compile(r"step_(\d+)\.png")
POINTS_RE = re.compile(r"step_(\d+)\.npz")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")  # a run name: one directory below the runs root
CHECKPOINT_KEYS = ("step", "images_seen", "elapsed", "config", "G", "D", "G_ema", "opt_g", "opt_d", "scaler_g",
                   "scaler_d", "rng")
SAMPLING_KEYS = ("step", "images_seen", "elapsed", "config", "G", "G_ema")  # a sampling-only one: G or G_ema set
PRETRAINED_ROOT = Path(__file__).resolve().parent / "pretrained"  # runs shipped with gancore, read-only
PRETRAINED_PREFIX = "pretrained:"  # "pretrained:mnist-5k-cgan" names PRETRAINED_ROOT / "mnist-5k-cgan"


class CheckpointError(RunError):
    """A checkpoint file is missing, truncated, corrupt or not a gancore checkpoint; the message names it."""


# ---------------------------------------------------------------- writing
def atomic_write(path, write) -> None:
    """Write a file through a temp file and a rename: readers see the previous file (or none), never half of one.

    `write(f)` fills a binary file object. The temp file is `.<name>.<pid>.tmp` beside `path`: hidden,
    unique per process, and matching no reader's pattern. Used for JSON, checkpoints, PNG and NPZ alike.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # not mkstemp: that makes the file private
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path, obj) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


def torch_save_atomic(obj, path) -> None:
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))


def save_png_atomic(image, path) -> None:
    """A PIL image as PNG."""
    atomic_write(path, lambda f: image.save(f, format="PNG"))


def save_npz_atomic(path, **arrays) -> None:
    import numpy as np

    atomic_write(path, lambda f: np.savez(f, **arrays))


def read_json(path, default=None):
    """A JSON file's content, or `default` when it is missing, torn or not JSON."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError):  # missing, unreadable, half-written, not UTF-8, not JSON
        return default


def read_json_object(path) -> dict:
    """A JSON object file (config.json, data.json, status.json ...): {} when missing, torn or not an object."""
    obj = read_json(path, {})
    return obj if isinstance(obj, dict) else {}


def read_status(run_dir) -> dict:
    return read_json_object(Path(run_dir) / "status.json")


STATUS_LOCK = ".status.lock"  # held while status.json is read, merged and written


def update_status(run_dir, **fields) -> dict:
    """Merge fields into status.json (with a fresh heartbeat) and write it atomically, under the run's status lock:
    the trainer and the launcher both update it (the launcher the placement and the queue, the trainer the
    progress), and a merge from a stale read would put back what the other just wrote."""
    with _status_lock(Path(run_dir)):
        status = read_status(run_dir)
        status.update(fields, schema=SCHEMA_VERSION, heartbeat=time.time())
        write_json_atomic(Path(run_dir) / "status.json", status)
    return status


@contextmanager
def _status_lock(run_dir: Path):
    try:
        import fcntl  # noqa: F401 - Unix; elsewhere one process trains a run and nothing launches beside it
    except ImportError:
        yield
        return
    with locked(run_dir / STATUS_LOCK):
        yield


def pid_alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError, OverflowError):
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_active(status: dict) -> bool:
    """True when a live process on this host is (or is about to be) training this run."""
    if status.get("state") not in ("queued", "running"):
        return False
    if status.get("host") not in (None, socket.gethostname()):
        heartbeat = status.get("heartbeat")
        # cannot see the pid; trust a fresh heartbeat
        return isinstance(heartbeat, (int, float)) and time.time() - heartbeat < 120
    return pid_alive(status.get("pid"))


def read_metrics(run_dir) -> list[dict]:
    """Every complete record of metrics.jsonl; a half-written or corrupt line is skipped."""
    try:
        with open(Path(run_dir) / "metrics.jsonl", "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    text = text[: text.rfind("\n") + 1]  # a last line without its newline is still being written
    whole = "[" + ",".join(text.splitlines()) + "]"
    records = None
    try:  # one parse of the whole file: a 20,000-step log in ~0.1 s instead of ~0.4 s line by line
        records = orjson.loads(whole)
    except orjson.JSONDecodeError:
        try:  # orjson refuses Infinity/NaN, which json.dumps writes for a reverse KL of inf
            records = json.loads(whole)
        except ValueError:
            pass
    if records is None:
        records = []
        for line in text.splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    # a record is an object with an integer step; anything else (garbage from a torn write) is not one
    return [r for r in records if isinstance(r, dict) and isinstance(r.get("step"), int)]


def truncate_metrics(run_dir, last_step: int) -> None:
    """Drop records after `last_step` (the resume point) so the resumed history has no duplicates."""
    keep = [r for r in read_metrics(run_dir) if r["step"] <= last_step]
    atomic_write(Path(run_dir) / "metrics.jsonl", lambda f: f.write("".join(json.dumps(r) + "\n" for r in keep).encode()))


def _numbered(directory, pattern) -> dict[int, Path]:
    """{number: path} of the files in `directory` whose whole name matches `pattern`, in number order."""
    found = {}
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return {}
    for p in entries:
        m = pattern.fullmatch(p.name)
        if m:
            found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def checkpoints(run_dir) -> dict[int, Path]:
    """{step: path} of the checkpoints in a run, in step order (whether they load is load_checkpoint's business)."""
    return _numbered(Path(run_dir) / "checkpoints", CKPT_RE)


def checkpoint_path(run_dir, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"ckpt_{step:07d}.pt"


def best_checkpoint_path(run_dir) -> Path:
    return Path(run_dir) / "checkpoints" / "best.pt"


def sample_grids(run_dir) -> dict[int, Path]:
    """{step: png path} of the progress grids, in step order."""
    return _numbered(Path(run_dir) / "samples", GRID_RE)


def sample_points(run_dir) -> dict[int, Path]:
    """{step: npz path} of a 2-D run's saved points, in step order."""
    return _numbered(Path(run_dir) / "samples", POINTS_RE)


# ---------------------------------------------------------------- checkpoints
def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[0][:160] if text else "") or type(e).__name__


def load_checkpoint(path) -> dict:
    """A checkpoint's state dict, loaded to the CPU; CheckpointError naming the file when it cannot be used."""
    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as e:  # truncated zip, a foreign pickle, an unreadable file ...
        raise CheckpointError(f"{path}: unreadable checkpoint ({_first_line(e)})") from None
    required = SAMPLING_KEYS if isinstance(state, dict) and is_sampling_only(state) else CHECKPOINT_KEYS
    missing = [k for k in required if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a gancore checkpoint (no {missing[0]!r})")
    if is_sampling_only(state) and state["G"] is None and state["G_ema"] is None:
        raise CheckpointError(f"{path}: a sampling-only checkpoint without weights (G and G_ema are both null)")
    return state


def is_sampling_only(state: dict) -> bool:
    return state.get("sampling_only") is True


def sampling_checkpoint(state: dict) -> dict:
    """A full checkpoint stripped to what sampling needs: the weights G samples with (G_ema when the run kept
    one, else G; the other null), the config and the counters; no D, optimiser, scaler or RNG state."""
    ema = state.get("G_ema")
    return {"sampling_only": True, **{k: state[k] for k in ("step", "images_seen", "elapsed", "config")},
            "world_size": state.get("world_size", 1), "G_ema": ema, "G": state["G"] if ema is None else None}


def check_resumable(path, state: dict) -> None:
    """CheckpointError naming the file when a checkpoint cannot be trained on from (a sampling-only one)."""
    if is_sampling_only(state):
        raise CheckpointError(f"{path}: a sampling-only checkpoint (no D, no optimiser state); it cannot be resumed")


def checkpoint_problem(path) -> str | None:
    """A cheap check (no tensors read) for a dashboard that polls: why a checkpoint cannot load, or None.

    torch.save writes a zip archive; a truncated or overwritten file has no readable central directory.
    load_checkpoint remains the full check.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            if not any(n.endswith("data.pkl") for n in z.namelist()):
                return f"{Path(path).name}: not a torch checkpoint archive"
    except FileNotFoundError:
        return None  # replaced between listing and checking: the next look sees the new one
    except (OSError, zipfile.BadZipFile) as e:
        return f"{Path(path).name}: unreadable checkpoint ({_first_line(e)})"
    return None


def latest_loadable_checkpoint(run_dir, on_skip=None):
    """(step, path, state) of the newest checkpoint that loads, or None when none does (or there is none).

    Each unreadable one newer than it is reported through `on_skip(message)` (its file and why) and left
    on disk.
    """
    for step, path in reversed(checkpoints(run_dir).items()):
        try:
            return step, path, load_checkpoint(path)
        except CheckpointError as e:
            if on_skip:
                on_skip(f"skipped {e}")
    return None


def read_checkpoint(run_dir, step=None, on_skip=None):
    """(step, state) of a run's checkpoint for reading (sampling, scoring).

    step None: the newest that loads, unreadable newer ones reported through `on_skip`; an int or
    "best": exactly that file, CheckpointError when it cannot be loaded.
    """
    run_dir = Path(run_dir)
    found = checkpoints(run_dir)
    if step == "best":
        path = best_checkpoint_path(run_dir)
        if not path.is_file():
            raise RunError(f"--step: {run_dir} has no best checkpoint (it is kept when eval_every > 0 and the "
                           f"run has image metrics or 2-D data)")
        state = load_checkpoint(path)
        return state["step"], state
    if not found:
        raise RunError(f"{run_dir}: no checkpoint yet")
    if step is not None:
        if step not in found:
            raise RunError(f"--step: {run_dir} has no checkpoint at step {step} "
                           f"(it has {', '.join(map(str, found))})")
        return step, load_checkpoint(found[step])
    skipped = []
    loaded = latest_loadable_checkpoint(run_dir, skipped.append)
    if loaded is None:  # one line naming each file and why, with no warning before it
        raise CheckpointError(f"{run_dir}: no checkpoint loads: " + "; ".join(m.removeprefix("skipped ")
                                                                              for m in skipped))
    for message in skipped if on_skip else ():  # newer ones passed over for the one that loads
        on_skip(message)
    return loaded[0], loaded[2]


# ---------------------------------------------------------------- run directories
def default_root() -> str:
    """The runs root when none is given: $GANCORE_RUNS, else ./runs."""
    return os.environ.get("GANCORE_RUNS") or "runs"


def ensure_root(root) -> Path:
    """Make the runs root (and its parents) if needed; ConfigError naming it when that cannot be done."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"--runs_root: cannot create {root}: a file stands at that path") from None
    except OSError as e:
        raise ConfigError(f"--runs_root: cannot create {root}: {e.strerror or e}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError(f"--runs_root: cannot create runs in {root}: permission denied")
    return root


def check_name(name: str) -> str:
    """A run name that stays one directory below the runs root (the one rule for CLI, API and dashboard)."""
    if not NAME_RE.fullmatch(name) or name in (".", ".."):
        raise ConfigError(f"--name: {name!r} may only hold letters, digits, '.', '_' and '-', start with a "
                          f"letter or digit, and be at most 120 characters")
    return name


def list_runs(root=None) -> list[Path]:
    """Run directories (those with a config.json) under root, oldest first."""
    root = Path(root or default_root())
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    found = []
    for p in entries:
        try:
            found.append(((p / "config.json").stat().st_mtime, p))
        except OSError:  # not a run, or deleted while listing
            continue
    return [p for _, p in sorted(found)]


def claim_run_dir(root, name: str, numbered: bool = False) -> Path:
    """Atomically make <root>/<name> for a new run, or take over launch.py's reservation of it.

    Claiming is one `mkdir` that refuses an existing path, so of several processes racing for one
    name exactly one wins; a reservation is claimed by making its `checkpoints/` the same way.
    numbered (default names): a taken name moves on to <name>-2, <name>-3, ... instead of failing.
    """
    def take(path) -> bool:
        try:
            path.mkdir()
        except FileExistsError:
            if not is_reservation(path):
                return False
        try:
            (path / "checkpoints").mkdir()  # for a reservation, the claim itself: only one process can make it
        except FileExistsError:
            return False
        return True

    path = _first_free(root, name, numbered, take, "--name",
                       lambda p: f"run directory {p} already exists (use --resume {p} to continue it)")
    (path / "samples").mkdir(exist_ok=True)
    return path


def reserve_run_dir(root, name: str, numbered: bool = False) -> Path:
    """Atomically make an empty <root>/<name> (or <name>-2 ... when numbered) for launch.py to fill."""
    def take(path) -> bool:
        try:
            path.mkdir()
        except FileExistsError:
            return False
        return True

    return _first_free(root, name, numbered, take, "name", lambda p: f"run directory {p} already exists")


def _first_free(root, name: str, numbered: bool, take, flag: str, taken) -> Path:
    """The first of <root>/<name>, <name>-2, <name>-3 ... that `take(path)` claims atomically; without
    `numbered`, only <name>, else RunError `<flag>: <taken(path)>`."""
    root = ensure_root(root)
    for i in range(1, 10_000):
        path = root / (name if i == 1 else f"{name}-{i}")
        if take(path):
            return path
        if not numbered:
            raise RunError(f"{flag}: {taken(path)}")
    raise RunError(f"{flag}: no free run directory name under {root} for {name}")


def is_reservation(path) -> bool:
    """A directory launch.py made for a run that has not started: launch.json, launch.log, status.json only
    (and their temp files)."""
    names = {p.name for p in Path(path).iterdir() if not p.name.startswith(".")}
    return "launch.json" in names and names <= {"launch.json", "launch.log", "status.json"}


def is_pretrained(path) -> bool:
    """A run shipped with gancore (directly under PRETRAINED_ROOT): read-only, never resumed or deleted."""
    return Path(path).resolve().parent == PRETRAINED_ROOT


def check_run_dir(path) -> Path:
    if str(path).startswith(PRETRAINED_PREFIX):
        path = PRETRAINED_ROOT / str(path)[len(PRETRAINED_PREFIX):]
    path = Path(path)
    if not (path / "config.json").is_file():
        raise RunError(f"{path}: not a gancore run directory (no config.json)")
    if not read_json_object(path / "config.json"):
        raise RunError(f"{path / 'config.json'}: unreadable (not a JSON object)")
    return path


def is_conditional(config: dict) -> bool:
    """Whether a run's G takes labels: its config's conditioning (the one place that says so)."""
    return config.get("conditioning", "none") not in ("none", None)


# Fields added to TrainConfig after runs were first written, with the value that rebuilds such a run: its config.json
# lacks the field, and the field's default may mean something else now. pad_to (issue 13): the image size, no padding
# (0 would let the 28 px recipe pad an old MNIST run to 32 px).
def read_config(run_dir) -> dict:
    """A run's stored config.json as a dict ({} when missing or torn), completed with the fields it predates."""
    config = read_json_object(Path(run_dir) / "config.json")
    if config and "pad_to" not in config:
        config["pad_to"] = config.get("image_size", 0)
    return config


class Run:
    """A run directory opened for reading: config, data info, status, metrics, checkpoints, sampling."""

    def __init__(self, path):
        self.path = check_run_dir(path)
        self.config = read_config(self.path)
        self.data_info = read_json_object(self.path / "data.json")

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


def load_run(path) -> Run:
    return Run(path)


@contextmanager
def locked(path, wait: bool = True):
    """Hold an exclusive lock on the file `path` (created if missing). flock: the kernel releases it when the
    holder dies, so it never goes stale. Yields True when held; with wait=False, False at once if another
    process holds it. The one lock of gancore: the runs root's placement, a data or evaluator cache entry
    decoded or trained once for all the processes that want it."""
    import fcntl  # Unix only, as the launcher and torchrun's gloo are

    with open(path, "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# ---------------------------------------------------------------- tags and a note (the user's, not the trainer's)
NOTES_FILE = "notes.json"  # {"tags": [...], "note": "..."}: written by the dashboard (the user) alone
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,39}$")


def read_notes(run_dir) -> dict:
    """A run's tags and note: {"tags": [str], "note": str} (empty when it has none or the file is torn)."""
    data = read_json_object(Path(run_dir) / NOTES_FILE)
    tags = [t for t in data.get("tags", []) if isinstance(t, str)] if isinstance(data.get("tags"), list) else []
    note = data.get("note") if isinstance(data.get("note"), str) else ""
    return {"tags": tags, "note": note}


def write_notes(run_dir, tags, note: str = "") -> dict:
    """Replace a run's tags and note (atomically). Tags: up to 20, each 1-40 letters, digits, spaces, `.`, `_`
    or `-`, starting with a letter or digit; duplicates dropped, order kept. ConfigError names a bad tag."""
    tags = list(dict.fromkeys(t.strip() for t in tags if t.strip()))
    for t in tags:
        if not TAG_RE.match(t):
            raise ConfigError(f"tag {t!r}: 1-40 letters, digits, spaces, '.', '_' or '-', starting with a letter "
                              f"or digit")
    if len(tags) > 20:
        raise ConfigError(f"tags: at most 20 per run (got {len(tags)})")
    if len(note) > 10_000:
        raise ConfigError(f"note: at most 10,000 characters (got {len(note):,})")
    notes = {"tags": tags, "note": note}
    write_json_atomic(Path(run_dir) / NOTES_FILE, notes)
    return notes
