"""Class conditioning: how a label y enters G and D.

| method     | G                                   | D                                                       |
|------------|-------------------------------------|---------------------------------------------------------|
| none       | z only                              | x only                                                  |
| concat     | [z, embed(y)] (Mirza & Osindero 2014) | label channel (conv) or [x, embed(y)] (MLP) at the input |
| acgan      | [z, embed(y)]                       | x only; an auxiliary head classifies (Odena et al. 2017) |
| projection | conditional batch norm (layers.py)  | logit + <embed(y), features> (Miyato & Koyama 2018)     |

Networks call `g_conditioner` on (z, y) first thing, `d_conditioner` on (x, y) first thing, and end
D with `DHead`, which returns (logits, class_logits or None, features): the features are D's last hidden
layer, what the head read (feature matching uses them). D always receives y (None when the run is
unconditional); each side ignores what its method does not use.

Each method also owns its extra loss terms: `METHODS[name].d_loss(cfg, real_cls, fake_cls, y)` and
`.g_loss(cfg, fake_cls, y)` return (term to add, {metric name: value to log}); the trainer adds them
without knowing which method runs. A new method is one entry in METHODS plus its modules here.
"""
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


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
    """What G does with y at its input (projection conditions G through its batch norms instead)."""
    return ConcatG(num_classes, embed_dim) if METHODS[method].g_input == "concat" else NoLabelG()


def d_conditioner(method: str, num_classes: int, embed_dim: int, image_hw=None) -> nn.Module:
    """What D does with y at its input (acgan and projection use y only in DHead)."""
    return ConcatD(num_classes, embed_dim, image_hw) if METHODS[method].d_input == "concat" else NoLabelD()


class DHead(nn.Module):
    """D's last layer on features h (B, F): the real/fake logit, plus the projection term or the ACGAN classifier.
    Returns (logits (B,), class logits (B, K) or None, h)."""

    def __init__(self, features: int, num_classes: int, method: str):
        super().__init__()
        self.out = nn.Linear(features, 1)
        head = METHODS[method].d_head
        self.embed = nn.Embedding(num_classes, features) if head == "projection" else None
        self.classifier = nn.Linear(features, num_classes) if head == "classifier" else None

    def forward(self, h, y=None):
        logits = self.out(h).squeeze(1)  # (B,)
        if self.embed is not None:
            logits = logits + (self.embed(y) * h).sum(1)  # inner product with the class embedding
        class_logits = self.classifier(h) if self.classifier is not None else None  # (B, K)
        return logits, class_logits, h


# ---------------------------------------------------------------- each method's extra loss terms
def no_extra_loss(cfg, *tensors):
    return 0.0, {}


def acgan_d_loss(cfg, real_cls, fake_cls, y):
    """D learns to classify real images (and, with acgan_fake_weight, fakes by the label they were made for)."""
    loss = F.cross_entropy(real_cls.float(), y)
    if cfg.acgan_fake_weight:
        loss = loss + cfg.acgan_fake_weight * F.cross_entropy(fake_cls.float(), y)
    return cfg.acgan_weight * loss, {"loss_cls_d": loss}


def acgan_g_loss(cfg, fake_cls, y):
    """G is rewarded when D's classifier gives its fakes the label they were made for."""
    loss = F.cross_entropy(fake_cls.float(), y)
    return cfg.acgan_weight * loss, {"loss_cls_g": loss}


@dataclass(frozen=True)
class Method:
    g_input: str  # "concat": [z, embed(y)] at G's input; "": nothing
    d_input: str  # "concat": a label channel / features at D's input; "": nothing
    d_head: str  # "projection": + <embed(y), h>; "classifier": an auxiliary class head; "": the logit only
    g_norm_conditional: bool  # G's batch norms take y (conditional BN)
    d_loss: Callable = no_extra_loss  # (cfg, real_cls, fake_cls, y) -> (term, logs)
    g_loss: Callable = no_extra_loss  # (cfg, fake_cls, y) -> (term, logs)


METHODS = {
    "none": Method("", "", "", False),
    "concat": Method("concat", "concat", "", False),
    "acgan": Method("concat", "", "classifier", False, d_loss=acgan_d_loss, g_loss=acgan_g_loss),
    "projection": Method("", "", "projection", True),
}
