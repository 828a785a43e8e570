"""The GPU check: one command, run as is on a machine with a CUDA device, that produces the GPU figures.

    python bench/gpu_check.py                      # at most 7.5 minutes on one GPU; one markdown table on stdout
    python bench/gpu_check.py --allow-cpu --quick  # a tiny version on the CPU, under a minute (tests/test_bench.py)

(a) the tests that need CUDA: pytest over the test files that look for a CUDA device (`cuda.is_available`)
    and tests/test_cuda_paths.py and tests/test_gpu_path.py (those not there are left out), keeping the
    tests whose ids name cuda or gpu (`-k "cuda or gpu"`);
(b) bench/train_speed.py over the GPU table's image configs (IMAGE_CONFIGS) at batch 64, 256 and 1024,
    in fp32 and bf16, eager and compiled: images/s, peak GPU memory, host syncs per step and the share of
    step time spent in the optimiser steps;
(c) one short real training run per network (mlp on ring; dcgan, resnet and progressive on mnist-5k:
    200 steps, evaluated at the end) through `python -m gancore train`; each must end `done` in its
    status.json;
(d) one markdown table of all of it on stdout (progress goes to stderr); exit code 1 when anything failed.

Each part has a time budget (BUDGETS). (a) and (c) run side by side first (the tests mostly on the CPU,
the runs are short), then (b) alone, so that its clock shares the GPU with nothing: 2 + 5.5 minutes at
most. What a budget cuts short shows in the table: measurements of (b) left unmeasured are "not run"
(compiled rows compile first; torch.compile's caches on disk make a second run of this script faster),
while tests or training runs that did not finish are failures, since they proved nothing.

Without a CUDA device it refuses (one line, exit code 2) unless --allow-cpu. --quick is the tiny version
that proves the script end to end: (a) only collects the tests (on a CPU they are skipped, or run by the
ordinary suite anyway), (b) its first config at batch 64, fp32, eager, 2 timed steps, (c) 20 steps of narrow
nets at batch 16, no evaluation.
"""
import argparse
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # gancore.runs reads the training runs' directories

IMAGE_CONFIGS = ("mnist-5k dcgan", "mnist-5k dcgan 64px", "mnist-5k resnet 32px")  # train_speed's GPU rows (issue 11)
BATCHES = (64, 256, 1024)
PRECISIONS = ("fp32", "bf16")
NETWORKS = (("mlp on ring", "ring", "mlp"), ("dcgan on mnist-5k", "mnist-5k", "dcgan"),
            ("resnet on mnist-5k", "mnist-5k", "resnet"), ("progressive on mnist-5k", "mnist-5k", "progressive"))
CUDA_TEST_FILES = ("tests/test_cuda_paths.py", "tests/test_gpu_path.py")  # taken even before they look for a GPU
SELF_TEST = "tests/test_bench.py"  # runs this script: never part of (a), which would then run itself
BUDGETS = {False: dict(a=120, b=330, c=120), True: dict(a=30, b=60, c=60)}  # seconds per part; True: --quick
COLUMNS = ("part", "check", "result", "images/s", "peak GPU memory", "host syncs/step", "optimiser share", "seconds",
           "note")


class Child:
    """A subprocess in its own session (so that stopping it stops the compile workers it started too), its output
    collected line by line as it comes. Being in its own session, it misses a Ctrl-C: main() stops what is left."""

    started = []

    def __init__(self, cmd, env, echo: str = ""):
        self.cmd, self.t0, self.out, self.err, self.stopped = cmd, time.monotonic(), [], [], False
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        Child.started.append(self)
        self.readers = [threading.Thread(target=self.read, args=(self.proc.stdout, self.out, echo), daemon=True),
                        threading.Thread(target=self.read, args=(self.proc.stderr, self.err, ""), daemon=True)]
        for t in self.readers:
            t.start()

    @staticmethod
    def read(stream, lines, echo):
        for line in stream:
            lines.append(line.rstrip("\n"))
            if echo and line.startswith("| ") and not line.startswith("| config |"):  # progress: rows as they come
                print(f"  {echo} {line.rstrip()}", file=sys.stderr, flush=True)

    def wait(self, deadline: float) -> None:
        """Until it ends, or until `deadline` (time.monotonic()), when it is stopped (`stopped`)."""
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.stopped = True
            self.kill()
        for t in self.readers:
            t.join(timeout=5)
        self.seconds = time.monotonic() - self.t0

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it ended just now
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def last_error(self) -> str:
        """The last line it wrote on stderr (a one-line error, or a traceback's last line)."""
        lines = [line for line in self.err if line.strip()]
        return lines[-1].strip() if lines else f"exit code {self.proc.returncode}"


def row(part, check, result, note="", seconds=None, figures=None) -> dict:
    """A table row; `figures`: values of the measurement columns by their names ("-" where there is none)."""
    r = dict.fromkeys(COLUMNS, "-")
    r.update(figures or {})
    r.update(part=part, check=check, result=result, note=note or "-",
             seconds="-" if seconds is None else f"{seconds:.0f}")
    return r


def failed(r: dict) -> bool:
    return not (r["result"] in ("ok", "done") or r["result"].startswith("not run"))


# --- (a) the tests that need CUDA ---

def test_files() -> list[str]:
    """The test files with CUDA-only tests: those that look for a CUDA device, and the two about the GPU path."""
    files = {f for f in CUDA_TEST_FILES if (ROOT / f).exists()}
    files |= {f"tests/{p.name}" for p in (ROOT / "tests").glob("test_*.py") if "cuda.is_available" in p.read_text()}
    files.discard(SELF_TEST)
    return sorted(files)


def start_tests(files, quick, env) -> Child:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda or gpu", *files]
    return Child(cmd + (["--collect-only"] if quick else ["-rs"]), env)


def tests_row(child, files, budget, quick) -> dict:
    if child is None:
        return row("a", "CUDA tests", "failed", "no test files found")
    check = f"CUDA tests: pytest -k 'cuda or gpu' {' '.join(Path(f).name for f in files)}"
    # pytest's last line: "5 passed, 2 skipped, 30 deselected in 12.3s" or, collecting, "5/35 tests collected ..."
    summary = next((line.strip("= ") for line in reversed(child.out)
                    if re.search(r"\d+ (passed|failed|skipped|errors?|tests? collected|deselected)", line)), "")
    summary = re.sub(r" in [\d.]+s.*$", "", summary)
    if child.stopped:
        return row("a", check, "failed", f"over its {budget} s budget", child.seconds)
    if child.proc.returncode == 5:
        return row("a", check, "failed", "no tests selected", child.seconds)
    if child.proc.returncode:
        failures = [line.split()[1] for line in child.out if line.startswith(("FAILED ", "ERROR "))]
        return row("a", check, "failed", "; ".join([summary] + failures[:3]), child.seconds)
    return row("a", check, "ok", summary + ("; quick: collected, not run" if quick else ""), child.seconds)


# --- (b) training speed ---

def speed_rows(device, quick, budget, env) -> list[dict]:
    """train_speed.py once per precision and eager/compiled (every config and batch in one process), each given
    a fair share of what is left of the budget, so a slow compile cannot starve the eager rows."""
    batches = BATCHES[:1] if quick else BATCHES
    configs = IMAGE_CONFIGS[:1] if quick else IMAGE_CONFIGS  # quick: the path, not the figures (a CPU's are known)
    # bf16 is an autocast precision, which gancore runs on CUDA only
    precisions = PRECISIONS[:1] if quick or device == "cpu" else PRECISIONS
    combos = [(p, compiled) for compiled in ((False,) if quick else (False, True)) for p in precisions]
    steps = ["--steps", "2", "--warmup", "1"] if quick else ["--steps", "50"]
    end, rows = time.monotonic() + budget, []
    for i, (precision, compiled) in enumerate(combos):
        mode = "compiled" if compiled else "eager"
        deadline = time.monotonic() + (end - time.monotonic()) / (len(combos) - i)
        print(f"gpu_check: (b) train_speed, {precision} {mode}", file=sys.stderr, flush=True)
        cmd = [sys.executable, "bench/train_speed.py", "--device", device, "--precision", precision,
               "--configs", ", ".join(configs), "--batch_size", ",".join(map(str, batches)), *steps]
        child = Child(cmd + (["--compile"] if compiled else []), env, echo=f"{precision} {mode}")
        child.wait(deadline)
        measured, places = read_speed_table(child.out)
        for label in configs:
            for batch in batches:
                check = f"{label}, batch {batch}, {precision}, {mode}"
                m = measured.get((label, batch))
                if m is None:
                    why = (f"not run: the budget's share ({deadline - child.t0:.0f} s) was spent" if child.stopped
                           else "failed")
                    rows.append(row("b", check, why, "" if child.stopped else child.last_error()))
                    continue
                note = f"{m['steps/s']} steps/s" + (f"; syncs at {places[(label, batch)]}"
                                                    if (label, batch) in places else "")
                rows.append(row("b", check, "ok", note, figures={c: m.get(c, "?") for c in COLUMNS[3:7]}))
    return rows


def read_speed_table(lines):
    """train_speed's rows by (config, batch), and where the rows that read values back read them."""
    header, measured, places = None, {}, {}
    for line in lines:
        if line.startswith("| config |"):
            header = [c.strip() for c in line.strip("|").split("|")]
        elif header and line.startswith("| ") and not line.startswith("|---"):
            cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
            measured[(cells["config"], int(cells["batch x n_critic"].split(" x ")[0]))] = cells
        elif m := re.match(r"host syncs of (.+) \(batch (\d+)\), per \d+ steps: (.*)", line):
            where = m.group(3).split(", ")
            places[(m.group(1), int(m.group(2)))] = ", ".join(where[:2]) + (" ..." if len(where) > 2 else "")
    return measured, places


# --- (c) one short training run per network ---

def start_run(name, dataset, model, device, root, steps, quick, env) -> Child:
    cmd = [sys.executable, "-m", "gancore", "train", "--dataset", dataset, "--model", model, "--steps", str(steps),
           "--eval_every", "0" if quick else str(steps), "--device", device, "--runs_root", str(root),
           "--name", name.replace(" ", "-")]
    if quick:  # a smoke test of the path, not of the recipe: small nets and batches keep 2 CPU cores under the minute
        cmd += ["--batch_size", "16", "--g_width", "8", "--d_width", "8"]
    return Child(cmd, env)


def run_row(name, child, root, budget, steps) -> dict:
    from gancore import runs  # plain Python: the run directory's readers

    run_dir = root / name.replace(" ", "-")
    state = runs.read_status(run_dir).get("state") if run_dir.exists() else None
    records = runs.read_metrics(run_dir) if run_dir.exists() else []
    speed = next((r["img_per_s"] for r in reversed(records) if "img_per_s" in r), None)
    evaluated = next((r for r in reversed(records) if "fid" in r or "modes" in r), None)
    note = "" if evaluated is None else (f"FID {evaluated['fid']:.1f}" if "fid" in evaluated
                                         else f"modes {evaluated['modes']}")
    check = f"train {name}, {steps} steps"
    if child.stopped:
        return row("c", check, "failed", f"over its {budget} s budget (state {state})", child.seconds)
    if state != "done":
        return row("c", check, f"failed: state {state}", child.last_error(), child.seconds)
    return row("c", check, "done", note, child.seconds, figures={"images/s": f"{speed:,.0f}" if speed else "-"})


def table(rows) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]).replace("|", "/") for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--allow-cpu", action="store_true", help="run without a CUDA device (on the CPU)")
    p.add_argument("--quick", action="store_true", help="a tiny version: collect the tests, batch 64 fp32 eager, "
                   "20-step runs")
    args = p.parse_args()
    import torch  # after parsing: --help answers without it

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("gpu_check.py: error: no CUDA device here (torch.cuda.is_available() is False); run it on a machine "
              "with a GPU, or pass --allow-cpu", file=sys.stderr)
        return 2
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU ({os.cpu_count()} cores)"
    budget = BUDGETS[args.quick]
    paths = [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), PYTHONUNBUFFERED="1")  # this checkout's gancore
    # (a) and (c) side by side: five processes, sharing the cores rather than each taking all of them
    shared = dict(env, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // (1 + len(NETWORKS)))))
    t0 = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="gpu_check-runs-"))
    files = test_files()
    print(f"gpu_check: (a) CUDA tests and (c) {len(NETWORKS)} training runs, side by side", file=sys.stderr,
          flush=True)
    tests = start_tests(files, args.quick, shared) if files else None
    steps = 20 if args.quick else 200
    trainings = [(n, start_run(n, dataset, model, device, root, steps, args.quick, shared))
                 for n, dataset, model in NETWORKS]
    if tests:
        tests.wait(t0 + budget["a"])
    for _, child in trainings:
        child.wait(t0 + budget["c"])
    rows = [tests_row(tests, files, budget["a"], args.quick)]
    run_rows = [run_row(n, child, root, budget["c"], steps) for n, child in trainings]
    rows += speed_rows(device, args.quick, budget["b"], env)
    rows += run_rows
    for r in run_rows:
        if failed(r):  # kept for a look at its train.log
            r["note"] += f"; run kept under {root}"
    if not any(failed(r) for r in run_rows):
        shutil.rmtree(root, ignore_errors=True)
    bad = sum(failed(r) for r in rows)
    unmeasured = sum(r["result"].startswith("not run") for r in rows)
    print(f"gpu_check: {name}; torch {torch.__version__}, CUDA {torch.version.cuda}; "
          f"{'quick, ' if args.quick else ''}{time.monotonic() - t0:.0f} s; {bad} failed, {unmeasured} not run\n")
    print(table(rows))
    return 1 if bad else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:  # Ctrl-C or a crash here: no test run, training run or compile worker is left behind
        for child in Child.started:
            child.kill()
