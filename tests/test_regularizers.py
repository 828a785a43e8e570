"""The gradient penalties and weight clipping on critics whose input gradient is known in closed form
(bench/mutation.py's regularizers target).

D(x) = 0.5 * ||x||^2 per sample has input gradient x itself, so each penalty is a hand-computable function of
the points it is taken at: R1 = mean ||x||^2, WGAN-GP = mean (||x_hat|| - 1)^2.
"""
import pytest
import torch
import torch.nn as nn

from gancore.regularizers import clip_weights, gradient_penalty, input_gradient, r1_penalty


class HalfSquare:
    """A critic with D(x) = 0.5 ||x||^2 per sample (its input gradient is x); remembers the inputs and labels it got."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, y=None):
        self.calls.append((x, y))
        return 0.5 * x.flatten(1).pow(2).sum(1), None, None


class SpyScaler:
    """A grad scaler that is on and multiplies by 8: records that the penalty went through it."""

    def __init__(self):
        self.scaled = 0

    def is_enabled(self):
        return True

    def scale(self, t):
        self.scaled += 1
        return t * 8.0

    def _get_scale_async(self):
        return torch.tensor(8.0)


def test_input_gradient_is_the_gradient_of_the_summed_logits_with_its_graph_kept():
    x = torch.tensor([[1.0, -2.0], [3.0, 0.5]], requires_grad=True)
    logits = (x ** 3).sum(1)  # d/dx = 3 x^2
    grad = input_gradient(logits, x)
    torch.testing.assert_close(grad, torch.tensor([[3.0, 12.0], [27.0, 0.75]]))
    (second,) = torch.autograd.grad(grad.sum(), x)  # the graph is kept: a penalty on it can be backpropagated
    torch.testing.assert_close(second, torch.tensor([[6.0, -12.0], [18.0, 3.0]]))


def test_input_gradient_through_an_enabled_scaler_is_scaled_then_unscaled():
    x = torch.tensor([[1.0, -2.0]], requires_grad=True)
    scaler = SpyScaler()
    grad = input_gradient((x ** 2).sum(1), x, scaler)
    assert scaler.scaled == 1
    torch.testing.assert_close(grad, torch.tensor([[2.0, -4.0]]))
    assert grad.requires_grad


def test_input_gradient_ignores_a_disabled_scaler():
    x = torch.tensor([[1.0, -2.0]], requires_grad=True)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    torch.testing.assert_close(input_gradient((x ** 2).sum(1), x, scaler), torch.tensor([[2.0, -4.0]]))


def test_r1_is_the_mean_squared_gradient_norm_on_the_real_batch():
    real = torch.tensor([[[[1.0, 2.0], [0.0, 2.0]]], [[[3.0, 0.0], [0.0, 4.0]]]])  # (2, 1, 2, 2): ||x||^2 = 9, 25
    D = HalfSquare()
    y = torch.tensor([1, 0])
    r1 = r1_penalty(D, real, y)
    assert r1.item() == pytest.approx((9 + 25) / 2)
    (x, seen_y), = D.calls
    assert seen_y is y and torch.equal(x, real) and x.requires_grad and not real.requires_grad


def test_r1_goes_through_the_scaler_when_it_is_on():
    scaler = SpyScaler()
    assert r1_penalty(HalfSquare(), torch.tensor([[3.0, 4.0]]), scaler=scaler).item() == pytest.approx(25.0)
    assert scaler.scaled == 1


def test_gradient_penalty_is_taken_at_per_sample_interpolates_of_real_and_fake():
    # fake = v, real = 3 v: x_hat = (1 + 2 eps) v, ||grad|| = ||x_hat|| = (1 + 2 eps) ||v||
    v = torch.tensor([[[[3.0, 4.0]]], [[[0.0, 1.0]]], [[[0.6, 0.8]]]])  # (3, 1, 1, 2), norms 5, 1, 1
    real, fake = 3 * v, v
    torch.manual_seed(0)
    eps = torch.rand(3, 1, 1, 1).flatten()  # one draw per sample, the penalty's own draw with this seed
    norms = (1 + 2 * eps) * torch.tensor([5.0, 1.0, 1.0])
    expected = ((norms - 1) ** 2).mean().item()
    D = HalfSquare()
    y = torch.tensor([2, 0, 1])
    torch.manual_seed(0)
    gp = gradient_penalty(D, real, fake, y)
    assert gp.item() == pytest.approx(expected, rel=1e-6)
    (x_hat, seen_y), = D.calls
    assert seen_y is y and x_hat.shape == real.shape
    torch.testing.assert_close(x_hat.detach(), (1 + 2 * eps).view(3, 1, 1, 1) * v)


def test_gradient_penalty_is_zero_when_the_gradient_has_unit_norm_and_grows_as_its_square():
    unit = torch.tensor([[0.6, 0.8], [0.0, 1.0]])  # D = 0.5 ||x||^2 at x_hat = a unit vector (real = fake)
    assert gradient_penalty(HalfSquare(), unit, unit).item() == pytest.approx(0.0, abs=1e-12)
    assert gradient_penalty(HalfSquare(), 3 * unit, 3 * unit).item() == pytest.approx(4.0)  # (3 - 1)^2
    assert gradient_penalty(HalfSquare(), 0.5 * unit, 0.5 * unit).item() == pytest.approx(0.25)  # (0.5 - 1)^2


def test_gradient_penalty_goes_through_the_scaler_when_it_is_on():
    scaler = SpyScaler()
    unit = torch.tensor([[0.0, 3.0]])
    assert gradient_penalty(HalfSquare(), unit, unit, scaler=scaler).item() == pytest.approx(4.0)
    assert scaler.scaled == 1


def test_penalties_leave_real_and_fake_without_gradients():
    real, fake = torch.ones(2, 3, requires_grad=True), torch.zeros(2, 3, requires_grad=True)
    gradient_penalty(HalfSquare(), real, fake).backward()
    r1_penalty(HalfSquare(), real).backward()
    assert real.grad is None and fake.grad is None  # taken on detached copies


def test_clip_weights_clamps_every_parameter_into_minus_c_c():
    net = nn.Sequential(nn.Linear(3, 1), nn.Linear(1, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[-3.0, 0.5, 2.0]]))
        net[0].bias.fill_(-0.25)
        net[1].weight.fill_(0.75)
        net[1].bias.fill_(-1.5)
    clip_weights(net, 1.0)
    assert net[0].weight.tolist() == [[-1.0, 0.5, 1.0]]
    assert net[0].bias.item() == -0.25 and net[1].weight.item() == 0.75 and net[1].bias.item() == -1.0


def test_gradient_penalty_draws_its_interpolation_weights_on_reals_device_and_dtype():
    D = HalfSquare()
    real = torch.tensor([[0.0, 3.0]], dtype=torch.bfloat16)
    assert gradient_penalty(D, real, real).item() == pytest.approx(4.0)
    assert D.calls[0][0].dtype == torch.bfloat16  # float32 weights would have promoted x_hat to float32
    meta = torch.ones(2, 3, device="meta")  # a device other than the CPU: weights drawn on the CPU could not mix in
    assert gradient_penalty(HalfSquare(), meta, meta).device.type == "meta"
