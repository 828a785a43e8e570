"""Sample-quality metrics computed during and after training.

2-D mixtures use the PacGAN/VEEGAN protocol: draw 2,500 samples; a sample is high quality when
it lies within 3 sigma of its nearest mode; a mode is captured when it is the nearest mode of at
least one high-quality sample; reverse KL compares the mode histogram of high-quality samples
with the uniform one. (Image metrics arrive with the project's own evaluators.)
"""
import math

import torch

N_POINTS = 2500  # the PacGAN/VEEGAN sample count


def mode_coverage(points: torch.Tensor, modes: torch.Tensor, sigma: float) -> dict:
    """Modes captured, high-quality share and reverse KL of (N, 2) points against (M, 2) modes."""
    dist = torch.cdist(points.float(), modes.float())  # (N, M)
    nearest_d, nearest = dist.min(dim=1)
    hq = nearest_d <= 3 * sigma
    counts = torch.bincount(nearest[hq], minlength=len(modes)).double()
    p = counts / counts.sum().clamp(min=1)
    q = 1.0 / len(modes)
    nz = p > 0
    reverse_kl = float((p[nz] * (p[nz] / q).log()).sum()) if nz.any() else math.inf
    return {
        "modes": int((counts > 0).sum()),
        "hq_share": float(hq.double().mean()),
        "reverse_kl": reverse_kl,
    }


@torch.no_grad()
def evaluate(G, z_dim: int, data, device, conditional: bool, seed: int = 0) -> dict:
    """The metrics that exist for this kind of data, from a fixed-seed batch of G's samples."""
    if data.kind != "points":
        return {}
    gen = torch.Generator(device=device).manual_seed(seed)
    z = torch.randn(N_POINTS, z_dim, generator=gen, device=device)
    y = torch.randint(0, data.num_classes, (N_POINTS,), generator=gen, device=device) if conditional else None
    return mode_coverage(G(z, y).float(), data.modes.to(device), data.sigma)
