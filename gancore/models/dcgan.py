"""DCGAN (Radford et al. 2016): transposed-conv G and strided-conv D with batch norm.

Depth = number of 2x resolution stages. A 28px image has 2 (7 -> 14 -> 28), 32px has 3
(4 -> 8 -> 16 -> 32). Width = channels at the finest hidden layer; each coarser stage doubles it.
`pad` (config pad_to): both networks work at size + 2 * pad, so a 28px dataset can have the 3 stages of
32px: G's images are cropped to the data's size, D's inputs padded with -1 (black) around it. On MNIST
the digits sit in the central 20 px, so nothing G draws is lost and D sees the same frame on real and fake.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..conditioning import DHead, d_conditioner, g_conditioner
from ..layers import MinibatchStdDev, ReferenceBatch, make_norm, pack_samples


class DCGANGenerator(nn.Module):
    def __init__(self, z_dim, out_shape, width, depth, num_classes=0, conditioning="none", embed_dim=32, vbn_ref=0,
                 pad=0):
        super().__init__()
        c_out, size = out_shape[0], out_shape[1] + 2 * pad
        self.pad = pad
        self.base = size >> depth  # spatial size of the first feature map
        self.c0 = width * 2 ** (depth - 1)
        self.cond = g_conditioner(conditioning, num_classes, embed_dim)
        self.ref = ReferenceBatch(vbn_ref, z_dim, num_classes) if vbn_ref else None
        self.fc = nn.Linear(z_dim + self.cond.extra_dim, self.c0 * self.base**2, bias=False)
        channels = [self.c0 // 2**i for i in range(depth)]  # c0, c0/2, ..., width
        self.norms = nn.ModuleList(make_norm(c, conditioning, num_classes, vbn_ref) for c in channels)
        self.convs = nn.ModuleList(nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False) for c in channels[:-1])
        self.to_image = nn.ConvTranspose2d(channels[-1], c_out, 4, 2, 1)

    def forward(self, z, y=None):
        if self.ref is not None:
            z, y = self.ref.prepend(z, y)
        h = self.fc(self.cond(z, y)).view(-1, self.c0, self.base, self.base)  # (B, c0, b, b)
        h = torch.relu(self.norms[0](h, y))
        for conv, norm in zip(self.convs, self.norms[1:]):
            h = torch.relu(norm(conv(h), y))  # doubles H and W, halves channels
        x = torch.tanh(self.to_image(h))  # (B, C, H + 2 pad, W + 2 pad)
        if self.pad:
            x = x[..., self.pad : -self.pad, self.pad : -self.pad]  # (B, C, H, W): the data's size
        return x[self.ref.n :] if self.ref is not None else x


class DCGANDiscriminator(nn.Module):
    def __init__(self, in_shape, width, depth, num_classes=0, conditioning="none", embed_dim=32,
                 pack=1, dropout=0.0, mbstd=0, batchnorm=True, pad=0):
        super().__init__()
        c_in, size = in_shape[0], in_shape[1] + 2 * pad
        self.pack, self.pad = pack, pad
        self.cond = d_conditioner(conditioning, num_classes, embed_dim, image_hw=(size, size))
        layers, c = [], c_in * pack + self.cond.extra_channels
        for i in range(depth):
            c_next = width * 2**i
            layers.append(nn.Conv2d(c, c_next, 4, 2, 1, bias=i == 0))
            if i > 0 and batchnorm:  # no batch norm on the first layer, as in DCGAN
                layers.append(nn.BatchNorm2d(c_next))
            layers.append(nn.LeakyReLU(0.2))
            if dropout:
                layers.append(nn.Dropout(dropout))
            c = c_next
        if mbstd:
            layers.append(MinibatchStdDev(mbstd))
            c += 1
        self.body = nn.Sequential(*layers)
        self.head = DHead(c * (size >> depth) ** 2, num_classes, conditioning)

    def forward(self, x, y=None):
        if self.pad:
            x = F.pad(x, (self.pad,) * 4, value=-1.0)  # (B, C, H + 2 pad, W + 2 pad)
        x = pack_samples(x, self.pack)  # (B/k, k*C, H, W)
        h = self.body(self.cond(x, y))  # (B/k, c, b, b)
        return self.head(h.flatten(1), y)  # (B/k,) logits, class logits or None, features
