"""Fully connected G and D, for 2-D points and for small images (flattened)."""
import math

import torch.nn as nn

from ..conditioning import d_conditioner, g_conditioner


class MLPGenerator(nn.Module):
    def __init__(self, z_dim, out_shape, width, depth, num_classes=0, conditioning="none", embed_dim=32):
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
    def __init__(self, in_shape, width, depth, num_classes=0, conditioning="none", embed_dim=32):
        super().__init__()
        self.cond = d_conditioner(conditioning, num_classes, embed_dim, image_hw=None)
        dims = [math.prod(in_shape) + self.cond.extra_dim] + [width] * depth
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x, y=None):
        return self.net(self.cond(x.flatten(1), y)).squeeze(1)  # (B,) logits
