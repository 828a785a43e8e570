"""SNGAN-style residual G and D (Miyato et al. 2018; Gulrajani et al. 2017), for 16-64 px images.

G: linear -> (width, b, b), then `depth` up-blocks (BN-ReLU-up-conv3-BN-ReLU-conv3 + up-conv1 shortcut),
then BN-ReLU-conv3-tanh. D: an "optimised" first down-block, depth-1 down-blocks, one block at the
final resolution, ReLU, global sum pooling, then the head. Width = channels of every block.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..conditioning import DHead, d_conditioner, g_conditioner
from ..layers import MinibatchStdDev, ReferenceBatch, make_norm, pack_samples, upsample


class GBlock(nn.Module):
    def __init__(self, c_in, c_out, conditioning, num_classes, vbn_ref):
        super().__init__()
        self.norm1 = make_norm(c_in, conditioning, num_classes, vbn_ref)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.norm2 = make_norm(c_out, conditioning, num_classes, vbn_ref)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x, y):
        h = self.conv1(upsample(torch.relu(self.norm1(x, y))))
        h = self.conv2(torch.relu(self.norm2(h, y)))
        return h + self.shortcut(upsample(x))  # (B, c_out, 2H, 2W)


class DBlock(nn.Module):
    def __init__(self, c_in, c_out, down: bool, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if (c_in != c_out or down) else None

    def forward(self, x):
        h = x if self.first else torch.relu(x)  # the first block sees the image: no ReLU before it
        h = self.conv2(torch.relu(self.conv1(h)))
        return (F.avg_pool2d(h, 2) if self.down else h) + self.skip(x)

    def skip(self, x):
        if self.first:  # pool, then project: cheaper on the full-resolution input (as in SNGAN)
            return self.shortcut(F.avg_pool2d(x, 2))
        if self.shortcut is not None:
            x = self.shortcut(x)
        return F.avg_pool2d(x, 2) if self.down else x


class ResNetGenerator(nn.Module):
    def __init__(self, z_dim, out_shape, width, depth, num_classes=0, conditioning="none", embed_dim=32, vbn_ref=0):
        super().__init__()
        c_out, size = out_shape[0], out_shape[1]
        self.base, self.width = size >> depth, width
        self.cond = g_conditioner(conditioning, num_classes, embed_dim)
        self.ref = ReferenceBatch(vbn_ref, z_dim, num_classes) if vbn_ref else None
        self.fc = nn.Linear(z_dim + self.cond.extra_dim, width * self.base**2)
        self.blocks = nn.ModuleList(GBlock(width, width, conditioning, num_classes, vbn_ref) for _ in range(depth))
        self.norm = make_norm(width, conditioning, num_classes, vbn_ref)
        self.to_image = nn.Conv2d(width, c_out, 3, 1, 1)

    def forward(self, z, y=None):
        if self.ref is not None:
            z, y = self.ref.prepend(z, y)
        h = self.fc(self.cond(z, y)).view(-1, self.width, self.base, self.base)  # (B, w, b, b)
        for block in self.blocks:
            h = block(h, y)
        x = torch.tanh(self.to_image(torch.relu(self.norm(h, y))))  # (B, C, H, W)
        return x[self.ref.n :] if self.ref is not None else x


class ResNetDiscriminator(nn.Module):
    def __init__(self, in_shape, width, depth, num_classes=0, conditioning="none", embed_dim=32,
                 pack=1, dropout=0.0, mbstd=0):
        super().__init__()
        c_in, size = in_shape[0], in_shape[1]
        self.pack = pack
        self.cond = d_conditioner(conditioning, num_classes, embed_dim, image_hw=(size, size))
        c = c_in * pack + self.cond.extra_channels
        blocks = [DBlock(c, width, down=True, first=True)]
        blocks += [DBlock(width, width, down=True) for _ in range(depth - 1)]
        blocks += [DBlock(width, width, down=False)]
        self.blocks = nn.Sequential(*blocks)
        self.mbstd = MinibatchStdDev(mbstd) if mbstd else None
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = DHead(width + (1 if mbstd else 0), num_classes, conditioning)

    def forward(self, x, y=None):
        x = pack_samples(x, self.pack)  # (B/k, k*C, H, W)
        h = torch.relu(self.blocks(self.cond(x, y)))  # (B/k, w, b, b)
        if self.mbstd is not None:
            h = self.mbstd(h)
        h = self.dropout(h.sum((2, 3)))  # global sum pooling: (B/k, w)
        return self.head(h, y)
