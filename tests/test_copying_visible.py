"""The copying check made visible: recorded at every image evaluation (class-matched for conditional runs),
against a brute-force computation; and the nearest training images of a sample."""
import dataclasses

import pytest
import torch

import gancore
from gancore import metrics, runs
from gancore.data import load_dataset
from conftest import tiny


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def part(data, idx):
    return dataclasses.replace(data, x=data.x[idx], y=data.y[idx])


def brute_ratio(gen, gen_labels, data):
    """median over samples of the distance to the nearest training image of their class, over the median over real
    images of the distance to their nearest other image of their class: every pair, one at a time."""
    real, y = data.images().flatten(1), data.y
    fake_d, real_d = [], []
    for c in gen_labels.unique().tolist():
        rc = real[y == c]
        fake_d += [min(float((g - r).norm()) for r in rc) for g in gen.flatten(1)[gen_labels == c]]
        real_d += [min(float((rc[i] - rc[j]).norm()) for j in range(len(rc)) if j != i) for i in range(len(rc))]
    return torch.tensor(fake_d).median().item() / torch.tensor(real_d).median().item()


def test_the_class_matched_ratio_is_the_brute_force_one(digits):
    data = part(digits, torch.arange(0, len(digits), 6))  # 300 images: the brute force stays quick
    gen = data.images()[:40] + 0.2 * torch.randn(40, *data.shape, generator=torch.Generator().manual_seed(0))
    labels = data.y[:40]
    got = metrics.copy_ratio(gen, labels, data)["copy_ratio"]
    assert got == pytest.approx(brute_ratio(gen, labels, data), rel=1e-4)
    unmatched = metrics.copy_ratio(gen, None, data)["copy_ratio"]
    assert unmatched != pytest.approx(got, rel=1e-3)  # matching by class changes the yardstick


def test_copies_score_near_zero_and_fresh_images_near_one(digits):
    train, held = torch.arange(0, len(digits), 2), torch.arange(1, len(digits), 2)
    copies = metrics.copy_ratio(digits.images()[train][:300], digits.y[train][:300], digits)["copy_ratio"]
    assert copies == 0.0  # every sample is a training image
    fresh = metrics.copy_ratio(digits.images()[held][:300], digits.y[held][:300], part(digits, train))["copy_ratio"]
    assert 0.8 < fresh < 1.3  # held-out real images sit as far from the set as its own images from each other


def test_evaluations_record_the_copying_ratio(runs_root):
    run_dir = gancore.train(tiny(name="copy", conditioning="concat", steps=4, eval_every=4, eval_n=100))
    record = runs.read_metrics(run_dir)[-1]
    assert record["copy_ratio"] > 0.5  # a barely trained G copies nothing
    assert runs.read_status(run_dir)["latest"]["copy_ratio"] == record["copy_ratio"]


def test_nearest_training_images_of_a_training_image_start_with_itself(digits):
    i = 17
    idx, dist = metrics.nearest_training_images(digits.images()[i], digits, k=5)
    assert int(idx[0]) == i and float(dist[0]) == 0.0 and list(dist) == sorted(dist)
    idx, _ = metrics.nearest_training_images(digits.images()[i], digits, k=5, label=int(digits.y[i]))
    assert set(digits.y[idx].tolist()) == {int(digits.y[i])}
