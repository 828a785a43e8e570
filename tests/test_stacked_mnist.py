"""Stacked MNIST (issue 13, part 3): the dataset, the PacGAN/VEEGAN mode count on images, the metric logged
in training and printed by `gancore eval`, and the Mode collapse and Monitor pages on a stacked-mnist run."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from streamlit.testing.v1 import AppTest

import gancore
from gancore import catalogue, metrics, runs
from gancore.cli import main
from gancore.data import STACKED_PER_TRIPLE, load_dataset
from gancore.errors import ConfigError
from gancore.setup import load_and_resolve
from conftest import ROOT


@pytest.fixture(scope="module")
def stacked():
    return load_dataset("stacked-mnist")


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist-5k")


def tiny_stacked(**overrides) -> dict:
    """A stacked-mnist run of a few seconds: narrow DCGAN, 4 steps, the mode count on 60 samples."""
    cfg = dict(dataset="stacked-mnist", z_dim=8, g_width=8, d_width=8, batch_size=16, steps=4, log_every=2,
               sample_every=4, ckpt_every=4, eval_every=2, eval_n=60, device="cpu")
    cfg.update(overrides)
    return cfg


# ---- the dataset ----------------------------------------------------------------------------------------

def test_loader_holds_every_triple_equally_as_uint8_rgb(stacked):
    assert stacked.x.shape == (1000 * STACKED_PER_TRIPLE, 3, 28, 28) and stacked.x.dtype == torch.uint8
    assert stacked.kind == "image" and stacked.shape == (3, 28, 28) and stacked.modes is None
    assert stacked.num_classes == 1000 and stacked.class_names[0] == "000" and stacked.class_names[407] == "407"
    assert stacked.y.dtype == torch.int64
    assert torch.bincount(stacked.y, minlength=1000).tolist() == [STACKED_PER_TRIPLE] * 1000


def test_each_channel_is_an_mnist_5k_image_of_its_digit_drawn_independently(stacked, mnist):
    source = {bytes(img): i for i, img in enumerate(mnist.x[:, 0].numpy().reshape(5000, -1))}
    assert len(source) == 5000  # every MNIST-5k image is unique, so a channel names its source image
    x = stacked.x.numpy().reshape(len(stacked), 3, -1)
    idx = np.array([[source[bytes(x[i, c])] for c in range(3)] for i in range(len(x))])  # (N, 3); KeyError: not MNIST
    digits = mnist.y.numpy()[idx]                                                          # (N, 3)
    y = stacked.y.numpy()
    assert (100 * digits[:, 0] + 10 * digits[:, 1] + digits[:, 2] == y).all()  # label = the channels' triple
    for a, b in ((0, 1), (0, 2), (1, 2)):  # digit pairs: a flat contingency table, each cell 1/100 of the set
        table = np.zeros((10, 10), int)
        np.add.at(table, (digits[:, a], digits[:, b]), 1)
        assert (table == len(y) // 100).all()
        same_digit = digits[:, a] == digits[:, b]  # the image is drawn per channel: the same one ~1 time in 500
        assert (idx[same_digit, a] == idx[same_digit, b]).mean() < 0.01
    for c in range(3):  # each channel draws from all 500 images of a digit
        assert len(np.unique(idx[:, c])) > 4950


def test_loader_is_deterministic_and_independent_of_the_run_seed(stacked):
    again = load_dataset("stacked-mnist", seed=7)
    assert torch.equal(again.x, stacked.x) and torch.equal(again.y, stacked.y)
    with pytest.raises(ConfigError, match="--channels: stacked-mnist"):
        load_dataset("stacked-mnist", channels=1)


def test_the_default_dcgan_and_evaluation_count_resolve_for_stacked_mnist(runs_root):
    cfg, data = load_and_resolve(dict(dataset="stacked-mnist"))
    assert (cfg.model, cfg.channels, cfg.image_size, cfg.conditioning) == ("dcgan", 3, 28, "none")
    assert cfg.eval_n == catalogue.N_STACKED == 26_000  # the protocol's count, in training too


# ---- the metric -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_per_triple(mnist):
    """(1000, 3, 28, 28) uint8: triple k once, from one MNIST-5k image per digit that the reader reads right."""
    chosen = []
    for d in range(10):
        for i in (mnist.y == d).nonzero().flatten().tolist():
            gray = mnist.x[i].expand(3, -1, -1)[None]  # the image in all three channels: reads as ddd if right
            if metrics.triple_counts(gray)[111 * d] == 1:
                chosen.append(mnist.x[i, 0])
                break
    digits = torch.stack(chosen)  # (10, 28, 28)
    k = torch.arange(1000)
    return torch.stack([digits[k // 100], digits[k // 10 % 10], digits[k % 10]], 1)


def test_every_triple_once_is_1000_modes_and_zero_kl(one_per_triple):
    counts = metrics.triple_counts(one_per_triple)
    assert counts.tolist() == [1] * 1000
    scores = metrics.triple_coverage(counts)
    assert scores["modes"] == 1000 and scores["reverse_kl"] == pytest.approx(0, abs=1e-12)
    some = one_per_triple[::5]  # 200 triples
    as_floats = some.float() / 127.5 - 1  # floats in [-1, 1] read the same as uint8 levels
    assert torch.equal(metrics.triple_counts(as_floats, batch=64), metrics.triple_counts(some))
    at_32px = F.interpolate(as_floats, size=(32, 32), mode="bilinear", antialias=True)  # resized back to 28 to read
    assert metrics.triple_coverage(metrics.triple_counts(at_32px))["modes"] >= 195


def test_one_triple_is_one_mode_and_kl_log_1000(one_per_triple):
    scores = metrics.triple_coverage(metrics.triple_counts(one_per_triple[[407] * 50]))
    assert scores["modes"] == 1 and scores["triple_counts"][407] == 50
    assert scores["reverse_kl"] == pytest.approx(math.log(1000))
    half = metrics.triple_coverage(metrics.triple_counts(one_per_triple[::2]))  # 500 triples once each
    assert half["modes"] == 500 and half["reverse_kl"] == pytest.approx(math.log(2))


def test_channel_counts_split_the_triples_by_channel():
    counts = torch.zeros(1000, dtype=torch.int64)
    counts[407], counts[401] = 50, 7  # red 4 both; green 0 both; blue 7 and 1
    r, g, b = metrics.channel_counts(counts)
    assert r.tolist() == [0, 0, 0, 0, 57, 0, 0, 0, 0, 0] and g.tolist() == [57] + [0] * 9
    assert b.tolist() == [0, 7, 0, 0, 0, 0, 0, 50, 0, 0]
    assert [c.tolist() for c in metrics.channel_counts(counts.numpy())] == [r.tolist(), g.tolist(), b.tolist()]


def test_triple_counts_refuses_images_that_are_not_rgb(mnist):
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        metrics.triple_counts(mnist.x[:4])


# ---- training, eval, dashboard -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stacked_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("stacked") / "runs"
    return gancore.train(tiny_stacked(name="stacked-plain", runs_root=str(root)))


def check_evaluations(run_dir, n):
    evals = [r for r in runs.read_metrics(run_dir) if "modes" in r]
    assert [r["step"] for r in evals] == [2, 4]
    for r in evals:
        assert 1 <= r["modes"] <= n and len(r["triple_counts"]) == 1000 and sum(r["triple_counts"]) == n
        assert r["modes"] == sum(c > 0 for c in r["triple_counts"])
        shares = [c / n for c in r["triple_counts"] if c]  # KL(p || uniform over 1,000) over the triples drawn
        assert r["reverse_kl"] == pytest.approx(sum(p * math.log(p * 1000) for p in shares), rel=1e-9)
        assert r["provenance"]["evaluator"] == "mnist-5k per channel" and r["provenance"]["n_gen"] == n
    status = runs.read_status(run_dir)
    assert {"modes", "reverse_kl"} <= set(status["latest"]) and status["best"]["metric"] == "modes,reverse_kl"
    assert "reverse_kl" in (Path(run_dir) / "train.log").read_text()


def test_training_logs_the_mode_count_at_each_evaluation(stacked_run):
    check_evaluations(stacked_run, 60)


@pytest.mark.parametrize("extra", [dict(pack=2), dict(mbstd=True)], ids=["pack2", "mbstd"])
def test_packing_and_minibatch_stddev_train_on_stacked_mnist(runs_root, extra):
    check_evaluations(gancore.train(tiny_stacked(eval_n=30, **extra)), 30)


def test_gancore_eval_prints_the_mode_count(stacked_run, capsys):
    capsys.readouterr()
    assert main(["eval", stacked_run, "--n", "50", "--seed", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["step"] == 4 and 1 <= out["modes"] <= 50 and sum(out["triple_counts"]) == 50
    assert out["provenance"]["n_gen"] == 50 and out["provenance"]["seed"] == 3
    assert out["provenance"]["reference"] == "stacked-mnist:triples"


def test_gancore_eval_npz_scores_stacked_images(one_per_triple, tmp_path, capsys):
    path = tmp_path / "triples.npz"
    np.savez(path, images=one_per_triple.permute(0, 2, 3, 1).numpy())  # (N, H, W, C), as `gancore sample` writes
    capsys.readouterr()
    assert main(["eval", "--npz", str(path), "--dataset", "stacked-mnist"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["modes"] == 1000 and out["reverse_kl"] == pytest.approx(0, abs=1e-12)


def page(name: str, run_dir, monkeypatch) -> AppTest:
    """A dashboard page under AppTest with the stacked run picked."""
    monkeypatch.setenv("GANCORE_RUNS", str(Path(run_dir).parent))
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    at.session_state["run"] = Path(run_dir).name
    at.run()
    at.switch_page(f"pages/{name}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_mode_collapse_page_shows_the_triples_of_a_stacked_run(stacked_run, monkeypatch):
    at = page("mode_collapse", stacked_run, monkeypatch)
    [last] = [r["triple_counts"] for r in runs.read_metrics(stacked_run) if r["step"] == 4 and "triple_counts" in r]
    shown = {m.label: m.value for m in at.metric}
    assert shown["modes captured"] == f"{sum(c > 0 for c in last)} / 1000" and shown["samples read"] == "60"
    kl = sum(c / 60 * math.log(c / 60 * 1000) for c in last if c)  # KL of the triple histogram against uniform
    assert shown["reverse KL"] == f"{kl:.3g}"  # the display rule: 3 significant digits
    assert len(at.get("plotly_chart")) == 4  # triple heatmap, channel shares, modes and KL over training
    at.select_slider(key="mc_eval_stacked-plain").set_value(2).run()
    assert not at.exception


def test_monitor_charts_the_mode_count_and_warns_of_collapse(stacked_run, monkeypatch):
    at = page("monitor", stacked_run, monkeypatch)
    assert {"latest modes captured", "latest reverse KL"} <= {m.label for m in at.metric}
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "modes captured" in titles and "reverse KL" in titles
    assert any("mode collapse:" in w.value and "of 1000 modes" in w.value for w in at.warning)


def test_read_channels_gives_each_channel_its_digit_and_probability(one_per_triple):
    images = one_per_triple[[407, 123]].clone()  # (2, 3, 28, 28)
    digits, probs = metrics.read_channels(images)
    assert digits.tolist() == [[4, 0, 7], [1, 2, 3]]
    assert torch.equal(metrics.triple_histogram(digits), metrics.triple_counts(images))
    overlay = images.clone()
    overlay[0, 2] = ((images[0, 2].int() + images[1, 2].int()) // 2).to(torch.uint8)  # half a 7, half a 3
    _, overlay_probs = metrics.read_channels(overlay)
    assert overlay_probs[0, 2] < probs[0, 2] and torch.equal(overlay_probs[1], probs[1])
