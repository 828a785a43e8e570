"""Fully connected G and D, for 2-D points and for small images (flattened)."""
import math

import torch.nn as nn

from ..conditioning import DHead, d_conditioner, g_conditioner
from ..layers import MinibatchStdDev, pack_samples


class MLPGenerator(nn.Module):
    def __init__(self, z_dim, out_shape, width, depth, num_classes=0, conditioning="none", embed_dim=32, vbn_ref=0):
        super().__init__()
        self.out_shape = tuple(out_shape)  # (2,) or (C, H, W)
        self.cond = g_conditioner(conditioning, num_classes, embed_dim)
        dims = [z_dim + self.cond.extra_dim] + [width] * depth
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(width, math.prod(self.out_shape)))
        if len(self.out_shape) == 3:
            layers.append(nn.Tanh())  # images live in [-1, 1]; points are unbounded
        self.net = nn.Sequential(*layers)

    def forward(self, z, y=None):
        return self.net(self.cond(z, y)).view(-1, *self.out_shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, in_shape, width, depth, num_classes=0, conditioning="none", embed_dim=32,
                 pack=1, dropout=0.0, mbstd=0):
        super().__init__()
        self.pack = pack
        self.cond = d_conditioner(conditioning, num_classes, embed_dim, image_hw=None)
        dims = [math.prod(in_shape) * pack + self.cond.extra_dim] + [width] * depth
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)] + ([nn.Dropout(dropout)] if dropout else [])
        if mbstd:
            layers.append(MinibatchStdDev(mbstd))
        self.body = nn.Sequential(*layers)
        self.head = DHead(width + (1 if mbstd else 0), num_classes, conditioning)

    def forward(self, x, y=None):
        x = pack_samples(x.flatten(1), self.pack)  # (B/k, k*F)
        return self.head(self.body(self.cond(x, y)), y)  # (B/k,) logits, class logits or None
