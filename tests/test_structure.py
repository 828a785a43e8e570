"""The shape the code promises: a leaf config, a lazy package face, conditioning methods that own their
loss, and one table of metric names that everything written is declared in."""
import dataclasses
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import gancore
from gancore import catalogue, records, runs
from gancore.conditioning import METHODS, Method
from conftest import ROOT, tiny


def modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_config_is_a_leaf():
    loaded = {m for m in modules_after("import gancore.config") if m.split(".")[0] == "gancore"}
    assert loaded == {"gancore", "gancore.config", "gancore.catalogue", "gancore.errors"}  # leaves


def test_readers_of_run_directories_do_not_import_torch_or_the_trainer():
    loaded = modules_after("import gancore, gancore.views, gancore.runs, gancore.records")
    assert "torch" not in loaded and "gancore.trainer" not in loaded


def test_the_layers_hold(tmp_path):
    """import-linter's contracts in .importlinter: the layers of the training stack (every import counts, inside
    functions too), the leaves, and the dashboard's readers without torch."""
    out = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "3 kept, 0 broken" in out.stdout


def test_the_catalogue_is_a_leaf_and_names_what_the_modules_define():
    loaded = {m for m in modules_after("import gancore.catalogue") if m.split(".")[0] in ("gancore", "torch")}
    assert loaded == {"gancore", "gancore.errors", "gancore.catalogue"}  # what `import gancore` loads, and it
    from gancore import catalogue, setup

    assert catalogue.CHOICES == setup.choices()  # each list as its module defines it: add a new name to both


@pytest.mark.parametrize("name", catalogue.EMBEDDED)
@pytest.mark.parametrize("size", [0, 32])
def test_the_declared_facts_of_each_embedded_set_are_the_loaded_ones(name, size):
    from gancore.data import load_dataset
    from gancore.setup import facts_of

    loaded = facts_of(load_dataset(name, image_size=size))
    declared = catalogue.embedded_facts(name, image_size=size)
    assert declared == dataclasses.replace(loaded, point_std=None)


@pytest.mark.parametrize("fields", [{}, dict(dataset="digits", conditioning="concat", steps=300), dict(dataset="ring"),
                                    dict(dataset="grid", pack=4, lr_decay=0.5), dict(model="progressive"),
                                    dict(model="resnet", dataset="digits", eval_every=0), dict(dataset="stacked-mnist"),
                                    dict(image_size=32, loss="wgan-gp", preset="dcgan-ns"), dict(dataset="mnist-5k",
                                                                                                channels=3, image_size=24)])
def test_the_launch_forms_preview_resolves_as_the_trainer_does(fields):
    """setup.preview (no torch, no data: the Launch form's auto fields) gives the config the trainer resolves, but
    for what the machine decides (device, precision) and the std of 2-D points, known once they are drawn."""
    from gancore import launch, setup

    preview, resolved = setup.preview(fields).to_dict(), launch.check_config(fields).to_dict()
    machine = {"device", "precision"} | ({"point_scale"} if preview["dataset"] in catalogue.POINT_SETS else set())
    assert {k: v for k, v in preview.items() if k not in machine} == {k: v for k, v in resolved.items()
                                                                       if k not in machine}
    assert preview["device"] == "auto" and (preview["point_scale"] is None) == (preview["dataset"] in
                                                                                  catalogue.POINT_SETS)


def test_the_launch_page_imports_no_torch(tmp_path):
    """The Launch page fills its lists and auto fields from the catalogue (its cold load was the slowest of the
    dashboard walk while it imported torch); torch loads when a run is launched, prefetched in the background
    while the form is filled in (here left out, to see what the page's own script imports)."""
    code = f"""
import os, sys
os.environ["GANCORE_RUNS"] = {str(tmp_path)!r}
sys.path.insert(0, {str(ROOT / "dashboard")!r})
import common
asked = []
common.prefetch = lambda *modules: asked.extend(modules)
from streamlit.testing.v1 import AppTest
at = AppTest.from_file({str(ROOT / "dashboard" / "app.py")!r}, default_timeout=60)
at.run()
at.switch_page("pages/launch.py").run()
assert not at.exception, at.exception
assert at.number_input(key="f_steps").proto.placeholder == "auto: 2,000", at.number_input(key="f_steps").proto.placeholder
at.selectbox(key="f_dataset").set_value("ring").run()
assert at.number_input(key="f_z_dim").proto.placeholder == "auto: 2"
assert at.number_input(key="f_point_scale").proto.placeholder == "auto"
assert "torch" in asked, asked  # after the first change to the form  # what the Launch button needs, prefetched
print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] == "torch")))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == []


def test_the_lazy_face_still_serves_the_api():
    assert callable(gancore.train) and gancore.TrainConfig(dataset="ring").steps == 5000 and issubclass(gancore.Run, runs.Run)
    trainer = importlib.import_module("gancore.trainer")  # importing the module never shadows the function
    assert callable(gancore.train) and gancore.train is trainer.train


def test_a_new_conditioning_method_is_one_entry_in_METHODS(runs_root, monkeypatch):
    """A method with its own loss terms trains end to end without the trainer knowing its name."""
    seen = []

    def d_loss(cfg, real_cls, fake_cls, y):
        seen.append("d")
        loss = F.cross_entropy(real_cls.float(), y)
        return 0.5 * loss, {"loss_cls_d": loss}

    def g_loss(cfg, fake_cls, y):
        seen.append("g")
        loss = F.cross_entropy(fake_cls.float(), y)
        return 0.5 * loss, {"loss_cls_g": loss}

    monkeypatch.setitem(METHODS, "half-acgan", Method("concat", "concat", "classifier", False, d_loss, g_loss))
    run = gancore.load_run(gancore.train(tiny(conditioning="half-acgan", steps=4)))
    assert run.status["state"] == "done" and run.config["conditioning"] == "half-acgan"
    assert {"loss_cls_d", "loss_cls_g"} <= set(run.metrics.columns)
    assert seen.count("d") == 4 and seen.count("g") == 4


def test_a_new_objective_is_one_entry_in_OBJECTIVES_and_its_two_functions(runs_root, monkeypatch):
    """A least-absolute-deviation objective with weight clipping trains end to end: the step calls its functions,
    clips D's weights because its entry says so, and reads its D outputs as raw scores (not a probability)."""
    from gancore import losses
    from gancore.catalogue import OBJECTIVES, Objective

    calls = []

    def d_absolute(real, fake, smooth=0.0):
        calls.append("d")
        return (1 - real).abs().mean() + (1 + fake).abs().mean()

    def g_absolute(fake):
        calls.append("g")
        return (1 - fake).abs().mean()

    monkeypatch.setattr(losses, "d_absolute", d_absolute, raising=False)
    monkeypatch.setattr(losses, "g_absolute", g_absolute, raising=False)
    monkeypatch.setitem(OBJECTIVES, "absolute", Objective("d_absolute", "g_absolute", clip=True))
    run = gancore.load_run(gancore.train(tiny(loss="absolute", steps=4, clip_value=0.005, ema=False)))
    assert run.status["state"] == "done" and run.config["loss"] == "absolute"
    assert calls.count("d") == 4 and calls.count("g") == 4
    weights = torch.cat([p.flatten() for p in runs.load_checkpoint(runs.checkpoint_path(run.path, 4))["D"].values()
                         if p.is_floating_point() and p.dim() > 1])
    assert weights.abs().max() <= 0.005 + 1e-7  # clipped, as its entry says
    assert (run.metrics["d_fake"] < 0).any()  # a raw score: a probability would never be negative


def test_everything_the_trainer_records_is_declared_once(runs_root):
    """Every key of metrics.jsonl and status.json's latest is a METRICS entry (or a record's own key)."""
    dirs = [gancore.train(tiny(name="img", conditioning="acgan", loss="wgan-gp", r1_gamma=1.0, eval_every=3,
                               eval_n=40)),
            gancore.train(tiny(name="uncond", eval_every=3, eval_n=40)),
            gancore.train(tiny(name="pts", dataset="ring", eval_every=3, g_width=8, d_width=8))]
    for d in dirs:
        keys = {k for r in runs.read_metrics(d) for k in r}
        assert keys - set(records.RECORD_KEYS) <= set(records.METRICS), d
        latest = runs.read_status(d)["latest"]
        assert set(latest) - {"step"} <= set(records.LATEST) and len(latest) > 1
    line = records.format_record(runs.read_metrics(dirs[0])[-1])
    assert line.startswith("step 6  loss_d ") and "loss_cls_d" in line and "fid" in line and "lr_d" not in line
