"""Every objective x conditioning x network combination builds, trains a few steps without NaN,
checkpoints, and resumes."""
import math

import pytest
import torch

import gancore
from gancore.config import CONDITIONINGS, LOSSES
from gancore.losses import LOSSES as LOSS_FUNCTIONS
from gancore.models import NETWORKS
from conftest import tiny


@pytest.mark.parametrize("network", sorted(NETWORKS))
@pytest.mark.parametrize("conditioning", CONDITIONINGS)
@pytest.mark.parametrize("loss", LOSSES)
def test_images_train_checkpoint_resume(runs_root, loss, conditioning, network):
    run_dir = gancore.train(tiny(loss=loss, conditioning=conditioning, model=network))
    run = gancore.load_run(run_dir)
    assert run.status["state"] == "done"
    m = run.metrics
    assert list(m["step"]) == [2, 4, 6]
    for col in ("loss_d", "loss_g", "d_real", "d_fake", "grad_norm_d", "grad_norm_g"):
        assert m[col].map(math.isfinite).all(), col
    assert sorted(run.checkpoints) == [3, 6]
    gancore.train(resume=run_dir, steps=8)
    run = gancore.load_run(run_dir)
    assert run.status["state"] == "done" and run.status["step"] == 8
    assert list(run.metrics["step"]) == [2, 4, 6, 8]


@pytest.mark.parametrize("dataset", ["ring", "grid"])
@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_points_train_with_mlp(runs_root, dataset, conditioning):
    run = gancore.load_run(gancore.train(tiny(dataset=dataset, conditioning=conditioning, eval_every=3)))
    assert run.config["model"] == "mlp"  # auto picks mlp for points
    assert run.status["state"] == "done"
    evals = run.metrics.dropna(subset=["modes"])
    assert list(evals["step"]) == [3, 6]
    assert evals["hq_share"].between(0, 1).all()


def test_losses_have_the_published_form():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    d, g = LOSS_FUNCTIONS["minimax"]
    sig = torch.sigmoid
    expected_d = -(torch.log(sig(real)).mean() + torch.log(1 - sig(fake)).mean())
    assert torch.allclose(d(real, fake), expected_d)
    assert torch.allclose(g(fake), torch.log(1 - sig(fake)).mean())
    _, g_ns = LOSS_FUNCTIONS["nonsaturating"]
    assert torch.allclose(g_ns(fake), -torch.log(sig(fake)).mean())
    d_ls, g_ls = LOSS_FUNCTIONS["lsgan"]
    assert torch.allclose(d_ls(real, fake), 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake**2).mean())
    assert torch.allclose(g_ls(fake), 0.5 * ((fake - 1) ** 2).mean())


def test_saturating_generator_loss_has_weak_gradient_when_d_rejects_fakes():
    # The reason non-saturating exists: at D(G(z)) ~ 0 the minimax gradient vanishes.
    fake = torch.tensor([-8.0], requires_grad=True)
    LOSS_FUNCTIONS["minimax"][1](fake).backward()
    g_minimax = fake.grad.abs().item()
    fake.grad = None
    LOSS_FUNCTIONS["nonsaturating"][1](fake).backward()
    assert g_minimax < 1e-3 < fake.grad.abs().item()
