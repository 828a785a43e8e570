"""The networks: one module per architecture, and `build_models` choosing between them and applying
the architectural stabilisers (packing, dropout, minibatch stddev, virtual BN, spectral norm)."""
import torch.nn as nn
from torch.nn.utils.parametrizations import spectral_norm

from .dcgan import DCGANDiscriminator, DCGANGenerator
from .mlp import MLPDiscriminator, MLPGenerator
from .resnet import ResNetDiscriminator, ResNetGenerator

NETWORKS = {
    "mlp": (MLPGenerator, MLPDiscriminator),
    "dcgan": (DCGANGenerator, DCGANDiscriminator),
    "resnet": (ResNetGenerator, ResNetDiscriminator),
}


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectral norm (Miyato et al. 2018) on every linear, conv and embedding weight of `module`."""
    for m in list(module.modules()):
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.Embedding)):
            # ConvTranspose2d keeps output channels in dim 1 of its weight
            spectral_norm(m, dim=1 if isinstance(m, nn.ConvTranspose2d) else 0)
    return module


def d_uses_batchnorm(cfg) -> bool:
    """DCGAN's D drops batch norm where it conflicts: per-sample gradient penalties, and spectral norm."""
    return cfg.loss != "wgan-gp" and cfg.r1_gamma == 0 and not cfg.sn_d


def build_models(cfg, shape, num_classes):
    """G and D for a resolved config and data of `shape` ((2,) or (C, H, W)) with `num_classes` labels."""
    G_cls, D_cls = NETWORKS[cfg.model]
    cond = dict(num_classes=num_classes, conditioning=cfg.conditioning, embed_dim=cfg.embed_dim)
    d_extra = dict(pack=cfg.pack, dropout=cfg.d_dropout, mbstd=cfg.mbstd_group if cfg.mbstd else 0)
    g_extra = {}
    if cfg.model == "dcgan":
        d_extra["batchnorm"] = d_uses_batchnorm(cfg)
    if cfg.model == "mlp":
        g_extra["point_scale"] = d_extra["point_scale"] = cfg.point_scale or 1.0
    G = G_cls(cfg.z_dim, shape, cfg.g_width, cfg.g_depth, vbn_ref=cfg.vbn_ref if cfg.vbn else 0, **cond, **g_extra)
    D = D_cls(shape, cfg.d_width, cfg.d_depth, **cond, **d_extra)
    if cfg.sn_g:
        apply_spectral_norm(G)
    if cfg.sn_d:
        apply_spectral_norm(D)
    return G, D
