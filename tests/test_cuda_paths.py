"""Bugs of the CUDA-only paths, reproduced on the CPU where they can be: fp16 minibatch stddev, penalties
under a grad scaler, RNG states that cannot cross devices, and checkpoints written before these fixes."""
from pathlib import Path

import pytest
import torch

import gancore
from gancore import runs
from gancore.layers import MinibatchStdDev
from gancore.regularizers import gradient_penalty, r1_penalty
from conftest import tiny


def test_minibatch_stddev_in_fp16_has_finite_gradients_at_zero_variance():
    x = torch.zeros(8, 4, 3, 3, dtype=torch.float16, requires_grad=True)  # a collapsed batch: no variance at all
    out = MinibatchStdDev(4)(x)
    assert out.dtype == torch.float16 and out.shape == (8, 5, 3, 3)
    out.float().sum().backward()
    assert torch.isfinite(x.grad).all()


class TinyGradientD:
    """D(x) = 1e-8 * sum(x), computed in fp16 as under autocast: its input gradient (1e-8) underflows in fp16."""

    def __call__(self, x, y):
        return (x.half() * torch.tensor(1e-8, dtype=torch.float16)).flatten(1).sum(1), None


@pytest.mark.parametrize("penalty", ["r1", "gp"])
def test_penalties_scale_before_differentiating_in_fp16(penalty):
    x = torch.randn(4, 1, 4, 4)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    if penalty == "r1":
        unscaled, scaled = r1_penalty(TinyGradientD(), x), r1_penalty(TinyGradientD(), x, scaler=scaler)
        assert unscaled.item() == 0.0  # the gradient underflowed: R1 saw nothing
        assert scaled.item() == pytest.approx(16 * 1e-16, rel=0.05)  # 16 pixels of 1e-8 each, squared
    else:
        torch.manual_seed(0)
        unscaled = gradient_penalty(TinyGradientD(), x, x.flip(0))
        torch.manual_seed(0)
        scaled = gradient_penalty(TinyGradientD(), x, x.flip(0), scaler=scaler)
        assert unscaled.item() == 1.0 and scaled.item() == pytest.approx((1 - 4e-8) ** 2)


def test_a_checkpoint_from_another_kind_of_device_resumes_with_fresh_streams(runs_root):
    """CPU generators are MT19937, CUDA's Philox: a state from one cannot seed the other."""
    run_dir = gancore.train(tiny(name="moved", steps=4, ckpt_every=4))
    path = runs.checkpoint_path(run_dir, 4)
    state = torch.load(path, weights_only=True)
    state["rng"]["device"] = "cuda"
    runs.torch_save_atomic(state, path)
    gancore.train(resume=run_dir, steps=8)
    assert runs.read_status(run_dir)["state"] == "done"
    assert "it was trained on cuda, it resumes on cpu" in (Path(run_dir) / "train.log").read_text()


def test_checkpoints_written_before_the_device_record_still_resume_exactly(runs_root):
    straight = gancore.train(tiny(name="straight", steps=8, ckpt_every=4))
    old = gancore.train(tiny(name="old", steps=4, ckpt_every=4))
    path = runs.checkpoint_path(old, 4)
    state = torch.load(path, weights_only=True)
    del state["world_size"], state["rng"]["device"]
    state["rng"]["cuda"] = []  # the old format: every visible GPU's state, none on a CPU host
    runs.torch_save_atomic(state, path)
    gancore.train(resume=old, steps=8)
    a, b = torch.load(runs.checkpoint_path(straight, 8)), torch.load(runs.checkpoint_path(old, 8))
    for name in a["G"]:
        assert torch.equal(a["G"][name], b["G"][name]), name
