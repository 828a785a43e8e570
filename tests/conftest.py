"""Shared fixtures: every test writes runs into its own temporary runs root."""
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def tiny(**overrides) -> dict:
    """A config that trains in well under a second on 2 CPU cores: 16px digits, narrow nets, a few steps."""
    cfg = dict(dataset="digits", z_dim=8, g_width=8, d_width=8, embed_dim=4, batch_size=16, steps=6,
               log_every=2, sample_every=3, ckpt_every=3, eval_every=0, device="cpu")
    cfg.update(overrides)
    return cfg


@pytest.fixture(autouse=True, scope="session")
def gancore_cache(tmp_path_factory):
    """Evaluators trained and reference statistics computed by tests go to a per-session cache,
    shared by the tests of the session (and their subprocesses), never to ~/.cache."""
    path = tmp_path_factory.mktemp("gancore-cache")
    old = os.environ.get("GANCORE_CACHE")
    os.environ["GANCORE_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("GANCORE_CACHE", None)
    else:
        os.environ["GANCORE_CACHE"] = old


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module: small matrix work (KID kernels, FID's eigvals, k-NN distances) runs far
    slower with 2 threads on a busy 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def runs_root(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("GANCORE_RUNS", str(root))
    return root


def wait_for(predicate, timeout: float, what: str = "condition") -> None:
    """Poll predicate() every 0.2 s until it holds; AssertionError after `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def subprocess_env(runs_root) -> dict:
    """Environment for `python -m gancore` children: this checkout importable, runs under runs_root."""
    env = dict(os.environ, GANCORE_RUNS=str(runs_root), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return env
