"""Progressive growing (models/progressive.py): the schedule, shapes per stage and conditioning, fade-in
continuity, stage and alpha in the state dict, equalized learning rate, which layers learn, spectral norm."""
import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

from gancore.models import apply_spectral_norm
from gancore.models.progressive import (
    EqualizedConv2d, EqualizedLinear, ProgressiveDiscriminator, ProgressiveGenerator, Schedule, downsample_to,
    fade_real, resolution, upsample_to)
from gancore.catalogue import progressive_stages

METHODS = ["none", "concat", "acgan", "projection"]
SHAPE = (1, 16, 16)  # 3 stages: 4, 8, 16 px
K, B, Z = 3, 4, 8  # classes, batch, latent size


def nets(conditioning="concat", shape=SHAPE, **kw):
    """A tiny G and D pair, seeded, with minibatch stddev on in D."""
    torch.manual_seed(0)
    cond = dict(num_classes=K if conditioning != "none" else 0, conditioning=conditioning, embed_dim=4)
    G = ProgressiveGenerator(Z, shape, 4, width_max=8, **cond, **kw)
    D = ProgressiveDiscriminator(shape, 4, width_max=8, mbstd=2, **cond, **kw)
    return G, D


def inputs(conditioning="concat", size=16):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(B, Z, generator=g)
    y = torch.randint(0, K, (B,), generator=g) if conditioning != "none" else None
    x = torch.rand(B, 1, size, size, generator=g) * 2 - 1
    return z, y, x


# ---------------------------------------------------------------- schedule
def test_schedule_stages_alphas_and_boundaries():
    s = Schedule(stages=3, fade_images=100, stable_images=50)
    assert s.boundaries() == [50, 150, 200, 300, 350]
    assert s.total_images() == 350
    expected = {0: (0, 1.0), 49: (0, 1.0),  # stage 0: stable only
                50: (1, 0.0), 75: (1, 0.25), 149: (1, 0.99), 150: (1, 1.0), 199: (1, 1.0),  # fade, then stable
                200: (2, 0.0), 250: (2, 0.5), 300: (2, 1.0), 349: (2, 1.0),
                350: (2, 1.0), 351: (2, 1.0), 10**9: (2, 1.0)}  # after the end: last stage, alpha 1
    for images, (stage, alpha) in expected.items():
        got = s.stage_alpha(images)
        assert got[0] == stage and got[1] == pytest.approx(alpha, abs=1e-12), images


def test_schedule_edge_cases():
    assert Schedule(1, 100, 50).stage_alpha(10**6) == (0, 1.0)
    assert Schedule(1, 100, 50).boundaries() == [50]
    no_fade = Schedule(3, 0, 10)  # stages switch abruptly
    assert no_fade.boundaries() == [10, 10, 20, 20, 30]
    assert [no_fade.stage_alpha(n) for n in (9, 10, 19, 20, 30)] == [(0, 1.0), (1, 1.0), (1, 1.0), (2, 1.0), (2, 1.0)]
    no_stable = Schedule(3, 10, 0)  # fade straight into the next stage
    assert no_stable.boundaries() == [0, 10, 10, 20, 20]
    assert [no_stable.stage_alpha(n) for n in (0, 5, 10, 15, 20)] == [(1, 0.0), (1, 0.5), (2, 0.0), (2, 0.5), (2, 1.0)]
    for bad in [(0, 1, 1), (2, -1, 1), (2, 1, -1), (2, 0, 0)]:
        with pytest.raises(ValueError):
            Schedule(*bad)


def test_progressive_stages_of_sizes():
    assert [progressive_stages(n) for n in (8, 16, 32, 64)] == [2, 3, 4, 5]
    assert progressive_stages(32, depth=3) == 4
    for bad in (4, 28, 48):
        with pytest.raises(ValueError, match="4 \\* 2\\*\\*k"):
            progressive_stages(bad)
    with pytest.raises(ValueError, match="depth 2"):
        progressive_stages(32, depth=2)


# ---------------------------------------------------------------- shapes
@pytest.mark.parametrize("conditioning", METHODS)
def test_shapes_at_every_stage(conditioning):
    G, D = nets(conditioning)
    z, y, _ = inputs(conditioning)
    assert G(z, y).shape == (B, 1, 16, 16)  # a fresh network is fully grown
    for stage in range(G.stages):
        for alpha in (0.5, 1.0):
            G.set_stage(stage, alpha)
            D.set_stage(stage, alpha)
            r = resolution(stage)
            x = G(z, y)
            assert x.shape == (B, 1, r, r) and x.abs().max() <= 1
            logits, cls, _ = D(x, y)
            assert logits.shape == (B,)
            assert cls is None if conditioning != "acgan" else cls.shape == (B, K)
            assert upsample_to(x, 16).shape == (B, 1, 16, 16)


def test_d_refuses_the_wrong_resolution():
    _, D = nets()
    D.set_stage(1, 0.5)
    z, y, x = inputs()
    with pytest.raises(ValueError, match="reads 8 px images, got 16 px"):
        D(x, y)


def test_fade_real():
    _, _, x = inputs()
    x8 = downsample_to(x, 8)
    assert_close(fade_real(x, 1, 1.0), x8)
    assert_close(fade_real(x, 1, 0.0), upsample_to(downsample_to(x, 4), 8))
    assert_close(fade_real(x, 1, 0.25), 0.75 * upsample_to(downsample_to(x, 4), 8) + 0.25 * x8)
    assert_close(fade_real(x, 2, 0.3), 0.7 * upsample_to(x8, 16) + 0.3 * x)
    assert fade_real(x, 0, 0.3).shape == (B, 1, 4, 4)


# ---------------------------------------------------------------- fade-in continuity
@pytest.mark.parametrize("conditioning", ["none", "concat"])
def test_g_fade_in_is_continuous(conditioning):
    G, _ = nets(conditioning)
    z, y, _ = inputs(conditioning)
    with torch.no_grad():
        for s in range(1, G.stages):
            G.set_stage(s - 1, 1.0)
            previous = G(z, y)  # (B, C, r/2, r/2)
            G.set_stage(s, 0.0)
            assert_close(G(z, y), upsample_to(previous, resolution(s)))  # alpha 0: the old stage, upsampled
            G.set_stage(s, 1.0)
            new = G(z, y)
            G.set_stage(s, 0.3)
            assert_close(G(z, y), 0.7 * upsample_to(previous, resolution(s)) + 0.3 * new)
            G.to_rgb[s - 1].weight.add_(1.0)  # alpha 1 is the new path only: the old toRGB no longer matters
            G.set_stage(s, 1.0)
            assert_close(G(z, y), new)


@pytest.mark.parametrize("conditioning", ["none", "concat", "projection"])
def test_d_fade_in_is_continuous(conditioning):
    _, D = nets(conditioning)
    _, y, x = inputs(conditioning)
    with torch.no_grad():
        for s in range(1, D.stages):
            xs = downsample_to(x, resolution(s))  # (B, C, r, r)
            D.set_stage(s - 1, 1.0)
            previous = D(downsample_to(xs, resolution(s - 1)), y)[0]
            D.set_stage(s, 0.0)
            assert_close(D(xs, y)[0], previous)  # alpha 0: the old stage on the downsampled input
            assert_close(D(fade_real(x, s, 0.0), y)[0], previous)  # and the real fade starts where it was
            D.set_stage(s, 1.0)
            new = D(xs, y)[0]
            D.from_rgb[s - 1].weight.add_(1.0)  # alpha 1: the old fromRGB no longer matters
            assert_close(D(xs, y)[0], new)


# ---------------------------------------------------------------- state dict
def test_state_dict_carries_stage_and_alpha():
    G, D = nets("concat")
    G.set_stage(2, 0.37)
    D.set_stage(2, 0.37)
    z, y, x = inputs()
    G2, D2 = ProgressiveGenerator(Z, SHAPE, 4, width_max=8, num_classes=K, conditioning="concat", embed_dim=4), \
        ProgressiveDiscriminator(SHAPE, 4, width_max=8, mbstd=2, num_classes=K, conditioning="concat", embed_dim=4)
    G2.set_stage(0)
    G2.load_state_dict(G.state_dict())
    D2.load_state_dict(D.state_dict())
    assert G2.phase() == D2.phase() == (2, pytest.approx(0.37))
    with torch.no_grad():
        assert_close(G2(z, y), G(z, y), rtol=0, atol=0)
        assert_close(D2(x, y)[0], D(x, y)[0], rtol=0, atol=0)


def test_the_ema_copy_follows_the_stage_as_the_trainer_sets_it():
    """The trainer's EMA G is a deep copy of G that moves with set_stage at every step (grow()), and takes G's
    buffers after each G step; forward reads the phase set_stage left (a bare buffer copy does not move it)."""
    G, _ = nets()
    G.set_stage(0)
    G_ema = copy.deepcopy(G)
    assert G_ema.phase() == (0, 1.0)
    for net in (G, G_ema):  # grow()
        net.set_stage(1, 0.5)
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):  # update_ema()
        b_ema.copy_(b)
    z, y, _ = inputs()
    assert G_ema.phase() == (1, 0.5) and (int(G_ema.stage), float(G_ema.alpha)) == (1, 0.5)
    assert G_ema(z, y).shape == (B, 1, 8, 8)


# ---------------------------------------------------------------- equalized learning rate
def test_equalized_lr_scale_and_init():
    G, D = nets("concat")
    layers = [m for net in (G, D) for m in net.modules() if isinstance(m, (EqualizedConv2d, EqualizedLinear))]
    assert len(layers) == (2 * 3 + 3) * 2  # G: 2 per stage + a toRGB per stage; D: a fromRGB + 2 per stage
    for m in layers:
        fan_in = m.weight[0].numel()
        gain = 1.0 if any(m is rgb for rgb in G.to_rgb) else math.sqrt(2)  # toRGB is linear: gain 1
        assert m.scale == pytest.approx(gain / math.sqrt(fan_in))  # He's constant
        assert m.bias.abs().sum() == 0
    big = torch.cat([m.weight.flatten() for m in layers])  # stored weights: N(0, 1)
    assert abs(big.mean().item()) < 0.05 and abs(big.std().item() - 1) < 0.05
    conv = G.blocks[1].conv1
    h = torch.randn(2, conv.in_channels, 5, 5)
    assert_close(conv(h), F.conv2d(h, conv.weight * math.sqrt(2 / conv.weight[0].numel()), conv.bias, padding=1))
    plain_G, plain_D = nets(equalized=False)
    assert not any(isinstance(m, (EqualizedConv2d, EqualizedLinear)) for net in (plain_G, plain_D) for m in net.modules())


# ---------------------------------------------------------------- which layers learn
def used(name, stage, alpha, always):
    """Does parameter `name` take part at (stage, alpha)? `always`: the part every stage uses (G's cond, D's head).
    Blocks of stages <= stage do; the to_rgb / from_rgb / label maps of this stage, and of the previous one
    while it fades out."""
    part, _, rest = name.partition(".")
    if part == always:
        return True
    t = int(rest.split(".")[0])
    if part == "blocks":
        return t <= stage
    return t == stage or (t == stage - 1 and alpha < 1)


def used_by_g(name, stage, alpha):
    return used(name, stage, alpha, always="cond")


def used_by_d(name, stage, alpha):
    return used(name, stage, alpha, always="head")


@pytest.mark.parametrize("stage,alpha", [(0, 1.0), (1, 0.5), (1, 1.0), (2, 0.5), (2, 1.0)])
def test_only_reached_stages_get_gradients(stage, alpha):
    G, D = nets("concat")
    G.set_stage(stage, alpha)
    D.set_stage(stage, alpha)
    z, y, _ = inputs()
    D(G(z, y), y)[0].sum().backward()
    for net, used in ((G, used_by_g), (D, used_by_d)):
        for name, p in net.named_parameters():
            if used(name, stage, alpha):
                assert p.grad is not None and p.grad.abs().sum() > 0, name
            else:
                assert p.grad is None, name


# ---------------------------------------------------------------- spectral norm
def test_spectral_norm_with_plain_layers():
    G, D = nets("projection", equalized=False)
    apply_spectral_norm(G)
    apply_spectral_norm(D)
    z, y, _ = inputs("projection")
    for stage, alpha in [(0, 1.0), (1, 0.5), (2, 0.5), (2, 1.0)]:
        G.set_stage(stage, alpha)
        D.set_stage(stage, alpha)
        logits = D(G(z, y), y)[0]
        assert logits.shape == (B,) and torch.isfinite(logits).all()
        logits.sum().backward()
    for _ in range(20):  # the power iteration advances once per training-mode forward
        D(G(z, y), y)
    sigma = torch.linalg.matrix_norm(D.blocks[2].conv1.weight.flatten(1), ord=2)
    assert sigma.item() == pytest.approx(1.0, abs=0.05)


def test_spectral_norm_is_refused_with_equalized_lr():
    G, D = nets()
    apply_spectral_norm(D)
    _, y, x = inputs()
    with pytest.raises(ValueError, match="equalized=False"):
        D(x, y)
