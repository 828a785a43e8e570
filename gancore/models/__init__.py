"""The networks: one module per architecture, and `build_models` choosing between them."""
from .dcgan import DCGANDiscriminator, DCGANGenerator
from .mlp import MLPDiscriminator, MLPGenerator

NETWORKS = {
    "mlp": (MLPGenerator, MLPDiscriminator),
    "dcgan": (DCGANGenerator, DCGANDiscriminator),
}


def build_models(cfg, shape, num_classes):
    """G and D for a resolved config and data of `shape` ((2,) or (C, H, W)) with `num_classes` labels."""
    G_cls, D_cls = NETWORKS[cfg.model]
    cond = dict(num_classes=num_classes, conditioning=cfg.conditioning, embed_dim=cfg.embed_dim)
    G = G_cls(cfg.z_dim, shape, cfg.g_width, cfg.g_depth, **cond)
    D = D_cls(shape, cfg.d_width, cfg.d_depth, **cond)
    return G, D
