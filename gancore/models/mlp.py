"""Fully connected G and D, for 2-D points and for small images (flattened)."""
import math

import torch.nn as nn

from ..conditioning import DHead, d_conditioner, g_conditioner
from ..layers import MinibatchStdDev, pack_samples


class MLPGenerator(nn.Module):
    def __init__(self, z_dim, out_shape, width, depth, num_classes=0, conditioning="none", embed_dim=32, vbn_ref=0,
                 point_scale=1.0):
        super().__init__()
        self.out_shape = tuple(out_shape)  # (2,) or (C, H, W)
        self.scale = point_scale  # points: the net works in units of the data's std (the grid spans +-4)
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
        out = self.net(self.cond(z, y)).view(-1, *self.out_shape)
        return out * self.scale if len(self.out_shape) == 1 else out


class MLPDiscriminator(nn.Module):
    def __init__(self, in_shape, width, depth, num_classes=0, conditioning="none", embed_dim=32,
                 pack=1, dropout=0.0, mbstd=0, point_scale=1.0):
        super().__init__()
        self.pack, self.scale = pack, (point_scale if len(in_shape) == 1 else 1.0)
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
        x = pack_samples(x.flatten(1) / self.scale, self.pack)  # (B/k, k*F)
        return self.head(self.body(self.cond(x, y)), y)  # (B/k,) logits, class logits or None, features
