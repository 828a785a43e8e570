"""How fast the dashboard's Compare page renders with many long runs.

    python bench/compare_speed.py [--runs 20] [--steps 20000] [--repeats 3]

Writes `--runs` synthetic run directories (config, status, data info, a metrics.jsonl with one
record per step for `--steps` steps, and an evaluation with provenance every 1,000 steps) into a
temporary runs root, then times, with every run selected and the page's default charts
(loss_d, loss_g, fid) plus the best/last table, config diff and CSV export:
- read:  runs.read_metrics of every run (what a cold cache costs)
- cold:  the Compare page's script run in Streamlit's AppTest with empty caches
- warm:  the same page again (metrics cached on file mtime, as when a user moves a slider)
AppTest measures the server side (the Python script); the browser then draws the plotly charts,
which hold at most 1,000 points per line however long the run.
"""
import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from gancore import runs  # noqa: E402
from gancore.config import TrainConfig  # noqa: E402

PROVENANCE = {"evaluator": "mnist-5k", "weights_sha256": "0" * 64, "reference": "mnist-5k:all",
              "data_fingerprint": "e2382e50f6597574", "n_real": 5000, "n_gen": 2000, "seed": 0}


def write_run(root: Path, i: int, steps: int) -> None:
    rng = random.Random(i)
    path = root / f"run-{i:02d}"
    (path / "samples").mkdir(parents=True)
    (path / "checkpoints").mkdir()
    cfg = TrainConfig(name=path.name, runs_root=str(root), loss=["nonsaturating", "hinge", "lsgan"][i % 3],
                      seed=i, steps=steps, log_every=1, model="dcgan", z_dim=64, g_width=32, d_width=32,
                      g_depth=2, d_depth=2, channels=1, image_size=28)
    runs.write_json_atomic(path / "config.json", cfg.to_dict())
    runs.write_json_atomic(path / "data.json", {"kind": "image", "shape": [1, 28, 28], "num_classes": 10,
                                                "class_names": [str(k) for k in range(10)]})
    with open(path / "metrics.jsonl", "w") as f:
        for step in range(1, steps + 1):
            rec = {"step": step, "images_seen": step * 64, "time": step * 0.05,
                   "loss_d": 1.2 + rng.gauss(0, 0.1), "loss_g": 0.9 + rng.gauss(0, 0.2),
                   "d_real": 0.6 + rng.gauss(0, 0.02), "d_fake": 0.4 + rng.gauss(0, 0.02),
                   "grad_norm_d": abs(rng.gauss(5, 1)), "grad_norm_g": abs(rng.gauss(3, 1)),
                   "lr_d": 2e-4, "lr_g": 2e-4, "img_per_s": 1300 + rng.gauss(0, 30)}
            if step % 1000 == 0:
                rec.update(fid=30 / (1 + step / 2000) + rng.random(), kid_mean=0.01, is_mean=8.0, eval_s=1.1,
                           provenance=PROVENANCE)
            f.write(json.dumps(rec) + "\n")
    runs.write_json_atomic(path / "status.json", {"schema": 1, "state": "done", "step": steps, "steps": steps,
                                                  "images_seen": steps * 64, "pid": None, "heartbeat": time.time()})


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    from streamlit.testing.v1 import AppTest

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        start = time.perf_counter()
        for i in range(args.runs):
            write_run(root, i, args.steps)
        print(f"wrote {args.runs} runs x {args.steps:,} records in {time.perf_counter() - start:.1f} s "
              f"({sum(f.stat().st_size for f in root.rglob('metrics.jsonl')) / 2**20:.0f} MiB of metrics)")
        os.environ["GANCORE_RUNS"] = str(root)
        names = [p.name for p in reversed(runs.list_runs(root))]

        reads = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            for n in names:
                runs.read_metrics(root / n)
            reads.append(time.perf_counter() - t)

        colds, warms = [], []
        for _ in range(args.repeats):
            at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=600)
            at.session_state["cmp_default"] = names
            at.run()
            at.switch_page("pages/compare.py")
            import streamlit as st

            st.cache_data.clear()
            st.cache_resource.clear()
            t = time.perf_counter()
            at.run()
            colds.append(time.perf_counter() - t)
            assert not at.exception, at.exception
            assert len(at.multiselect(key="cmp_runs").value) == args.runs
            t = time.perf_counter()
            at.run()
            warms.append(time.perf_counter() - t)
        charts = len(at.get("plotly_chart"))

    print(f"\n| stage | runs x records | best of {args.repeats} (s) | all (s) |")
    print("|---|---|---|---|")
    for label, times in (("read_metrics, every run", reads), ("Compare page, cold cache", colds),
                         ("Compare page, warm cache", warms)):
        print(f"| {label} | {args.runs} x {args.steps:,} | {min(times):.2f} | "
              f"{', '.join(f'{t:.2f}' for t in times)} |")
    print(f"\n{charts} charts drawn, every run selected")


if __name__ == "__main__":
    main()
