"""What a config may choose, by name, and what the auto fields need to know, in plain Python (no torch).

The dashboard's Launch page fills its select boxes and shows what each auto field resolves to from this
module and setup.py alone, without importing torch (which alone takes a second or more on a small CPU).
The training side resolves with the same functions (`setup.resolve` reads `DataFacts`), so the form shows
what the trainer will use.

- the names of each choice: `DATASETS` (data.py loads them), `NETWORKS` (models/), `CONDITIONING`
  (conditioning.py), `FEATURE_BACKENDS` (evaluator.py), `OPTIMIZERS`, `DEVICES`, `PRECISIONS`;
  tests/test_structure.py checks that each list names exactly what its module defines, so a network or method
  that is missing here fails there, with the name to add;
- `OBJECTIVES`: each objective declared once (`Objective`: its two functions in losses.py and what it implies);
- `DataFacts` of the embedded datasets (`embedded_facts`): kind, shape, classes, size;
- the size rules of the auto fields: samples per evaluation (`default_n`), the 2x stages an image size allows
  (`max_stages` for dcgan and resnet, `progressive_stages` for progressive growing).
"""
import math
from dataclasses import dataclass, replace

EMBEDDED = ("mnist-5k", "digits", "ring", "grid", "stacked-mnist")  # datasets that need no path
NEEDS_PATH = ("folder", "npz", "mnist", "fashion-mnist", "cifar10")
DATASETS = EMBEDDED + NEEDS_PATH
POINT_SETS = ("ring", "grid")  # the datasets of 2-D points (every other set holds images)
STACKED = "stacked-mnist"
NETWORKS = ("mlp", "dcgan", "resnet", "progressive")
CONDITIONING = ("none", "concat", "acgan", "projection")
FEATURE_BACKENDS = ("evaluator", "inception")  # fid_backend: the project's classifiers, or Inception
OPTIMIZERS = ("adam", "rmsprop")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # auto: bf16 on GPUs with native bf16; autocast on CUDA only


@dataclass(frozen=True)
class Objective:
    """An objective (`--loss`), declared once: its two functions (named here, defined in losses.py) and what it
    implies. Setup, the training step, the networks and the pages read these fields, never the objective's name,
    so a new objective is one entry in OBJECTIVES and its two functions in losses.py (docs/objectives.md)."""
    d_loss: str  # losses.py's function (real logits, fake logits, smoothing) -> D's loss
    g_loss: str  # losses.py's function (fake logits) -> G's loss
    probability: bool = False  # D(x) reads as sigmoid(logit), a probability (the cross-entropy objectives)
    smoothable: bool = False  # real data has a target that one-sided label smoothing can move
    critic: bool = False  # D is a Wasserstein critic with unbounded scores: the drift penalty applies, and the
    # 28 px recipe (tuned for a classifier D) does not
    clip: bool = False  # D's weights are clipped to clip_value after each D step (WGAN)
    gradient_penalty: bool = False  # WGAN-GP's penalty on interpolates (gp_weight): a double backward, no BN in D


OBJECTIVES = {
    "minimax": Objective("d_minimax", "g_minimax", probability=True, smoothable=True),
    "nonsaturating": Objective("d_minimax", "g_nonsaturating", probability=True, smoothable=True),
    "lsgan": Objective("d_lsgan", "g_lsgan", smoothable=True),
    "wgan": Objective("d_wasserstein", "g_wasserstein", critic=True, clip=True),
    "wgan-gp": Objective("d_wasserstein", "g_wasserstein", critic=True, gradient_penalty=True),
    "hinge": Objective("d_hinge", "g_wasserstein"),
}
LOSSES = tuple(OBJECTIVES)
CHOICES = {"dataset": DATASETS, "model": ("auto", *NETWORKS), "loss": LOSSES, "conditioning": CONDITIONING,
           "optimizer": OPTIMIZERS, "device": DEVICES, "precision": PRECISIONS, "fid_backend": FEATURE_BACKENDS}

# samples per evaluation when none is asked for (eval_n 0, `gancore eval` without --n)
N_POINTS = 2500  # the PacGAN/VEEGAN sample count
N_IMAGES = 10_000  # images scored by `gancore eval` unless --n says otherwise
N_IMAGES_TRAINING = 2000  # images per evaluation during training (eval_n 0): under 5 % of training time
N_STACKED = 26_000  # the PacGAN/VEEGAN sample count for stacked MNIST, in training and `gancore eval` alike


@dataclass(frozen=True)
class DataFacts:
    """What resolving a config needs to know of its dataset (setup.resolve): a loaded set's, or an embedded
    set's as declared here."""
    name: str
    kind: str  # "image" or "points"
    shape: tuple  # (C, H, W) or (2,)
    num_classes: int
    size: int  # samples
    point_std: float | None = None  # 2-D points: the std the auto point_scale takes (known once the points are drawn)


# The embedded datasets at their native size (tests/test_structure.py checks each against the loaded set)
EMBEDDED_FACTS = {
    "mnist-5k": DataFacts("mnist-5k", "image", (1, 28, 28), 10, 5000),
    "digits": DataFacts("digits", "image", (1, 16, 16), 10, 1797),
    "ring": DataFacts("ring", "points", (2,), 8, 100_000),
    "grid": DataFacts("grid", "points", (2,), 25, 100_000),
    STACKED: DataFacts(STACKED, "image", (3, 28, 28), 1000, 50_000),
}


def embedded_facts(name: str, image_size: int = 0, channels: int = 0) -> DataFacts | None:
    """An embedded dataset's facts as load_dataset(name, image_size=..., channels=...) gives them; None for a
    set read from a path (its facts are known once it is read)."""
    facts = EMBEDDED_FACTS.get(name)
    if facts is None or facts.kind == "points":
        return facts
    c, h, _ = facts.shape
    size = image_size or h
    return replace(facts, shape=(channels or c, size, size))


def default_n(data, training: bool = False) -> int:
    """Samples per evaluation when none is asked for; `data`: a Dataset or DataFacts (its kind and name)."""
    if data.kind == "points":
        return N_POINTS
    if data.name == STACKED:  # fewer leave modes unseen by chance alone: at 2,000 a perfect G shows ~865
        return N_STACKED
    return N_IMAGES_TRAINING if training else N_IMAGES


def max_stages(size: int) -> int:
    """dcgan and resnet: how many times `size` halves before reaching a 3..7 px base; 0 when it never does."""
    n = 0
    while size > 7 and size % 2 == 0:
        size //= 2
        n += 1
    return n if 3 <= size <= 7 and n > 0 else 0


def progressive_stages(size: int, depth: int = 0) -> int:
    """Progressive growing: the number of stages for a final `size` = 4 * 2**k (k >= 1), k + 1. `depth`, when
    given, must equal k (the number of 2x stages, as `depth` means for dcgan and resnet)."""
    k = round(math.log2(size / 4)) if size >= 8 else -1
    if k < 1 or 4 * 2 ** k != size:
        raise ValueError(f"progressive growing needs a square image size 4 * 2**k >= 8 (8, 16, 32, 64 ...), got {size}")
    if depth and depth != k:
        raise ValueError(f"depth {depth} does not fit {size} px: progressive growing from 4 px to {size} px has depth {k}")
    return k + 1
