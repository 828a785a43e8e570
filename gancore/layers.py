"""Building blocks shared by the networks: G's normalisation layers, minibatch stddev, packing.

Every G normalisation layer takes `(x, y)` so that conditional batch norm can use the label;
the others ignore it. `make_norm` picks one from the config.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .conditioning import METHODS


class BatchNorm(nn.Module):
    """Plain batch norm with the (x, y) signature of the conditional layers."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x, y=None):
        return self.bn(x)


class ConditionalBatchNorm(nn.Module):
    """Batch norm whose scale and shift are looked up per class (de Vries et al. 2017; Miyato & Koyama 2018).

    The two tables (`gamma`, `beta`) are left out of spectral norm: see `models.apply_spectral_norm`."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.gamma = nn.Embedding(num_classes, channels)
        self.beta = nn.Embedding(num_classes, channels)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x, y):
        h = self.bn(x)  # (B, C, H, W)
        return h * self.gamma(y)[:, :, None, None] + self.beta(y)[:, :, None, None]


class VirtualBatchNorm(nn.Module):
    """Virtual batch norm (Salimans et al. 2016): each example is normalised with the statistics of a
    fixed reference batch plus itself, so its output never depends on the rest of the minibatch.

    The generator puts its reference batch in the first `n_ref` rows of every forward pass.
    """

    def __init__(self, channels: int, n_ref: int, eps: float = 1e-5):
        super().__init__()
        self.n_ref, self.eps = n_ref, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x, y=None):
        ref = x[: self.n_ref]
        mean_ref, sq_ref = ref.mean((0, 2, 3)), ref.pow(2).mean((0, 2, 3))  # (C,)
        w = 1.0 / (self.n_ref + 1)  # the example's own share
        mean = (1 - w) * mean_ref + w * x.mean((2, 3))  # (B, C)
        var = (1 - w) * sq_ref + w * x.pow(2).mean((2, 3)) - mean.pow(2)
        h = (x - mean[:, :, None, None]) * torch.rsqrt(var.clamp(min=0)[:, :, None, None] + self.eps)
        return h * self.weight[:, None, None] + self.bias[:, None, None]


def make_norm(channels: int, conditioning: str, num_classes: int, vbn_ref: int = 0) -> nn.Module:
    """G's normalisation: conditional BN when the conditioning method asks for it (projection), virtual BN
    when asked, else BN."""
    if METHODS[conditioning].g_norm_conditional:
        return ConditionalBatchNorm(channels, num_classes)
    if vbn_ref:
        return VirtualBatchNorm(channels, vbn_ref)
    return BatchNorm(channels)


class MinibatchStdDev(nn.Module):
    """Appends the average feature std over groups of samples as one extra feature (Karras et al. 2018).

    A collapsed generator produces batches with low variety; this lets D see it.
    Works on (B, C, H, W) (adds a channel) and on (B, F) (adds a feature).
    """

    def __init__(self, group: int = 4):
        super().__init__()
        self.group = group

    def forward(self, x):
        b = x.shape[0]
        g = min(self.group, b)
        while b % g:  # largest group size <= self.group that divides the batch
            g -= 1
        grouped = x.reshape(g, b // g, *x.shape[1:])  # (G, B/G, ...): sample i belongs to group i % (B/G)
        # in float32: under fp16 autocast 1e-8 rounds to 0, and sqrt's gradient at zero variance is inf
        std = (grouped.float().var(dim=0, unbiased=False) + 1e-8).sqrt()  # (B/G, ...)
        stat = std.flatten(1).mean(1).to(x.dtype)  # (B/G,)
        stat = stat.repeat(g)  # (B,), back in the order of x
        if x.dim() == 4:
            return torch.cat([x, stat.view(b, 1, 1, 1).expand(b, 1, *x.shape[2:])], dim=1)
        return torch.cat([x, stat.view(b, 1)], dim=1)


def pack_samples(x: torch.Tensor, k: int) -> torch.Tensor:
    """PacGAN (Lin et al. 2018): D judges k samples at once. (B, C, H, W) -> (B/k, kC, H, W); (B, F) -> (B/k, kF)."""
    if k == 1:
        return x
    return x.reshape(x.shape[0] // k, k * x.shape[1], *x.shape[2:])


def upsample(x):
    return F.interpolate(x, scale_factor=2, mode="nearest")


class ReferenceBatch(nn.Module):
    """The fixed reference batch of virtual batch norm: noise (and labels) drawn once, at build time."""

    def __init__(self, n: int, z_dim: int, num_classes: int):
        super().__init__()
        self.n = n
        self.register_buffer("z", torch.randn(n, z_dim))
        self.register_buffer("y", torch.randint(0, max(num_classes, 1), (n,)))

    def prepend(self, z, y):
        """Put the reference batch in front: (n + B, z_dim) noise and labels."""
        return torch.cat([self.z.to(z.dtype), z]), (torch.cat([self.y, y]) if y is not None else None)
