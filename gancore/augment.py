"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to every image D sees,
real and fake alike, so D cannot memorise a small dataset and G still gets gradients through them.

Policies: `color` (brightness, saturation, contrast), `translation` (shift by up to 1/8 of the
size, zero padding), `cutout` (a zeroed square of half the size). Images are (B, C, H, W) in [-1, 1].
Random draws use the global torch RNG on x's device, which checkpoints save and restore.
"""
import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def color(x):
    b = x.shape[0]
    x = x + (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) - 0.5)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) * 2) + mean  # saturation
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype) + 0.5) + mean  # contrast


def translation(x, ratio: float = 0.125):
    b, _, h, w = x.shape
    sh, sw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    dy = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    rows = (torch.arange(h, device=x.device).view(1, h, 1) + dy + 1).clamp(0, h + 1)  # (B, H, 1) into padded
    cols = (torch.arange(w, device=x.device).view(1, 1, w) + dx + 1).clamp(0, w + 1)  # (B, 1, W)
    padded = F.pad(x, [1, 1, 1, 1])  # out-of-range reads land on the zero border
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (B, C, H, W)


def cutout(x, ratio: float = 0.5):
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    top = torch.randint(0, h - ch + 1, (b, 1, 1), device=x.device)  # square's top-left corner
    left = torch.randint(0, w - cw + 1, (b, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)  # (B, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)  # (B, C, H, W), the square set to 0


AUGMENTATIONS = {"color": color, "translation": translation, "cutout": cutout}


def parse_policy(policy: str) -> list[str]:
    return [p.strip() for p in policy.split(",") if p.strip()]


def diff_augment(x, policy: list[str]):
    for name in policy:
        x = AUGMENTATIONS[name](x)
    return x
