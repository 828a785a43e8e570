"""Evaluator classifiers: shipped weights keep their accuracy, features, fingerprints, the cache, errors."""
import numpy as np
import pytest
import torch

import gancore.evaluator as ev
from gancore.data import Dataset, load_dataset
from gancore.errors import GancoreError


def bars(n=80, size=16, seed=0, labelled=True) -> Dataset:
    """A tiny two-class image set a classifier learns in a couple of epochs: vertical vs horizontal bars."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = -torch.ones(n, 1, size, size)
    pos = torch.randint(2, size - 2, (n,), generator=g)
    for i in range(n):
        if y[i]:
            x[i, 0, :, pos[i]] = 1
        else:
            x[i, 0, pos[i], :] = 1
    x = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    if not labelled:
        return Dataset("npz", x, None, 0, [], None, 0.0)
    return Dataset("npz", x, y, 2, ["h", "v"], None, 0.0)


@pytest.mark.parametrize("name", ev.SHIPPED)
def test_shipped_weights_reach_recorded_accuracy(name):
    model, report = ev.shipped_evaluator(name)
    data = load_dataset(**ev.SHIPPED[name])
    assert report["fingerprint"] == ev.fingerprint(data), "the embedded data changed since training"
    assert (ev.SHIPPED_DIR / f"{name}.pt").stat().st_size < 1_000_000
    train_idx, hold_idx = ev.heldout_split(len(data), report["seed"], report["holdout"])
    assert (len(train_idx), len(hold_idx)) == (report["n_train"], report["n_holdout"])
    acc = ev.accuracy(model, data.x[hold_idx], data.y[hold_idx])
    assert abs(acc - report["accuracy"]) <= 0.001
    assert acc >= 0.97
    assert list(model.input_shape) == report["input_shape"] == list(data.shape)


def test_features_and_logits_shapes_and_batch_independence():
    model, report = ev.shipped_evaluator("digits")
    x = load_dataset("digits").x[:10]
    f = model.features(x)
    assert f.shape == (10, model.num_features) and (f >= 0).all()
    assert model(x).shape == (10, report["num_classes"])
    # eval mode: a sample's features do not depend on the rest of its batch
    torch.testing.assert_close(model.features(x[:3]), f[:3], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 32, 32), (1, 28, 28), (3, 64, 64)])
def test_architecture_fits_16_to_64_px(shape):
    model = ev.Evaluator(shape, 10).eval()
    x = torch.rand(2, *shape) * 2 - 1
    assert model.features(x).shape == (2, model.num_features)
    assert model(x).shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) * 4 < 1_000_000


def test_heldout_split_is_fixed_and_disjoint():
    tr, ho = ev.heldout_split(100, seed=3, holdout=0.2)
    tr2, ho2 = ev.heldout_split(100, seed=3, holdout=0.2)
    assert torch.equal(tr, tr2) and torch.equal(ho, ho2)
    assert len(ho) == 20 and sorted(torch.cat([tr, ho]).tolist()) == list(range(100))
    assert not torch.equal(ho, ev.heldout_split(100, seed=4, holdout=0.2)[1])
    with pytest.raises(ev.EvaluatorError, match="holdout"):
        ev.heldout_split(100, holdout=1.5)


def test_fingerprint_is_stable_and_tracks_content():
    a, b = bars(), bars()
    assert ev.fingerprint(a) == ev.fingerprint(b) == ev.fingerprint(a)
    assert len(ev.fingerprint(a)) == 16
    b.x[0, 0, 0, 0] += 0.5
    assert ev.fingerprint(b) != ev.fingerprint(a)
    c = bars()
    c.y[0] = 1 - c.y[0]
    assert ev.fingerprint(c) != ev.fingerprint(a)
    assert ev.fingerprint(bars(labelled=False)) != ev.fingerprint(a)
    assert ev.fingerprint(load_dataset("digits")) == ev.fingerprint(load_dataset("digits"))


def test_save_load_round_trip_with_weights_only(tmp_path):
    data = bars()
    model, report = ev.train_evaluator(data, epochs=1, log=None)
    path = tmp_path / "e.pt"
    ev.save_evaluator(model, report, path)
    torch.load(path, weights_only=True)  # plain tensors and types only
    loaded, loaded_report = ev.load_evaluator(path)
    assert not loaded.training and loaded_report == report
    torch.testing.assert_close(loaded(data.x[:4]), model.eval()(data.x[:4]))

    blob = torch.load(path, weights_only=True)
    blob["report"]["weights_sha256"] = "0" * 64
    torch.save(blob, tmp_path / "edited.pt")
    with pytest.raises(ev.EvaluatorError, match="sha256"):
        ev.load_evaluator(tmp_path / "edited.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(ev.EvaluatorError, match="not a readable evaluator"):
        ev.load_evaluator(tmp_path / "junk.pt")


def test_training_is_deterministic_and_leaves_global_rng_alone():
    data = bars()
    state = torch.get_rng_state()
    _, r1 = ev.train_evaluator(data, seed=1, epochs=1, log=None)
    assert torch.equal(torch.get_rng_state(), state)
    _, r2 = ev.train_evaluator(data, seed=1, epochs=1, log=None)
    assert r1["weights_sha256"] == r2["weights_sha256"]


def test_evaluator_for_trains_once_then_loads_from_cache(tmp_path, monkeypatch):
    # own data through the real npz loader, as a user would bring it
    d = bars()
    npz = tmp_path / "bars.npz"
    np.savez(npz, x=((d.x[:, 0].numpy() + 1) * 127.5).round().astype(np.uint8), y=d.y.numpy())
    data = load_dataset("npz", str(npz))
    cache = tmp_path / "cache"

    calls = []
    real_train = ev.train_evaluator
    monkeypatch.setattr(ev, "train_evaluator", lambda *a, **k: calls.append(1) or real_train(*a, **k))

    with pytest.raises(ev.EvaluatorError, match="no evaluator cached"):
        ev.evaluator_for(data, cache_dir=cache, train_if_missing=False)
    model, report = ev.evaluator_for(data, cache_dir=cache, epochs=3, log=None)
    assert len(calls) == 1 and report["epochs"] == 3
    assert (cache / f"{ev.fingerprint(data)}.pt").is_file()
    assert report["accuracy"] > 0.9  # bars are easy
    model2, report2 = ev.evaluator_for(data, cache_dir=cache, epochs=3, log=None)
    assert len(calls) == 1 and report2 == report and not model2.training


def test_evaluator_for_embedded_uses_shipped(tmp_path, monkeypatch):
    monkeypatch.setattr(ev, "train_evaluator", lambda *a, **k: pytest.fail("should not train"))
    _, report = ev.evaluator_for(load_dataset("digits"), cache_dir=tmp_path)
    assert report["dataset"] == "digits" and not any(tmp_path.iterdir())


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(ev.EvaluatorError, match="no class labels") as e:
        ev.evaluator_for(bars(labelled=False), cache_dir=tmp_path)
    assert "'npz'" in str(e.value) and isinstance(e.value, GancoreError)
    with pytest.raises(ev.EvaluatorError, match="points"):
        ev.evaluator_for(load_dataset("ring"), cache_dir=tmp_path)
    with pytest.raises(ev.EvaluatorError, match="no shipped evaluator 'cifar10'"):
        ev.shipped_evaluator("cifar10")
    assert not any(tmp_path.iterdir())
