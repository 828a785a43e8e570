"""The training config: one dataclass, every field with a default and a one-line comment.

Every field is also a CLI flag (`--lr_g 1e-4`). Fields that say "auto" (or 0) are resolved
against the dataset by `resolve()`, and the resolved config is what the run directory stores.
`validate()` checks everything that can be checked without the data; `resolve()` the rest.
"""
import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, fields

from .errors import ConfigError

LOSSES = ("minimax", "nonsaturating", "lsgan", "wgan", "wgan-gp", "hinge")
MODELS = ("auto", "mlp", "dcgan", "resnet")
CONDITIONINGS = ("none", "concat", "acgan", "projection")
OPTIMIZERS = ("adam", "rmsprop")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")
FID_BACKENDS = ("evaluator", "inception")


@dataclass
class TrainConfig:
    # --- run ---
    name: str = ""  # run directory name under runs_root; "" = <dataset>-<model>-<loss>-<time>
    runs_root: str = ""  # where run directories go; "" = $GANCORE_RUNS or ./runs
    preset: str = ""  # a named starting point (presets.py); fields you set override it
    seed: int = 0  # seeds weights, noise, batches: same seed + config = same run
    # --- data ---
    dataset: str = "mnist-5k"  # mnist-5k, digits, ring, grid, folder, npz, mnist, fashion-mnist, cifar10
    data_path: str = ""  # file or directory for folder/npz/mnist/fashion-mnist/cifar10
    image_size: int = 0  # resize images to this square size; 0 = the data's native size
    channels: int = 0  # 1 (gray) or 3 (RGB); 0 = the data's native channels
    # --- networks ---
    model: str = "auto"  # mlp, dcgan or resnet; auto = mlp for 2-D points, dcgan for images
    z_dim: int = 0  # latent dimension; 0 = auto: 2 for 2-D points (as PacGAN), 64 for images
    point_scale: float = 0.0  # 2-D points: the nets work in coordinates divided by this; 0 = auto (the data's std)
    g_width: int = 0  # G width: hidden units (mlp), channels at the finest layer (dcgan), block channels (resnet); 0 = auto
    d_width: int = 0  # D width, as g_width; 0 = auto
    g_depth: int = 0  # G depth: hidden layers (mlp) or 2x upsampling stages (dcgan, resnet); 0 = auto
    d_depth: int = 0  # D depth: hidden layers (mlp) or 2x downsampling stages (dcgan, resnet); 0 = auto
    # --- objective and conditioning ---
    loss: str = "nonsaturating"  # minimax, nonsaturating, lsgan, wgan (weight clipping), wgan-gp or hinge
    clip_value: float = 0.01  # wgan: critic weights are clipped to [-clip_value, clip_value] after each D step
    gp_weight: float = 10.0  # wgan-gp: weight of the gradient penalty on real/fake interpolates
    conditioning: str = "none"  # none, concat, acgan (auxiliary classifier) or projection (+ conditional BN in G)
    embed_dim: int = 32  # size of the label embedding for concat/acgan conditioning of G and mlp D
    acgan_weight: float = 1.0  # acgan: weight of the class loss (D on real and fake, G on fake)
    acgan_fake_weight: float = 1.0  # acgan: weight of D's class loss on fakes relative to reals (Odena et al.: 1)
    # --- stabilisers ---
    sn_g: bool = False  # spectral norm on every G layer
    sn_d: bool = False  # spectral norm on every D layer (dcgan D then drops its batch norm)
    r1_gamma: float = 0.0  # R1 penalty gamma/2 * E||grad D(x)||^2 on real data; 0 = off
    grad_clip: float = 0.0  # clip G's and D's gradient norm to this value; 0 = off
    weight_decay: float = 0.0  # L2 weight decay in both optimisers; 0 = off
    d_dropout: float = 0.0  # dropout probability after each D hidden layer; 0 = off
    label_smoothing: float = 0.0  # one-sided: D's target for real data is 1 - this (minimax, nonsaturating, lsgan)
    vbn: bool = False  # virtual batch norm in G (dcgan, resnet): statistics from a fixed reference batch
    vbn_ref: int = 64  # size of the virtual batch norm reference batch
    mbstd: bool = False  # minibatch stddev feature before D's last layer (minibatch discrimination)
    mbstd_group: int = 4  # samples per minibatch-stddev group
    pack: int = 1  # PacGAN packing: D judges this many samples at once; 1 = off
    diffaug: str = ""  # DiffAugment policy for everything D sees, e.g. "translation,cutout,color"; "" = off
    # --- optimisation ---
    steps: int = 5000  # generator updates in the whole run
    batch_size: int = 64  # real images per D update (and fakes per G update)
    n_critic: int = 1  # D updates per G update
    optimizer: str = "adam"  # adam or rmsprop (the original WGAN's choice)
    lr_g: float = 2e-4  # learning rate of G (TTUR: set lr_d higher than lr_g)
    lr_d: float = 2e-4  # learning rate of D
    beta1: float = 0.5  # Adam beta1 (0.5 is the DCGAN choice; 0 for WGAN-GP)
    beta2: float = 0.999  # Adam beta2
    ema: bool = True  # keep an exponential moving average of G's weights for sampling
    ema_decay: float = 0.999  # EMA decay per G step (averages over about 1/(1-decay) steps)
    ema_rampup: float = 0.05  # cap the EMA horizon at this fraction of the steps so far; 0 = no cap
    # --- schedule ---
    log_every: int = 50  # steps between metrics records
    sample_every: int = 500  # steps between sample grids (from one fixed noise batch)
    ckpt_every: int = 1000  # steps between checkpoints (one is always written at the end)
    eval_every: int = 1000  # steps between evaluations (mode coverage, or FID/KID/IS for images); 0 = never
    eval_n: int = 0  # samples per evaluation; 0 = auto (2,500 for 2-D points, 2,000 images)
    fid_backend: str = "evaluator"  # evaluator (the project's classifier) or inception (torch-fidelity, local weights)
    eval_train_evaluator: bool = False  # images with no shipped or cached evaluator: train one at launch, else no FID
    # --- device ---
    device: str = "auto"  # auto (CUDA when present), cpu or cuda
    precision: str = "fp32"  # fp32, or bf16 / fp16 autocast on CUDA (fp16 adds a grad scaler)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "TrainConfig":
        """Fields from a dict (JSON or CLI strings are coerced); a `preset` supplies the fields d leaves out."""
        unknown = sorted(set(d) - set(field_names()))
        if unknown:
            raise ConfigError(f"{source}: unknown field {unknown[0]!r} (see `python -m gancore train --help`)")
        if d.get("preset"):
            from .presets import preset_fields

            d = {**preset_fields(str(d["preset"])), **d}
        return cls(**{k: coerce(k, v) for k, v in d.items()})

    def explicit_fields(self) -> dict:
        """The fields that differ from the defaults (what a user set)."""
        default = TrainConfig()
        return {k: v for k, v in self.to_dict().items() if v != getattr(default, k)}

    @classmethod
    def from_json(cls, path: str) -> "TrainConfig":
        try:
            with open(path) as f:
                d = json.load(f)
        except FileNotFoundError:
            raise ConfigError(f"--config: no such file {path}") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"--config: {path} is not valid JSON ({e.msg}, line {e.lineno})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"--config: {path} must hold a JSON object of fields")
        return cls.from_dict(d, source=path)


def field_names() -> list[str]:
    return [f.name for f in fields(TrainConfig)]


def field_help() -> dict[str, str]:
    """The one-line comment of each field, read from this file (so the CLI help and the docs never drift)."""
    src = open(__file__).read()
    return dict(re.findall(r"^    (\w+): \w+ = .*?  # (.*)$", src, re.M))


def parse_bool(s) -> bool:
    if isinstance(s, bool):
        return s
    v = str(s).strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {s!r}")


def coerce(name: str, value):
    """Convert a CLI string or JSON value to the field's type; the error names the field."""
    ftype = {f.name: f.type for f in fields(TrainConfig)}[name]
    try:
        if ftype is bool:
            return parse_bool(value)
        if ftype is int:
            number = float(value)  # accepts "5000" and "5e3"
            if not number.is_integer():
                raise ValueError
            return int(number)
        if ftype is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--{name}: expected {ftype.__name__}, got {value!r}") from None


def _choice(cfg, name, choices):
    v = getattr(cfg, name)
    if v not in choices:
        raise ConfigError(f"--{name}: unknown value {v!r}; choose one of {', '.join(choices)}")


def validate(cfg: TrainConfig) -> None:
    """Checks that need no data. Raises ConfigError naming the first bad field."""
    from .augment import POLICIES, parse_policy
    from .data import DATASETS, NEEDS_PATH
    from .presets import PRESETS

    _choice(cfg, "dataset", DATASETS)
    _choice(cfg, "model", MODELS)
    _choice(cfg, "loss", LOSSES)
    _choice(cfg, "conditioning", CONDITIONINGS)
    _choice(cfg, "optimizer", OPTIMIZERS)
    _choice(cfg, "device", DEVICES)
    _choice(cfg, "precision", PRECISIONS)
    _choice(cfg, "fid_backend", FID_BACKENDS)
    if cfg.preset:
        _choice(cfg, "preset", tuple(PRESETS))
    if cfg.dataset in NEEDS_PATH and not cfg.data_path:
        raise ConfigError(f"--data_path: dataset {cfg.dataset!r} needs a path to the data")
    if cfg.name and (cfg.name in (".", "..") or not re.fullmatch(r"[A-Za-z0-9._-]+", cfg.name)):
        raise ConfigError(f"--name: {cfg.name!r} may only hold letters, digits, '.', '_' and '-'")
    positive = ["embed_dim", "steps", "batch_size", "n_critic", "log_every", "sample_every", "ckpt_every",
                "pack", "vbn_ref", "clip_value"]
    for name in positive:
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"--{name}: must be > 0 (got {getattr(cfg, name)})")
    non_negative = ["z_dim", "point_scale", "ema_rampup", "image_size", "g_width", "d_width", "g_depth", "d_depth", "eval_every", "eval_n",
                    "gp_weight", "acgan_weight", "acgan_fake_weight", "r1_gamma", "grad_clip", "weight_decay"]
    for name in non_negative:
        v = getattr(cfg, name)
        if not (v >= 0 and math.isfinite(v)):
            raise ConfigError(f"--{name}: must be >= 0 (got {v})")
    if cfg.channels not in (0, 1, 3):
        raise ConfigError(f"--channels: must be 0 (native), 1 or 3 (got {cfg.channels})")
    for name in ["lr_g", "lr_d"]:
        v = getattr(cfg, name)
        if not (v > 0 and math.isfinite(v)):
            raise ConfigError(f"--{name}: must be a positive number (got {v})")
    for name in ["beta1", "beta2", "ema_decay", "d_dropout"]:
        v = getattr(cfg, name)
        if not 0 <= v < 1:
            raise ConfigError(f"--{name}: must be in [0, 1) (got {v})")
    if cfg.mbstd_group < 2:
        raise ConfigError(f"--mbstd_group: must be >= 2 (got {cfg.mbstd_group})")
    unknown = [p for p in parse_policy(cfg.diffaug) if p not in POLICIES]
    if unknown:
        raise ConfigError(f"--diffaug: unknown policy {unknown[0]!r}; use a comma list of {', '.join(POLICIES)}")
    if cfg.precision != "fp32" and cfg.device == "cpu":
        raise ConfigError(f"--precision: {cfg.precision} autocast needs a CUDA device (device is cpu)")
    check_combination(cfg, points=cfg.dataset in ("ring", "grid"))
    if cfg.fid_backend == "inception":
        from .image_metrics import inception_weights

        inception_weights()  # fails here, before any training, when the weights are not on this machine


def check_combination(cfg, points: bool) -> None:
    """Refuse combinations that do not make sense, saying why. `points`: the data is 2-D."""
    if points and cfg.model in ("dcgan", "resnet"):
        raise ConfigError(f"--model: {cfg.model} needs images; dataset {cfg.dataset!r} is 2-D points (use mlp)")
    if cfg.model == "mlp" and cfg.conditioning == "projection":
        raise ConfigError("--conditioning: projection conditions G through conditional batch norm, "
                          "which the mlp generator does not have (use dcgan or resnet, or concat/acgan)")
    if cfg.vbn and cfg.model == "mlp":
        raise ConfigError("--vbn: virtual batch norm replaces G's batch norm, which the mlp generator does not have")
    if cfg.vbn and cfg.conditioning == "projection":
        raise ConfigError("--vbn: projection conditioning needs G's conditional batch norm; "
                          "virtual batch norm would replace it")
    if cfg.pack > 1 and cfg.conditioning != "none":
        raise ConfigError(f"--pack: packing joins {cfg.pack} samples into one D decision, which has no single "
                          f"label; use it with conditioning none")
    if cfg.batch_size % cfg.pack:
        raise ConfigError(f"--pack: batch_size {cfg.batch_size} must be a multiple of pack {cfg.pack}")
    if cfg.label_smoothing:
        from .losses import SMOOTHABLE

        if cfg.loss not in SMOOTHABLE:
            raise ConfigError(f"--label_smoothing: {cfg.loss} has no target to smooth "
                              f"(only {', '.join(SMOOTHABLE)})")
        if not 0 < cfg.label_smoothing < 0.5:
            raise ConfigError(f"--label_smoothing: must be in [0, 0.5) (got {cfg.label_smoothing})")
    if cfg.diffaug and points:
        raise ConfigError(f"--diffaug: DiffAugment transforms images; dataset {cfg.dataset!r} is 2-D points")
    if points and cfg.fid_backend != "evaluator":
        raise ConfigError(f"--fid_backend: applies to images; dataset {cfg.dataset!r} is 2-D points "
                          f"(scored by mode coverage)")
    if points and cfg.eval_train_evaluator:
        raise ConfigError(f"--eval_train_evaluator: evaluators score images; dataset {cfg.dataset!r} is 2-D points "
                          f"(scored by mode coverage)")
    if not points and 0 < cfg.eval_n < 10:
        raise ConfigError(f"--eval_n: image metrics need at least 10 samples (got {cfg.eval_n})")


def resolve(cfg: TrainConfig, data) -> TrainConfig:
    """Fill the 'auto' fields from the dataset and check what depends on it. Returns a new config."""
    import torch

    c = dataclasses.replace(cfg)
    if c.device == "auto":
        c.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif c.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device: cuda requested but no CUDA device is available")
    if c.precision != "fp32" and c.device == "cpu":
        raise ConfigError(f"--precision: {c.precision} autocast needs a CUDA device (device resolved to cpu)")
    if c.runs_root == "":
        c.runs_root = os.environ.get("GANCORE_RUNS", "runs")
    points = data.kind == "points"
    if c.model == "auto":
        c.model = "mlp" if points else "dcgan"
    check_combination(c, points)
    c.z_dim = c.z_dim or (2 if points else 64)
    from .metrics import N_IMAGES_TRAINING, N_POINTS

    c.eval_n = c.eval_n or (N_POINTS if points else N_IMAGES_TRAINING)
    if c.conditioning != "none" and data.num_classes == 0:
        raise ConfigError(f"--conditioning: {c.conditioning} needs class labels, and dataset {c.dataset!r} has none")
    if c.batch_size > len(data.x):
        raise ConfigError(f"--batch_size: {c.batch_size} is larger than the dataset ({len(data.x)} samples)")
    if not points:
        c.channels, c.image_size = data.shape[0], data.shape[1]
    if points:
        c.point_scale = c.point_scale or round(float(data.x.std()), 4)
    if c.model == "mlp":
        c.g_width, c.d_width = c.g_width or (256 if points else 512), c.d_width or (256 if points else 512)
        c.g_depth, c.d_depth = c.g_depth or 3, c.d_depth or 3
        return c
    from .models.dcgan import max_stages

    stages = max_stages(c.image_size)
    if stages == 0:
        raise ConfigError(f"--image_size: {c.model} needs an even size that halves to 3..7 (got {c.image_size}); "
                          f"resize with --image_size 32")
    for name in ("g_depth", "d_depth"):
        if getattr(c, name) == 0:
            setattr(c, name, stages)
        elif getattr(c, name) > stages:
            raise ConfigError(f"--{name}: {c.image_size}px images allow at most {stages} stages (got {getattr(c, name)})")
    if c.model == "dcgan":
        width = 32 if c.image_size <= 32 else 64  # 32 keeps MNIST-5k under 5 minutes on 2 CPU cores
    else:
        width = 64 if c.image_size <= 32 else 128
    c.g_width, c.d_width = c.g_width or width, c.d_width or width
    return c
