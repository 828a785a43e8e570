"""Penalties on D's gradients, each a plain function returning a scalar to add to D's loss.

`D` here is any callable mapping a batch to (logits, ...), as the networks return.

Under fp16 autocast both penalties take D's gradient with its output scaled by the grad scaler and
unscale it after, as PyTorch's AMP recipe for gradient penalties does: small gradients would
otherwise underflow to zero in fp16 before the penalty sees them.
"""
import torch


def input_gradient(logits, x, scaler=None):
    """d(sum of logits)/dx with the graph kept (for a penalty); scaled and unscaled by `scaler` when it is on."""
    if scaler is None or not scaler.is_enabled():
        (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
        return grad
    (grad,) = torch.autograd.grad(scaler.scale(logits.sum()), x, create_graph=True)
    return grad.float() / scaler._get_scale_async()  # the scale as a device tensor: get_scale() would sync


def gradient_penalty(D, real, fake, y=None, scaler=None):
    """WGAN-GP (Gulrajani et al. 2017): E[(||grad D(x_hat)||_2 - 1)^2] on random interpolates of real and fake.

    Conditional runs pass the real labels, which the D step also gives to its fakes, so each
    interpolate lies between a real and a fake of the same class.
    """
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    logits = D(x_hat, y)[0]
    grad = input_gradient(logits, x_hat, scaler)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def r1_penalty(D, real, y=None, scaler=None):
    """R1 (Mescheder et al. 2018): E[||grad D(x)||^2] on real data, times gamma/2 by the caller."""
    x = real.detach().requires_grad_(True)
    logits = D(x, y)[0]
    grad = input_gradient(logits, x, scaler)
    return grad.flatten(1).pow(2).sum(1).mean()


@torch.no_grad()
def clip_weights(module, c: float):
    """WGAN weight clipping: every parameter of the critic into [-c, c]."""
    for p in module.parameters():
        p.clamp_(-c, c)
