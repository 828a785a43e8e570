"""Everything a run needs before its loop starts, checked and derived once, at the top of the import graph.

    fields (dict, JSON, flags)  ->  TrainConfig  ->  validate()  ->  load the data  ->  resolve()  ->  resolve_device()

`load_and_resolve(fields)` is that sequence, and the one way in for `train`, `resume`, the
dashboard's Launch (`launch.check_config`) and `gancore eval` (`metrics.score_run`).
`validate` checks what needs no data; `resolve` fills the "auto" fields from the data's facts
(catalogue.DataFacts) and checks what depends on them; `check_combination` refuses pairings that make no
sense, saying why. `preview` is the same resolution on the facts declared for the embedded datasets, without
torch: what the Launch form shows in its auto fields. The lists of valid values are read from the modules
that define them (catalogue.OBJECTIVES, models.NETWORKS, conditioning.METHODS, ...), so a new entry there is valid
here at once. This module imports torch only inside the functions that need it (choices, validate,
resolve_device, load_data).
"""
import dataclasses
import math
import os
import re

from . import runs
from .catalogue import CHOICES, NEEDS_PATH, OBJECTIVES, POINT_SETS, DataFacts, default_n, embedded_facts, max_stages, \
    progressive_stages
from .config import TrainConfig, check_split
from .errors import ConfigError

# Test-only: lets a CPU run take the autocast paths (fp16 with the grad scaler, bf16) that training runs on CUDA,
# so the suite exercises them without a GPU. CPU autocast is slower than fp32 and not offered to users.
CPU_AUTOCAST_ENV = "GANCORE_CPU_AUTOCAST"
RESUMABLE_FIELDS = ("steps", "log_every", "sample_every", "ckpt_every", "eval_every", "device")  # how long and how often, never what


def load_and_resolve(fields, source: str = "config", make_root: bool = False):
    """(resolved TrainConfig, Dataset) from fields (a dict, a preset among them, or a TrainConfig).

    make_root: also make sure the runs root exists and takes new runs (before any data loads); that
    directory is all this writes. Raises ConfigError / DataError naming the first bad field or file.
    """
    cfg = fields if isinstance(fields, TrainConfig) else TrainConfig.from_dict(dict(fields), source=source)
    validate(cfg)
    if make_root:
        runs.ensure_root(cfg.runs_root or runs.default_root())
    data = load_data(cfg)
    resize = progressive_size(cfg, data)
    if resize:
        cfg = dataclasses.replace(cfg, image_size=resize)
        data = load_data(cfg)
    return resolve_with(cfg, data), data


def resolve_with(cfg: TrainConfig, data) -> TrainConfig:
    """The config resolved against a loaded dataset and this machine: resolve, then resolve_device."""
    return resolve_device(resolve(cfg, facts_of(data)))


def preview(fields) -> TrainConfig | None:
    """What the auto fields of these fields resolve to, without torch or the data (the Launch form's "auto: ..."),
    or None when that needs the data read (a set from a path) or the fields are refused. The same resolution as
    load_and_resolve's, on the facts declared for the embedded datasets; the device, the precision and the
    refused combinations are left to the launch (the form offers only valid names), and the point_scale of 2-D
    points is None (their std is known once they are drawn)."""
    try:
        cfg = TrainConfig.from_dict(dict(fields), source="form")
        facts = embedded_facts(cfg.dataset, cfg.image_size, cfg.channels)
        if facts is None:
            return None
        resize = progressive_size(cfg, facts)
        if resize:
            cfg = dataclasses.replace(cfg, image_size=resize)
            facts = embedded_facts(cfg.dataset, cfg.image_size, cfg.channels)
        return resolve(cfg, facts, check=None)
    except ConfigError:
        return None


def facts_of(data) -> DataFacts:
    """A loaded dataset's facts (what resolve reads): for 2-D points also their std, the auto point_scale."""
    std = round(float(data.images().std()), 4) if data.kind == "points" else None
    return DataFacts(data.name, data.kind, tuple(data.shape), data.num_classes, len(data), std)


def progressive_size(cfg, data) -> int:
    """Progressive growing doubles from 4 px: a native size that is not a power of two (28 px MNIST) is resized
    to the next one (32), which keeps the digit's share of the frame where padding would add a border no real
    image has. 0 when nothing is resized."""
    size = data.shape[-1] if data.kind == "image" else 0  # data: a Dataset or DataFacts
    if cfg.model == "progressive" and cfg.image_size == 0 and size >= 8 and size & (size - 1):
        return 1 << size.bit_length()
    return 0


def load_data(cfg):
    """The dataset a config trains on."""
    from .data import load_dataset

    return load_dataset(cfg.dataset, cfg.data_path or None, cfg.image_size, cfg.channels, cfg.seed)


def _choice(cfg, name, choices):
    v = getattr(cfg, name)
    if v not in choices:
        raise ConfigError(f"--{name}: unknown value {v!r}; choose one of {', '.join(choices)}")


def is_points(dataset: str) -> bool:
    return dataset in POINT_SETS


def choices() -> dict[str, tuple]:
    """The valid values of each choice field: the networks, losses and conditioning methods as their modules define
    them (a new entry there is valid at once), the other lists from the catalogue."""
    from .conditioning import METHODS
    from .models import NETWORKS

    return {**CHOICES, "model": ("auto", *NETWORKS), "loss": tuple(OBJECTIVES), "conditioning": tuple(METHODS)}


def validate(cfg: TrainConfig) -> None:
    """Checks that need no data. Raises ConfigError naming the first bad field."""
    from .augment import POLICIES, parse_policy
    from .presets import PRESETS

    for name, options in choices().items():
        _choice(cfg, name, options)
    if cfg.preset:
        _choice(cfg, "preset", tuple(PRESETS))
    if cfg.dataset in NEEDS_PATH and not cfg.data_path:
        raise ConfigError(f"--data_path: dataset {cfg.dataset!r} needs a path to the data")
    if cfg.name:
        runs.check_name(cfg.name)
    positive = ["embed_dim", "steps", "batch_size", "n_critic", "log_every", "sample_every", "ckpt_every",
                "pack", "vbn_ref", "clip_value"]
    for name in positive:
        if not getattr(cfg, name) > 0:
            raise ConfigError(f"--{name}: must be > 0 (got {getattr(cfg, name)})")
    non_negative = ["z_dim", "point_scale", "ema_rampup", "image_size", "pad_to", "g_width", "d_width", "g_depth",
                    "d_depth", "eval_every", "eval_n", "gp_weight", "drift", "acgan_weight", "acgan_fake_weight",
                    "r1_gamma", "grad_clip", "weight_decay", "fm_weight", "fade_images", "stable_images"]
    for name in non_negative:
        v = getattr(cfg, name)
        if not (v >= 0 and math.isfinite(v)):
            auto = ", or -1 for auto" if name == "eval_every" else ""
            raise ConfigError(f"--{name}: must be >= 0{auto} (got {v})")
    if cfg.channels not in (0, 1, 3):
        raise ConfigError(f"--channels: must be 0 (native), 1 or 3 (got {cfg.channels})")
    for name in ["lr_g", "lr_d"]:
        v = getattr(cfg, name)
        if not (v > 0 and math.isfinite(v)):
            raise ConfigError(f"--{name}: must be a positive number (got {v})")
    if not 0 <= cfg.lr_decay <= 1:
        raise ConfigError(f"--lr_decay: must be a fraction of the steps in [0, 1] (got {cfg.lr_decay})")
    for name in ["beta1", "beta2", "ema_decay", "d_dropout"]:
        v = getattr(cfg, name)
        if not 0 <= v < 1:
            raise ConfigError(f"--{name}: must be in [0, 1) (got {v})")
    if cfg.mbstd_group < 2:
        raise ConfigError(f"--mbstd_group: must be >= 2 (got {cfg.mbstd_group})")
    unknown = [p for p in parse_policy(cfg.diffaug) if p not in POLICIES]
    if unknown:
        raise ConfigError(f"--diffaug: unknown policy {unknown[0]!r}; use a comma list of {', '.join(POLICIES)}")
    if cfg.precision not in ("auto", "fp32") and cfg.device == "cpu" and not os.environ.get(CPU_AUTOCAST_ENV):
        raise ConfigError(f"--precision: {cfg.precision} autocast needs a CUDA device (device is cpu)")
    check_combination(cfg, points=is_points(cfg.dataset))
    if cfg.fid_backend == "inception":
        from .image_metrics import inception_weights

        inception_weights()  # fetched now if missing; fails here, before any training, when that cannot be done


def check_combination(cfg, points: bool) -> None:
    """Refuse combinations that do not make sense, saying why. `points`: the data is 2-D."""
    from .conditioning import METHODS

    method = METHODS[cfg.conditioning]
    if points and cfg.model in ("dcgan", "resnet", "progressive"):
        raise ConfigError(f"--model: {cfg.model} needs images; dataset {cfg.dataset!r} is 2-D points (use mlp)")
    if cfg.model == "mlp" and method.g_norm_conditional:
        raise ConfigError(f"--conditioning: {cfg.conditioning} conditions G through conditional batch norm, "
                          f"which the mlp generator does not have (use dcgan or resnet, or concat/acgan)")
    if cfg.vbn and cfg.model == "mlp":
        raise ConfigError("--vbn: virtual batch norm replaces G's batch norm, which the mlp generator does not have")
    if cfg.vbn and method.g_norm_conditional:
        raise ConfigError(f"--vbn: {cfg.conditioning} conditioning needs G's conditional batch norm; "
                          f"virtual batch norm would replace it")
    if cfg.pack > 1 and cfg.conditioning != "none":
        raise ConfigError(f"--pack: packing joins {cfg.pack} samples into one D decision, which has no single "
                          f"label; use it with conditioning none")
    check_split(cfg, 1)  # batch_size into packs
    objective = OBJECTIVES[cfg.loss]
    if cfg.label_smoothing:
        if not objective.smoothable:
            raise ConfigError(f"--label_smoothing: {cfg.loss} has no target to smooth "
                              f"(only {', '.join(n for n, o in OBJECTIVES.items() if o.smoothable)})")
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
    if cfg.model == "progressive":
        if cfg.vbn:
            raise ConfigError("--vbn: the progressive G normalises with pixel norm; virtual batch norm has nothing "
                              "to replace")
        if cfg.compile:
            raise ConfigError("--compile: a progressive network changes its graph with the stage and its fade every "
                              "step, which torch.compile would recompile; train it without --compile")
        if cfg.equalized_lr and (cfg.sn_g or cfg.sn_d):
            raise ConfigError("--sn_d/--sn_g: equalized learning rate already sets each weight's scale at runtime; "
                              "use spectral norm with --equalized_lr false")
    if cfg.drift and not objective.critic:
        raise ConfigError(f"--drift: the drift penalty keeps a Wasserstein critic's scores near 0; loss {cfg.loss!r} "
                          f"bounds its scores already (use --loss wgan-gp)")
    if cfg.compile and (objective.gradient_penalty or cfg.r1_gamma):
        raise ConfigError(f"--compile: {cfg.loss if objective.gradient_penalty else 'R1'} differentiates D's gradient "
                          f"(a double backward), which torch.compile does not support; train without --compile")
    if not points and 0 < cfg.eval_n < 10:
        raise ConfigError(f"--eval_n: image metrics need at least 10 samples (got {cfg.eval_n})")


def resolve_device(cfg: TrainConfig) -> TrainConfig:
    """The device and precision a config trains with on this machine (auto: a GPU when there is one)."""
    import torch

    c = dataclasses.replace(cfg)
    if c.device == "auto":
        c.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif c.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device: cuda requested but no CUDA device is available")
    if c.precision == "auto":
        c.precision = auto_precision(c.device)
    if c.precision != "fp32" and c.device == "cpu" and not os.environ.get(CPU_AUTOCAST_ENV):
        raise ConfigError(f"--precision: {c.precision} autocast needs a CUDA device (device resolved to cpu)")
    return c


def resolve(cfg: TrainConfig, data: DataFacts, check=check_combination) -> TrainConfig:
    """Fill the 'auto' fields but the device's from the dataset's facts (`facts_of` a loaded set, or
    catalogue.embedded_facts), and check what depends on them; `check`: the combination check, once the model is
    known (None: none, for a preview). Returns a new config."""
    c = dataclasses.replace(cfg)
    c.runs_root = c.runs_root or runs.default_root()
    points = data.kind == "points"
    if c.model == "auto":
        c.model = "mlp" if points else "dcgan"
    if check:
        check(c, points)
    if c.pad_to and c.model != "dcgan":
        raise ConfigError(f"--pad_to: only the dcgan networks pad (model is {c.model})")
    c.z_dim = c.z_dim or (2 if points else 64)
    c.eval_n = c.eval_n or default_n(data, training=True)
    if c.conditioning != "none" and data.num_classes == 0:
        raise ConfigError(f"--conditioning: {c.conditioning} needs class labels, and dataset {c.dataset!r} has none")
    if c.batch_size > data.size:
        raise ConfigError(f"--batch_size: {c.batch_size} is larger than the dataset ({data.size} samples)")
    if not points:
        c.channels, c.image_size = data.shape[0], data.shape[1]
    if points:
        c.point_scale = c.point_scale or data.point_std  # None in a preview: the std of points not drawn yet
    if c.model == "mlp":
        c.g_width, c.d_width = c.g_width or (256 if points else 512), c.d_width or (256 if points else 512)
        c.g_depth, c.d_depth = c.g_depth or 3, c.d_depth or 3
        return c
    if c.model == "progressive":
        return resolve_progressive(c)
    if c.pad_to and (c.pad_to < c.image_size or (c.pad_to - c.image_size) % 2):
        raise ConfigError(f"--pad_to: must be the image size ({c.image_size}) plus an even number of pixels "
                          f"(got {c.pad_to})")
    size = c.pad_to or c.image_size
    stages = max_stages(size)
    if stages == 0:
        field = "pad_to" if c.pad_to else "image_size"
        raise ConfigError(f"--{field}: {c.model} needs an even size that halves to 3..7 (got {size}); "
                          f"resize with --image_size 32")
    for name in ("g_depth", "d_depth"):
        if getattr(c, name) == 0:
            setattr(c, name, stages)
        elif getattr(c, name) > stages:
            raise ConfigError(f"--{name}: {size}px images allow at most {stages} stages (got {getattr(c, name)})")
    if c.model == "dcgan":
        width = 32 if c.image_size <= 32 else 64  # 32 keeps MNIST-5k under 5 minutes on 2 CPU cores
    else:
        width = 64 if c.image_size <= 32 else 128
    c.g_width, c.d_width = c.g_width or width, c.d_width or width
    return c


def auto_precision(device: str) -> str:
    """`precision auto`: bf16 on GPUs with native bf16 (compute capability 8.0 and up: A100, H100, RTX 30xx on),
    else fp32. bf16 keeps fp32's range (no grad scaler) at twice the tensor-core rate; older GPUs (V100, T4)
    only emulate it (torch.cuda.is_bf16_supported() counts emulation), slower than fp32. fp16 would be their
    fast path, but GAN losses and penalties overflow its scaler often; it stays a choice (--precision fp16).

    Asks this process's own GPU (torchrun's LOCAL_RANK) for its properties, which creates no CUDA context, so
    no rank touches GPU 0 before it has chosen its device."""
    if device != "cuda":
        return "fp32"
    import torch

    gpu = int(os.environ.get("LOCAL_RANK", "0"))
    return "bf16" if torch.cuda.get_device_capability(gpu) >= (8, 0) else "fp32"


def resolve_progressive(c):
    """Progressive growing: a power-of-two size, depth = the 2x stages from 4 px, the fade schedule."""
    try:
        stages = progressive_stages(c.image_size)
    except ValueError:
        raise ConfigError(f"--image_size: progressive growing doubles from 4 px to a size of 8, 16, 32, 64 ... "
                          f"(got {c.image_size}); resize with --image_size 32") from None
    for name in ("g_depth", "d_depth"):
        if getattr(c, name) not in (0, stages - 1):
            raise ConfigError(f"--{name}: progressive growing from 4 px to {c.image_size} px has {stages - 1} "
                              f"stages (got {getattr(c, name)})")
        setattr(c, name, stages - 1)
    c.g_width, c.d_width = c.g_width or 16, c.d_width or 16  # at the finest stage; coarser ones up to 4x
    # auto schedule: 2 x stages equal phases over the run (stage 0 stable, then a fade and a stable phase
    # per stage), the last stage also keeping the remainder: full resolution for the last ~quarter or more
    unit = c.steps * c.batch_size * c.n_critic // (2 * stages)
    c.fade_images, c.stable_images = c.fade_images or unit, c.stable_images or unit
    return c


def default_name(cfg) -> str:
    """<dataset>-<model>-<loss>[-<conditioning>]-<YYYYmmdd-HHMMSS>; runs.claim_run_dir numbers it if taken."""
    from datetime import datetime

    cond = f"-{cfg.conditioning}" if cfg.conditioning != "none" else ""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{cfg.dataset}-{cfg.model}-{cfg.loss}{cond}-{datetime.now():%Y%m%d-%H%M%S}")
