"""The metric functions on inputs small enough to score by hand: reverse KL, 2-D mode coverage, the stacked-MNIST
triple histogram and its channel counts, and the copying check (bench/mutation.py's metrics target)."""
import math

import numpy as np
import pytest
import torch

from gancore import metrics
from gancore.metrics import (COPY_MAX_REAL, channel_counts, copying, mode_coverage, reverse_kl, triple_coverage,
                             triple_histogram)


# ---- reverse KL ------------------------------------------------------------------------------------------
def test_reverse_kl_of_a_histogram_against_uniform():
    assert reverse_kl(torch.tensor([5, 5, 5, 5])) == pytest.approx(0.0, abs=1e-12)
    assert reverse_kl(torch.tensor([2, 2, 0, 0])) == pytest.approx(math.log(2))  # half the bins, evenly
    assert reverse_kl(torch.tensor([3, 1])) == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    assert reverse_kl(torch.tensor([1, 0, 0, 0])) == pytest.approx(math.log(4))  # a single sample
    assert reverse_kl(torch.tensor([0, 0, 0])) == math.inf


# ---- 2-D mode coverage -----------------------------------------------------------------------------------
MODES = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [20.0, 20.0]])


def test_mode_coverage_counts_modes_with_a_sample_within_3_sigma():
    # sigma 0.5: high quality within 1.5 of the nearest mode (inclusive)
    points = torch.tensor([[0.2, 0.0],     # mode 0, 0.2 away
                           [10.0, 1.25],   # mode 1, 1.25 away
                           [0.0, 11.5],    # mode 2, exactly 1.5 away: still high quality
                           [21.75, 20.0]])  # mode 3, 1.75 away: not high quality
    scores = mode_coverage(points, MODES, sigma=0.5)
    assert scores["modes"] == 3
    assert scores["hq_share"] == pytest.approx(0.75)
    assert scores["reverse_kl"] == pytest.approx(math.log(4 / 3))  # counts (1, 1, 1, 0) against 4 modes


def test_mode_coverage_histogram_is_of_high_quality_samples_by_nearest_mode():
    points = torch.tensor([[0.0, 0.1], [0.1, 0.0], [0.0, -0.1], [9.9, 0.0], [5.0, 5.0]], dtype=torch.float64)
    scores = mode_coverage(points, MODES, sigma=1.0)
    assert scores["modes"] == 2 and scores["hq_share"] == pytest.approx(0.8)
    p = torch.tensor([0.75, 0.25])
    assert scores["reverse_kl"] == pytest.approx(float((p * (p / 0.25).log()).sum()))  # 4 modes: q = 1/4


def test_mode_coverage_of_samples_far_from_every_mode_is_empty():
    scores = mode_coverage(torch.tensor([[5.0, 5.0], [15.0, 5.0]]), MODES, sigma=1.0)
    assert scores == {"modes": 0, "hq_share": 0.0, "reverse_kl": math.inf}


# ---- stacked MNIST triples ---------------------------------------------------------------------------------
def test_triple_histogram_indexes_triples_as_100r_10g_b():
    counts = triple_histogram(torch.tensor([[1, 2, 3], [1, 2, 3], [0, 0, 9], [9, 0, 0]]))
    assert counts.shape == (1000,) and counts.dtype == torch.int64
    assert counts[123] == 2 and counts[9] == 1 and counts[900] == 1 and counts.sum() == 4


def test_channel_counts_sum_the_triples_per_channel():
    counts = torch.zeros(1000, dtype=torch.int64)
    counts[123], counts[9], counts[940] = 2, 1, 5
    r, g, b = channel_counts(counts)
    assert r.tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 0, 5]
    assert g.tolist() == [1, 0, 2, 0, 5, 0, 0, 0, 0, 0]
    assert b.tolist() == [5, 0, 0, 2, 0, 0, 0, 0, 0, 1]
    r_np, _, b_np = channel_counts(counts.numpy())
    assert isinstance(r_np, np.ndarray) and r_np.tolist() == r.tolist() and b_np.tolist() == b.tolist()


def test_triple_coverage_counts_triples_seen_and_keeps_the_counts():
    counts = torch.zeros(1000, dtype=torch.int64)
    counts[7], counts[500] = 3, 1
    scores = triple_coverage(counts)
    assert scores["modes"] == 2 and scores["triple_counts"] == counts.tolist()
    assert scores["reverse_kl"] == pytest.approx(0.75 * math.log(750) + 0.25 * math.log(250))


def test_triple_counts_reads_each_image_and_histograms_its_digits(monkeypatch):
    seen = {}

    def read(x, device, batch):
        seen.update(x=x, device=device, batch=batch)
        return torch.tensor([[4, 0, 7], [4, 0, 7]]), torch.ones(2, 3)

    monkeypatch.setattr(metrics, "read_channels", read)
    x = torch.zeros(2, 3, 28, 28)
    counts = metrics.triple_counts(x, "cpu", batch=7)
    assert counts[407] == 2 and counts.sum() == 2
    assert seen["x"] is x and seen["device"] == "cpu" and seen["batch"] == 7


def test_read_channels_reads_r_g_b_in_order_in_any_batch_size_and_at_other_sizes(monkeypatch):
    # a digit reader that "reads" the mean level of a 28 px channel as its digit: level k / 10 -> digit k
    def reader(device):
        def model(x):
            assert x.shape[1:] == (1, 28, 28)
            level = ((x.mean((1, 2, 3)) + 1) / 2 * 10).round().long().clamp(0, 9)  # (3B,)
            return torch.nn.functional.one_hot(level, 10).float() * 10
        return model, "sha"

    monkeypatch.setattr(metrics, "_digit_reader", reader)
    triples = torch.tensor([[1, 2, 3], [9, 0, 5], [4, 4, 8]])
    x = (triples.float() / 10 * 2 - 1).view(3, 3, 1, 1).expand(3, 3, 28, 28)  # channel level = its digit / 10
    digits, probs = metrics.read_channels(x, batch=2)
    assert torch.equal(digits, triples) and digits.dtype == torch.int64
    p = math.exp(10) / (math.exp(10) + 9)  # softmax of a one-hot times 10
    torch.testing.assert_close(probs, torch.full((3, 3), p))
    at_14px = x[:, :, :14, :14].contiguous()
    assert torch.equal(metrics.read_channels(at_14px)[0], triples)  # resized to 28 first
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\), got \(3, 1, 28, 28\)"):
        metrics.read_channels(x[:, :1])
    with pytest.raises(ValueError, match="got"):
        metrics.read_channels(x[0])


def test_read_channels_shrinks_larger_images_to_28_px_with_antialiasing(monkeypatch):
    seen = []

    def reader(device):
        def model(x):
            seen.append(x.clone())
            return torch.zeros(len(x), 10)
        return model, "sha"

    monkeypatch.setattr(metrics, "_digit_reader", reader)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1  # a 32 px stacked image, e.g. a colour run's size
    metrics.read_channels(x)
    # the reader sees each channel shrunk to 28 px by bilinear resampling over every covered pixel (antialias):
    # the resize a digit drawn at 32 px needs to look as it did at 28 px
    want = torch.nn.functional.interpolate(x.reshape(6, 1, 32, 32), size=(28, 28), mode="bilinear",
                                           align_corners=False, antialias=True)
    torch.testing.assert_close(seen[0], want)
    for other in ({"antialias": False}, {"align_corners": True, "antialias": True}):  # what it is not
        wrong = torch.nn.functional.interpolate(x.reshape(6, 1, 32, 32), size=(28, 28), mode="bilinear", **other)
        assert not torch.allclose(seen[0], wrong, atol=1e-3)


# ---- the copying check -------------------------------------------------------------------------------------
class Images:
    """A stand-in image dataset: its images as (N, C, H, W) floats, and a length that may claim more."""

    def __init__(self, images, kind="image", length=None):
        self._images, self.kind, self.length = images, kind, length

    def __len__(self):
        return len(self._images) if self.length is None else self.length

    def images(self):
        return self._images


REAL = torch.tensor([[0.0, 0.0], [0.0, 3.0], [0.0, 7.0]]).view(3, 1, 1, 2)  # nearest other: 3, 3, 4


@pytest.mark.parametrize("chunk", [1, 2, 1000])
def test_copying_compares_nearest_training_distances_of_samples_and_of_reals(chunk):
    gen = torch.tensor([[0.0, 0.0], [0.0, 4.0], [3.0, 7.0]]).view(3, 1, 1, 2)  # nearest: 0 (a copy), 1, 3
    scores = copying(gen, Images(REAL), chunk=chunk)
    assert scores == {"nn_median": pytest.approx(1.0), "nn_real_median": pytest.approx(3.0),
                      "nn_ratio": pytest.approx(1 / 3)}


def test_copying_leaves_each_real_image_out_of_its_own_neighbours():
    real = torch.tensor([[0.0, 0.0], [0.0, 3.0], [0.0, 7.0], [0.0, 12.0], [0.0, 18.0]]).view(5, 1, 1, 2)
    # nearest other: 3, 3, 4, 5, 6 -> median 4 (0 if an image counted as its own neighbour)
    assert copying(real[:1], Images(real), chunk=2)["nn_real_median"] == pytest.approx(4.0)


def test_copying_is_skipped_for_points_and_for_sets_over_the_limit():
    assert copying(REAL, Images(REAL, kind="points")) == {}
    assert copying(REAL, Images(REAL, length=COPY_MAX_REAL + 1)) == {}
    assert copying(REAL, Images(REAL, length=COPY_MAX_REAL))["nn_real_median"] == pytest.approx(3.0)  # at the limit


def test_nearest_of_no_rows_is_empty():
    assert metrics._nearest(torch.empty(0, 2), REAL.flatten(1)).shape == (0,)


# ---- copy_ratio: the copying check of an evaluation, class-matched --------------------------------------------
def labelled(points, labels):
    """A real Dataset of 1 x 1 x 2 "images" (float storage, read as they are) with class labels (or None)."""
    from gancore.data import Dataset

    y = None if labels is None else torch.tensor(labels)
    n_classes = 0 if y is None else int(y.max()) + 1
    return Dataset(name="digits", x=torch.tensor(points, dtype=torch.float32).view(-1, 1, 1, 2), y=y,
                   num_classes=n_classes, class_names=[str(c) for c in range(n_classes)], modes=None, sigma=0.0)


# class 0: (0, 0), (0, 3) -> nearest other 3, 3; class 1: (10, 0), (10, 4), (10, 10) -> 4, 4, 6; yardstick 4
TWO_CLASSES = ([[0, 0], [0, 3], [10, 0], [10, 4], [10, 10]], [0, 0, 1, 1, 1])
SAMPLES = torch.tensor([[0.0, 1.0], [10.0, 5.0], [10.0, 8.0]]).view(3, 1, 1, 2)  # nearest overall: 1, 1, 2


def test_copy_ratio_matches_each_sample_with_the_training_images_of_its_class():
    data = labelled(*TWO_CLASSES)
    assert metrics.copy_ratio(SAMPLES, torch.tensor([0, 1, 1]), data) == {"copy_ratio": pytest.approx(1 / 4)}
    # (10, 5) labelled 0 is measured against class 0's images: sqrt(10² + 2²); the samples' median becomes 2
    assert metrics.copy_ratio(SAMPLES, torch.tensor([0, 0, 1]), data) == {"copy_ratio": pytest.approx(2 / 4)}
    # without labels (or without the data's): every training image, and the same yardstick here
    assert metrics.copy_ratio(SAMPLES, None, data) == {"copy_ratio": pytest.approx(1 / 4)}
    assert metrics.copy_ratio(SAMPLES, torch.tensor([0, 0, 1]), labelled(TWO_CLASSES[0], None)) == \
        {"copy_ratio": pytest.approx(1 / 4)}


def test_copy_ratio_yardstick_is_the_median_over_every_class_of_real_nearest_other_distances():
    # class 0's nearest others become 1, 1 ((0, 0), (0, 1)); class 1's stay 4, 4, 6 -> median 4 over all five
    data = labelled([[0, 0], [0, 1], [10, 0], [10, 4], [10, 10]], [0, 0, 1, 1, 1])
    assert metrics.copy_ratio(SAMPLES[1:], torch.tensor([1, 1]), data) == {"copy_ratio": pytest.approx(1 / 4)}
    # a class with one training image has no yardstick: its samples are left out, the others still count
    one = labelled([*TWO_CLASSES[0], [50, 50]], [*TWO_CLASSES[1], 2])
    gen = torch.cat([SAMPLES, torch.tensor([[50.0, 90.0]]).view(1, 1, 1, 2)])
    assert metrics.copy_ratio(gen, torch.tensor([0, 1, 1, 2]), one) == {"copy_ratio": pytest.approx(1 / 4)}
    assert metrics.copy_ratio(gen[3:], torch.tensor([2]), one) == {}  # nothing left to measure
    # the same with the lone image's class first: the classes after it still count
    first = labelled([[50, 50], *TWO_CLASSES[0]], [0, *(c + 1 for c in TWO_CLASSES[1])])
    assert metrics.copy_ratio(gen, torch.tensor([1, 2, 2, 0]), first) == {"copy_ratio": pytest.approx(1 / 4)}


def test_copy_ratio_without_a_yardstick_or_for_points_or_large_sets_is_empty(monkeypatch):
    duplicates = labelled([[0, 0], [0, 0], [0, 0], [5, 5]], [0, 0, 0, 0])  # most nearest-other distances are 0
    assert metrics.copy_ratio(SAMPLES, torch.tensor([0, 0, 0]), duplicates) == {}
    points = labelled(TWO_CLASSES[0], None)
    points.x = points.x.view(-1, 2)  # (N, 2): points, not images
    assert metrics.copy_ratio(SAMPLES.view(-1, 2), None, points) == {}
    monkeypatch.setattr(metrics, "COPY_MAX_REAL", 5)
    assert metrics.copy_ratio(SAMPLES, None, labelled(*TWO_CLASSES)) == {"copy_ratio": pytest.approx(1 / 4)}
    monkeypatch.setattr(metrics, "COPY_MAX_REAL", 4)
    assert metrics.copy_ratio(SAMPLES, None, labelled(*TWO_CLASSES)) == {}


def test_copy_ratio_scores_an_evenly_spread_subset_of_large_sample_sets(monkeypatch):
    data = labelled(*TWO_CLASSES)
    far = torch.tensor([[0.0, 20.0]]).view(1, 1, 1, 2)  # 17 from class 0's nearest image: ratio 17/4
    # every other sample: (0, 1), (10, 5), (10, 8) are kept (labels with them), the far ones skipped
    gen = torch.cat([SAMPLES[0:1], far, SAMPLES[1:2], far, SAMPLES[2:3], far])
    labels = torch.tensor([0, 0, 1, 0, 1, 0])
    monkeypatch.setattr(metrics, "COPY_MAX_GEN", 3)
    assert metrics.copy_ratio(gen, labels, data) == {"copy_ratio": pytest.approx(1 / 4)}
    monkeypatch.setattr(metrics, "COPY_MAX_GEN", 6)
    # all six: distances 1, 17, 1, 17, 2, 17, whose (lower) median is 2
    assert metrics.copy_ratio(gen, labels, data) == {"copy_ratio": pytest.approx(2 / 4)}
