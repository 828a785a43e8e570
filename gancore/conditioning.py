"""Class conditioning: how a label y enters G and D.

Each method is a pair of small modules, one for G's input and one for D's input, that the
networks call first thing in `forward`. `none` passes inputs through; `concat` (cGAN, Mirza &
Osindero 2014) joins a learned label embedding to z and, for D, to the image as an extra
channel (conv nets) or to the flattened input (MLPs).
"""
import torch
import torch.nn as nn


class NoLabelG(nn.Module):
    extra_dim = 0

    def forward(self, z, y):
        return z


class NoLabelD(nn.Module):
    extra_channels = 0
    extra_dim = 0

    def forward(self, x, y):
        return x


class ConcatG(nn.Module):
    def __init__(self, num_classes: int, embed_dim: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.extra_dim = embed_dim

    def forward(self, z, y):
        return torch.cat([z, self.embed(y)], dim=1)  # (B, z_dim + embed_dim)


class ConcatD(nn.Module):
    """Images (B, C, H, W) gain one label channel; flat inputs (B, F) gain embed_dim features."""

    def __init__(self, num_classes: int, embed_dim: int, image_hw: tuple[int, int] | None):
        super().__init__()
        self.image_hw = image_hw
        if image_hw:  # a learned H*W map per class, appended as a channel
            self.embed = nn.Embedding(num_classes, image_hw[0] * image_hw[1])
            self.extra_channels, self.extra_dim = 1, 0
        else:
            self.embed = nn.Embedding(num_classes, embed_dim)
            self.extra_channels, self.extra_dim = 0, embed_dim

    def forward(self, x, y):
        if self.image_hw:
            return torch.cat([x, self.embed(y).view(-1, 1, *self.image_hw)], dim=1)  # (B, C+1, H, W)
        return torch.cat([x.flatten(1), self.embed(y)], dim=1)  # (B, F + embed_dim)


def g_conditioner(method: str, num_classes: int, embed_dim: int) -> nn.Module:
    return ConcatG(num_classes, embed_dim) if method == "concat" else NoLabelG()


def d_conditioner(method: str, num_classes: int, embed_dim: int, image_hw=None) -> nn.Module:
    return ConcatD(num_classes, embed_dim, image_hw) if method == "concat" else NoLabelD()
