"""The networks on the GPU path (issue 25), checked on the CPU:

- no forward or backward of any network reads a tensor's value into Python (on a GPU each read waits for every
  queued kernel), for every network, conditioning method and D option (gancore.syncs counts the same reads on
  any device);
- a progressive network keeps its stage and fade as Python numbers beside the buffers a checkpoint carries:
  set by `set_stage`, refreshed by `load_state_dict`, carried by `copy.deepcopy`;
- spectral norm on G leaves conditional batch norm's per-class gain and bias tables alone (the zero bias table
  made G NaN at step 1 under `--sn_g --conditioning projection`).
"""
import copy
import io
import math

import pytest
import torch
from torch.nn.utils import parametrize
from torch.testing import assert_close

import gancore
from gancore import runs
from gancore.config import TrainConfig
from gancore.errors import ConfigError
from gancore.layers import ConditionalBatchNorm
from gancore.models import build_models, sampling_view
from gancore.models.progressive import ProgressiveDiscriminator, ProgressiveGenerator, fade_real
from gancore.setup import check_combination
from gancore.syncs import count_syncs
from conftest import tiny

METHODS = ["none", "concat", "acgan", "projection"]
OPTIONS = {  # D's options and G's norms, each on its own
    "plain": {},
    "mbstd": dict(mbstd=True, mbstd_group=2),
    "pack": dict(pack=2),
    "vbn": dict(vbn=True, vbn_ref=4),
    "sn": dict(sn_g=True, sn_d=True, equalized_lr=False),  # progressive: spectral norm needs plain layers
    "dropout": dict(d_dropout=0.2),
}
K, B, Z = 3, 8, 8  # classes, batch, latent size
IMAGES, POINTS = (1, 16, 16), (2,)


def config(model, conditioning, **fields) -> TrainConfig:
    """A tiny resolved-looking config: every width and depth given, so no data is needed."""
    depth = 0 if model == "progressive" else 2  # progressive: the depth the size implies
    return TrainConfig(dataset="digits", model=model, conditioning=conditioning, z_dim=Z, g_width=4, d_width=4,
                       g_depth=2, d_depth=depth, embed_dim=4, batch_size=B, steps=1, **fields)


def allowed(model, conditioning, option, shape) -> bool:
    try:
        check_combination(config(model, conditioning, **OPTIONS[option]), points=len(shape) == 1)
    except ConfigError:
        return False
    return True


CASES = [pytest.param(model, conditioning, option, shape,
                      id=f"{model}-{conditioning}-{option}" + ("-points" if len(shape) == 1 else ""))
         for model in ["mlp", "dcgan", "resnet", "progressive"]
         for shape in ([POINTS, IMAGES] if model == "mlp" else [IMAGES])
         for conditioning in METHODS for option in OPTIONS if allowed(model, conditioning, option, shape)]


def batch(conditioning, shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, Z, generator=g)
    y = torch.randint(0, K, (B,), generator=g) if conditioning != "none" else None
    x = torch.rand(B, *shape, generator=g) * 2 - 1
    return z, y, x


# ---------------------------------------------------------------- no host reads
@pytest.mark.parametrize("model, conditioning, option, shape", CASES)
def test_forward_and_backward_read_nothing_back(model, conditioning, option, shape):
    torch.manual_seed(0)
    G, D = build_models(config(model, conditioning, **OPTIONS[option]), shape, K if conditioning != "none" else 0)
    z, y, x = batch(conditioning, shape)
    with count_syncs() as syncs:
        if model == "progressive":  # mid-fade at 8 px: both paths of G and D run, as the trainer's step does
            for net in (G, D):
                net.set_stage(1, 0.5)
            x = fade_real(x, *G.phase())
        fake = G(z, y)
        loss = D(fake, y)[0].mean() - D(x, y)[0].mean()
        loss.backward()
        G.eval()
        with torch.no_grad():
            sampling_view(G)(z, y)  # as samplers and scorers call G
    assert syncs.count == 0, dict(syncs.where)


# ---------------------------------------------------------------- progressive: stage and fade in Python
def progressive(shape=IMAGES, **kw):
    torch.manual_seed(0)
    cond = dict(num_classes=K, conditioning="concat", embed_dim=4)
    return (ProgressiveGenerator(Z, shape, 4, width_max=8, **cond, **kw),
            ProgressiveDiscriminator(shape, 4, width_max=8, mbstd=2, **cond, **kw))


def test_a_progressive_step_reads_its_phase_without_host_reads():
    G, D = progressive()
    z, y, x = batch("concat", IMAGES)
    with count_syncs() as syncs:
        for phase in [(2, 0.5), (2, 0.5), (2, 0.625)]:  # what the trainer's grow() and step do, twice over
            for net in (G, D):
                net.set_stage(*phase)
            real = fade_real(x, *phase)
            loss = D(G(z, y), y)[0].mean() - D(real, y)[0].mean()
            loss.backward()
            assert G.phase() == D.phase() == phase and G.resolution == 16
    assert syncs.count == 0, dict(syncs.where)


def test_set_stage_writes_the_buffers_only_when_the_phase_changes():
    G, _ = progressive()
    G.set_stage(1, 0.25)
    versions = G.stage._version, G.alpha._version
    G.set_stage(1, 0.25)  # every step of a stable phase: nothing to do
    assert (G.stage._version, G.alpha._version) == versions
    G.set_stage(1, 0.5)
    assert G.alpha._version > versions[1]
    assert (int(G.stage), float(G.alpha)) == G.phase() == (1, 0.5)
    with pytest.raises(ValueError, match="outside"):
        G.set_stage(3, 1.0)
    assert G.phase() == (1, 0.5)


def test_the_python_alpha_is_the_one_the_buffer_holds():
    """The fade computes with alpha as its float32 buffer (and so a checkpoint) holds it: the outputs are those a
    network read back from its buffers, bit for bit."""
    G, _ = progressive()
    G.set_stage(1, 0.2019)  # not a float32 number
    assert G.phase()[1] == float(G.alpha) != 0.2019


def test_a_loaded_state_dict_brings_its_phase():
    G, D = progressive()
    for net in (G, D):
        net.set_stage(2, 0.5)
    z, y, x = batch("concat", IMAGES)
    buffer = io.BytesIO()
    torch.save({"G": G.state_dict(), "D": D.state_dict()}, buffer)  # as a checkpoint holds them
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    G2, D2 = progressive()
    for net in (G2, D2):
        net.set_stage(0)
    G2.load_state_dict(saved["G"])
    D2.load_state_dict(saved["D"])
    assert G2.phase() == D2.phase() == (2, 0.5)
    with torch.no_grad():
        assert_close(G2(z, y), G(z, y), rtol=0, atol=0)
        assert_close(D2(x, y)[0], D(x, y)[0], rtol=0, atol=0)
    G3, _ = progressive()
    G3.set_stage(1, 0.25)
    sampling_view(G3).load_state_dict(sampling_view(G).state_dict())  # loaded through a module holding G
    assert G3.phase() == (2, 0.5)


def test_a_deep_copy_has_its_own_phase():
    G, _ = progressive()
    G.set_stage(1, 0.25)
    G_ema = copy.deepcopy(G)  # the trainer's EMA G (its step: tests/test_progressive.py)
    assert G_ema.phase() == (1, 0.25)
    G_ema.set_stage(2, 1.0)
    assert G.phase() == (1, 0.25) and (int(G.stage), float(G.alpha)) == (1, 0.25)
    assert G_ema.phase() == (2, 1.0) and (int(G_ema.stage), float(G_ema.alpha)) == (2, 1.0)
    z, y, _ = batch("concat", IMAGES)
    assert G(z, y).shape == (B, 1, 8, 8) and G_ema(z, y).shape == (B, 1, 16, 16)


# ---------------------------------------------------------------- spectral norm and conditional batch norm
@pytest.mark.parametrize("model", ["dcgan", "resnet"])
def test_spectral_norm_leaves_conditional_bn_tables_alone(model):
    G, D = build_models(config(model, "projection", sn_g=True, sn_d=True), IMAGES, K)
    norms = [m for m in G.modules() if isinstance(m, ConditionalBatchNorm)]
    assert norms
    for m in norms:  # per-class gain and bias: looked up, not a linear map of the input
        assert not parametrize.is_parametrized(m.gamma) and not parametrize.is_parametrized(m.beta)
        assert (m.gamma.weight == 1).all() and (m.beta.weight == 0).all()
    assert parametrize.is_parametrized(G.fc) and parametrize.is_parametrized(G.to_image)  # the rest still is
    assert parametrize.is_parametrized(D.head.embed)  # D's projection embedding is a linear map: normalised


SN_CASES = [pytest.param(model, conditioning, id=f"{model}-{conditioning}")
            for model in ["mlp", "dcgan", "resnet", "progressive"] for conditioning in METHODS
            if allowed(model, conditioning, "sn", IMAGES)]


@pytest.mark.parametrize("model, conditioning", SN_CASES)
def test_spectral_norm_on_g_is_finite_with_every_conditioning(model, conditioning):
    torch.manual_seed(0)
    G, D = build_models(config(model, conditioning, **OPTIONS["sn"]), IMAGES, K if conditioning != "none" else 0)
    z, y, x = batch(conditioning, IMAGES)
    fake = G(z, y)
    assert torch.isfinite(fake).all()
    (D(fake, y)[0].mean() - D(x, y)[0].mean()).backward()
    for name, p in G.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("model", ["dcgan", "resnet"])
def test_sn_g_with_projection_trains(runs_root, model):
    run_dir = gancore.train(tiny(model=model, conditioning="projection", sn_g=True, steps=3, log_every=1,
                                 sample_every=3, ckpt_every=3, runs_root=str(runs_root), name=f"sn-{model}"))
    assert runs.read_status(run_dir)["state"] == "done"
    records = runs.read_metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(math.isfinite(r[k]) for r in records for k in ("loss_d", "loss_g"))
