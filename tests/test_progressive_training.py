"""Progressive growing in the trainer: the schedule drives every step, a resume mid-fade is exact, grids and
samples come at the final size, and settings that cannot work are refused with the reason."""
import pytest
import torch
from PIL import Image

import gancore
from gancore import runs
from gancore.config import TrainConfig
from gancore.models.progressive import Schedule
from gancore.setup import load_and_resolve
from conftest import tiny


def pg(**overrides) -> dict:
    """16 px digits: stages at 4, 8 and 16 px; 16 images per step, a phase every 3 steps."""
    fields = dict(model="progressive", conditioning="concat", fade_images=48, stable_images=48, steps=16,
                  log_every=1, sample_every=8, ckpt_every=8)
    return tiny(**{**fields, **overrides})


def test_a_tiny_progressive_run_goes_through_every_stage(runs_root):
    run_dir = gancore.train(pg(name="grow"))
    records = runs.read_metrics(run_dir)
    schedule = Schedule(3, 48, 48)
    for r in records:  # each step's phase is set from the images seen before it
        stage, alpha = schedule.stage_alpha(r["images_seen"] - 16)
        assert (r["resolution"], r["alpha"]) == (4 * 2 ** stage, round(alpha, 4)), r["step"]
    # steps 1-3 see 0-47 images (stage 0), 4-6 fade 8 px in, 7-9 hold it, 10-12 fade 16 px in, then hold
    assert [r["resolution"] for r in records][::3] == [4, 8, 8, 16, 16, 16]
    assert records[-1]["resolution"] == 16 and records[-1]["alpha"] == 1.0
    assert any(0 < r["alpha"] < 1 for r in records)
    for step, path in runs.sample_grids(run_dir).items():  # the grid at 8 steps is drawn at 8 px, shown at 16
        assert Image.open(path).size == Image.open(runs.sample_grids(run_dir)[16]).size
    images, labels = gancore.load_run(run_dir).sample(20, labels=3, seed=0)
    assert images.shape == (20, 16, 16, 1) and (labels == 3).all()


def test_resume_inside_a_fade_equals_the_uninterrupted_run(runs_root):
    straight = gancore.train(pg(name="straight"))
    split = gancore.train(pg(name="split", steps=5, ckpt_every=5))  # step 5: the fade to 8 px, alpha 1/3
    assert runs.read_metrics(split)[-1]["alpha"] == pytest.approx(1 / 3, abs=1e-4)
    gancore.train(resume=split, steps=16)
    a = torch.load(runs.checkpoint_path(straight, 16), weights_only=True)
    b = torch.load(runs.checkpoint_path(split, 16), weights_only=True)
    for key in ("G", "D", "G_ema"):
        for name in a[key]:
            torch.testing.assert_close(a[key][name], b[key][name], msg=f"{key}.{name}")
    assert [r["loss_d"] for r in runs.read_metrics(straight)] == [r["loss_d"] for r in runs.read_metrics(split)]


def test_28px_data_is_resized_to_32_and_the_schedule_fills_the_run():
    cfg, data = load_and_resolve(TrainConfig(model="progressive", dataset="mnist-5k", steps=1000, batch_size=64))
    assert data.shape == (1, 32, 32) and cfg.image_size == 32 and cfg.g_depth == cfg.d_depth == 3
    assert cfg.fade_images == cfg.stable_images == 1000 * 64 // 8  # 4 stages: 8 equal phases, the last kept longer


@pytest.mark.parametrize("fields, message", [
    (dict(vbn=True), "--vbn: the progressive G normalises with pixel norm"),
    (dict(sn_d=True), "--sn_d/--sn_g: equalized learning rate"),
    (dict(image_size=24), "--image_size: progressive growing doubles from 4 px"),
    (dict(dataset="ring"), "--model: progressive needs images"),
])
def test_settings_that_cannot_work_are_refused(runs_root, fields, message):
    with pytest.raises(gancore.ConfigError, match=message):
        gancore.train(pg(**fields))


def test_spectral_norm_without_equalized_lr_trains(runs_root):
    run_dir = gancore.train(pg(name="sn", sn_d=True, equalized_lr=False, loss="hinge", steps=4))
    assert runs.read_status(run_dir)["state"] == "done"


def test_monitor_shows_the_stage_and_the_fade(runs_root):
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT

    gancore.train(pg(name="shown", steps=11))  # ends inside the fade to 16 px
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    at.session_state["run"] = "shown"
    at.run()
    at.switch_page("pages/monitor.py").run()
    assert not at.exception, [e.value for e in at.exception]
    texts = " ".join(str(getattr(p, "text", "")) for p in at.get("progress"))
    assert "progressive growing: 16 px of 16 px, fading in (alpha 0.33)" in texts, texts
