"""Progressive growing against the plain conditional DCGAN at equal wall time (issue 12): a table.

    python bench/progressive.py [--preset progressive-mnist] [--against cgan-concat] [--eval_n 10000]
                                [--runs_root DIR] [--seed 0]

1. Trains `--preset` (default progressive-mnist, 32 px) with an evaluation at the end of every phase
   (stage 0, then each fade and each stable phase), FID and conditional accuracy by the shipped
   32 px MNIST-5k evaluator.
2. Trains `--against` (default cgan-concat) on the same 32 px data, evaluating every `--against_eval`
   steps, and stops it (SIGTERM: one checkpoint, state `stopped`) when it has run as long as step 1 did.
3. Scores the last checkpoint of both with `--eval_n` samples (`gancore eval`), so the final figures
   of the two come from the same evaluator, sample count and reference.

Training runs one at a time; keep the machine otherwise idle. Wall times include the evaluations
(both runs evaluate; the progressive run 7 times, the other about as often).
"""
import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def train(args: list[str], log: Path, stop_after: float | None = None) -> float:
    """Run `gancore train`; returns its wall time. stop_after: SIGTERM it after that many seconds."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gancore", "train", *args], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=stop_after)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)  # the trainer checkpoints and ends `stopped`
            proc.wait()
    if proc.returncode:
        sys.exit(f"training failed (exit {proc.returncode}); see {log}")
    return time.perf_counter() - start


def evaluations(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if "fid" in r]


def score(run_dir: Path, n: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "gancore", "eval", str(run_dir), "--n", str(n)], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"gancore eval {run_dir} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="progressive-mnist")
    p.add_argument("--against", default="cgan-concat")
    p.add_argument("--against_eval", type=int, default=500, help="steps between the other run's evaluations")
    p.add_argument("--eval_n", type=int, default=10000, help="samples of the final scores")
    p.add_argument("--runs_root", type=Path, default=Path("/tmp/gancore-bench-progressive"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--extra", default="", help="more train flags for the progressive run, e.g. '--steps 3000'")
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from gancore.config import TrainConfig
    from gancore.models.progressive import Schedule
    from gancore.setup import load_and_resolve

    stamp = time.strftime("%Y%m%d-%H%M%S")
    prog_name, other_name = f"{args.preset}-{stamp}", f"{args.against}-32px-{stamp}"
    args.runs_root.mkdir(parents=True, exist_ok=True)
    fields = dict(TrainConfig.from_dict({"preset": args.preset, "seed": args.seed}).to_dict())
    extra = args.extra.split()
    for flag, value in zip(extra[::2], extra[1::2]):
        fields[flag.lstrip("-")] = value
    cfg, _ = load_and_resolve(TrainConfig.from_dict(fields))
    schedule = Schedule(cfg.g_depth + 1, cfg.fade_images, cfg.stable_images)
    per_step = cfg.batch_size * cfg.n_critic
    phase_ends = [b // per_step for b in schedule.boundaries()]  # steps where a phase ends
    every = phase_ends[0]
    if any(s % every for s in phase_ends):
        sys.exit(f"phase ends {phase_ends} are not multiples of {every} steps: pick fade/stable images "
                 f"that are multiples of {per_step}")

    prog_s = train(["--preset", args.preset, "--runs_root", str(args.runs_root), "--name", prog_name,
                    "--seed", str(args.seed), "--eval_every", str(every), *extra], args.runs_root / f"{prog_name}.log")
    other_s = train(["--preset", args.against, "--image_size", "32", "--runs_root", str(args.runs_root),
                     "--name", other_name, "--seed", str(args.seed), "--steps", "100000",
                     "--eval_every", str(args.against_eval)], args.runs_root / f"{other_name}.log", stop_after=prog_s)

    print(f"\n{args.preset} ({prog_s:.0f} s) and {args.against} at 32 px (stopped at {other_s:.0f} s); "
          f"evaluations during training with the runs' eval_n, FID and conditional accuracy by the 32 px evaluator\n")
    print("| run | step | images seen | wall s | phase | FID | cond. acc. |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for name in (prog_name, other_name):
        for r in evaluations(args.runs_root / name):
            phase = "32 px throughout"
            if name == prog_name:  # the phase this evaluation closes
                stage, alpha = schedule.stage_alpha(r["images_seen"] - 1)
                phase = f"{4 * 2 ** stage} px, {'fade' if alpha < 1 else 'stable'}"
            print(f"| {name.rsplit('-', 2)[0]} | {r['step']} | {r['images_seen']} | {r['time']:.0f} | {phase} | "
                  f"{r['fid']:.3g} | {r.get('cond_acc', float('nan')):.3f} |")
    print(f"\nFinal checkpoints, {args.eval_n} samples each (`gancore eval RUN --n {args.eval_n}`):\n")
    print("| run | step | wall s | FID | KID | IS | cond. acc. |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, wall in ((prog_name, prog_s), (other_name, other_s)):
        s = score(args.runs_root / name, args.eval_n)
        print(f"| {name.rsplit('-', 2)[0]} | {s.get('step', '?')} | {wall:.0f} | {s['fid']:.3g} | "
              f"{s['kid_mean']:.3g} | {s['is_mean']:.2f} | {s.get('cond_acc', float('nan')):.3f} |")


if __name__ == "__main__":
    main()
