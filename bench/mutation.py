"""Mutation testing of the numerical core with mutmut (issue 26): do the tests notice when the maths changes?

    python bench/mutation.py [--modules losses,regularizers,...] [--max-children 2] [--tree worktree|head]
    python bench/mutation.py --sample 50 --seed 0       # also 50 mutants of the training step, EMA and resume

Needs mutmut, a bench tool that is not in requirements*.txt:  pip install mutmut==3.8.1

For each module below, mutmut (3.8.1) makes small changes to its functions one at a time ("mutants": `+` to
`-`, `<` to `<=`, a constant changed, an argument dropped ...) and runs the tests that reach the changed
function; a mutant is *killed* when a test fails, *survived* when all pass, *timeout* when they run past
mutmut's CPU-time limit. The score is (killed + timeout) / mutants; `EQUIVALENT` lists the survivors that no
test can kill because they do not change behaviour, and the last column scores the others.

Each module runs in its own scratch copy of the checkout (<out>/<module>/, under the git-ignored bench-out/),
with its mutmut config written there as setup.cfg: the checkout itself is never modified. The copy holds the
working tree's files (tracked and untracked, not ignored; `--tree head`: the committed files of HEAD plus the
untracked ones, to score a commit while other work is in progress). Two changes to the copy before mutmut
sees it: mutmut skips decorated functions, so `@torch.no_grad()` becomes a `with torch.no_grad():` around the
body (same behaviour; the only decorator in the mutated functions), and `OMP_NUM_THREADS=1` per test process,
as --max-children of them run at once.

`--sample N --seed S` adds the sampled targets: a random sample of N of the mutants mutmut makes in the training
step (trainer.py), the EMA (ema.py) and the checkpoint state and resume (recorder.py), drawn from the three
together and run against the training and resume tests (each target its share of the draw).

Prints one markdown table (the one in docs/benchmarks.md) and writes, per module, mutmut's log and the diff of
every survivor to <out>/<module>.log and <out>/<module>-survivors.txt.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTMUT_VERSION = "3.8.1"


@dataclass(frozen=True)
class Target:
    source: str  # the file mutmut mutates
    tests: tuple  # pytest arguments selecting the tests that cover it (files, node ids)
    functions: tuple = ()  # only these functions' mutants ("Class.method" for a method); () = every function
    sampled: bool = False  # a random sample of its mutants (--sample), not all of them


METRIC_FUNCTIONS = ("reverse_kl", "mode_coverage", "read_channels", "triple_counts", "triple_histogram",
                    "channel_counts", "triple_coverage", "copying", "_nearest", "copy_ratio")
IMAGE_METRIC_FUNCTIONS = (  # the FID/KID wiring around torchmetrics, with PRDC's and FID's interval's inputs
    "_Outputs.__init__", "_Outputs.__call__", "_evaluator_outputs", "FeatureModule.__init__", "FeatureModule.forward",
    "ImageScorer._fid", "ImageScorer._kid", "ImageScorer._is", "ImageScorer._input", "ImageScorer._reference_images",
    "ImageScorer._reference", "ImageScorer._compute_reference", "ImageScorer._with_reference",
    "ImageScorer._real_gaussian", "ImageScorer._prdc", "ImageScorer.score", "_cpu", "_to", "_class_batches",
    "_load_reference")
# Not mutated (their ~240 mutants would double the hour): `prdc` and `_kth_neighbour`, checked against the prdc
# package as an oracle (tests/test_prdc.py), and `fid_interval` / `_frechet` (tests/test_metrics.py).
RESUME_TESTS = ("tests/test_catalogue.py::test_images_train_checkpoint_resume[minimax-dcgan-none]",
                "tests/test_catalogue.py::test_images_train_checkpoint_resume[wgan-gp-mlp-concat]",
                "tests/test_catalogue.py::test_images_train_checkpoint_resume[hinge-resnet-projection]",
                "tests/test_damaged.py::test_resume_skips_a_truncated_checkpoint_and_continues_exactly")
TRAINING_TESTS = ("tests/test_train.py", "tests/test_gpu_path.py", "tests/test_stabilisers.py", "tests/test_exact_resume.py",
                  *RESUME_TESTS)

TARGETS = {
    "losses": Target("gancore/losses.py", ("tests/test_losses.py", "tests/test_stabilisers.py",
                                           "tests/test_catalogue.py::test_losses_have_the_published_form")),
    "regularizers": Target("gancore/regularizers.py", ("tests/test_regularizers.py", "tests/test_stabilisers.py")),
    "conditioning": Target("gancore/conditioning.py", ("tests/test_conditioning.py", "tests/test_stabilisers.py")),
    "augment": Target("gancore/augment.py", ("tests/test_augment.py", "tests/test_stabilisers.py")),
    "metrics": Target("gancore/metrics.py", ("tests/test_metric_functions.py", "tests/test_metrics.py",
                                             "tests/test_stacked_mnist.py", "tests/test_copying_visible.py",
                                             "-k", "not page_shows and not monitor_charts"),  # dashboard pages
                      METRIC_FUNCTIONS),
    "image_metrics": Target("gancore/image_metrics.py", ("tests/test_image_scorer.py", "tests/test_metrics.py",
                                                         "tests/test_prdc.py"),
                            IMAGE_METRIC_FUNCTIONS),
    # the training step, the EMA and the checkpoint state and resume: sampled (--sample)
    "trainer": Target("gancore/trainer.py", TRAINING_TESTS, ("Trainer.train_step", "Trainer.optimizer_step"), True),
    "ema": Target("gancore/ema.py", TRAINING_TESTS, ("update", "settle_norms"), True),
    "checkpoints": Target("gancore/recorder.py", TRAINING_TESTS,
                          ("checkpoint_state", "rng_state", "load_checkpoint", "load_optimizer"), True),
}
MODULES = tuple(m for m, t in TARGETS.items() if not t.sampled)  # what a run without --modules mutates
SAMPLED = tuple(m for m, t in TARGETS.items() if t.sampled)

# Survivors that do not change behaviour, so no test can kill them: mutant name -> (a fragment of the mutated
# line, why). The fragment guards against mutmut renumbering the mutants after the source changed: a survivor
# whose diff lacks it counts as not equivalent (and is printed), so the list must be looked at again.
EQUIVALENT: dict[str, tuple[str, str]] = {
    "gancore.losses.x_d_wasserstein__mutmut_1": ("smooth=1.0", "`smooth` is unused: WGAN has no target to smooth"),
    "gancore.losses.x_d_hinge__mutmut_1": ("smooth=1.0", "`smooth` is unused: hinge has no target to smooth"),
    # a (H, 1) or (1, W) index broadcasts against the (B, 1, 1) ones exactly as (1, H, 1) or (1, 1, W) does
    "gancore.augment.x_translation__mutmut_60": (".view(h, 1)", "the same broadcast (rows index)"),
    "gancore.augment.x_translation__mutmut_83": (".view(1, w)", "the same broadcast (columns index)"),
    "gancore.augment.x_translation__mutmut_84": (".view(1, w)", "the same broadcast (columns index)"),
    "gancore.augment.x_cutout__mutmut_46": (".view(h, 1)", "the same broadcast (rows of the square)"),
    "gancore.augment.x_cutout__mutmut_59": (".view(1, w)", "the same broadcast (columns of the square)"),
    "gancore.augment.x_cutout__mutmut_60": (".view(1, w)", "the same broadcast (columns of the square)"),
    "gancore.augment.x_translation__mutmut_102": ("[1, 2, 1, 1]", "a second zero column past the right border: "
                                                 "indices are clamped to w + 1, so it is never read"),
    "gancore.augment.x_translation__mutmut_104": ("[1, 1, 1, 2]", "a second zero row past the bottom border: "
                                                 "indices are clamped to h + 1, so it is never read"),
    "gancore.augment.x_cutout__mutmut_79": (".to(None)", "x times a bool mask is already in x's dtype"),
    # the batch index made on the CPU: advanced indexing moves index tensors to the indexed tensor's device
    "gancore.augment.x_translation__mutmut_113": ("device=None", "a CPU batch index gives the same gather"),
    "gancore.augment.x_translation__mutmut_115": ("torch.arange(b, )", "a CPU batch index gives the same gather"),
    # batch and chunk sizes: each image / row is scored alone, so how they are grouped changes nothing
    "gancore.metrics.x_read_channels__mutmut_3": ("batch: int = 501", "batch size only groups the images"),
    "gancore.metrics.x_triple_counts__mutmut_3": ("batch: int = 501", "batch size only groups the images"),
    "gancore.metrics.x_copying__mutmut_1": ("chunk: int = 1001", "chunk size only groups the rows"),
    "gancore.metrics.x_copying__mutmut_19": ("_nearest(gen, real, )", "_nearest's own chunk (1000) instead"),
    "gancore.metrics.x_copying__mutmut_28": ("exclude_self=True, )", "_nearest's own chunk (1000) instead"),
    # the "resize to 28 px" test: resizing 28 px images to 28 px is the identity, so a wrong size test is harmless
    "gancore.metrics.x_read_channels__mutmut_41": ("(29, 28)", "28 px images resized to 28 px are unchanged"),
    "gancore.metrics.x_read_channels__mutmut_42": ("(28, 29)", "28 px images resized to 28 px are unchanged"),
    # the reader and the batch on device None: the CPU, the only device in the CPU suite (a GPU run would kill them)
    "gancore.metrics.x_read_channels__mutmut_13": ("_digit_reader(None)", "device None is the CPU here"),
    "gancore.metrics.x_read_channels__mutmut_25": (".to(None)", "device None is the CPU here"),
    # align_corners None (or left out) means False for bilinear resampling: the same resize (checked: torch.equal)
    "gancore.metrics.x_read_channels__mutmut_47": ("align_corners=None", "None means False for bilinear"),
    "gancore.metrics.x_read_channels__mutmut_52": ('mode="bilinear", antialias=True)', "the default is False"),
    "gancore.metrics.x__nearest__mutmut_2": ("chunk: int = 1001", "chunk size only groups the rows"),
    # real_nn and fake_nn grow together, so with no real_nn there is no fake_nn and the result is {} either way
    "gancore.metrics.x_copy_ratio__mutmut_64": ("else 1.0", "no yardstick means no samples scored: {} either way"),
    # image_metrics: a device of None (or none given) is the CPU, the only device of the CPU suite; fork_rng(devices=None)
    # forks every CUDA device, of which there are none (a GPU run would kill these)
    "gancore.image_metrics.x__cpu__mutmut_2": ('_to(state, None)', "device None is the CPU here"),
    "gancore.image_metrics.x__to__mutmut_3": ('[t.to(None)', "device None is the CPU here"),
    "gancore.image_metrics.x__to__mutmut_4": ('v.to(None)', "device None is the CPU here"),
    "gancore.image_metrics.xǁImageScorerǁ_fid__mutmut_1": ('.to(None)', "device None is the CPU here"),
    "gancore.image_metrics.xǁImageScorerǁ_kid__mutmut_3": ('.to(None)', "device None is the CPU here"),
    "gancore.image_metrics.xǁImageScorerǁ_is__mutmut_1": ('.to(None)', "device None is the CPU here"),
    "gancore.image_metrics.xǁImageScorerǁ_input__mutmut_3": ('x.to(None)', "device None is the CPU here"),
    "gancore.image_metrics.xǁImageScorerǁ_with_reference__mutmut_3": ('_to(state, None)', "device None is the CPU here"),
    "gancore.image_metrics.xǁImageScorerǁ_real_gaussian__mutmut_3": ('_to(self.reference["fid"], None)', "device None is the CPU here"),
    "gancore.image_metrics.xǁImageScorerǁ_prdc__mutmut_27": ('real_idx.to(None)', "device None is the CPU here"),
    "gancore.image_metrics.xǁImageScorerǁ_prdc__mutmut_28": ('fake_idx.to(None)', "device None is the CPU here"),
    "gancore.image_metrics.xǁImageScorerǁscore__mutmut_44": ('device=None', "device None is the CPU here"),
    "gancore.image_metrics.xǁImageScorerǁscore__mutmut_47": ('self.outputs.num_features, )', "device None is the CPU here"),
    "gancore.image_metrics.xǁImageScorerǁscore__mutmut_66": ('idx.to(None)', "device None is the CPU here"),
    "gancore.image_metrics.xǁImageScorerǁscore__mutmut_132": ('.to(None), features, seed', "device None is the CPU here"),
    "gancore.image_metrics.xǁImageScorerǁscore__mutmut_95": ('fork_rng(devices=None)', "device None is the CPU here"),
    "gancore.image_metrics.x__load_reference__mutmut_3": ('map_location=None', "device None is the CPU here"),
    "gancore.image_metrics.x__load_reference__mutmut_6": ('torch.load(path, weights_only=True)', "device None is the CPU here"),
    # sync_on_compute=False (LOCAL) only matters inside a torch.distributed group: the scorer runs in one process
    "gancore.image_metrics.xǁImageScorerǁ_fid__mutmut_4": ("FeatureModule(self.outputs), ).to", "no process group to sync"),
    "gancore.image_metrics.xǁImageScorerǁ_kid__mutmut_10": ("subset_size=subset_size, ))", "no process group to sync"),
    "gancore.image_metrics.xǁImageScorerǁ_is__mutmut_6": ("logits=True), ))", "no process group to sync"),
    # the training step (trainer.py, sampled)
    "gancore.trainer.xǁTrainerǁoptimizer_step__mutmut_1": ("set_to_none=None", "every parameter gets a gradient at "
                                                           "every step: zeroed or None, Adam steps the same"),
    "gancore.trainer.xǁTrainerǁoptimizer_step__mutmut_2": ("set_to_none=False", "every parameter gets a gradient at "
                                                           "every step: zeroed or None, Adam steps the same"),
    # the checkpoint state (recorder.py, sampled)
    "gancore.recorder.x_rng_state__mutmut_7": ('== "cuda") and False', "no CUDA stream to save on the CPU (a GPU run "
                                               "would kill it)"),
    "gancore.recorder.x_load_checkpoint__mutmut_58": ('rng["ranks"][1]', "every rank saves the same batch and noise "
                                                      "streams (they are global)"),
    # the EMA (ema.py)
    "gancore.ema.x_settle_norms__mutmut_22": ("generator=gen).to(None)", "labels made on the CPU stay there: the "
                                              "CPU is the only device of this suite (a GPU run would kill it)"),
    # image_metrics: no change in behaviour
    "gancore.image_metrics.x__load_reference__mutmut_4": ('weights_only=None', "torch's default is weights_only=True (torch >= 2.6)"),
    "gancore.image_metrics.x__load_reference__mutmut_7": ('map_location="cpu", )', "torch's default is weights_only=True (torch >= 2.6)"),
    "gancore.image_metrics.x__load_reference__mutmut_24": ('XXfid_per_classXX', 'the class keys are ints already (pickle keeps them): the line changes nothing'),
    "gancore.image_metrics.x__load_reference__mutmut_25": ('FID_PER_CLASS', 'the class keys are ints already (pickle keeps them): the line changes nothing'),
    "gancore.image_metrics.x__class_batches__mutmut_5": ('dtype=None', 'float zeros give the one class int(0.0) = 0, the same batches'),
    "gancore.image_metrics.x__class_batches__mutmut_7": ('torch.zeros(n, )', 'float zeros give the one class int(0.0) = 0, the same batches'),
    "gancore.image_metrics.x__evaluator_outputs__mutmut_6": ('evaluator.num_features, None', "num_classes sizes only IS's feature module, and torchmetrics' IS never reads it"),
    "gancore.image_metrics.xǁFeatureModuleǁ__init____mutmut_4": ('(logits) and False', "the logits module feeds IS only, and torchmetrics' IS never reads num_features"),
    "gancore.image_metrics.xǁImageScorerǁ_input__mutmut_11": ('or True', 'expanding 3 channels to 3 is the identity'),
    "gancore.image_metrics.xǁImageScorerǁscore__mutmut_55": ('real=None', 'torchmetrics tests `if real:`; None is False'),
    "gancore.image_metrics.xǁImageScorerǁscore__mutmut_60": ('real=None', 'torchmetrics tests `if real:`; None is False'),
    "gancore.image_metrics.xǁImageScorerǁscore__mutmut_83": ('real=None', 'torchmetrics tests `if real:`; None is False'),
    "gancore.image_metrics.xǁImageScorerǁscore__mutmut_69": ('labels is not None or c in', 'per_class is read only when labels are given: extra work, same scores'),
    "gancore.image_metrics.xǁImageScorerǁ_reference__mutmut_4": ('self.sha[:17]', "only the cache file's name: written and read under the same name"),
    "gancore.image_metrics.xǁImageScorerǁ_reference_images__mutmut_35": ('>= REF_MAX', 'a set of exactly REF_MAX images: a sorted permutation of all of them is all of them'),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"Needs mutmut: pip install mutmut=={MUTMUT_VERSION}")
    p.add_argument("--modules", default=",".join(MODULES),
                   help=f"comma-separated, of {', '.join(TARGETS)} (default: all but {', '.join(SAMPLED)})")
    p.add_argument("--sample", type=int, default=0,
                   help="also run N mutants drawn from the training step, the EMA and the checkpoint and resume code")
    p.add_argument("--seed", type=int, default=0, help="the seed of --sample's draw")
    p.add_argument("--max-children", type=int, default=2, help="mutants tested at once (default 2)")
    p.add_argument("--tree", choices=("worktree", "head"), default="worktree",
                   help="copy the working tree (default) or HEAD's committed files plus untracked ones")
    p.add_argument("--again", action="store_true",
                   help="retest only the last run's survivors in its scratch copy, with the checkout's tests now "
                        "(after adding tests; the table then counts the last run's kills too)")
    p.add_argument("--report", action="store_true",
                   help="run nothing: print the table of the last run in --out (after a run was interrupted, or "
                        "after mutmut was run by hand in a module's scratch copy)")
    p.add_argument("--out", type=Path, default=ROOT / "bench-out" / "mutation", help="scratch and logs")
    args = p.parse_args(argv)
    args.modules = [m.strip() for m in args.modules.split(",") if m.strip()]
    unknown = [m for m in args.modules if m not in TARGETS]
    if unknown:
        p.error(f"--modules: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(TARGETS)}")
    if args.sample < 0:
        p.error("--sample: must be >= 0")
    if args.sample:
        args.modules += [m for m in SAMPLED if m not in args.modules]
    if not args.sample and not args.report and not args.again and set(args.modules) & set(SAMPLED):
        p.error(f"--modules {', '.join(sorted(set(args.modules) & set(SAMPLED)))}: give --sample N (their mutants "
                f"are sampled)")
    return args


# ---------------------------------------------------------------- the scratch copy
def checkout_files(tree: str) -> list[str]:
    """The files to copy: tracked and untracked ones git does not ignore (the ones of HEAD for --tree head,
    plus the untracked)."""
    def git(*a):
        return subprocess.run(["git", "-C", str(ROOT), *a], check=True, capture_output=True, text=True).stdout

    untracked = git("ls-files", "--others", "--exclude-standard").splitlines()
    if tree == "head":
        return git("ls-tree", "-r", "--name-only", "HEAD").splitlines() + untracked
    return git("ls-files", "--cached", "--others", "--exclude-standard").splitlines()


def make_scratch(dest: Path, tree: str) -> None:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    copy_checkout(dest, tree)


def copy_checkout(dest: Path, tree: str, under: str = "") -> None:
    """The checkout's files (those under `under`) into dest, as --tree says."""
    head = tree == "head"
    untracked = set()
    if head:
        untracked = set(subprocess.run(["git", "-C", str(ROOT), "ls-files", "--others", "--exclude-standard"],
                                       check=True, capture_output=True, text=True).stdout.splitlines())
    for rel in (f for f in checkout_files(tree) if f.startswith(under)):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if head and rel not in untracked:
            blob = subprocess.run(["git", "-C", str(ROOT), "show", f"HEAD:{rel}"], check=True,
                                  capture_output=True).stdout
            target.write_bytes(blob)
        elif (ROOT / rel).is_file():  # a tracked file deleted in the working tree is skipped
            shutil.copy2(ROOT / rel, target)


def no_grad_as_block(path: Path) -> None:
    """Rewrite `@torch.no_grad()` on a function as `with torch.no_grad():` around its body (docstring kept
    outside), so mutmut, which skips decorated functions, mutates it. Behaviour is unchanged."""
    import libcst as cst  # mutmut's own dependency

    def is_no_grad(d):
        return isinstance(d.decorator, cst.Call) and cst.Module([]).code_for_node(d.decorator) == "torch.no_grad()"

    class Rewrite(cst.CSTTransformer):
        def leave_FunctionDef(self, original, updated):
            if not any(is_no_grad(d) for d in updated.decorators):
                return updated
            body = list(updated.body.body)
            doc = []
            if body and isinstance(body[0], cst.SimpleStatementLine) and isinstance(body[0].body[0], cst.Expr) \
                    and isinstance(body[0].body[0].value, (cst.SimpleString, cst.ConcatenatedString)):
                doc, body = body[:1], body[1:]
            block = cst.With(items=[cst.WithItem(cst.parse_expression("torch.no_grad()"))],
                             body=cst.IndentedBlock(body=body))
            return updated.with_changes(decorators=[d for d in updated.decorators if not is_no_grad(d)],
                                        body=updated.body.with_changes(body=[*doc, block]))

    path.write_text(cst.parse_module(path.read_text()).visit(Rewrite()).code)


def mangled(module: str, function: str) -> str:
    """mutmut's name prefix of a function's mutants: gancore.losses.x_d_minimax, gancore.trainer.xǁTrainerǁrun."""
    cls, _, name = function.rpartition(".")
    return f"{module}.xǁ{cls}ǁ{name}" if cls else f"{module}.x_{name}"


def write_config(scratch: Path, target: Target) -> None:
    others = sorted({p.split("/")[0] for p in os.listdir(scratch)} - {"gancore", "tests", "setup.cfg"})
    lines = ["[mutmut]", "source_paths = gancore", f"only_mutate = {target.source}",
             "also_copy =", *(f"    {p}" for p in others),  # what tests read beside the package (docs, bench ...)
             "pytest_add_cli_args_test_selection =", *(f"    {t}" for t in target.tests),
             "pytest_add_cli_args =", "    -pno:cacheprovider",
             "process_isolation = forkserver",  # torch: forks come from a process that ran no test
             "use_git_change_detection = false", "use_setproctitle = false"]
    (scratch / "setup.cfg").write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------- running mutmut
def draw(args) -> dict[str, list[str]]:
    """--sample N of the sampled targets' mutants, drawn from all of them together with --seed (the same draw
    each time: mutmut numbers a function's mutants in a fixed order); {target: its mutants in the draw}."""
    population = {}
    for name in (m for m in args.modules if TARGETS[m].sampled):
        make_scratch(args.out / name, args.tree)
        no_grad_as_block(args.out / name / TARGETS[name].source)
        write_config(args.out / name, TARGETS[name])  # mutmut reads where the code is from it
        population.update({k: name for k in mutant_names(args.out / name, TARGETS[name])})
    chosen = random.Random(args.seed).sample(sorted(population), min(args.sample, len(population)))
    drawn = {name: sorted(k for k in chosen if population[k] == name) for name in set(population.values())}
    print(f"sampled: {len(chosen)} of the {len(population)} mutants of "
          + ", ".join(f"{n} ({len(drawn.get(n, []))})" for n in sorted(set(population.values())))
          + f" (seed {args.seed})", file=sys.stderr, flush=True)
    return drawn


def mutant_names(scratch: Path, target: Target) -> list[str]:
    """The names of the mutants mutmut makes for target.functions."""
    code = (
        "import sys; from pathlib import Path\n"
        "from mutmut.mutation.file_mutation import mutate_file_contents\n"
        "from mutmut.utils.format_utils import get_mutant_name\n"
        f"src = Path({target.source!r})\n"
        "for name in mutate_file_contents(str(src), src.read_text()).mutant_names:\n"
        "    print(get_mutant_name(src, name))\n"
    )
    names = subprocess.run([sys.executable, "-c", code], cwd=scratch, check=True, capture_output=True,
                           text=True).stdout.split()
    return sorted(name for name in names if in_scope(name, target))


def in_scope(mutant: str, target: Target) -> bool:
    """Whether a mutant of target.source is one of target.functions' (all are when it names none)."""
    return not target.functions or mutant.startswith(
        tuple(mangled(module_of(target), f) + "__mutmut_" for f in target.functions))


def module_of(target: Target) -> str:
    return target.source[:-3].replace("/", ".")


def run_module(name: str, target: Target, args) -> dict:
    scratch = args.out / name
    meta = scratch / "mutants" / (target.source + ".meta")
    if args.report:
        selected = None
    elif args.again and meta.exists():  # the last run's survivors again, against the checkout's tests now
        shutil.rmtree(scratch / "tests")
        copy_checkout(scratch, args.tree, under="tests/")
        write_config(scratch, target)  # the target's test selection now (a new test file included)
        last = json.loads(meta.read_text())["exit_code_by_key"]
        selected = sorted(k for k, v in last.items() if v == 0 and in_scope(k, target))
        env0 = dict(os.environ, PYTHONUNBUFFERED="1")
        selected = [k for k in selected if not (k in EQUIVALENT and EQUIVALENT[k][0] in show(scratch, k, env0))]
        if target.sampled:
            selected = [k for k in selected if k in json.loads((scratch / "sample.json").read_text())]
        if not selected:
            selected = None
    else:
        if target.sampled:  # its scratch copy made by draw()
            selected = args.drawn.get(name, [])
            (scratch / "sample.json").write_text(json.dumps(selected))
            selected = selected or None
        else:
            make_scratch(scratch, args.tree)
            no_grad_as_block(scratch / target.source)
        write_config(scratch, target)
        if not target.sampled:
            selected = [mangled(module_of(target), f) + "__mutmut_*" for f in target.functions]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("PYTHONPATH", None)
    mutmut = [sys.executable, "-c", "import sys; from mutmut.__main__ import cli; sys.exit(cli())"]
    start, rc = time.monotonic(), 0
    if selected is not None:  # None: --again with no survivor left, or --report
        with open(args.out / f"{name}{'-again' if args.again else ''}.log", "w") as log:
            rc = subprocess.run([*mutmut, "run", "--max-children", str(args.max_children), *selected],
                                cwd=scratch, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    seconds = time.monotonic() - start
    exit_codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
    exit_codes = {k: v for k, v in exit_codes.items() if in_scope(k, target)}
    if target.sampled:
        sample = set(json.loads((scratch / "sample.json").read_text()))
        exit_codes = {k: v for k, v in exit_codes.items() if k in sample}
    from mutmut.stats import status_by_exit_code  # imported here: --help stays instant

    status = {k: status_by_exit_code[v] for k, v in exit_codes.items()}
    survivors = sorted(k for k, s in status.items() if s == "survived")
    diffs = {k: show(scratch, k, env) for k in survivors}
    equivalent = [k for k in survivors if k in EQUIVALENT and EQUIVALENT[k][0] in diffs[k]]
    with open(args.out / f"{name}-survivors.txt", "w") as f:
        for k in survivors:
            note = f"  [equivalent: {EQUIVALENT[k][1]}]" if k in equivalent else ""
            f.write(f"# {k}{note}\n{diffs[k]}\n\n")
    return {"module": name, "rc": rc, "seconds": seconds, "status": status, "survivors": survivors,
            "equivalent": equivalent}


def show(scratch: Path, mutant: str, env) -> str:
    mutmut = [sys.executable, "-c", "import sys; from mutmut.__main__ import cli; sys.exit(cli())"]
    out = subprocess.run([*mutmut, "show", mutant], cwd=scratch, env=env, capture_output=True, text=True)
    return "\n".join(line for line in out.stdout.splitlines() if line.startswith(("-", "+")) and
                     not line.startswith(("---", "+++")))


def row(r: dict) -> str:
    s = list(r["status"].values())
    n, killed, timeout, survived = len(s), s.count("killed"), s.count("timeout"), s.count("survived")
    other = n - killed - timeout - survived  # no tests, suspicious, segfault, not checked
    eq = len(r["equivalent"])
    score = f"{(killed + timeout) / n:.1%}" if n else "-"
    real = f"{(killed + timeout) / (n - eq):.1%}" if n - eq else "-"
    return (f"| {r['module']} | {n} | {killed} | {timeout} | {survived} | {other} | {eq} | {score} | {real} "
            f"| {r['seconds'] / 60:.1f} |")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        import mutmut
    except ImportError:
        print(f"bench/mutation.py: mutmut is not installed: pip install mutmut=={MUTMUT_VERSION}", file=sys.stderr)
        return 2
    if mutmut.__version__ != MUTMUT_VERSION:
        print(f"bench/mutation.py: warning: mutmut {mutmut.__version__}, figures were taken with {MUTMUT_VERSION}",
              file=sys.stderr)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    args.drawn = draw(args) if args.sample and not (args.again or args.report) else {}
    results = []
    for name in args.modules:
        print(f"{name}: running mutmut on {TARGETS[name].source} ...", file=sys.stderr, flush=True)
        r = run_module(name, TARGETS[name], args)
        results.append(r)
        print(f"{name}: {len(r['status'])} mutants, {len(r['survivors'])} survived, {r['seconds'] / 60:.1f} min "
              f"(mutmut exit {r['rc']}; log {args.out / (name + ('-again' if args.again else '') + '.log')})", file=sys.stderr, flush=True)
        for k in r["survivors"]:
            print(f"    survived{' (equivalent)' if k in r['equivalent'] else ''}: {k}", file=sys.stderr)
    print("| module | mutants | killed | timeout | survived | other | equivalent | score | score without "
          "equivalent | minutes |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(row(r))
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
