"""GAN objectives as plain functions of D's raw outputs ("logits").

Each objective is a pair (d_loss(real, fake), g_loss(fake)) of mean losses over the batch.
`d_output` turns logits into the number a user reads as D(x): a probability for the
cross-entropy objectives, the raw score for the others.
"""
import torch
import torch.nn.functional as F


# Goodfellow et al. 2014: D maximises log D(x) + log(1 - D(G(z))); log sigmoid(l) = -softplus(-l).
def d_minimax(real, fake):
    return F.softplus(-real).mean() + F.softplus(fake).mean()


def g_minimax(fake):
    # G minimises log(1 - D(G(z))) = -softplus(l): the original, saturating form (weak gradients early).
    return -F.softplus(fake).mean()


def g_nonsaturating(fake):
    # G maximises log D(G(z)) instead: same fixed point, strong gradients when D rejects fakes.
    return F.softplus(-fake).mean()


# Mao et al. 2017 (LSGAN): least squares towards targets 1 (real) and 0 (fake).
def d_lsgan(real, fake):
    return 0.5 * ((real - 1).pow(2).mean() + fake.pow(2).mean())


def g_lsgan(fake):
    return 0.5 * (fake - 1).pow(2).mean()


LOSSES = {
    "minimax": (d_minimax, g_minimax),
    "nonsaturating": (d_minimax, g_nonsaturating),
    "lsgan": (d_lsgan, g_lsgan),
}


def d_output(loss: str, logits: torch.Tensor) -> torch.Tensor:
    """What D(x) means for this objective: sigmoid probability for cross-entropy losses, else the raw score."""
    return torch.sigmoid(logits) if loss in ("minimax", "nonsaturating") else logits
