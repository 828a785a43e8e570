"""A runs root holding every kind of run a reader must show: finished (images and 2-D points), running,
failed, crashed (dead pid) with a half-written last metrics line, and a pending launch."""
import json
import os
import shutil
import subprocess
import sys

import gancore
from gancore import runs
from conftest import tiny


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def build(root) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    names = {}
    names["done"] = os.path.basename(gancore.train(tiny(
        name="digits-concat-done", conditioning="concat", steps=8, log_every=2, sample_every=4, ckpt_every=4,
        eval_every=4, eval_n=40, runs_root=str(root))))
    names["plain"] = os.path.basename(gancore.train(tiny(name="digits-plain-done", steps=8, eval_every=4, eval_n=40,
                                                          runs_root=str(root))))
    names["points"] = os.path.basename(gancore.train(dict(
        name="ring-done", dataset="ring", steps=40, log_every=10, sample_every=20, ckpt_every=20, eval_every=20,
        g_width=16, d_width=16, device="cpu", runs_root=str(root))))

    def copy(src, name, **status):
        shutil.copytree(root / src, root / name)
        cfg = runs.read_json(root / name / "config.json")
        runs.write_json_atomic(root / name / "config.json", dict(cfg, name=name))
        runs.update_status(root / name, **status)
        return name

    names["running"] = copy(names["done"], "digits-concat-running", state="running", pid=os.getpid(), step=4,
                            finished=None)
    names["failed"] = copy(names["done"], "digits-concat-failed", state="failed",
                           error="non-finite loss (loss_d=nan) by step 6; last good checkpoint: step 4")
    names["crashed"] = copy(names["done"], "digits-concat-halfwritten", state="running", pid=dead_pid(), step=6,
                            finished=None)
    with open(root / names["crashed"] / "metrics.jsonl", "a") as f:
        f.write('{"step": 10, "images_seen": 160, "loss_d": 1.3')  # the writer died mid-line
    pending = root / "waiting-to-start"
    pending.mkdir()
    (pending / "launch.json").write_text(json.dumps({"dataset": "digits"}))
    (pending / "launch.log").write_text("")
    runs.update_status(pending, state="queued", pid=os.getpid(), step=0, steps=6)
    names["pending"] = "waiting-to-start"
    return names
