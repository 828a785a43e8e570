"""The networks: one module per architecture, and `build_models` choosing between them and applying
the architectural stabilisers (packing, dropout, minibatch stddev, virtual BN, spectral norm)."""
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm

from ..catalogue import OBJECTIVES
from ..layers import ConditionalBatchNorm
from .dcgan import DCGANDiscriminator, DCGANGenerator
from .mlp import MLPDiscriminator, MLPGenerator
from .progressive import ProgressiveDiscriminator, ProgressiveGenerator, upsample_to
from .resnet import ResNetDiscriminator, ResNetGenerator

NETWORKS = {
    "mlp": (MLPGenerator, MLPDiscriminator),
    "dcgan": (DCGANGenerator, DCGANDiscriminator),
    "resnet": (ResNetGenerator, ResNetDiscriminator),
    "progressive": (ProgressiveGenerator, ProgressiveDiscriminator),
}


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral norm (Miyato et al. 2018) on every linear, conv and embedding weight of `module`, except conditional
    batch norm's per-class gain and bias tables."""
    # Those tables scale and shift G's features per class rather than map them, so spectral norm's bound on a
    # layer's gain has nothing to act on; and normalising them breaks them: the bias table starts at zero (sigma 0,
    # 0 / 0: G is NaN at the first step) and the gain table of ones would shrink to 1 / sqrt(classes * channels).
    # Every other embedding (the label at G's or D's input, D's projection) is a linear map of the one-hot label
    # and keeps spectral norm.
    tables = {id(t) for m in module.modules() if isinstance(m, ConditionalBatchNorm) for t in (m.gamma, m.beta)}
    for m in list(module.modules()):
        if id(m) in tables:
            continue
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.Embedding)):
            # ConvTranspose2d keeps output channels in dim 1 of its weight
            spectral_norm(m, dim=1 if isinstance(m, nn.ConvTranspose2d) else 0)
    return module


def d_uses_batchnorm(cfg) -> bool:
    """DCGAN's D drops batch norm where it conflicts: per-sample gradient penalties, and spectral norm."""
    return not OBJECTIVES[cfg.loss].gradient_penalty and cfg.r1_gamma == 0 and not cfg.sn_d


def build_models(cfg, shape, num_classes):
    """G and D for a resolved config and data of `shape` ((2,) or (C, H, W)) with `num_classes` labels."""
    G_cls, D_cls = NETWORKS[cfg.model]
    cond = dict(num_classes=num_classes, conditioning=cfg.conditioning, embed_dim=cfg.embed_dim)
    d_extra = dict(pack=cfg.pack, dropout=cfg.d_dropout, mbstd=cfg.mbstd_group if cfg.mbstd else 0)
    g_extra = {}
    if cfg.model == "dcgan":
        d_extra["batchnorm"] = d_uses_batchnorm(cfg)
        g_extra["pad"] = d_extra["pad"] = (cfg.pad_to - shape[1]) // 2 if cfg.pad_to else 0
    if cfg.model == "mlp":
        g_extra["point_scale"] = d_extra["point_scale"] = cfg.point_scale or 1.0
    if cfg.model == "progressive":
        # width at the finest stage, doubling per coarser stage up to 4x: coarse stages are cheap
        g_extra.update(width_max=4 * cfg.g_width, equalized=cfg.equalized_lr, pixel_norm=cfg.pixel_norm)
        d_extra.update(width_max=4 * cfg.d_width, equalized=cfg.equalized_lr)
    G = G_cls(cfg.z_dim, shape, cfg.g_width, cfg.g_depth, vbn_ref=cfg.vbn_ref if cfg.vbn else 0, **cond, **g_extra)
    D = D_cls(shape, cfg.d_width, cfg.d_depth, **cond, **d_extra)
    if cfg.sn_g:
        apply_spectral_norm(G)
    if cfg.sn_d:
        apply_spectral_norm(D)
    return G, D


class AtFinalSize(nn.Module):
    """A progressive G seen from outside: its current stage's images upsampled (nearest) to the final size,
    so grids, samples and scores always have the data's shape. Other networks need no such view."""

    def __init__(self, G):
        super().__init__()
        self.G = G

    def forward(self, z, y=None):
        return upsample_to(self.G(z, y), self.G.out_size)  # (B, C, H, W) at the data's size


def sampling_view(G):
    """G as samplers and scorers call it: at the final size whatever stage a progressive G is at."""
    return AtFinalSize(G) if isinstance(G, ProgressiveGenerator) else G
