"""GAN objectives as plain functions of D's raw outputs ("logits").

Each objective is a pair (d_loss(real, fake, smooth), g_loss(fake)) of mean losses over the batch, named with what
the objective implies in catalogue.OBJECTIVES (`functions(name)` gives the pair).
`smooth` is one-sided label smoothing: the target for real samples becomes 1 - smooth
(Salimans et al. 2016); only the objectives with a target (minimax, nonsaturating, lsgan) have it.
`d_output` turns logits into the number a user reads as D(x): a probability for the
cross-entropy objectives, the raw score for the others. The penalties that go with wgan-gp
and R1 live in regularizers.py; weight clipping for wgan in trainer.py. `feature_matching` is a term
G may add to any objective (--fm_weight).
"""
import torch
import torch.nn.functional as F

from .catalogue import OBJECTIVES


# Goodfellow et al. 2014: D maximises log D(x) + log(1 - D(G(z))); -log sigmoid(l) = softplus(-l).
def d_minimax(real, fake, smooth=0.0):
    t = 1.0 - smooth  # binary cross-entropy with target t: t*softplus(-l) + (1-t)*softplus(l)
    return (t * F.softplus(-real) + (1 - t) * F.softplus(real)).mean() + F.softplus(fake).mean()


def g_minimax(fake):
    # G minimises log(1 - D(G(z))) = -softplus(l): the original, saturating form (weak gradients early).
    return -F.softplus(fake).mean()


def g_nonsaturating(fake):
    # G maximises log D(G(z)) instead: same fixed point, strong gradients when D rejects fakes.
    return F.softplus(-fake).mean()


# Mao et al. 2017 (LSGAN): least squares towards targets 1 (real) and 0 (fake).
def d_lsgan(real, fake, smooth=0.0):
    return 0.5 * ((real - (1.0 - smooth)).pow(2).mean() + fake.pow(2).mean())


def g_lsgan(fake):
    return 0.5 * (fake - 1).pow(2).mean()


# Arjovsky et al. 2017 (WGAN): D is a critic estimating the Wasserstein-1 distance; it must stay
# 1-Lipschitz, by weight clipping (wgan) or a gradient penalty (wgan-gp, Gulrajani et al. 2017).
def d_wasserstein(real, fake, smooth=0.0):
    return fake.mean() - real.mean()


def g_wasserstein(fake):
    return -fake.mean()


# Lim & Ye 2017, Miyato et al. 2018 (hinge): D only pushes samples past a margin of 1.
def d_hinge(real, fake, smooth=0.0):
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def functions(loss: str):
    """(d_loss, g_loss) of an objective: the functions of this module its catalogue.OBJECTIVES entry names."""
    objective = OBJECTIVES[loss]
    return globals()[objective.d_loss], globals()[objective.g_loss]


def feature_matching(real_features, fake_features):
    """Salimans et al. 2016: the squared L2 distance between the batch means of D's last hidden features on
    real (B, F) and generated (B', F) samples. G pays for any feature whose average over its batch differs
    from the data's, e.g. one digit drawn too often, which a per-sample loss barely sees."""
    return (real_features.float().mean(0) - fake_features.float().mean(0)).pow(2).sum()


def d_output(loss: str, logits: torch.Tensor) -> torch.Tensor:
    """What D(x) means for this objective: sigmoid probability for cross-entropy losses, else the raw score."""
    return torch.sigmoid(logits) if OBJECTIVES[loss].probability else logits
