"""DCGAN (Radford et al. 2016): transposed-conv G and strided-conv D with batch norm.

Depth = number of 2x resolution stages. A 28px image has 2 (7 -> 14 -> 28), 32px has 3
(4 -> 8 -> 16 -> 32). Width = channels at the finest hidden layer; each coarser stage doubles it.
"""
import torch.nn as nn

from ..conditioning import d_conditioner, g_conditioner


def max_stages(size: int) -> int:
    """How many times `size` halves before reaching a 3..7 px base; 0 when it never does."""
    n = 0
    while size > 7 and size % 2 == 0:
        size //= 2
        n += 1
    return n if 3 <= size <= 7 and n > 0 else 0


class DCGANGenerator(nn.Module):
    def __init__(self, z_dim, out_shape, width, depth, num_classes=0, conditioning="none", embed_dim=32):
        super().__init__()
        c_out, size = out_shape[0], out_shape[1]
        self.base = size >> depth  # spatial size of the first feature map
        self.c0 = width * 2 ** (depth - 1)
        self.cond = g_conditioner(conditioning, num_classes, embed_dim)
        self.fc = nn.Sequential(
            nn.Linear(z_dim + self.cond.extra_dim, self.c0 * self.base**2, bias=False),
            nn.BatchNorm1d(self.c0 * self.base**2),
            nn.ReLU(),
        )
        blocks, c = [], self.c0
        for _ in range(depth - 1):
            blocks += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU()]
            c //= 2
        blocks += [nn.ConvTranspose2d(c, c_out, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*blocks)

    def forward(self, z, y=None):
        h = self.fc(self.cond(z, y)).view(-1, self.c0, self.base, self.base)  # (B, c0, b, b)
        return self.net(h)  # (B, C, H, W)


class DCGANDiscriminator(nn.Module):
    def __init__(self, in_shape, width, depth, num_classes=0, conditioning="none", embed_dim=32):
        super().__init__()
        c_in, size = in_shape[0], in_shape[1]
        self.cond = d_conditioner(conditioning, num_classes, embed_dim, image_hw=(size, size))
        layers, c = [], c_in + self.cond.extra_channels
        for i in range(depth):
            c_next = width * 2**i
            layers.append(nn.Conv2d(c, c_next, 4, 2, 1, bias=i == 0))
            if i > 0:  # no batch norm on the first layer, as in DCGAN
                layers.append(nn.BatchNorm2d(c_next))
            layers.append(nn.LeakyReLU(0.2))
            c = c_next
        self.net = nn.Sequential(*layers)
        self.out = nn.Linear(c * (size >> depth) ** 2, 1)

    def forward(self, x, y=None):
        h = self.net(self.cond(x, y))  # (B, c, b, b)
        return self.out(h.flatten(1)).squeeze(1)  # (B,) logits
