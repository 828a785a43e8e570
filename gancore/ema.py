"""The exponential moving average of G's weights, the G that samples, evaluations and checkpoints use.

`update` blends G into its average after every G step; `settle_norms` gives the average batch-norm statistics of
its own before it is used (docs/ARCHITECTURE.md, "The training step", 3).
"""
import torch

SETTLE_BATCHES, SETTLE_BATCH = 16, 256  # the samples behind the EMA G's own batch-norm statistics: 16 x 256


@torch.no_grad()
def update(G_ema, G, decay: float, rampup: float, step: int) -> None:
    """Blend G's weights into the average, over about 1/(1 - decay) steps. Early on G moves fast and so long an
    average would drag in stale weights: the horizon is capped at rampup * step (as StyleGAN2-ADA does)."""
    horizon = 1 / (1 - decay)
    if rampup > 0:
        horizon = min(horizon, rampup * step)
    torch._foreach_lerp_(list(G_ema.parameters()), list(G.parameters()), 1 / max(horizon, 1.0))
    # batch-norm statistics follow G directly (this rank's; settle_norms replaces them before any use)
    buffers = list(G_ema.buffers())
    if buffers:
        torch._foreach_copy_(buffers, list(G.buffers()))


@torch.no_grad()
def settle_norms(G_ema, z_dim: int, num_classes: int, seed: int, device, autocast) -> None:
    """Give the EMA G batch-norm statistics of its own ("standing statistics", Brock et al. 2019).

    update copies G's running statistics, which describe G's activations, not those of the averaged weights;
    sampling the EMA G with them costs quality (an earlier shipped demo: FID 0.243 with G's, 0.209 with its own).
    Measured on 16 x 256 samples from a fixed noise stream (seed + 4), so they depend on the EMA weights alone (a
    resumed run settles them the same) and no training stream is touched. num_classes: labels drawn for a
    conditional G, 0 for an unconditional one; autocast: the training's autocast context."""
    norms = [m for m in G_ema.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
             and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the batches below
    gen = torch.Generator().manual_seed(seed + 4)
    G_ema.train()
    try:
        for _ in range(SETTLE_BATCHES):
            z = torch.randn(SETTLE_BATCH, z_dim, generator=gen).to(device)
            y = torch.randint(0, num_classes, (SETTLE_BATCH,), generator=gen).to(device) if num_classes else None
            with autocast():
                G_ema(z, y)
    finally:
        G_ema.eval()
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
