"""Progressive growing (Karras et al. 2018, "Progressive Growing of GANs for Improved Quality,
Stability, and Variation"): G and D that start at 4x4 and grow by 2x per stage, fading each new
stage in.

Stage s works at 4 * 2**s pixels; a 32 px model has stages 0..3 (4, 8, 16, 32 px). Every layer of
every stage exists from construction, so optimisers, EMA and checkpoints always see the same
parameters; a stage not reached yet just gets no gradient. The current stage and the fade alpha
are buffers (`set_stage`), so `state_dict` carries them and a resume mid-fade restores them; forward
reads a Python copy of them, since reading a buffer on a GPU waits for the GPU.

    G at stage s:  x = (1 - a) * upsample(rgb_{s-1}(h_{s-1})) + a * rgb_s(block_s(h_{s-1}))
    D at stage s:  h = (1 - a) * fromRGB_{s-1}(downsample(x)) + a * block_s(fromRGB_s(x))
    real images:   x_s = (1 - a) * upsample(downsample(x_s)) + a * x_s      (`fade_real`)

where rgb_s = tanh(toRGB_s(.)): G blends finished images, in [-1, 1], exactly as `fade_real`
blends the real ones. G returns images at the current resolution; `upsample_to` brings them to the
final size. `Schedule` maps images seen to (stage, alpha). Wiring into the trainer is not done
here: see docs/progressive.md.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from ..catalogue import progressive_stages
from ..conditioning import METHODS, DHead, d_conditioner, g_conditioner
from ..layers import MinibatchStdDev, pack_samples

SQRT2 = math.sqrt(2.0)  # He's gain for (leaky) ReLU layers


# ---------------------------------------------------------------- resolutions and the fade
def resolution(stage: int) -> int:
    """Pixels per side at `stage`: 4, 8, 16, ..."""
    return 4 * 2**stage


def downsample_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Average-pool (B, C, H, H) images to (B, C, size, size); H must be a multiple of size."""
    if x.shape[-1] == size:
        return x
    if x.shape[-1] % size:
        raise ValueError(f"cannot average-pool {x.shape[-1]} px images to {size} px")
    return F.avg_pool2d(x, x.shape[-1] // size)


def upsample_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Nearest-neighbour upsampling of (B, C, H, H) images to (B, C, size, size), e.g. G's output to the final size."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="nearest")


def fade_real(x: torch.Tensor, stage: int, alpha: float) -> torch.Tensor:
    """Real images (B, C, H, W) as D should see them at (stage, alpha): at stage s's resolution, and during a
    fade blended with their upsampled half-resolution copy, as G's output is blended (the paper's real fade)."""
    size = resolution(stage)
    x = downsample_to(x, size)  # (B, C, r, r)
    if stage == 0 or alpha >= 1:
        return x
    coarse = upsample_to(downsample_to(x, size // 2), size)  # (B, C, r, r): blocky, as G's old path
    return (1 - alpha) * coarse + alpha * x


# ---------------------------------------------------------------- the paper's layers
def check_no_spectral_norm(layer: nn.Module) -> None:
    """Equalized LR and spectral norm both set a weight's scale at runtime, and after spectral norm the He
    constant would shrink every layer's output (to sqrt(2 / fan_in) of a unit gain), so the pair is
    refused: build with `equalized=False` to use spectral norm."""
    if parametrize.is_parametrized(layer, "weight"):
        raise ValueError("spectral norm cannot be combined with equalized learning rate in the progressive "
                         "networks: build them with equalized=False (plain layers) to use spectral norm")


class EqualizedConv2d(nn.Conv2d):
    """A conv whose weight is stored N(0, 1) and multiplied at runtime by He's constant gain / sqrt(fan_in).

    With Adam the update size is then the same for every layer relative to its effective weight (the
    paper's "equalized learning rate"), instead of tiny for wide layers and large for narrow ones.
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int, gain: float = SQRT2):
        super().__init__(c_in, c_out, kernel_size, padding=kernel_size // 2)
        self.scale = gain / math.sqrt(c_in * kernel_size**2)  # He's constant
        nn.init.normal_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x):
        check_no_spectral_norm(self)
        return self._conv_forward(x, self.weight * self.scale, self.bias)


class EqualizedLinear(nn.Linear):
    """A linear layer with the equalized learning rate of `EqualizedConv2d`."""

    def __init__(self, f_in: int, f_out: int, gain: float = SQRT2):
        super().__init__(f_in, f_out)
        self.scale = gain / math.sqrt(f_in)  # He's constant
        nn.init.normal_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x):
        check_no_spectral_norm(self)
        return F.linear(x, self.weight * self.scale, self.bias)


def conv(c_in: int, c_out: int, kernel_size: int, equalized: bool, gain: float = SQRT2) -> nn.Conv2d:
    """A same-padded conv, equalized or plain (PyTorch's default init)."""
    if equalized:
        return EqualizedConv2d(c_in, c_out, kernel_size, gain)
    return nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2)


def linear(f_in: int, f_out: int, equalized: bool) -> nn.Linear:
    """A linear layer, equalized or plain."""
    return EqualizedLinear(f_in, f_out) if equalized else nn.Linear(f_in, f_out)


class PixelNorm(nn.Module):
    """Scales each pixel's feature vector to unit mean square (the paper's pixelwise feature normalisation):
    keeps G's activations from escalating without batch statistics. Works on (B, F) and (B, C, H, W)."""

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


def stage_widths(stages: int, width: int, width_max: int) -> list[int]:
    """Channels per stage: `width` at the finest stage, doubling per coarser stage, capped at `width_max`."""
    return [min(width_max, width * 2 ** (stages - 1 - s)) for s in range(stages)]


# ---------------------------------------------------------------- stage and alpha
class Growing(nn.Module):
    """What G and D share: the number of stages, and the current stage and fade alpha.

    They live twice: as buffers, which `state_dict` carries (checkpoints, resume), and as Python numbers
    (`phase()`), which forward reads: reading a buffer's value on a GPU waits for every kernel queued before it,
    and forward needs the phase for its control flow. `set_stage` writes both; `load_state_dict` (directly or
    through a module holding this one) loads the buffers and then refreshes the Python copy from them;
    `copy.deepcopy` copies both. Writing the buffers any other way (`copy_`) does not move the phase:
    call `set_stage`.

    A freshly built network is fully grown (last stage, alpha 1), so it meets the network contract
    (images of the data's shape) until someone calls `set_stage`.
    """

    def __init__(self, stages: int):
        super().__init__()
        self.stages = stages
        self.register_buffer("stage", torch.tensor(stages - 1))  # long scalar
        self.register_buffer("alpha", torch.tensor(1.0))  # float scalar; weight of the newest stage
        self._phase = (stages - 1, 1.0)  # (stage, alpha) as the buffers hold them

    def set_stage(self, stage: int, alpha: float = 1.0) -> None:
        """Work at `stage` (0 = 4 px) with the newest stage blended in at weight `alpha` (ignored at stage 0).

        Called at every step by the trainer: it returns at once when the phase is unchanged, and writes the
        buffers without reading them back (no wait for the GPU)."""
        if not 0 <= stage < self.stages:
            raise ValueError(f"stage {stage} is outside 0..{self.stages - 1}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha {alpha} is outside [0, 1]")
        # alpha as the float32 buffer holds it, so that forward computes with the value a checkpoint restores
        phase = (int(stage), float(np.float32(alpha)))
        if phase == self._phase:
            return
        with torch.no_grad():
            self.stage.fill_(phase[0])
            self.alpha.fill_(phase[1])
        self._phase = phase

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._phase = (int(self.stage), float(self.alpha))  # the loaded phase: one read per load, none per forward

    def phase(self) -> tuple[int, float]:
        """(stage, alpha) as Python numbers (no read of the buffers)."""
        return self._phase

    @property
    def resolution(self) -> int:
        """Pixels per side of the current stage."""
        return resolution(self._phase[0])


# ---------------------------------------------------------------- G
class GInput(nn.Module):
    """G's stage 0: the (conditioned) latent to a 4x4 map: pixel norm, dense, 3x3 conv."""

    def __init__(self, in_dim: int, channels: int, equalized: bool, pixel_norm: bool):
        super().__init__()
        self.channels = channels
        self.norm = PixelNorm() if pixel_norm else nn.Identity()
        self.fc = linear(in_dim, channels * 16, equalized)
        self.conv = conv(channels, channels, 3, equalized)

    def forward(self, z):
        h = self.fc(self.norm(z)).view(-1, self.channels, 4, 4)  # (B, c0, 4, 4); the paper normalises the latent
        h = self.norm(F.leaky_relu(h, 0.2))
        return self.norm(F.leaky_relu(self.conv(h), 0.2))  # (B, c0, 4, 4)


class GBlock(nn.Module):
    """G's stage s >= 1: nearest upsampling x2, then two 3x3 convs, each followed by leaky ReLU and pixel norm."""

    def __init__(self, c_in: int, c_out: int, equalized: bool, pixel_norm: bool):
        super().__init__()
        self.conv1 = conv(c_in, c_out, 3, equalized)
        self.conv2 = conv(c_out, c_out, 3, equalized)
        self.norm = PixelNorm() if pixel_norm else nn.Identity()

    def forward(self, h):
        h = F.interpolate(h, scale_factor=2, mode="nearest")  # (B, c_in, 2H, 2W)
        h = self.norm(F.leaky_relu(self.conv1(h), 0.2))
        return self.norm(F.leaky_relu(self.conv2(h), 0.2))  # (B, c_out, 2H, 2W)


class ProgressiveGenerator(Growing):
    """G(z, y) -> images (B, C, r, r) in [-1, 1] at the current stage's resolution r.

    Arguments as the other networks (`depth`: 0, or the number of 2x stages the size implies), plus:
    width_max (channel cap of the coarse stages), equalized (equalized learning rate), pixel_norm
    (pixelwise feature normalisation). Conditioning: concat and acgan give G [z, embed(y)];
    projection would condition G's batch norms, which this G has not (it uses pixel norm), so under
    projection G also takes [z, embed(y)] at its input, while D keeps its projection head.
    """

    def __init__(self, z_dim, out_shape, width=16, depth=0, num_classes=0, conditioning="none", embed_dim=32,
                 vbn_ref=0, *, width_max=64, equalized=True, pixel_norm=True):
        c_out, size = out_shape[0], out_shape[1]
        super().__init__(progressive_stages(size, depth))
        if vbn_ref:
            raise ValueError("virtual batch norm has nothing to act on: the progressive G normalises with pixel norm")
        self.out_size = size
        channels = stage_widths(self.stages, width, width_max)
        g_method = "concat" if METHODS[conditioning].g_norm_conditional else conditioning  # projection: see above
        self.cond = g_conditioner(g_method, num_classes, embed_dim)
        blocks = [GInput(z_dim + self.cond.extra_dim, channels[0], equalized, pixel_norm)]
        blocks += [GBlock(channels[s - 1], channels[s], equalized, pixel_norm) for s in range(1, self.stages)]
        self.blocks = nn.ModuleList(blocks)
        # gain 1: toRGB is linear before tanh, not followed by a ReLU
        self.to_rgb = nn.ModuleList(conv(c, c_out, 1, equalized, gain=1.0) for c in channels)

    def rgb(self, h, stage: int):
        """Stage `stage`'s features to images in [-1, 1]."""
        return torch.tanh(self.to_rgb[stage](h))  # (B, C, r, r)

    def forward(self, z, y=None):
        stage, alpha = self.phase()
        h = self.blocks[0](self.cond(z, y))  # (B, c0, 4, 4)
        for block in self.blocks[1:stage]:
            h = block(h)  # (B, c_t, 4 * 2**t, ...): up to h_{s-1}
        if stage == 0:
            return self.rgb(h, 0)  # (B, C, 4, 4)
        x = self.rgb(self.blocks[stage](h), stage)  # (B, C, r, r): the new stage
        if alpha >= 1:
            return x
        coarse = upsample_to(self.rgb(h, stage - 1), x.shape[-1])  # (B, C, r, r): the previous stage, upsampled
        return (1 - alpha) * coarse + alpha * x


# ---------------------------------------------------------------- D
class DBlock(nn.Module):
    """D's stage s >= 1: two 3x3 convs with leaky ReLU (the second to the coarser stage's width), then 2x average pooling."""

    def __init__(self, c_in: int, c_out: int, equalized: bool, dropout: float):
        super().__init__()
        self.conv1 = conv(c_in, c_in, 3, equalized)
        self.conv2 = conv(c_in, c_out, 3, equalized)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, h):
        h = self.drop(F.leaky_relu(self.conv1(h), 0.2))
        h = self.drop(F.leaky_relu(self.conv2(h), 0.2))
        return F.avg_pool2d(h, 2)  # (B, c_out, H/2, W/2)


class DOutput(nn.Module):
    """D's stage 0, on 4x4 features: minibatch stddev (when on), 3x3 conv, dense; the features for DHead."""

    def __init__(self, channels: int, mbstd: int, equalized: bool, dropout: float):
        super().__init__()
        self.mbstd = MinibatchStdDev(mbstd) if mbstd else nn.Identity()
        self.conv = conv(channels + (1 if mbstd else 0), channels, 3, equalized)
        self.fc = linear(channels * 16, channels, equalized)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, h):
        h = self.drop(F.leaky_relu(self.conv(self.mbstd(h)), 0.2))  # (B, c0, 4, 4)
        return self.drop(F.leaky_relu(self.fc(h.flatten(1)), 0.2))  # (B, c0)


class ProgressiveDiscriminator(Growing):
    """D(x, y) -> (logits (B,), class logits or None, features), for images x at the current stage's resolution.

    Arguments as the other discriminators (pack, dropout, mbstd = group size or 0), plus width_max and
    equalized (see ProgressiveGenerator). Concat conditioning has one learned label map per stage, at
    that stage's resolution, beside each fromRGB; acgan and projection act in `DHead`, as elsewhere.
    """

    def __init__(self, in_shape, width=16, depth=0, num_classes=0, conditioning="none", embed_dim=32,
                 pack=1, dropout=0.0, mbstd=4, *, width_max=64, equalized=True):
        c_in, size = in_shape[0], in_shape[1]
        super().__init__(progressive_stages(size, depth))
        self.pack = pack
        channels = stage_widths(self.stages, width, width_max)
        sizes = [resolution(s) for s in range(self.stages)]
        self.conds = nn.ModuleList(d_conditioner(conditioning, num_classes, embed_dim, image_hw=(r, r)) for r in sizes)
        self.from_rgb = nn.ModuleList(
            conv(c_in * pack + cond.extra_channels, c, 1, equalized) for cond, c in zip(self.conds, channels))
        blocks = [DOutput(channels[0], mbstd, equalized, dropout)]
        blocks += [DBlock(channels[s], channels[s - 1], equalized, dropout) for s in range(1, self.stages)]
        self.blocks = nn.ModuleList(blocks)
        self.head = DHead(channels[0], num_classes, conditioning)

    def read(self, x, y, stage: int):
        """Images at stage `stage`'s resolution (plus its label map, with concat) to that stage's features."""
        return F.leaky_relu(self.from_rgb[stage](self.conds[stage](x, y)), 0.2)  # (B, c_s, r, r)

    def forward(self, x, y=None):
        stage, alpha = self.phase()
        if x.shape[-1] != resolution(stage):
            raise ValueError(f"D at stage {stage} reads {resolution(stage)} px images, got {x.shape[-1]} px "
                             "(show real images through fade_real, fakes straight from G)")
        x = pack_samples(x, self.pack)  # (B/k, kC, r, r)
        h = self.read(x, y, stage)  # (B/k, c_s, r, r)
        if stage > 0:
            h = self.blocks[stage](h)  # (B/k, c_{s-1}, r/2, r/2)
            if alpha < 1:
                coarse = self.read(downsample_to(x, x.shape[-1] // 2), y, stage - 1)  # the previous stage's input
                h = (1 - alpha) * coarse + alpha * h
        for t in range(stage - 1, 0, -1):
            h = self.blocks[t](h)  # down to (B/k, c0, 4, 4)
        return self.head(self.blocks[0](h), y)  # (B/k,) logits, class logits or None, features


# ---------------------------------------------------------------- the schedule
class Schedule:
    """Which stage and alpha a run is at, from the number of (real) images D has seen.

    Stage 0 is stable only, for `stable_images`. Every later stage first fades in over `fade_images`
    (alpha rising linearly from 0 to 1), then holds alpha = 1 for `stable_images`. After the last
    stage the run stays there at alpha = 1.
    """

    def __init__(self, stages: int, fade_images: int, stable_images: int):
        if stages < 1 or fade_images < 0 or stable_images < 0:
            raise ValueError(f"Schedule needs stages >= 1 and non-negative image counts, got "
                             f"stages={stages}, fade_images={fade_images}, stable_images={stable_images}")
        if stages > 1 and fade_images + stable_images == 0:
            raise ValueError("Schedule: fade_images + stable_images must be positive when there is more than one stage")
        self.stages, self.fade_images, self.stable_images = stages, fade_images, stable_images

    def stage_alpha(self, images_seen: int) -> tuple[int, float]:
        """(stage, alpha) after `images_seen` images."""
        if images_seen < self.stable_images or self.stages == 1:
            return 0, 1.0
        period = self.fade_images + self.stable_images  # one fade and one stable phase
        stage, into = divmod(images_seen - self.stable_images, period)
        stage += 1
        if stage >= self.stages:
            return self.stages - 1, 1.0
        return stage, (into / self.fade_images if into < self.fade_images else 1.0)

    def boundaries(self) -> list[int]:
        """The image counts where a phase ends and the next begins: stage 0's end, then each stage's fade end and stable end."""
        out = [self.stable_images]
        for _ in range(1, self.stages):
            out += [out[-1] + self.fade_images, out[-1] + self.fade_images + self.stable_images]
        return out

    def total_images(self) -> int:
        """Images until the last stage's stable phase ends."""
        return self.stable_images + (self.stages - 1) * (self.fade_images + self.stable_images)
