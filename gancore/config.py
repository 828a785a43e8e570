"""The training config: one dataclass, every field with a default and a one-line comment.

Every field is also a CLI flag (`--lr_g 1e-4`). Fields that say "auto" (or 0) are resolved
against the dataset, and the resolved config is what the run directory stores. This module only
holds the fields and turns strings into them: it is a leaf that imports nothing of gancore but its
errors and the catalogue of names (and the preset table, a plain dict, when a preset is asked for). Checking the values and
resolving them against the data is setup.py's job, where the lists of losses, networks and
conditioning methods are read from the modules that define them.
"""
import dataclasses
import json
import math
import re
from dataclasses import dataclass, fields

from .catalogue import OBJECTIVES
from .errors import ConfigError


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
    pad_to: int = 0  # dcgan: G draws and D reads images of this size, the data's centred in it, for one more 2x stage; 0 = auto: 32 for the 28 px recipe, else the data's size
    g_depth: int = 0  # G depth: hidden layers (mlp) or 2x upsampling stages (dcgan, resnet); 0 = auto
    d_depth: int = 0  # D depth: hidden layers (mlp) or 2x downsampling stages (dcgan, resnet); 0 = auto
    # --- objective and conditioning ---
    loss: str = "nonsaturating"  # minimax, nonsaturating, lsgan, wgan (weight clipping), wgan-gp or hinge
    clip_value: float = 0.01  # wgan: critic weights are clipped to [-clip_value, clip_value] after each D step
    gp_weight: float = 10.0  # wgan-gp: weight of the gradient penalty on real/fake interpolates
    drift: float = 0.0  # wgan/wgan-gp: drift penalty weight eps * E[D(x)^2] on real scores (Karras et al. 2018: 0.001); 0 = off
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
    fm_weight: float = 0.0  # feature matching: G's extra loss, this times ||mean D features, real - fake||^2; 0 = off
    diffaug: str = ""  # DiffAugment policy for everything D sees, e.g. "translation,cutout,color"; "" = off
    # --- progressive growing (model progressive; docs/progressive.md) ---
    fade_images: int = 0  # progressive: real images over which each new stage fades in; 0 = auto (see docs)
    stable_images: int = 0  # progressive: real images at each stage at full alpha (stage 0: all of it); 0 = auto
    equalized_lr: bool = True  # progressive: equalized learning rate (N(0,1) weights scaled at runtime by He's constant)
    pixel_norm: bool = True  # progressive: pixelwise feature normalisation after each conv of G
    # --- optimisation ---
    steps: int = 0  # generator updates in the whole run; 0 = auto: 2,000 for the 28 px recipe, else 5,000
    batch_size: int = 0  # real images per D update (and fakes per G update); 0 = auto: 48 for the 28 px recipe, else 64
    n_critic: int = 1  # D updates per G update
    optimizer: str = "adam"  # adam or rmsprop (the original WGAN's choice)
    lr_g: float = 0.0  # learning rate of G (TTUR: set lr_d higher than lr_g); 0 = auto: 1e-3 for the 28 px recipe, else 2e-4
    lr_d: float = 0.0  # learning rate of D; 0 = auto, as lr_g
    beta1: float = -1.0  # Adam beta1; -1 = auto: 0.2 for the 28 px recipe, else 0.5 (the DCGAN choice); 0 for WGAN-GP
    beta2: float = 0.0  # Adam beta2; 0 = auto: 0.99 for the 28 px recipe, else 0.999
    lr_decay: float = 0.0  # both learning rates fall linearly to 0 over this last fraction of the steps; 0 = constant
    ema: bool = True  # keep an exponential moving average of G's weights for sampling
    ema_decay: float = 0.999  # EMA decay per G step (averages over about 1/(1-decay) steps)
    ema_rampup: float = 0.05  # cap the EMA horizon at this fraction of the steps so far; 0 = no cap
    # --- schedule ---
    log_every: int = 50  # steps between metrics records
    sample_every: int = 500  # steps between sample grids (from one fixed noise batch)
    ckpt_every: int = 1000  # steps between checkpoints (one is always written at the end)
    eval_every: int = -1  # steps between evaluations (mode coverage, or FID/KID/IS for images); -1 = auto: about five over the run (1, 2 or 5 x 10^k steps); 0 = never
    eval_n: int = 0  # samples per evaluation; 0 = auto (2,500 for 2-D points, 2,000 images)
    fid_backend: str = "evaluator"  # evaluator (the project's classifier) or inception (torch-fidelity, fetched once)
    eval_train_evaluator: bool = False  # images with no shipped or cached evaluator: train one at launch, else no FID
    # --- device ---
    device: str = "auto"  # auto (CUDA when present), cpu or cuda
    precision: str = "auto"  # auto (bf16 on GPUs with native bf16, else fp32), fp32, or bf16 / fp16 autocast on CUDA
    compile: bool = False  # torch.compile G and D (CPU needs a C compiler); not with wgan-gp or R1 (double backward)

    def __post_init__(self):
        # The optimisation fields left at auto (0; -1 for beta1, where 0 is a value) take the values of their recipe
        # now, so that every check and the run directory see numbers; `auto_filled` remembers which (they are not
        # the user's choice).
        recipe = RECIPE_28PX if uses_28px_recipe(self) else RECIPE_PLAIN
        self.auto_filled = {k for k in recipe if getattr(self, k) == AUTO.get(k, 0)}
        for k in self.auto_filled:
            setattr(self, k, recipe[k])
        if self.eval_every == AUTO_EVAL_EVERY:  # after steps: it scales with the run's length
            self.eval_every = auto_eval_every(self.steps)
            self.auto_filled.add("eval_every")

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
        """The fields that differ from the declared defaults and were not filled in by the recipe (what a user set)."""
        declared = declared_defaults()
        return {k: v for k, v in self.to_dict().items() if v != declared[k] and k not in self.auto_filled}

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


# The optimisation fields' "auto" values. The 28 px recipe was measured on MNIST-5k (issue 13, docs/benchmarks.md):
# the 3-stage network of 32 px on the 28 px digits, more steps of a smaller batch at a higher rate, Adam's beta1 0.2
# (0.5, the DCGAN value, scored FID 0.19-0.30 over the same seeds). Its 2,000 steps take 5 minutes of a 2-core CPU
# (there: FID 0.164, conditional accuracy 0.984); over 6 seeds (GPU probes) FID 0.155-0.185 and accuracy
# 0.979-0.989, unconditional FID 0.99-1.26, where lr 2e-4 with batch 64 for 5,000 steps (8.5 minutes on that CPU)
# scored 0.44 / 0.941 and 4.22.
RECIPE_28PX = dict(pad_to=32, batch_size=48, steps=2000, lr_g=1e-3, lr_d=1e-3, beta1=0.2, beta2=0.99)
RECIPE_PLAIN = dict(pad_to=0, batch_size=64, steps=5000, lr_g=2e-4, lr_d=2e-4, beta1=0.5, beta2=0.999)
AUTO = dict(beta1=-1.0)  # a recipe field's "auto" value where it is not 0 (Adam's beta1 may be 0)
AUTO_EVAL_EVERY = -1  # eval_every's "auto" (0 is "never")


def auto_eval_every(steps: int) -> int:
    """About five evaluations over `steps` (the last step is always evaluated too): the round interval (1, 2 or 5 x
    10^k steps) nearest to steps / 5 on a log scale. 600 steps: every 100; 2,000: every 500; 5,000: every 1,000."""
    if steps <= 0:
        return 0
    target = steps / 5
    rounds = [m * 10 ** k for k in range(0, len(str(steps)) + 1) for m in (1, 2, 5)]
    return min(rounds, key=lambda r: (abs(math.log(target / r)), r))
RECIPE_28PX_SETS = ("mnist-5k", "mnist")  # MNIST digits at their 28 px


def check_split(cfg, processes: int) -> None:
    """batch_size is the global batch: it must split evenly over the processes, and into packs on each (the one
    check of batch_size against pack: setup checks one process, the launcher and the trainer as many as run)."""
    if cfg.batch_size % processes:
        raise ConfigError(f"--batch_size: {cfg.batch_size} (the global batch) must split evenly over "
                          f"{processes} processes")
    share = cfg.batch_size // processes
    if share % cfg.pack:
        raise ConfigError(f"--pack: batch_size {cfg.batch_size} must be a multiple of pack {cfg.pack}" if processes == 1
                          else f"--pack: each of {processes} processes gets {share} samples, not a multiple of pack "
                               f"{cfg.pack}")


def uses_28px_recipe(cfg) -> bool:
    """The 28 px recipe fills the auto fields of a DCGAN (or auto network) with a GAN loss on MNIST digits at 28 px;
    WGAN critics and every other dataset or network take the plain values."""
    return (cfg.dataset in RECIPE_28PX_SETS and cfg.model in ("auto", "dcgan") and cfg.image_size in (0, 28)
            and not getattr(OBJECTIVES.get(cfg.loss), "critic", False))


def declared_defaults() -> dict:
    """Each field's default as declared (0 for the auto fields), what the Launch form starts from."""
    return {f.name: f.default for f in fields(TrainConfig)}


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
