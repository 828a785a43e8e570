"""The command line: `python -m gancore train | sample | runs | eval | train-evaluator`.

Every TrainConfig field is a `train` flag. Bad input prints one line on stderr and exits 2;
a run that fails on a non-finite loss exits 1; success exits 0. `train` prints the run
directory as its last line on stdout, whatever the outcome.
"""
import argparse
import json
import os
import sys
from dataclasses import fields

from .config import TrainConfig, field_help
from .errors import GancoreError


class UsageError(GancoreError):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage and several lines; we want one
        raise UsageError(message)


def main_process() -> bool:
    """False on the other ranks of a torchrun launch (RANK > 0), which print nothing of their own."""
    return int(os.environ.get("RANK", "0")) == 0


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m gancore", description="Train, sample and list GAN runs.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    t = sub.add_parser("train", help="train a GAN and write a run directory",
                       description="Train a GAN. Every config field is a flag; the run directory is printed last.")
    t.add_argument("--config", metavar="FILE.json", help="a JSON object of config fields (flags override it)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue this run in place from its latest checkpoint")
    t.add_argument("--seeds", type=seeds_arg, metavar="N|S,S,...",
                   help="replicates: one run per seed, one after the other (N: seeds seed .. seed+N-1; or a list "
                        "0,1,2); --name NAME names them NAME-seed<s>. Compare groups them by their configs")
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
    s.add_argument("--step", type=step_arg, help="checkpoint step, or best (default: the latest)")
    s.add_argument("--out", required=True, metavar="FILE", help=".npz (images/points + labels) or .png (a grid)")
    s.set_defaults(func=cmd_sample)

    r = sub.add_parser("runs", help="list runs with their status")
    r.add_argument("--root", help="runs root (default: $GANCORE_RUNS or ./runs)")
    r.set_defaults(func=cmd_runs)

    e = sub.add_parser("eval", help="score a run (or an .npz of images) and print one JSON object",
                       description="Score a run's checkpoint, or images from an .npz, with their provenance.")
    e.add_argument("run_dir", nargs="?", metavar="RUN_DIR", help="the run to score (or use --npz)")
    e.add_argument("--npz", metavar="FILE", help="score these images: uint8 `images` (N, H, W, C), optional `labels`")
    e.add_argument("--dataset", help="--npz: the dataset to score against (e.g. mnist-5k)")
    e.add_argument("--data_path", "--data-path", help="--npz: path of that dataset, when it needs one")
    e.add_argument("--image_size", "--image-size", type=int, default=0, help="--npz: load the dataset at this size")
    e.add_argument("--channels", type=int, default=0, help="--npz: load the dataset with this many channels")
    e.add_argument("--n", type=int, default=0, help="samples to score (default: 10,000 images, 2,500 points, "
                                                    "26,000 stacked-mnist images; --npz: all of them)")
    e.add_argument("--step", type=step_arg, help="checkpoint step, or best (default: the latest)")
    e.add_argument("--seed", type=int, default=0, help="noise seed, and the seed of KID subsets and IS splits")
    e.set_defaults(func=cmd_eval)

    v = sub.add_parser("train-evaluator", help="train and cache the evaluator classifier of a labelled image set",
                       description="Train the evaluator behind FID/KID/IS for your own labelled images, "
                                   "and cache it by the data's fingerprint (a shipped or cached one is reused).")
    v.add_argument("--dataset", required=True, help="dataset name, e.g. folder or npz")
    v.add_argument("--data_path", "--data-path", help="file or directory of the data")
    v.add_argument("--image_size", "--image-size", type=int, default=0, help="resize as for training (0 = native)")
    v.add_argument("--channels", type=int, default=0, help="1 or 3 as for training (0 = native)")
    v.add_argument("--epochs", type=int, default=None, help="training epochs (default: 15)")
    v.add_argument("--cache_dir", "--cache-dir", help="where to cache it (default: $GANCORE_CACHE/evaluators "
                                                      "or ~/.cache/gancore/evaluators)")
    v.set_defaults(func=cmd_train_evaluator)

    w = sub.add_parser("sweep", help="queue reserved run directories as one sweep and wait for them",
                       description="Put run directories that gancore.launch.reserve made (launch.json, not "
                                   "started) in the queue as one sweep, at most --max_parallel training at once, "
                                   "each placed on its own GPU or share of the cores; waits until all have ended.")
    w.add_argument("--max_parallel", "--max-parallel", type=int, default=None,
                   help="runs training at once (default: one per GPU, else the measured best for CPUs)")
    w.add_argument("dirs", nargs="+", metavar="RUN_DIR")
    w.set_defaults(func=cmd_sweep)

    q = sub.add_parser("dispatch", help="start queued runs as GPUs and cores free up (the launcher starts it)",
                       description="Start the runs queued under the runs root as GPUs and sweep slots free up; "
                                   "exits when none waits. Launches start it; run it by hand after a reboot.")
    q.add_argument("--root", help="runs root (default: $GANCORE_RUNS or ./runs)")
    q.set_defaults(func=cmd_dispatch)
    return p


def step_arg(value: str):
    """--step: a checkpoint step number, or "best"."""
    if value == "best":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a step number or best, got {value!r}") from None


def seeds_arg(value: str) -> list[int] | int:
    """--seeds: a count N, or a comma list of seeds."""
    try:
        if "," in value:
            seeds = [int(v) for v in value.split(",") if v.strip()]
            if len(set(seeds)) != len(seeds) or not seeds:
                raise ValueError
            return seeds
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seeds or a list like 0,1,2 of distinct seeds, "
                                         f"got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 seed, got {n}")
    return n


def cmd_train(args) -> int:
    from .trainer import RunFailed, train

    flags = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    if args.seeds is not None and args.resume:
        raise UsageError("--seeds: cannot be combined with --resume (each seed is a run of its own)")
    if isinstance(args.seeds, list) and "seed" in flags:
        raise UsageError("--seeds: a list of seeds leaves no place for --seed (give a count to start at --seed)")
    config = TrainConfig.from_json(args.config).to_dict() if args.config and not args.resume else {}
    fields_ = {**config, **flags}
    if args.seeds is None:
        runs_to_train = [fields_]
    else:
        first = int(fields_.get("seed", 0))
        seeds = list(range(first, first + args.seeds)) if isinstance(args.seeds, int) else args.seeds
        runs_to_train = [dict(fields_, seed=s, **({"name": f"{fields_['name']}-seed{s}"} if fields_.get("name")
                                                   else {})) for s in seeds]
    failed = False
    for run_fields in runs_to_train:
        try:
            if args.resume:
                if args.config:
                    raise UsageError("--config: cannot be combined with --resume (the run keeps its own config)")
                run_dir = train(resume=args.resume, **flags)
            else:
                run_dir = train(run_fields)
        except RunFailed as e:
            if main_process():
                print(f"gancore: run failed: {e}", file=sys.stderr)
                print(e.run_dir)
            failed = True
            continue
        if main_process():
            print(run_dir)
    return 1 if failed else 0


def warn(message: str) -> None:
    print(f"gancore: warning: {message}", file=sys.stderr)


def cmd_sample(args) -> int:
    from .runs import Run
    from .sample import sample_run, write_samples

    run = Run(args.run_dir)
    x, labels = sample_run(run.path, args.n, labels=args.label, seed=args.seed,
                           truncation=args.truncation, step=args.step, on_skip=warn)
    write_samples(args.out, x, labels, run.data_info)
    print(args.out)
    return 0


def cmd_runs(args) -> int:
    from .placement import describe, is_waiting
    from .runs import default_root, is_active, list_runs, read_json_object, read_status

    root = args.root or default_root()
    rows = [("run", "status", "dataset", "model", "loss", "conditioning", "steps")]
    for path in list_runs(root):
        c, st = read_json_object(path / "config.json"), read_status(path)
        state = st.get("state", "?")
        if is_waiting(st):
            state = describe(st)  # "queued: waiting for a GPU" (placement.py)
        elif state in ("queued", "running") and not is_active(st):
            state += " (no process)"  # killed without a chance to say so; --resume continues it
        if not c:
            state += " (config.json unreadable)"
        rows.append((path.name, state, *(c.get(k, "?") for k in ("dataset", "model", "loss", "conditioning")),
                     f"{st.get('step', 0)}/{st.get('steps', c.get('steps', '?'))}"))
    if len(rows) == 1:
        print(f"no runs under {root}")
        return 0
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    return 0


def cmd_eval(args) -> int:
    from .metrics import score_npz, score_run

    if (args.run_dir is None) == (args.npz is None):
        raise UsageError("eval: give a RUN_DIR or --npz FILE (exactly one)")
    if args.n < 0:
        raise UsageError(f"--n: must be > 0 (got {args.n})")
    if args.npz:
        if not args.dataset:
            raise UsageError("--dataset: --npz needs the dataset to score against (e.g. --dataset mnist-5k)")
        if args.step is not None:
            raise UsageError("--step: applies to a RUN_DIR, not to --npz")
        result = score_npz(args.npz, args.dataset, args.data_path, args.image_size, args.channels, args.n, args.seed)
    else:
        for flag in ("dataset", "data_path"):
            if getattr(args, flag):
                raise UsageError(f"--{flag}: applies to --npz; a run scores against its own data")
        result = score_run(args.run_dir, args.n, args.step, args.seed, on_skip=warn)
    print(json.dumps(result))
    return 0


def cmd_train_evaluator(args) -> int:
    from .data import load_dataset
    from .evaluator import DEFAULT_EPOCHS, evaluator_for, evaluator_path

    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs: must be > 0 (got {args.epochs})")
    data = load_dataset(args.dataset, args.data_path, args.image_size, args.channels)
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731  (stdout: the one result line)
    _, report = evaluator_for(data, cache_dir=args.cache_dir, epochs=args.epochs or DEFAULT_EPOCHS, log=log)
    path = evaluator_path(data, args.cache_dir)
    where = str(path) if path.is_file() else f"shipped with gancore ({report['dataset']})"
    print(f"evaluator for {args.dataset} (fingerprint {report['fingerprint']}): held-out accuracy "
          f"{report['accuracy']:.2%} on {report['n_holdout']} images, weights sha256 "
          f"{report['weights_sha256'][:16]}, {where}")
    return 0


def cmd_sweep(args) -> int:
    import time

    from .launch import queue_sweep, reap
    from .placement import default_parallel, is_waiting
    from .runs import is_active, read_status

    max_parallel = default_parallel() if args.max_parallel is None else args.max_parallel
    if max_parallel < 1:
        raise UsageError(f"--max_parallel: must be >= 1 (got {max_parallel})")
    paths = queue_sweep(args.dirs, max_parallel)
    while any(is_active(read_status(p)) or is_waiting(read_status(p)) for p in paths if p.is_dir()):
        time.sleep(1)  # the dispatcher starts them; this only waits for the end
        reap()  # runs started from here: collected, so that a crashed one stops looking alive
    return 0


def cmd_dispatch(args) -> int:
    from .launch import run_dispatcher
    from .runs import default_root

    return run_dispatcher(args.root or default_root())


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except GancoreError as e:
        if main_process():  # under torchrun every rank meets the same error: say it once
            print(f"gancore: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gancore: interrupted", file=sys.stderr)
        return 130
