"""Every objective x network x conditioning combination that is allowed builds, trains a few steps
without NaN, checkpoints and resumes exactly; every refused one says why."""
import math

import pytest
import torch

import gancore
from gancore import runs
from gancore.conditioning import METHODS
from gancore.config import TrainConfig
from gancore.catalogue import OBJECTIVES
from gancore.losses import functions
from gancore.models import NETWORKS
from gancore.presets import PRESETS
from gancore.setup import validate
from conftest import tiny
from test_exact_resume import assert_same_records, assert_same_state, ema_is_an_average

LOSSES, CONDITIONINGS = tuple(OBJECTIVES), tuple(METHODS)
REFUSED = {("mlp", "projection"): "projection conditions G through conditional batch norm"}
IMAGE_COMBOS = [(l, n, c) for l in LOSSES for n in NETWORKS for c in CONDITIONINGS if (n, c) not in REFUSED]


def assert_finite_history(run, steps):
    m = run.metrics
    assert list(m["step"]) == steps
    for col in ("loss_d", "loss_g", "d_real", "d_fake", "grad_norm_d", "grad_norm_g"):
        assert m[col].map(math.isfinite).all(), col


@pytest.mark.parametrize("loss, network, conditioning", IMAGE_COMBOS)
def test_images_train_checkpoint_resume(runs_root, loss, network, conditioning):
    """The run trains straight to step 4; then its last checkpoint is lost (as when the process dies just before
    writing it) and it resumes from step 2: it must end bit for bit where the straight run did, with the same
    metrics lines. The straight run is its own uninterrupted twin, so the check costs no more steps than a resume
    alone. ema_rampup 1: the EMA G averages G's weights from step 2 on (at the default it copies G for 20 steps)."""
    run_dir = gancore.train(tiny(loss=loss, conditioning=conditioning, model=network, steps=4, ckpt_every=2,
                                 sample_every=4, ema_rampup=1.0))
    run = gancore.load_run(run_dir)
    assert run.status["state"] == "done"
    assert_finite_history(run, [2, 4])
    assert sorted(run.checkpoints) == [2, 4]
    straight, records = runs.load_checkpoint(run.checkpoints[4]), runs.read_metrics(run_dir)
    assert ema_is_an_average(straight)
    run.checkpoints[4].unlink()
    gancore.train(resume=run_dir)
    run = gancore.load_run(run_dir)
    assert run.status["state"] == "done" and [r["step"] for r in run.status["resumes"]] == [2]
    assert_same_state(runs.load_checkpoint(run.checkpoints[4]), straight)
    assert_same_records(runs.read_metrics(run_dir), records)


@pytest.mark.parametrize("conditioning", [c for c in CONDITIONINGS if ("mlp", c) not in REFUSED])
@pytest.mark.parametrize("loss", LOSSES)
def test_points_train_with_mlp(runs_root, loss, conditioning):
    run = gancore.load_run(gancore.train(tiny(dataset="ring", loss=loss, conditioning=conditioning, eval_every=3)))
    assert run.config["model"] == "mlp"  # auto picks mlp for points
    assert run.status["state"] == "done"
    evals = run.metrics.dropna(subset=["modes"])
    assert list(evals["step"]) == [3, 6]
    assert evals["hq_share"].between(0, 1).all()


@pytest.mark.parametrize("loss", LOSSES)
def test_projection_with_mlp_is_refused(loss):
    with pytest.raises(gancore.ConfigError, match="--conditioning: projection conditions G through conditional"):
        validate(TrainConfig(**tiny(model="mlp", conditioning="projection", loss=loss)))


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(dataset="ring", model="resnet"), "--model: resnet needs images"),
        (dict(dataset="grid", model="dcgan"), "--model: dcgan needs images"),
        (dict(model="mlp", vbn=True), "--vbn: virtual batch norm replaces G's batch norm"),
        (dict(conditioning="projection", vbn=True), "--vbn: projection conditioning needs G's conditional batch norm"),
        (dict(conditioning="concat", pack=2), "--pack: packing joins 2 samples into one D decision"),
        (dict(pack=3), "--pack: batch_size 16 must be a multiple of pack 3"),
        (dict(loss="hinge", label_smoothing=0.1), "--label_smoothing: hinge has no target to smooth"),
        (dict(loss="wgan-gp", label_smoothing=0.1), "--label_smoothing: wgan-gp has no target"),
        (dict(label_smoothing=0.7), "--label_smoothing: must be in [0, 0.5)"),
        (dict(dataset="ring", diffaug="translation"), "--diffaug: DiffAugment transforms images"),
        (dict(diffaug="translation,rotate"), "--diffaug: unknown policy 'rotate'"),
        (dict(d_dropout=1.0), "--d_dropout: must be in [0, 1)"),
        (dict(gp_weight=-1.0), "--gp_weight: must be >= 0"),
        (dict(clip_value=0.0), "--clip_value: must be > 0"),
        (dict(mbstd_group=1), "--mbstd_group: must be >= 2"),
        (dict(optimizer="sgd"), "--optimizer: unknown value 'sgd'"),
        (dict(preset="nope"), "--preset: unknown preset 'nope'"),
        (dict(pad_to=17), "--pad_to: must be the image size (16) plus an even number of pixels (got 17)"),
        (dict(dataset="ring", pad_to=32), "--pad_to: only the dcgan networks pad (model is mlp)"),
    ],
)
def test_refused_combinations_say_why(runs_root, fields, message):
    with pytest.raises(gancore.ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        gancore.train(tiny(**fields))
    assert not runs_root.exists() or not any(runs_root.iterdir())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_trains_at_tiny_size(runs_root, name):
    small = dict(steps=4, batch_size=16, g_width=8, d_width=8, log_every=2, sample_every=4, ckpt_every=4,
                 eval_every=4, eval_n=200, device="cpu")
    run = gancore.load_run(gancore.train({"preset": name, **small}))
    assert run.status["state"] == "done"
    for key, value in PRESETS[name].items():
        if key not in small:
            assert run.config[key] == value, key  # the preset's fields are in force ...
    assert run.config["steps"] == 4 and run.config["preset"] == name  # ... under the ones given


def test_preset_from_a_trainconfig_keeps_explicit_fields(runs_root):
    cfg = TrainConfig(preset="wgan-gp-grid", steps=4, log_every=2, ckpt_every=2, sample_every=2, eval_every=0)
    run = gancore.load_run(gancore.train(cfg))
    assert run.config["loss"] == "wgan-gp" and run.config["n_critic"] == 5 and run.config["steps"] == 4


def test_losses_have_the_published_form():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    d, g = functions("minimax")
    sig = torch.sigmoid
    expected_d = -(torch.log(sig(real)).mean() + torch.log(1 - sig(fake)).mean())
    assert torch.allclose(d(real, fake), expected_d)
    assert torch.allclose(g(fake), torch.log(1 - sig(fake)).mean())
    _, g_ns = functions("nonsaturating")
    assert torch.allclose(g_ns(fake), -torch.log(sig(fake)).mean())
    d_ls, g_ls = functions("lsgan")
    assert torch.allclose(d_ls(real, fake), 0.5 * ((real - 1) ** 2).mean() + 0.5 * (fake**2).mean())
    assert torch.allclose(g_ls(fake), 0.5 * ((fake - 1) ** 2).mean())
    d_w, g_w = functions("wgan")
    assert torch.allclose(d_w(real, fake), fake.mean() - real.mean()) and torch.allclose(g_w(fake), -fake.mean())
    assert functions("wgan-gp") == functions("wgan")  # the penalty is added by the trainer
    d_h, g_h = functions("hinge")
    assert torch.allclose(d_h(real, fake), torch.tensor((0 + 2) / 2 + (1.5 + 0) / 2))
    assert torch.allclose(g_h(fake), -fake.mean())


def test_saturating_generator_loss_has_weak_gradient_when_d_rejects_fakes():
    # The reason non-saturating exists: at D(G(z)) ~ 0 the minimax gradient vanishes.
    fake = torch.tensor([-8.0], requires_grad=True)
    functions("minimax")[1](fake).backward()
    g_minimax = fake.grad.abs().item()
    fake.grad = None
    functions("nonsaturating")[1](fake).backward()
    assert g_minimax < 1e-3 < fake.grad.abs().item()


def test_the_28px_recipe_fills_only_the_fields_left_auto():
    recipe = ("pad_to", "batch_size", "steps", "lr_g", "lr_d", "beta1", "beta2")
    values = lambda c: tuple(getattr(c, k) for k in recipe)  # noqa: E731
    assert values(TrainConfig(conditioning="concat")) == (32, 48, 2000, 1e-3, 1e-3, 0.2, 0.99)  # MNIST-5k, auto net
    for other in (dict(dataset="ring"), dict(dataset="digits"), dict(loss="wgan-gp"), dict(model="resnet"),
                  dict(image_size=32), dict(dataset="stacked-mnist")):
        assert values(TrainConfig(**other)) == (0, 64, 5000, 2e-4, 2e-4, 0.5, 0.999), other
    mine = TrainConfig(batch_size=64, lr_g=5e-4, beta1=0.0)  # beta1's auto is -1: 0 is a value (WGAN-GP's)
    assert values(mine) == (32, 64, 2000, 5e-4, 1e-3, 0.0, 0.99)
    assert mine.explicit_fields() == {"batch_size": 64, "lr_g": 5e-4, "beta1": 0.0}  # the recipe's are not the user's
    assert TrainConfig.from_dict({"preset": "ring-lr-decay"}).steps == 15000  # a preset's values win over auto


def test_pad_to_gives_a_28px_dcgan_the_stages_of_32px(runs_root):
    from gancore.models import build_models
    from gancore.setup import load_and_resolve

    cfg, data = load_and_resolve(tiny(pad_to=32, conditioning="concat"))  # 16 px digits: 2 stages, 32 px: 3
    assert (cfg.g_depth, cfg.d_depth) == (3, 3)
    G, D = build_models(cfg, data.shape, data.num_classes)
    seen = []
    D.body[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    y = torch.arange(4)
    x = G(torch.randn(4, cfg.z_dim), y)
    D(x, y)
    assert x.shape == (4, 1, 16, 16)  # G's 32 px images cropped to the data's size
    assert seen[0].shape == (4, 2, 32, 32)  # D reads 32 px: the image padded, and the label channel
    border = torch.ones(32, 32, dtype=torch.bool)
    border[8:-8, 8:-8] = False
    assert (seen[0][:, 0][:, border] == -1).all() and torch.equal(seen[0][:, 0, 8:-8, 8:-8], x[:, 0])
    run = gancore.load_run(gancore.train(tiny(name="padded", pad_to=32)))
    assert run.status["state"] == "done" and run.config["pad_to"] == 32
