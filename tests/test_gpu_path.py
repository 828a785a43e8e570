"""The GPU path, checked on the CPU: what a GPU run would meet, reproduced where a CPU can show it.

- host syncs: the training step reads no tensor value back (each read stalls a GPU), for every network
  and every preset's step (gancore.syncs counts the reads the same way on any device);
- autocast with the grad scaler (fp16) and bf16, on the CPU behind the test-only switch, with the penalties,
  minibatch stddev, packing and progressive growing;
- torch.compile (the eager backend, no C compiler needed) captures each network once: no recompiles;
- `precision auto` on an imitated V100 and A100;
- a run as a GPU writes it resumes and samples on the CPU, with the optimiser kernel of the CPU;
- per-rank random streams that differ in the bits a CPU generator keeps.
The torchrun checks (several processes with distinct streams) are in test_distributed.py.
"""
import json
from pathlib import Path

import pytest
import torch

import gancore
from gancore import distributed, recorder, runs, setup
from gancore.presets import PRESETS
from gancore.setup import load_and_resolve
from gancore.syncs import count_syncs
from gancore.recorder import load_optimizer
from gancore.trainer import Trainer, make_optimizer
from conftest import tiny

NETWORKS = {  # one tiny config per network, each with the batch norm, conditioning or growth it brings
    "mlp": dict(dataset="ring", model="mlp", g_width=16, d_width=16, batch_size=32),
    "dcgan": tiny(conditioning="concat"),
    "resnet": tiny(model="resnet", conditioning="projection", loss="hinge"),
    "progressive": tiny(model="progressive", image_size=16, fade_images=32, stable_images=32),
}


def build(fields: dict, tmp_path) -> Trainer:
    """A Trainer as train() builds it, without the run directory's writes."""
    cfg, data = load_and_resolve({**fields, "runs_root": str(tmp_path)})
    return Trainer(tmp_path, cfg, data)


def syncs_per_step(trainer: Trainer, steps=2, measure=False) -> count_syncs:
    trainer.grow()
    trainer.train_step(measure=measure)  # warm-up: lazy state (optimisers, scalers) is made here
    with count_syncs() as syncs:
        for _ in range(steps):
            trainer.step += 1
            trainer.grow()
            trainer.schedule_lr()
            trainer.train_step(measure=measure)
    return syncs


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("measure", [False, True], ids=["step", "measured-step"])
def test_a_training_step_reads_nothing_back_from_the_device(tmp_path, name, measure):
    syncs = syncs_per_step(build(dict(NETWORKS[name], ema=True), tmp_path), measure=measure)
    assert syncs.count == 0, dict(syncs.where)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_presets_step_reads_nothing_back(tmp_path, preset):
    """Each preset as it trains, narrowed (width, batch) so the step is quick: syncs depend on the code path only."""
    fields = dict(preset=preset, device="cpu", g_width=8, d_width=8, embed_dim=4, batch_size=16, steps=100)
    if PRESETS[preset].get("model") == "mlp":
        fields.update(g_width=16, d_width=16)
    syncs = syncs_per_step(build(fields, tmp_path), steps=1)
    assert syncs.count == 0, dict(syncs.where)


def test_the_counter_sees_each_kind_of_read():
    """The guard above would pass on a counter that sees nothing: each way of reading a value counts once."""
    t = torch.ones(3)
    with count_syncs() as syncs:
        t.sum().item()
        bool(t[0])
        float(t[0])
        int(t[0])
        t.tolist()
        t.numpy()
        t.to("cpu")
        (t > 0).all().cpu()
        t + 1  # device work, no read
    assert syncs.count == 8, dict(syncs.where)


# ---------------------------------------------------------------- autocast and the grad scaler
AMP_RECIPES = {
    "wgan-gp": dict(loss="wgan-gp", n_critic=2),
    "r1": dict(loss="hinge", r1_gamma=1.0),
    "mbstd": dict(mbstd=True),
    "pack": dict(pack=2),
    "progressive": NETWORKS["progressive"],
}


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("recipe", AMP_RECIPES)
def test_autocast_runs_end_done_with_finite_records(runs_root, monkeypatch, precision, recipe):
    """fp16's scaler overflows on its first steps and skips them (right); the skipped steps' inf/NaN penalty and
    gradient norms must stay out of the logged means instead of failing the run at its first record."""
    monkeypatch.setenv(setup.CPU_AUTOCAST_ENV, "1")
    fields = dict(tiny(), **AMP_RECIPES[recipe])
    run_dir = gancore.train(dict(fields, name=recipe, precision=precision, steps=8, log_every=1, ckpt_every=8))
    assert runs.read_status(run_dir)["state"] == "done"
    records = runs.read_metrics(run_dir)
    assert [r["step"] for r in records] == list(range(1, 9))
    values = [v for r in records for k, v in r.items() if isinstance(v, float)]
    assert all(map(torch.isfinite, torch.tensor(values)))
    if precision == "fp16":
        assert "amp_skipped" in records[0]
        kept = [r for r in records if r["amp_skipped"] == 0]
        assert kept and all("loss_d" in r and "grad_norm_d" in r for r in kept)
    else:
        assert all("amp_skipped" not in r for r in records)


def test_penalties_under_the_grad_scaler_read_nothing_back():
    """fp16 penalties unscale their input gradient by the scale as a device tensor (get_scale() is a host sync)."""
    from gancore.regularizers import gradient_penalty, r1_penalty

    D = lambda x, y: (torch.nn.functional.conv2d(x, torch.ones(1, 1, 3, 3)).flatten(1).sum(1), None)  # noqa: E731
    scaler = torch.amp.GradScaler("cpu")
    scaler.scale(torch.ones(()))  # the scale tensor exists from the first scaled loss on
    x = torch.randn(4, 1, 6, 6)
    with count_syncs() as syncs:
        r1_penalty(D, x, scaler=scaler)
        gradient_penalty(D, x, x.flip(0), scaler=scaler)
    assert syncs.count == 0, dict(syncs.where)


def test_fp16_leaves_skipped_steps_out_of_the_means():
    """The mean of 3 steps, one of them skipped with a NaN loss, is the mean of the other two; all skipped: none."""
    from gancore.recorder import RunningMeans

    sums = RunningMeans()
    for value, skipped in ((1.0, False), (float("nan"), True), (3.0, False)):
        sums.add({"loss_d": torch.tensor(value)}, torch.tensor(skipped))
    assert sums.means() == {"loss_d": 2.0, "amp_skipped": 1}
    sums.reset()
    sums.add({"loss_d": torch.tensor(float("inf"))}, torch.tensor(True))
    assert sums.means() == {"amp_skipped": 1}


def test_fp16_that_overflows_at_any_scale_fails_the_run(runs_root, monkeypatch):
    """Skipping is for overflow at a too-large scale; a loss that is NaN whatever the scale is a diverged run."""
    monkeypatch.setenv(setup.CPU_AUTOCAST_ENV, "1")
    monkeypatch.setattr("gancore.trainer.MIN_GRAD_SCALE", 2.0 ** 14)  # reached after 2 skips from 2^16
    monkeypatch.setattr("gancore.losses.d_minimax", lambda r, f, s: (r + f).mean() * float("nan"))
    with pytest.raises(gancore.trainer.RunFailed, match="fp16 gradients overflow at any scale"):
        gancore.train(tiny(name="nan", precision="fp16", steps=8, log_every=4))
    assert runs.read_status(runs_root / "nan")["state"] == "failed"


# ---------------------------------------------------------------- torch.compile
@pytest.mark.parametrize("name", ["dcgan", "mlp"])
def test_compiled_networks_do_not_recompile_after_warm_up(tmp_path, monkeypatch, name):
    import torch._dynamo

    monkeypatch.setenv("GANCORE_COMPILE_BACKEND", "eager")
    torch._dynamo.reset()
    fields = {"dcgan": tiny(), "mlp": NETWORKS["mlp"]}[name]
    trainer = build(dict(fields, compile=True), tmp_path)
    for measure in (False, True):  # warm-up: D with gradients, then frozen for the G step; a measured step
        trainer.train_step(measure=measure)
    with torch._dynamo.config.patch(error_on_recompile=True):
        for measure in (False, True, False):
            trainer.step += 1
            trainer.train_step(measure=measure)
    torch._dynamo.reset()


# ---------------------------------------------------------------- precision auto
class ImitatedGPU:
    """torch.cuda's queries as a GPU of compute capability `cc` answers them; any CUDA tensor still fails here."""

    def __init__(self, monkeypatch, cc):
        self.asked = []
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # counts emulation (a V100: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: self.asked.append(d) or cc)


@pytest.mark.parametrize("gpu, cc, expected", [("V100", (7, 0), "fp32"), ("T4", (7, 5), "fp32"),
                                               ("A100", (8, 0), "bf16"), ("H100", (9, 0), "bf16")])
def test_precision_auto_takes_bf16_only_where_the_gpu_has_it(monkeypatch, gpu, cc, expected):
    imitated = ImitatedGPU(monkeypatch, cc)
    monkeypatch.setenv("LOCAL_RANK", "3")
    cfg = gancore.TrainConfig(dataset="ring")
    setup.validate(cfg)
    data = gancore.data.load_dataset("ring")
    assert setup.resolve_with(cfg, data).precision == expected
    assert setup.resolve_with(cfg, data).device == "cuda"
    assert imitated.asked and set(imitated.asked) == {3}  # its own GPU, not the current device (GPU 0)


# ---------------------------------------------------------------- a GPU run met on a CPU
def as_if_trained_on_a_gpu(run_dir: Path, step: int):
    """Rewrite a CPU run's config and checkpoint as a GPU run writes them: device cuda, precision bf16, fused Adam,
    Philox generator states (not loadable into the CPU's MT19937 generators)."""
    config = json.loads((run_dir / "config.json").read_text())
    runs.write_json_atomic(run_dir / "config.json", dict(config, device="cuda", precision="bf16"))
    path = runs.checkpoint_path(run_dir, step)
    state = torch.load(path, weights_only=True)
    state["config"].update(device="cuda", precision="bf16")
    for opt in ("opt_g", "opt_d"):
        for group in state[opt]["param_groups"]:
            group["fused"] = True
    philox = torch.zeros(16, dtype=torch.uint8)
    state["rng"].update(device="cuda", cuda=philox, data=philox, z=philox)
    runs.torch_save_atomic(state, path)


def test_a_gpu_trained_run_resumes_and_samples_on_the_cpu(runs_root, tmp_path):
    run_dir = Path(gancore.train(tiny(name="gpu-run", steps=4, ckpt_every=4, device="auto")))
    as_if_trained_on_a_gpu(run_dir, 4)
    images = gancore.sample.load_generator(run_dir)  # sampling needs nothing of the GPU
    assert images is not None
    gancore.train(resume=run_dir, steps=8)
    assert runs.read_status(run_dir)["state"] == "done"
    log = (run_dir / "train.log").read_text()
    assert "it trained on cuda and this machine has no CUDA device: it continues on the cpu" in log
    assert "precision bf16 -> fp32" in log
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["device"], config["precision"]) == ("cpu", "fp32")
    state = torch.load(runs.checkpoint_path(run_dir, 8), weights_only=True)
    assert all(not g["fused"] for g in state["opt_g"]["param_groups"] + state["opt_d"]["param_groups"])


@pytest.mark.parametrize("saved_fused, here_fused", [(True, None), (None, True)], ids=["gpu-to-cpu", "cpu-to-gpu"])
def test_the_optimiser_takes_the_kernel_of_the_device_it_resumes_on(saved_fused, here_fused):
    """make_optimizer's choice for this device survives loading a state saved by the other (CPU Adam has a fused
    kernel too, so both directions run here)."""
    cfg = gancore.TrainConfig()
    model = torch.nn.Linear(3, 2)
    saved = torch.optim.Adam(model.parameters(), fused=saved_fused)
    model(torch.ones(1, 3)).sum().backward()
    saved.step()
    here = torch.optim.Adam(model.parameters(), lr=cfg.lr_d, fused=here_fused)
    load_optimizer(here, saved.state_dict())
    assert here.param_groups[0]["fused"] == here_fused
    assert torch.equal(here.state[model.weight]["exp_avg"], saved.state[model.weight]["exp_avg"])
    here.step()  # the step counters are where the kernel wants them
    assert make_optimizer(cfg, model, 1e-3).param_groups[0].get("fused") in (None, False)  # CPU: the plain kernel


# ---------------------------------------------------------------- collectives
def test_a_ddp_step_makes_no_collective_of_its_own(tmp_path, monkeypatch):
    """Under DDP a step's only exchanges are DDP's own (gradients, buffers at the wrapped forwards); the EMA once
    broadcast each of G's buffers every step. A one-process gloo group stands in for the world of two."""
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        calls = []
        for name in ("broadcast", "all_reduce", "all_gather", "all_gather_object", "broadcast_object_list"):
            real = getattr(dist, name)
            monkeypatch.setattr(dist, name, lambda *a, _name=name, _real=real, **k: calls.append(_name) or _real(*a, **k))
        cfg, data = load_and_resolve(dict(tiny(conditioning="concat", ema=True), runs_root=str(tmp_path)))
        trainer = Trainer(tmp_path, cfg, data, world=distributed.World(rank=0, size=2))
        for _ in range(3):
            trainer.step += 1
            trainer.train_step(measure=False)
        assert calls == []
        (tmp_path / "checkpoints").mkdir()
        recorder.save_checkpoint(trainer, 0.0)  # a checkpoint, by contrast, takes rank 0's buffers: one broadcast
        assert calls.count("broadcast") == 1
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------- per-rank streams
@pytest.mark.parametrize("seed", [0, 1, 7, 2**31 - 1, 2**32 + 5, 2**62])
def test_every_rank_draws_its_own_stream_on_a_cpu_generator(seed):
    """A CPU generator keeps a seed's low 32 bits only: ranks must differ there, not only above."""
    draws = [torch.rand(4, generator=torch.Generator().manual_seed(distributed.rank_seed(seed, r))) for r in range(8)]
    assert distributed.rank_seed(seed, 0) == seed
    assert len({tuple(d.tolist()) for d in draws}) == 8
    assert len({distributed.rank_seed(seed, r) % 2**32 for r in range(64)}) == 64


def test_no_module_sets_the_legacy_tf32_flags():
    """torch 2.9+ deprecates `allow_tf32`, and inductor refuses a mix of it and `fp32_precision`: the CUDA path sets
    TF32 through `fp32_precision` only (code that runs on a GPU alone, so read, not run, here)."""
    root = Path(gancore.__file__).parent
    legacy = [f"{p.relative_to(root)}:{n}" for p in root.rglob("*.py")
              for n, line in enumerate(p.read_text().splitlines(), 1) if ".allow_tf32 =" in line]
    assert legacy == []
    assert 'fp32_precision = "tf32"' in (root / "trainer.py").read_text()


def test_a_run_moved_between_devices_resumes_with_fresh_streams_seeded_from_its_seed_and_step(tmp_path):
    """MT19937 and Philox states do not cross devices: a checkpoint of another kind of device continues weights,
    optimisers and counters exactly and starts batches, noise and the global stream from (seed, step)."""
    a = build(tiny(seed=5), tmp_path / "a")
    for _ in range(3):
        a.step += 1
        a.train_step(measure=False)
    state = recorder.checkpoint_state(a, 0.0)
    state["rng"]["device"] = "cuda"  # as a GPU run's checkpoint says
    b = build(tiny(seed=5), tmp_path / "b")
    recorder.load_checkpoint(b, state)
    fresh = 5 + 7919 * 3
    assert torch.equal(b.gen_data.get_state(), torch.Generator().manual_seed(fresh + 1).get_state())
    assert torch.equal(b.gen_z.get_state(), torch.Generator().manual_seed(fresh + 2).get_state())
    assert torch.equal(torch.get_rng_state(),
                       torch.Generator().manual_seed(distributed.rank_seed(fresh, 0)).get_state())
    assert b.step == 3 and all(torch.equal(p, q) for p, q in zip(a.G.parameters(), b.G.parameters()))
    assert any("it was trained on cuda, it resumes on cpu" in n for n in b.notes)


def test_a_checkpoint_from_before_streams_named_their_device_resumes_on_its_configs_device(tmp_path):
    """Older checkpoints kept no `device` beside their random streams: the run's config says where they were made,
    so a CPU run's old checkpoint continues its streams exactly on the CPU (not from fresh ones)."""
    a = build(tiny(seed=5), tmp_path / "a")
    for _ in range(3):
        a.step += 1
        a.train_step(measure=False)
    state = recorder.checkpoint_state(a, 0.0)
    del state["rng"]["device"]  # as written before the streams' device was recorded
    b = build(tiny(seed=5), tmp_path / "b")
    recorder.load_checkpoint(b, state)
    assert torch.equal(b.gen_data.get_state(), a.gen_data.get_state())
    assert torch.equal(b.gen_z.get_state(), a.gen_z.get_state())
    assert not any("resumes on" in n for n in b.notes)


def test_a_resume_continues_this_ranks_own_streams_and_moved_it_reslices_the_fresh_batches(tmp_path):
    """Rank 1 of two takes rank 1's saved streams (dropout, augmentation), not rank 0's; a checkpoint from before
    world_size was recorded is a one-process one; moved to another device, a streaming loader restarts from
    (seed, step) on this rank's slice. A one-process gloo group stands in for the world of two."""
    import torch.distributed as dist

    a = build(tiny(seed=5), tmp_path / "a")
    for _ in range(3):
        a.step += 1
        a.train_step(measure=False)
    state = recorder.checkpoint_state(a, 0.0)
    old = dict(state)
    del old["world_size"]  # an older one-process checkpoint: its own streams continue exactly
    b = build(tiny(seed=5), tmp_path / "b")
    torch.manual_seed(123)
    recorder.load_checkpoint(b, old)
    assert torch.equal(torch.get_rng_state(), state["rng"]["torch"])

    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        cfg, data = load_and_resolve(dict(tiny(seed=5), runs_root=str(tmp_path)))
        one = Trainer(tmp_path / "r1", cfg, data, world=distributed.World(rank=1, size=2))
        theirs = dict(state["rng"], torch=torch.Generator().manual_seed(11).get_state())
        mine = dict(state["rng"], torch=torch.Generator().manual_seed(22).get_state())
        two = dict(state, world_size=2, rng=dict(theirs, ranks=[theirs, mine]))  # what rank 0 writes
        recorder.load_checkpoint(one, two)
        assert torch.equal(torch.get_rng_state(), mine["torch"])
        alone = build(tiny(seed=5), tmp_path / "alone")  # two processes trained it, one resumes it
        recorder.load_checkpoint(alone, two)
        fresh = 5 + 7919 * 3  # dropout and augmentation draws start from (seed, step, rank)
        assert torch.equal(torch.get_rng_state(), torch.Generator().manual_seed(
            distributed.rank_seed(fresh, 0)).get_state())
        assert torch.equal(alone.gen_z.get_state(), theirs["z"])  # batches and noise continue exactly

        one.loader = data.loader(cfg.batch_size, 0, one.device, part=one.part)  # as a memory-mapped set has
        on_gpu = [dict(r, device="cuda") for r in (theirs, mine)]  # as a GPU run's ranks wrote them
        moved = dict(two, rng=dict(on_gpu[0], ranks=on_gpu))
        recorder.load_checkpoint(one, moved)
        want = data.loader(cfg.batch_size, fresh + 1, one.device, prefetch=0, part=(1, 2)).next()
        got = one.loader.next()
        assert all(torch.equal(g, w) for g, w in zip(got, want) if g is not None)
        one.loader.close()
    finally:
        dist.destroy_process_group()
