"""Each stabiliser acts: a test per switch that shows its effect, on the real modules and trainer."""

import pytest
import torch
import torch.nn as nn

import gancore
from gancore import recorder
from gancore.augment import AUGMENTATIONS, diff_augment
from gancore.config import TrainConfig
from gancore.setup import resolve_with, validate
from gancore.data import load_dataset
from gancore.errors import ConfigError
from gancore.layers import MinibatchStdDev
from gancore.losses import feature_matching, functions
from gancore.models import build_models
from gancore.regularizers import gradient_penalty, r1_penalty
from gancore.trainer import Trainer
from conftest import tiny


def make_trainer(tmp_path, **fields):
    cfg = TrainConfig(**tiny(**fields))
    validate(cfg)
    data = load_dataset(cfg.dataset, seed=cfg.seed)
    return Trainer(tmp_path, resolve_with(cfg, data), data)


def run_steps(trainer, n):
    for _ in range(n):
        trainer.step += 1
        trainer.train_step(measure=True)


def models(**fields):
    cfg = TrainConfig(**tiny(**fields))
    data = load_dataset(cfg.dataset)
    cfg = resolve_with(cfg, data)
    return build_models(cfg, data.shape, data.num_classes) + (cfg, data)


def top_singular_value(module):
    w = module.weight  # the normalised weight when spectral norm is on
    w = w.transpose(0, 1) if isinstance(module, nn.ConvTranspose2d) else w
    return torch.linalg.matrix_norm(w.detach().flatten(1), ord=2).item()


@pytest.mark.parametrize("network", ["mlp", "dcgan", "resnet"])
def test_spectral_norm_bounds_top_singular_value(network):
    layer_types = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)
    for sn, bound in ((True, lambda s: s < 1.05), (False, lambda s: s > 2.0)):
        G, D, cfg, data = models(model=network, sn_d=sn, sn_g=sn, d_width=16, g_width=16)
        with torch.no_grad():
            for name, p in [*G.named_parameters(), *D.named_parameters()]:
                if name.endswith("weight") or name.endswith("original"):
                    p.mul_(5.0)  # weights far above 1-Lipschitz
        for _ in range(30):  # spectral norm's power iteration advances once per training-mode forward
            D(data.x[:16])
            G(torch.randn(16, cfg.z_dim))
        layers = [m for net in (G, D) for m in net.modules() if isinstance(m, layer_types)]
        assert layers and bound(max(top_singular_value(m) for m in layers)), (sn, network)


def test_gradient_penalty_pulls_interpolate_gradient_norm_to_one():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Linear(2, 64), nn.LeakyReLU(0.2), nn.Linear(64, 1))
    with torch.no_grad():
        D[0].weight.mul_(3.0)  # start away from 1-Lipschitz
        D[2].weight.mul_(3.0)
    critic = lambda x, y=None: (D(x).squeeze(1), None)  # noqa: E731
    real, fake = torch.randn(256, 2) + 2, torch.randn(256, 2) - 2

    def norm_gap():
        eps = torch.rand(256, 1, generator=torch.Generator().manual_seed(1))
        x = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x)[0].sum(), x)
        return (g.norm(dim=1) - 1).abs().mean().item()

    before = norm_gap()
    opt = torch.optim.Adam(D.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        gradient_penalty(critic, real, fake).backward()
        opt.step()
    assert before > 1.0 and norm_gap() < 0.1  # mean | ||grad|| - 1 |: from over 1 to under 0.1


def test_r1_is_zero_for_constant_d_and_the_squared_slope_for_linear_d():
    x = torch.randn(8, 1, 4, 4)
    constant = lambda x, y=None: (x.flatten(1).sum(1) * 0 + 3.0, None)  # noqa: E731
    assert r1_penalty(constant, x).item() == 0.0
    w = torch.randn(16)
    linear = lambda x, y=None: (x.flatten(1) @ w, None)  # noqa: E731
    assert r1_penalty(linear, x).item() == pytest.approx(w.pow(2).sum().item(), rel=1e-5)


def test_r1_and_gp_are_logged_when_on(runs_root):
    run = gancore.load_run(gancore.train(tiny(r1_gamma=10.0, name="r1")))
    assert run.metrics["r1"].gt(0).all()
    run = gancore.load_run(gancore.train(tiny(loss="wgan-gp", name="gp")))
    assert run.metrics["gp"].ge(0).all() and "r1" not in run.metrics


def test_feature_matching_compares_batch_means_and_pulls_the_fake_mean_to_the_real_one():
    real = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    assert feature_matching(real, real[torch.randperm(64)]).item() == pytest.approx(0.0, abs=1e-10)  # order-free
    fake = (real[:32] + torch.arange(8.0)).requires_grad_(True)  # another batch size, shifted by 0, 1, ..., 7
    shift = real[:32].mean(0) - real.mean(0) + torch.arange(8.0)
    assert feature_matching(real, fake).item() == pytest.approx(shift.pow(2).sum().item(), rel=1e-5)
    (grad,) = torch.autograd.grad(feature_matching(real, fake), fake)
    assert torch.allclose(grad, (2 * shift / 32).expand(32, 8))  # every fake moves its batch mean toward the data's


def test_feature_matching_is_added_to_gs_loss_and_logged(runs_root):
    run = gancore.load_run(gancore.train(tiny(fm_weight=5.0, name="fm")))
    fm, loss_g = run.metrics["fm"], run.metrics["loss_g"]
    assert fm.gt(0).all() and (loss_g > 5.0 * fm).all()  # the non-saturating part is positive on top
    plain = gancore.load_run(gancore.train(tiny(name="plain")))
    assert "fm" not in plain.metrics


def test_drift_adds_eps_times_mean_squared_real_score_to_d_loss(tmp_path):
    first = {}
    for eps in (0.0, 10.0):
        trainer = make_trainer(tmp_path / str(eps), loss="wgan-gp", drift=eps)
        first[eps] = trainer.train_step(measure=False)  # same seed: same weights and batches for both
    drift = first[10.0]["drift"].item()
    assert drift > 0 and "drift" not in first[0.0]
    assert first[10.0]["loss_d"].item() - first[0.0]["loss_d"].item() == pytest.approx(10.0 * drift, rel=1e-3)


def test_r1_adds_gamma_over_2_times_the_penalty_to_d_loss(tmp_path):
    first = {}
    for gamma in (10.0, 20.0):  # both on: D without batch norm in both (R1 takes per-sample gradients)
        trainer = make_trainer(tmp_path / str(gamma), r1_gamma=gamma)
        first[gamma] = trainer.train_step(measure=False)  # same seed: same weights and batches for both
    r1 = first[10.0]["r1"].item()
    assert r1 > 0 and first[20.0]["r1"].item() == pytest.approx(r1, rel=1e-6)  # the same D on the same reals
    assert first[20.0]["loss_d"].item() - first[10.0]["loss_d"].item() == pytest.approx((20.0 - 10.0) / 2 * r1,
                                                                                          rel=1e-3)
    assert "r1" not in make_trainer(tmp_path / "off").train_step(measure=False)


def test_the_gradient_penalty_adds_gp_weight_times_the_penalty_to_d_loss(tmp_path):
    first = {}
    for weight in (0.0, 10.0):  # the penalty is drawn (and logged) at weight 0 too: the same draws follow
        trainer = make_trainer(tmp_path / str(weight), loss="wgan-gp", gp_weight=weight)
        first[weight] = trainer.train_step(measure=False)
    gp = first[10.0]["gp"].item()
    assert gp > 0 and first[0.0]["gp"].item() == pytest.approx(gp, rel=1e-6)
    assert first[10.0]["loss_d"].item() - first[0.0]["loss_d"].item() == pytest.approx(10.0 * gp, rel=1e-3)


def test_the_conditioning_methods_terms_are_added_to_both_losses(tmp_path, monkeypatch):
    """A method's extra terms enter D's and G's losses with their sign: a method whose terms are the constants 3 and
    5 moves the first step's losses by exactly +3 and +5 against the same method with zero terms (the same seed:
    the same weights, batches and noise; a constant changes no gradient)."""
    import dataclasses

    from gancore.conditioning import METHODS

    first = {}
    for extra in (0.0, 1.0):
        method = dataclasses.replace(METHODS["concat"], d_loss=lambda cfg, r, f, y, e=extra: (torch.tensor(3.0 * e), {}),
                                     g_loss=lambda cfg, f, y, e=extra: (torch.tensor(5.0 * e), {}))
        monkeypatch.setitem(METHODS, "constant", method)
        first[extra] = make_trainer(tmp_path / str(extra), conditioning="constant").train_step(measure=False)
    assert first[1.0]["loss_d"].item() - first[0.0]["loss_d"].item() == pytest.approx(3.0, abs=1e-5)
    assert first[1.0]["loss_g"].item() - first[0.0]["loss_g"].item() == pytest.approx(5.0, abs=1e-5)


def test_drift_is_refused_for_losses_with_bounded_scores():
    with pytest.raises(ConfigError, match="--drift: .*'hinge'"):
        validate(TrainConfig(**tiny(loss="hinge", drift=0.001)))


@pytest.mark.parametrize("network, first", [("mlp", "in_features"), ("dcgan", "in_channels"), ("resnet", "in_channels")])
def test_packing_changes_d_input_shape(network, first):
    _, D1, _, data = models(model=network)
    _, D4, _, _ = models(model=network, pack=4)
    first1 = next(m for m in D1.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    first4 = next(m for m in D4.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    assert getattr(first4, first) == 4 * getattr(first1, first)
    logits = D4(data.x[:16])[0]
    assert logits.shape == (4,)  # one decision per pack of 4


@pytest.mark.parametrize("policy", sorted(AUGMENTATIONS))
def test_diffaugment_is_differentiable_and_random(policy):
    torch.manual_seed(0)
    x = torch.rand(8, 3, 16, 16, requires_grad=True)
    y = diff_augment(x * 2 - 1, [policy])
    assert y.shape == x.shape and not torch.equal(y, x * 2 - 1)
    (w,) = torch.autograd.grad((y * torch.randn_like(y)).sum(), x)
    assert w.abs().sum() > 0  # gradients reach the input through the augmentation


def test_diffaugment_is_applied_to_real_and_fake_in_training(tmp_path):
    trainer = make_trainer(tmp_path, diffaug="cutout")
    seen = []
    trainer.D.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    run_steps(trainer, 1)
    assert len(seen) == 3  # D step: real, fake; G step: fake
    for x in seen:
        # cutout zeroes a 8x8 square of each 16x16 image; real digits and tanh outputs are never exactly 0 there
        zero_share = (x == 0).flatten(1).float().mean(1)
        assert (zero_share >= 0.25).all()


def test_weight_clipping_keeps_critic_weights_within_clip_value(tmp_path):
    trainer = make_trainer(tmp_path, loss="wgan", clip_value=0.02, lr_d=0.05)
    run_steps(trainer, 3)
    weights = torch.cat([p.detach().flatten() for p in trainer.D.parameters()])
    assert weights.abs().max() <= 0.02 + 1e-7 and weights.abs().max() > 0.019  # clipped, and clipping was needed


def test_label_smoothing_moves_ds_optimum_to_one_minus_s():
    d_loss = functions("nonsaturating")[0]
    logits = torch.linspace(-6, 6, 2001)
    losses = torch.stack([d_loss(l.view(1), torch.tensor([-50.0]), 0.1) for l in logits])
    best = torch.sigmoid(logits[losses.argmin()]).item()
    assert best == pytest.approx(0.9, abs=0.005)


def test_virtual_batch_norm_makes_each_output_independent_of_the_batch():
    G, _, cfg, _ = models(vbn=True, vbn_ref=16)
    z = torch.randn(3, cfg.z_dim)
    a = G(torch.cat([z[:1], z[1:2]]))[0]
    b = G(torch.cat([z[:1], z[2:3]]))[0]
    torch.testing.assert_close(a, b)
    G_bn, _, _, _ = models()
    a, b = G_bn(torch.cat([z[:1], z[1:2]]))[0], G_bn(torch.cat([z[:1], z[2:3]]))[0]
    assert not torch.allclose(a, b)  # plain batch norm in training mode mixes the batch


def test_minibatch_stddev_appends_group_std():
    layer = MinibatchStdDev(group=4)
    same = torch.ones(8, 3, 2, 2)
    assert layer(same)[:, 3].abs().max() < 1e-3  # no variety, no signal (sqrt of the 1e-8 guard)
    x = torch.randn(8, 5)
    out = layer(x)
    assert out.shape == (8, 6)
    expected = x.view(4, 2, 5).var(0, unbiased=False).add(1e-8).sqrt().mean(1)  # groups of samples i, i+2, i+4, i+6
    torch.testing.assert_close(out[:, 5], expected.repeat(4))
    _, D, _, data = models(mbstd=True)
    assert D(data.x[:16])[0].shape == (16,)


def test_n_critic_and_ttur(tmp_path):
    trainer = make_trainer(tmp_path, n_critic=3, lr_g=1e-4, lr_d=4e-4)
    run_steps(trainer, 2)
    d_steps = {int(s["step"]) for s in trainer.opt_d.state_dict()["state"].values()}
    g_steps = {int(s["step"]) for s in trainer.opt_g.state_dict()["state"].values()}
    assert d_steps == {6} and g_steps == {2}
    assert trainer.opt_d.param_groups[0]["lr"] == 4e-4 and trainer.opt_g.param_groups[0]["lr"] == 1e-4
    assert trainer.images_seen == 2 * 3 * 16


def test_gradient_clipping_bounds_the_norm_the_optimiser_sees(tmp_path):
    trainer = make_trainer(tmp_path, grad_clip=0.05)
    seen = []

    def record(opt, args, kwargs):
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        seen.append(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item())

    trainer.opt_d.register_step_pre_hook(record)
    trainer.opt_g.register_step_pre_hook(record)
    run_steps(trainer, 2)
    assert len(seen) == 4 and max(seen) <= 0.05 * 1.001


def test_weight_decay_shrinks_weights(tmp_path):
    def d_norm(**fields):
        trainer = make_trainer(tmp_path, lr_d=1e-2, **fields)
        run_steps(trainer, 10)
        return torch.cat([p.detach().flatten() for p in trainer.D.parameters()]).norm().item()

    assert d_norm(weight_decay=50.0) < 0.8 * d_norm()


def test_dropout_in_d(tmp_path):
    _, D, _, data = models(d_dropout=0.5)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in D.modules())
    x = data.x[:16]
    assert not torch.equal(D(x)[0], D(x)[0])  # random in training mode
    D.eval()
    assert torch.equal(D(x)[0], D(x)[0])


def test_acgan_head_classifies_and_its_losses_are_logged(runs_root):
    _, D, _, data = models(conditioning="acgan")
    logits, class_logits, _ = D(data.x[:16])
    assert logits.shape == (16,) and class_logits.shape == (16, 10)
    run = gancore.load_run(gancore.train(tiny(conditioning="acgan", acgan_weight=0.5)))
    assert run.metrics["loss_cls_d"].gt(0).all() and run.metrics["loss_cls_g"].gt(0).all()


def test_projection_uses_the_label_in_d_and_conditional_bn_in_g():
    G, D, cfg, data = models(conditioning="projection", model="resnet")
    with torch.no_grad():
        for m in D.modules():
            if isinstance(m, nn.Embedding):
                m.weight.normal_()
        x = data.x[:4]
        assert not torch.allclose(D(x, torch.zeros(4, dtype=torch.long))[0], D(x, torch.ones(4, dtype=torch.long))[0])
        for m in G.modules():
            if isinstance(m, nn.Embedding):
                m.weight.normal_()
        G.eval()
        z = torch.randn(4, cfg.z_dim)
        assert not torch.allclose(G(z, torch.zeros(4, dtype=torch.long)), G(z, torch.ones(4, dtype=torch.long)))


def test_acgan_fake_class_loss_weight(tmp_path):
    first_step = {}
    for w in (0.0, 1.0):
        trainer = make_trainer(tmp_path / str(w), conditioning="acgan", acgan_fake_weight=w)
        trainer.step += 1
        first_step[w] = trainer.train_step(measure=False)["loss_cls_d"].item()
    # same seed, same real batch: the real-image term is identical, the fake term adds a positive CE
    assert first_step[1.0] > first_step[0.0] > 0


def test_lr_decay_falls_linearly_to_zero_over_the_last_fraction(tmp_path):
    trainer = make_trainer(tmp_path, steps=10, lr_decay=0.5, lr_g=1e-3, lr_d=2e-3)
    seen = []
    for step in range(1, 11):
        trainer.step = step
        trainer.schedule_lr()
        seen.append((trainer.opt_g.param_groups[0]["lr"], trainer.opt_d.param_groups[0]["lr"]))
    assert [g for g, _ in seen[:6]] == [1e-3] * 6  # constant until the last 5 steps begin
    assert [g for g, _ in seen[5:]] == pytest.approx([1e-3 * k / 5 for k in (5, 4, 3, 2, 1)])
    assert [d / g for g, d in seen] == pytest.approx([2.0] * 10)


def test_lr_decay_is_applied_in_training_and_logged(runs_root):
    from gancore import runs

    records = runs.read_metrics(gancore.train(tiny(name="decay", steps=8, lr_decay=1.0)))
    assert [r["lr_g"] for r in records] == pytest.approx([2e-4 * k / 8 for k in (7, 5, 3, 1)])
    with pytest.raises(ConfigError, match="--lr_decay"):
        validate(TrainConfig(**tiny(lr_decay=1.5)))


def test_the_ema_g_gets_batch_norm_statistics_of_its_own(tmp_path):
    trainer = make_trainer(tmp_path, steps=40)
    run_steps(trainer, 10)
    bn = trainer.G_ema.norms[0].bn
    copied = bn.running_var.clone()
    assert torch.equal(copied, trainer.G.norms[0].bn.running_var)  # update_ema copies G's statistics
    with torch.no_grad():
        trainer.G_ema.fc.weight.mul_(3.0)  # averaged weights whose activations are not G's: 9x the variance
    inputs = []
    hook = bn.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
    with trainer.sampling_generator() as G:
        settled = bn.running_var.clone()
        inputs.clear()
        G(torch.randn(4096, trainer.cfg.z_dim, generator=torch.Generator().manual_seed(7)))
    hook.remove()
    actual = inputs[0].var((0, 2, 3))  # what the EMA weights really feed this batch norm
    assert ((settled / actual - 1).abs() < 0.1).all()  # measured on its own samples
    assert ((copied / actual) < 0.3).all()  # G's statistics were far off
    state = recorder.checkpoint_state(trainer, 0.0)  # what `gancore sample` loads
    assert torch.equal(state["G_ema"]["norms.0.bn.running_var"], settled)
