"""Runs that share a machine (issue 14): a sweep end to end, and a Quick start beside a running run.

    python bench/placement.py [--part all|sweep|quick] [--sweep_steps 3000] [--window 40]

(a) sweep: 4 ring runs (seeds 0-3, --sweep_steps each), from the launch call to the last run's end,
    three ways: today's default before issue 14 ("old": 2 at once, every run with torch's default
    threads, i.e. all the cores, as `gancore sweep --max_parallel 2` started them), and with placement
    1 at a time (each alone, all the cores) and 2 at once (the cores divided: 1 thread each on 2 cores).
(b) quick: the Runs page's Quick start (preset cgan-concat, logged every 10 steps here) alone, then
    launched beside a running ring run, with placement and the old way (both with torch's default
    threads). Speed: steps/s over a --window s wall-clock window after its first 20 steps.

The old way is reproduced here with plain subprocesses (reserve, then `python -m gancore train --config`
with no OMP_NUM_THREADS), exactly what launch.launch and launch.run_sweep did before placement.
Take the quiet lock first (/tmp/gancore-PROTOCOL.md): the figures mean something only on an idle machine.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gancore import launch, placement, runs  # noqa: E402

QUICK_START = {"preset": "cgan-concat", "log_every": 10}  # dashboard/pages/runs.py's, logged more often
RING = {"dataset": "ring"}


def old_start(fields: dict, root: Path) -> subprocess.Popen:
    """A launch before placement: reserve, then train with the environment as it is (torch's default threads)."""
    path = launch.reserve(root, fields)
    env = launch.child_env()
    env.pop("OMP_NUM_THREADS", None)
    with open(path / "launch.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gancore", "train", "--config", str(path / "launch.json")],
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=launch.PACKAGE_ROOT)
    runs.update_status(path, pid=proc.pid)
    proc.path = path
    return proc


def wait_done(paths, timeout=1800) -> float:
    end = time.time() + timeout
    while time.time() < end:
        states = [runs.read_status(p).get("state") for p in paths]
        if all(s in ("done", "failed", "stopped") for s in states):
            assert all(s == "done" for s in states), states
            return max(runs.read_status(p)["finished"] for p in paths)
        launch.reap()
        time.sleep(0.2)
    raise TimeoutError(f"runs not done after {timeout} s: {paths}")


def sweep(mode: str, steps: int, root: Path) -> dict:
    base = dict(RING, steps=steps, name=f"sweep-{mode}")
    seeds = [0, 1, 2, 3]
    t0 = time.time()
    if mode == "old":  # launch.run_sweep before issue 14: at most 2 at once, torch's default threads
        todo = [old_start(dict(base, seed=s, name=f"{base['name']}-seed{s}"), root) for s in seeds[:2]]
        waiting = [dict(base, seed=s, name=f"{base['name']}-seed{s}") for s in seeds[2:]]
        paths = [p.path for p in todo]
        while waiting:
            if sum(p.poll() is None for p in todo) < 2:
                todo.append(old_start(waiting.pop(0), root))
                paths.append(todo[-1].path)
            time.sleep(0.2)
    else:
        paths = launch.launch_sweep(base, {"seed": seeds}, root, max_parallel=int(mode))
    end = wait_done(paths)
    threads = sorted({(runs.read_status(p).get("placement") or {}).get("threads", "default") for p in paths},
                     key=str)
    return {"mode": mode, "wall_s": end - t0, "steps_per_s": 4 * steps / (end - t0), "threads": threads}


def steps_at(path) -> int:
    return runs.read_status(path).get("step", 0)


def speed(path, window: float, others=()) -> tuple[float, list[float]]:
    """steps/s of `path` (and of each of `others`) over `window` wall seconds, once `path` passed step 20."""
    end = time.time() + 600
    while steps_at(path) < 20:
        if time.time() > end or runs.read_status(path).get("state") in ("failed", "done"):
            raise RuntimeError(f"{path} did not get going: {launch.log_tail(path, 3)}")
        time.sleep(0.1)
    start = [steps_at(p) for p in (path, *others)]
    t0 = time.time()
    time.sleep(window)
    done = [steps_at(p) for p in (path, *others)]
    dt = time.time() - t0
    rates = [(b - a) / dt for a, b in zip(start, done)]
    return rates[0], rates[1:]


def stop_all(paths):
    for p in paths:
        pid = runs.read_status(p).get("pid")
        if runs.pid_alive(pid) and runs.read_status(p).get("state") in ("queued", "running"):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
    launch.reap()


def wait_running(path):
    end = time.time() + 300
    while not (runs.read_status(path).get("state") == "running" and steps_at(path) > 0):
        if time.time() > end:
            raise RuntimeError(f"{path} did not start: {launch.log_tail(path, 3)}")
        time.sleep(0.2)


def quick(mode: str, window: float, root: Path) -> dict:
    ring = None
    if mode != "solo":
        ring_fields = dict(RING, steps=10 ** 6, name=f"ring-{mode}")
        ring = old_start(ring_fields, root).path if mode == "old" else launch.launch(ring_fields, root)
        wait_running(ring)
    qs_fields = dict(QUICK_START, name=f"quick-{mode}")
    qs = old_start(qs_fields, root).path if mode == "old" else launch.launch(qs_fields, root)
    rate, others = speed(qs, window, [ring] if ring else [])
    where = lambda p: placement.describe(runs.read_status(p)) or "torch default (all cores)"  # noqa: E731
    out = {"mode": mode, "quick_steps_per_s": rate, "quick_where": where(qs),
           "ring_steps_per_s": others[0] if others else None, "ring_where": where(ring) if ring else ""}
    stop_all([p for p in (qs, ring) if p])
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["all", "sweep", "quick"], default="all")
    p.add_argument("--sweep_steps", type=int, default=3000)
    p.add_argument("--window", type=float, default=40.0)
    args = p.parse_args()
    os.environ.pop("OMP_NUM_THREADS", None)
    root = Path(tempfile.mkdtemp(prefix="bench-placement-")) / "runs"
    print(f"machine: {placement.machine()}, default sweep parallelism {placement.default_parallel()}", flush=True)
    try:
        if args.part in ("all", "sweep"):
            print(f"\n(a) sweep of 4 ring runs x {args.sweep_steps} steps, launch to last end", flush=True)
            print("| way | runs at once | threads per run | wall s | steps/s in total |\n|---|---:|---|---:|---:|")
            for mode in ("old", "1", "2"):
                r = sweep(mode, args.sweep_steps, root)
                label = "before issue 14 (default)" if mode == "old" else "placement"
                print(f"| {label} | {2 if mode == 'old' else mode} | {', '.join(map(str, r['threads']))} | "
                      f"{r['wall_s']:.1f} | {r['steps_per_s']:.1f} |", flush=True)
        if args.part in ("all", "quick"):
            print(f"\n(b) Quick start (cgan-concat) steps/s over {args.window:.0f} s", flush=True)
            print("| case | Quick start where | Quick start steps/s | ratio to solo | ring where | ring steps/s |\n"
                  "|---|---|---:|---:|---|---:|")
            solo = None
            for mode in ("solo", "placement", "old"):
                r = quick(mode, args.window, root)
                solo = solo or r["quick_steps_per_s"] or float("nan")
                ring = "" if r["ring_steps_per_s"] is None else f"{r['ring_steps_per_s']:.1f}"
                print(f"| {mode} | {r['quick_where']} | {r['quick_steps_per_s']:.2f} | "
                      f"{r['quick_steps_per_s'] / solo:.2f} | {r['ring_where']} | {ring} |", flush=True)
    finally:
        for path in root.iterdir() if root.is_dir() else []:
            if path.is_dir():
                stop_all([path])
        shutil.rmtree(root.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
