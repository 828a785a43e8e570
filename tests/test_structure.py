"""The shape the code promises: a leaf config, a lazy package face, conditioning methods that own their
loss, and one table of metric names that everything written is declared in."""
import importlib
import subprocess
import sys

import torch.nn.functional as F

import gancore
from gancore import records, runs
from gancore.conditioning import METHODS, Method
from conftest import ROOT, tiny


def modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_config_is_a_leaf():
    loaded = {m for m in modules_after("import gancore.config") if m.split(".")[0] == "gancore"}
    assert loaded == {"gancore", "gancore.config", "gancore.errors"}


def test_readers_of_run_directories_do_not_import_torch_or_the_trainer():
    loaded = modules_after("import gancore, gancore.views, gancore.runs, gancore.records")
    assert "torch" not in loaded and "gancore.trainer" not in loaded


def test_the_lazy_face_still_serves_the_api():
    assert callable(gancore.train) and gancore.TrainConfig(dataset="ring").steps == 5000 and gancore.load_run is runs.load_run
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
