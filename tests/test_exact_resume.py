"""Exact resume with the EMA past its ramp-up, for every network and conditioning: a run interrupted at a checkpoint
and resumed ends bit for bit where its uninterrupted twin does (weights, EMA, optimisers, counters, random streams)
and writes the same metrics lines. Also the comparisons the other resume tests use (`assert_same_state`,
`assert_same_records`)."""
import pytest
import torch

import gancore
from gancore import runs
from gancore.conditioning import METHODS
from gancore.models import NETWORKS
from conftest import tiny

REFUSED = {("mlp", "projection")}  # setup.check_combination: the mlp G has no conditional batch norm
COMBOS = [(n, c) for n in NETWORKS for c in METHODS if (n, c) not in REFUSED]
UNTIMED = {"time", "img_per_s", "eval_s"}  # the only fields of a metrics line that may differ between twins


def assert_equal_tensors(a: dict, b: dict, what: str):
    assert a.keys() == b.keys(), what
    for name in a:
        assert torch.equal(a[name], b[name]), f"{what}.{name}"


def assert_same_state(a: dict, b: dict):
    """Checkpoint states a and b (runs.load_checkpoint) hold the same training state, bit for bit: the weights and
    buffers of G, D and the EMA G, both optimisers' moments and step counts, both grad scalers, the counters and
    every random stream (batches, noise, torch's global one that dropout and augmentation draw from)."""
    assert (a["step"], a["images_seen"]) == (b["step"], b["images_seen"])
    for key in ("G", "D", "G_ema"):
        assert_equal_tensors(a[key], b[key], key)
    for key in ("opt_g", "opt_d"):
        assert a[key]["param_groups"] == b[key]["param_groups"], key
        assert a[key]["state"].keys() == b[key]["state"].keys(), key
        for i in a[key]["state"]:
            assert_equal_tensors(a[key]["state"][i], b[key]["state"][i], f"{key}.state[{i}]")
    assert (a["scaler_g"], a["scaler_d"]) == (b["scaler_g"], b["scaler_d"])
    for stream in ("data", "z", "torch"):
        assert torch.equal(a["rng"][stream], b["rng"][stream]), f"rng.{stream}"
    assert (a["rng"]["numpy"], a["rng"]["python"]) == (b["rng"]["numpy"], b["rng"]["python"])


def ema_is_an_average(state: dict) -> bool:
    """Whether a checkpoint's EMA G differs from G in its weights (not only in the batch-norm statistics that
    settle_ema_norms gives it): an EMA that copies G each step would not."""
    own = ("running_mean", "running_var", "num_batches_tracked")
    return any(not torch.equal(state["G"][k], state["G_ema"][k]) for k in state["G"] if not k.endswith(own))


def assert_same_records(a: list[dict], b: list[dict]):
    """Two runs' metrics.jsonl lines are equal, field for field, but for the clock's."""
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        assert {k: v for k, v in ra.items() if k not in UNTIMED} == {k: v for k, v in rb.items() if k not in UNTIMED}


@pytest.mark.parametrize("network, conditioning", COMBOS)
def test_resumed_run_equals_its_uninterrupted_twin_with_the_ema_past_ramp_up(runs_root, network, conditioning):
    """ema_decay 0.5 and ema_rampup 1: the averaging horizon is min(2, step), so from step 2 on the EMA G is a true
    average of G's weights, not a copy (at the defaults it copies G for 20 steps, longer than the tiny runs). The
    interrupted run resumes at step 3 and trains steps 4-6 with the EMA at its full horizon. Progressive growing gets
    a schedule of its own (the auto one follows `steps`, which the twins set differently): stage 0 for 2 steps, then
    8 px fading in over steps 3-4, so the resume lands mid-fade."""
    fields = tiny(model=network, conditioning=conditioning, ema_decay=0.5, ema_rampup=1.0, log_every=3, ckpt_every=3,
                  sample_every=6, **(dict(stable_images=32, fade_images=32) if network == "progressive" else {}))
    straight = gancore.train(dict(fields, name="straight", steps=6))
    split = gancore.train(dict(fields, name="split", steps=3))
    gancore.train(resume=split, steps=6)
    a, b = runs.load_checkpoint(runs.checkpoint_path(straight, 6)), runs.load_checkpoint(runs.checkpoint_path(split, 6))
    assert_same_state(a, b)
    assert ema_is_an_average(a)
    assert_same_records(runs.read_metrics(straight), runs.read_metrics(split))
    status = runs.read_status(split)
    assert status["state"] == "done" and status["step"] == 6 and [r["step"] for r in status["resumes"]] == [3]
