"""The bench scripts stay runnable: each answers --help, train_speed measures, gpu_check runs end to end on the CPU.

Each script runs as a person runs it: a subprocess at the repository root with this checkout on PYTHONPATH.
"""
import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

SCRIPTS = sorted(p.name for p in (ROOT / "bench").glob("*.py"))


def run(*args, timeout: float):
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def table_rows(stdout: str) -> list[dict]:
    """The rows of the first markdown table in `stdout`, as {column: cell}."""
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_bench_script_answers_help(script):
    # --help must return before any work: a script that trains or loads data at import fails here by its timeout
    result = run(f"bench/{script}", "--help", timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout


def test_train_speed_prints_a_row_per_config_with_its_host_syncs():
    result = run("bench/train_speed.py", "--steps", "3", "--configs", "ring mlp", "--device", "cpu", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = table_rows(result.stdout)
    assert [r["config"] for r in rows] == ["ring mlp"]  # "ring mlp" is one config's name (ring data, mlp network)
    assert rows[0]["model"] == "mlp"
    assert float(rows[0]["host syncs/step"]) >= 0
    assert rows[0]["optimiser share"].endswith("%")
    assert rows[0]["peak GPU memory"] == "-"  # the CPU has none


def test_train_speed_reads_space_and_comma_separated_config_names():
    spec = importlib.util.spec_from_file_location("train_speed", ROOT / "bench" / "train_speed.py")
    train_speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_speed)  # a script: its main() runs only as __main__
    CONFIGS, pick_configs = train_speed.CONFIGS, train_speed.pick_configs
    assert pick_configs("ring mlp grid mlp", CONFIGS) == ["ring mlp", "grid mlp"]
    assert pick_configs("ring mlp, mnist-5k dcgan concat", CONFIGS) == ["ring mlp", "mnist-5k dcgan concat"]
    assert pick_configs("mnist-5k dcgan mnist-5k dcgan 64px", CONFIGS) == ["mnist-5k dcgan", "mnist-5k dcgan 64px"]
    assert pick_configs("", CONFIGS) == []


def test_train_speed_refuses_an_unknown_config_in_one_line():
    result = run("bench/train_speed.py", "--steps", "1", "--configs", "ring mlp, ring gan", timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "'ring gan'" in result.stderr


def test_gpu_check_runs_end_to_end_on_the_cpu_when_allowed():
    result = run("bench/gpu_check.py", "--allow-cpu", "--quick", timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    rows = table_rows(result.stdout)
    assert {r["part"] for r in rows} == {"a", "b", "c"}
    assert [r["result"] for r in rows if r["part"] == "c"] == ["done"] * 4  # one run per network
    speed = [r for r in rows if r["part"] == "b"]
    assert speed and all(r["result"] == "ok" and r["host syncs/step"] != "-" for r in speed)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device: gpu_check would run for real")
def test_gpu_check_refuses_without_a_gpu_in_one_line():
    result = run("bench/gpu_check.py", timeout=60)
    assert result.returncode == 2
    assert result.stdout == "" and result.stderr.strip().count("\n") == 0
    assert "no CUDA device" in result.stderr and "--allow-cpu" in result.stderr


def test_the_bench_readme_lists_every_script_once():
    listed = [line.split("`")[1] for line in (ROOT / "bench" / "README.md").read_text().splitlines()
              if line.startswith("| `")]
    assert sorted(listed) == SCRIPTS
