"""The command line: `python -m gancore train | sample | runs`.

Every TrainConfig field is a `train` flag. Bad input prints one line on stderr and exits 2;
a run that fails on a non-finite loss exits 1; success exits 0. `train` prints the run
directory as its last line on stdout, whatever the outcome.
"""
import argparse
import sys
from dataclasses import fields

from .config import TrainConfig, field_help
from .errors import GancoreError


class UsageError(GancoreError):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage and several lines; we want one
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m gancore", description="Train, sample and list GAN runs.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    t = sub.add_parser("train", help="train a GAN and write a run directory",
                       description="Train a GAN. Every config field is a flag; the run directory is printed last.")
    t.add_argument("--config", metavar="FILE.json", help="a JSON object of config fields (flags override it)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue this run in place from its latest checkpoint")
    helps = field_help()
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        flags = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        t.add_argument(*flags, dest=f.name, default=argparse.SUPPRESS, metavar=f.type.__name__.upper(),
                       help=f"{helps.get(f.name, '')} (default: {getattr(defaults, f.name)!r})")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="sample a trained run into .npz or .png")
    s.add_argument("run_dir", metavar="RUN_DIR")
    s.add_argument("--n", type=int, required=True, help="number of samples")
    s.add_argument("--label", type=int, help="class of every sample (conditional runs only)")
    s.add_argument("--seed", type=int, help="noise seed (default: random)")
    s.add_argument("--truncation", type=float, help="redraw latent entries beyond this magnitude")
    s.add_argument("--step", type=int, help="checkpoint step (default: the latest)")
    s.add_argument("--out", required=True, metavar="FILE", help=".npz (images/points + labels) or .png (a grid)")
    s.set_defaults(func=cmd_sample)

    r = sub.add_parser("runs", help="list runs with their status")
    r.add_argument("--root", help="runs root (default: $GANCORE_RUNS or ./runs)")
    r.set_defaults(func=cmd_runs)
    return p


def cmd_train(args) -> int:
    from .train import RunFailed, train

    flags = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    try:
        if args.resume:
            if args.config:
                raise UsageError("--config: cannot be combined with --resume (the run keeps its own config)")
            run_dir = train(resume=args.resume, **flags)
        else:
            config = TrainConfig.from_json(args.config).to_dict() if args.config else {}
            run_dir = train({**config, **flags})
    except RunFailed as e:
        print(f"gancore: run failed: {e}", file=sys.stderr)
        print(e.run_dir)
        return 1
    print(run_dir)
    return 0


def cmd_sample(args) -> int:
    from .runs import Run
    from .sample import sample_run, write_samples

    run = Run(args.run_dir)
    x, labels = sample_run(run.path, args.n, labels=args.label, seed=args.seed,
                           truncation=args.truncation, step=args.step)
    write_samples(args.out, x, labels, run.data_info)
    print(args.out)
    return 0


def cmd_runs(args) -> int:
    from .runs import Run, default_root, is_active, list_runs

    root = args.root or default_root()
    rows = [("run", "status", "dataset", "model", "loss", "conditioning", "steps")]
    for path in list_runs(root):
        run = Run(path)
        c, st = run.config, run.status
        state = st.get("state", "?")
        if state in ("queued", "running") and not is_active(st):
            state += " (no process)"  # killed without a chance to say so; --resume continues it
        rows.append((path.name, state, c["dataset"], c["model"], c["loss"], c["conditioning"],
                     f"{st.get('step', 0)}/{st.get('steps', c['steps'])}"))
    if len(rows) == 1:
        print(f"no runs under {root}")
        return 0
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    return 0


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except GancoreError as e:
        print(f"gancore: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gancore: interrupted", file=sys.stderr)
        return 130
