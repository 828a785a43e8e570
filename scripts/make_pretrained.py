"""Train and write the class-conditional MNIST-5k run shipped at gancore/pretrained/mnist-5k-cgan/.

    OMP_NUM_THREADS=2 python scripts/make_pretrained.py [--preset cgan-concat] [--seed 0] [--force]

1. Trains with `python -m gancore train --preset P --seed S --device cpu ...` in a temporary runs root
   (its progress on stderr): that command, the git commit, the date and the time it took go into the
   shipped README.md.
2. Copies config.json, data.json, metrics.jsonl and the last sample grid into a staging directory
   beside the target, with ONE checkpoint stripped to what sampling needs (`runs.sampling_checkpoint`:
   the EMA G's weights, config and counters; no D, no optimiser state), so the directory stays small.
3. Scores the staged copy as `python -m gancore eval gancore/pretrained/mnist-5k-cgan --n 10000` does
   (this also proves the sampling-only checkpoint loads), and writes status.json (done, with those
   scores) and README.md.
4. Renames the staging directory into place. An existing shipped directory is refused without
   --force, and with it replaced only by that final rename: a crash at any point loses nothing.

Deterministic given the preset and seed (CPU, the same torch build and thread count).
"""
import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout, no install needed

from gancore import runs  # noqa: E402

NAME = "mnist-5k-cgan"
# The best class-conditional MNIST-5k preset in docs/benchmarks.md (issue 13's probes): the 28 px recipe written
# out (pad_to 32, batch 48, lr 1e-3, Adam(0.2, 0.99), 2,000 steps), 5 minutes on 2 cores for FID 0.164 and
# conditional accuracy 0.984 (acgan: 1.70 / 0.917, sngan-projection-hinge: 2.01 / 0.770 at several times the time).
DEFAULT_PRESET = "cgan-concat"
EVAL_N = 10_000


def say(line: str) -> None:
    print(f"make_pretrained: {line}", flush=True)


def git_commit() -> str:
    """HEAD's commit, with "+ uncommitted changes" when the work tree differs from it."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "HEAD") or "unknown (not a git checkout)"
    return commit + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def train(preset: str, seed: int, steps: int | None, runs_root: Path) -> tuple[list[str], Path, float]:
    """Run the training command; (its argv as recorded, the run directory, wall seconds)."""
    argv = ["python", "-m", "gancore", "train", "--preset", preset, "--seed", str(seed), "--device", "cpu",
            "--name", NAME] + (["--steps", str(steps)] if steps else [])
    say("training: " + shlex.join(argv) + f" --runs_root {runs_root}")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, *argv[1:], "--runs_root", str(runs_root)], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"make_pretrained: training failed (exit {proc.returncode}); nothing was written")
    return argv, Path(proc.stdout.strip().splitlines()[-1]), wall


def stage(run_dir: Path, staging: Path) -> int:
    """Copy what the shipped run needs into `staging`; the step of its one (sampling-only) checkpoint."""
    step, path, state = runs.latest_loadable_checkpoint(run_dir)
    if state["G_ema"] is None:
        sys.exit("make_pretrained: the run kept no EMA generator (ema off?); the shipped run samples from one")
    config = dict(runs.read_json_object(run_dir / "config.json"), runs_root="")  # the temporary root: not ours
    (staging / "checkpoints").mkdir(parents=True)
    (staging / "samples").mkdir()
    runs.write_json_atomic(staging / "config.json", config)
    shutil.copy2(run_dir / "data.json", staging / "data.json")
    shutil.copy2(run_dir / "metrics.jsonl", staging / "metrics.jsonl")
    grids = runs.sample_grids(run_dir)
    last_grid = grids[max(grids)]
    shutil.copy2(last_grid, staging / "samples" / last_grid.name)
    runs.torch_save_atomic(dict(runs.sampling_checkpoint(state), config=config), runs.checkpoint_path(staging, step))
    say(f"staged step {step}: {path.stat().st_size / 2**20:.1f} MiB checkpoint -> "
        f"{runs.checkpoint_path(staging, step).stat().st_size / 2**20:.1f} MiB sampling-only")
    return step


def write_status(run_dir: Path, staging: Path, scores: dict) -> dict:
    """The trained run's status (no pid or host: nothing trains it here), with the final scores."""
    status = {k: v for k, v in runs.read_status(run_dir).items()
              if k not in ("pid", "host", "heartbeat", "before_resume", "waiting", "request")}
    if status.get("state") != "done":
        sys.exit(f"make_pretrained: the run ended {status.get('state')!r}, not done; nothing was written")
    best = status.pop("best", None)  # kept only when it is the checkpoint shipped (best.pt is not)
    if best and best.get("step") == scores["step"]:
        status["best"] = dict(best, path=str(runs.checkpoint_path(".", scores["step"])))
    status["final"] = scores  # `gancore eval DIR --n 10000` of the shipped checkpoint
    runs.write_json_atomic(staging / "status.json", status)
    return status


def readme(argv, args, step, status, scores, wall, train_s, size) -> str:
    provenance = json.dumps(scores["provenance"])
    per_class = " ".join(f"{a:.2f}" for a in scores["cond_acc_per_class"])
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    return f"""# gancore's pretrained class-conditional MNIST-5k generator

A run directory like any other (docs/ARCHITECTURE.md), shipped read-only with gancore, with ONE
sampling-only checkpoint (`checkpoints/ckpt_{step:07d}.pt`: the EMA generator's weights, config and
counters; no D, no optimiser state): it samples and scores, it cannot be resumed or deleted.

```bash
python -m gancore sample gancore/pretrained/{NAME} --n 100 --label 3 --out threes.png
python -m gancore eval gancore/pretrained/{NAME} --n {EVAL_N}
```

The dashboard's Samples page offers it when your runs root has no class-conditional run of its own.

## How it was made

| | |
|---|---|
| re-create | `OMP_NUM_THREADS={threads} python scripts/make_pretrained.py --preset {args.preset} --seed {args.seed}{f" --steps {args.steps}" if args.steps else ""} --force` |
| training command | `{shlex.join(argv)}` (in a temporary runs root) |
| preset | `{args.preset}` (docs/benchmarks.md: the best class-conditional MNIST-5k preset measured, about 5 minutes of training on 2 cores) |
| git commit | `{git_commit()}` |
| date | {datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")} |
| machine | {os.cpu_count()} CPU cores, OMP_NUM_THREADS={threads}, torch {torch_version()} |
| training | {status.get("step")} steps, {status.get("images_seen")} real images shown to D; {train_s:.0f} s of training by the trainer's clock, {wall:.0f} s for the whole command with its evaluations (other work may have shared the machine) |
| shipped size | {size / 2**20:.1f} MiB |

## Scores of the shipped checkpoint

`python -m gancore eval gancore/pretrained/{NAME} --n {EVAL_N}` (also in status.json under `final`):

| FID | KID | IS | cond. acc. |
|---:|---:|---:|---:|
| {scores["fid"]:.3f} | {scores["kid_mean"]:.4f} ± {scores["kid_std"]:.4f} | {scores["is_mean"]:.2f} | {scores["cond_acc"]:.3f} |

Conditional accuracy per class (0–9): {per_class}

Provenance: `{provenance}`
"""


def torch_version() -> str:
    import torch

    return torch.__version__


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default=DEFAULT_PRESET, help=f"a class-conditional MNIST-5k preset "
                                                            f"(default: {DEFAULT_PRESET})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="train this many steps instead of the preset's (a quick check of "
                                             "this script; the shipped run uses the preset's)")
    p.add_argument("--out", type=Path, default=runs.PRETRAINED_ROOT / NAME, help="the shipped run directory")
    p.add_argument("--force", action="store_true", help="replace an existing shipped directory")
    args = p.parse_args(argv)
    out = args.out.resolve()
    if out.exists() and not args.force:
        sys.exit(f"make_pretrained: {out} exists; --force replaces it (only once the new one is complete)")

    from gancore.config import TrainConfig
    from gancore.metrics import score_run

    fields = TrainConfig.from_dict({"preset": args.preset})
    if fields.dataset != "mnist-5k" or fields.conditioning == "none":
        sys.exit(f"make_pretrained: --preset {args.preset} is not a class-conditional MNIST-5k preset")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.{os.getpid()}.tmp"  # same filesystem: the final rename is atomic
    try:
        with tempfile.TemporaryDirectory(prefix="gancore-pretrained-") as tmp:
            cmd, run_dir, wall = train(args.preset, args.seed, args.steps, Path(tmp))
            step = stage(run_dir, staging)
            say(f"scoring the staged checkpoint with {EVAL_N} samples")
            scores = {k: v for k, v in score_run(staging, n=EVAL_N).items() if k != "run"}
            status = write_status(run_dir, staging, scores)
        train_s = max(r.get("time", 0) for r in runs.read_metrics(staging))  # training seconds (trainer's clock)
        for _ in range(2):  # the second time with the size the README itself adds
            text = readme(cmd, args, step, status, scores, wall, train_s, dir_size(staging))
            (staging / "README.md").write_text(text)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    install(staging, out, args.force)
    say(f"wrote {out} ({dir_size(out) / 2**20:.1f} MiB): FID {scores['fid']:.3f}, conditional accuracy "
        f"{scores['cond_acc']:.3f} (n = {EVAL_N}); training took {wall:.0f} s")


def install(staging: Path, out: Path, force: bool) -> None:
    """Rename the complete staging directory to `out`; an existing `out` (with force) is removed only after."""
    if out.exists() and not force:
        sys.exit(f"make_pretrained: {out} appeared meanwhile; left alone (the new run is in {staging})")
    old = out.parent / f".{out.name}.{os.getpid()}.old"
    if out.exists():
        out.rename(old)
    try:
        staging.rename(out)
    except BaseException:
        if old.exists():
            old.rename(out)  # put the previous one back; the new one stays in staging
        raise
    shutil.rmtree(old, ignore_errors=True)

if __name__ == "__main__":
    main()
