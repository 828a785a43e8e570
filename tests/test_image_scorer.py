"""The FID/KID wiring of ImageScorer, each test with a scorer of its own (its reference computed in the test, in
a cache of its own): per-class FID against the class's own real images, and the on-disk reference cache (its key
and format checked, never unpickling foreign objects, reused as computed)."""
import dataclasses

import pytest
import torch

import gancore.evaluator as ev
from gancore import image_metrics
from gancore.data import load_dataset

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small matrix work runs faster on one thread


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    model, report = ev.evaluator_for(data)
    return data, model, report


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """No reference in memory, an empty cache on disk: whatever a scorer needs, it computes here."""
    monkeypatch.setenv("GANCORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(image_metrics, "_REFERENCES", {})
    computed = []
    real = image_metrics.ImageScorer._compute_reference
    monkeypatch.setattr(image_metrics.ImageScorer, "_compute_reference",
                        lambda self, x, y: computed.append(len(x)) or real(self, x, y))
    return computed


def only(data, c):
    keep = data.y == c
    return dataclasses.replace(data, x=data.x[keep], y=data.y[keep])


def samples(data):
    """40 images of classes 3 and 5 (labelled), made a little worse: real images plus noise."""
    g = torch.Generator().manual_seed(0)
    idx = torch.cat([torch.nonzero(data.y == 3)[:20, 0], torch.nonzero(data.y == 5)[:20, 0]])
    x = (data.images()[idx] + 0.3 * torch.randn(len(idx), *data.shape, generator=g)).clamp(-1, 1)
    return x, data.y[idx]


def test_per_class_fid_is_the_fid_of_that_classs_samples_against_that_classs_real_images(digits, fresh):
    data, model, report = digits
    x, labels = samples(data)
    got = image_metrics.ImageScorer(data, model, report).score(x, labels)["fid_per_class"]
    assert [c for c, v in enumerate(got) if v is not None] == [3, 5]  # the classes asked for, none other
    for c in (3, 5):  # a scorer whose whole reference is class c's real images, scoring class c's samples
        alone = image_metrics.ImageScorer(only(data, c), model, report).score(x[labels == c], labels[labels == c])
        assert got[c] == pytest.approx(alone["fid"], rel=1e-4)
    assert got[3] != pytest.approx(got[5], rel=1e-2)


def test_the_reference_is_computed_once_kept_on_disk_and_reused_as_computed(digits, fresh):
    data, model, report = digits
    x, labels = samples(data)
    first = image_metrics.ImageScorer(data, model, report)
    scores = first.score(x, labels)
    assert fresh == [len(data)]
    [path] = (ev.cache_root() / "reference").glob("*.pt")
    saved = torch.load(path, weights_only=True)
    assert saved["format"] == image_metrics.REF_FORMAT and saved["key"] == list(
        ("evaluator", first.sha, first.fingerprint, "all", len(data)))
    assert sorted(saved["fid_per_class"]) == list(range(10)) and saved["labels"] is not None

    image_metrics._REFERENCES.clear()  # a new process: the reference comes from disk, not from the evaluator
    again = image_metrics.ImageScorer(data, model, report)
    assert fresh == [len(data)]
    assert again.score(x, labels) == scores  # per-class FID included: the classes read back as the same keys


@pytest.mark.parametrize("damage", ["format", "key", "foreign object", "not a dict"])
def test_a_cached_reference_of_another_format_or_key_or_with_foreign_objects_is_recomputed(digits, fresh, damage):
    data, model, report = digits
    scorer = image_metrics.ImageScorer(data, model, report)
    [path] = (ev.cache_root() / "reference").glob("*.pt")
    ref = torch.load(path, weights_only=True)
    if damage == "format":
        ref["format"] = image_metrics.REF_FORMAT - 1
    elif damage == "key":
        ref["key"] = ref["key"][:-1] + [len(data) - 1]
    elif damage == "foreign object":  # only tensors and plain containers are ever read back (weights_only)
        ref["note"] = Foreign()
    else:
        ref = [ref]
    torch.save(ref, path)
    image_metrics._REFERENCES.clear()
    again = image_metrics.ImageScorer(data, model, report)
    assert fresh == [len(data), len(data)]  # computed again, and the file rewritten
    assert torch.load(path, weights_only=True)["format"] == image_metrics.REF_FORMAT
    x, labels = samples(data)
    assert again.score(x, labels) == scorer.score(x, labels)


class Foreign:
    """An object no reference holds: unpickling it would run code of the file's choosing."""


def test_the_real_gaussian_is_the_mean_and_unbiased_covariance_of_the_reference_features(digits, fresh):
    """FID's interval compares samples with the real features' Gaussian: the same one FID itself uses."""
    data, model, report = digits
    scorer = image_metrics.ImageScorer(data, model, report)
    mu, cov = scorer._real_gaussian()
    features = scorer.reference["features"].double()  # (N, F), as the evaluator gave them
    torch.testing.assert_close(mu, features.mean(0), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(cov, torch.cov(features.T), rtol=1e-6, atol=1e-9)  # divided by N - 1


def test_precision_recall_density_coverage_draw_their_subsets_from_the_seed(digits, fresh):
    """The real subset (as many as the samples) and, with more samples than real images, the sample subset are
    drawn with the scoring seed: the same seed, the same four numbers; the sample subset spread over all of them."""
    data, model, report = digits
    small = only(data, 3)  # 183 real images: 400 samples are more than the reference holds
    scorer = image_metrics.ImageScorer(small, model, report)
    g = torch.Generator().manual_seed(1)
    noise = torch.rand(200, *data.shape, generator=g) * 2 - 1
    x = torch.cat([small.images(), small.images()[:17], noise])  # 200 real images first, then 200 noise
    keys = ("precision", "recall", "density", "coverage")
    first, again, other = (scorer.score(x, seed=s) for s in (0, 0, 1))
    assert [first[k] for k in keys] == [again[k] for k in keys]
    assert [first[k] for k in keys] != [other[k] for k in keys]
    # a subset drawn from all 400 holds noise, where the first 183 would hold none: precision well below 1
    assert 0.25 < first["precision"] < 0.75


def test_recall_per_class_leaves_out_a_class_the_real_subset_lacks(digits, fresh, monkeypatch):
    data, model, report = digits
    scorer = image_metrics.ImageScorer(data, model, report)
    x, labels = samples(data)
    recall = scorer.score(x[:10], labels[:10])["recall_per_class"]  # 10 real images drawn of 1,797: some class lacks
    assert None in recall and all(r is None or 0 <= r <= 1 for r in recall)
    drawn = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:10]  # the draw _prdc makes
    present = set(scorer.reference["labels"][drawn].tolist())  # of the reference's features, in its order
    assert [c for c, r in enumerate(recall) if r is not None] == sorted(present)


def test_score_defaults_and_limits(digits, fresh, monkeypatch):
    data, model, report = digits
    scorer = image_metrics.ImageScorer(data, model, report)
    x, labels = samples(data)
    assert scorer.score(x[:10])["provenance"]["seed"] == 0  # 10 samples is enough, seed 0 by default
    with pytest.raises(ev.EvaluatorError, match="at least 10 samples"):
        scorer.score(x[:9])
    # per-class FID needs two samples of the class: one sample of class 7 gives None, not a number or an error
    one = torch.cat([x, data.images()[data.y == 7][:1]])
    got = scorer.score(one, torch.cat([labels, torch.tensor([7])]))["fid_per_class"]
    assert got[7] is None and got[3] is not None
    # KID's subsets: 500 samples at most, and never more than either side holds
    threes = image_metrics.ImageScorer(only(data, 3), model, report)  # 183 real images
    sizes = []
    real_kid = image_metrics.ImageScorer._kid
    monkeypatch.setattr(image_metrics.ImageScorer, "_kid", lambda self, k: sizes.append(k) or real_kid(self, k))
    scorer.score(data.images()[:600])
    threes.score(data.images()[:300])
    scorer.score(x)
    assert sizes == [image_metrics.KID_SUBSET, len(only(data, 3)), len(x)]


@pytest.mark.parametrize("split", ["train", "holdout"])
def test_a_train_or_holdout_reference_holds_the_evaluators_split(digits, fresh, split):
    data, model, report = digits
    report = dict(report, holdout=0.3)  # not the default share: the split must come from the report
    train_idx, hold_idx = ev.heldout_split(len(data), report["seed"], 0.3)
    idx = train_idx if split == "train" else hold_idx
    scorer = image_metrics.ImageScorer(data, model, report, split=split)
    x, y = scorer._reference_images()
    assert scorer.n_real == len(idx) and torch.equal(x, data.x[idx]) and torch.equal(y, data.y[idx])
    assert scorer.provenance(10, 0)["reference"] == f"digits:{split}"


def test_a_reference_is_unlabelled_data_or_a_fixed_subset_of_a_large_set_or_refused(digits, fresh, monkeypatch):
    data, model, report = digits
    with pytest.raises(ev.EvaluatorError, match="reference split must be all, or train/holdout with an evaluator "
                                                "\\(got 'test'\\)"):
        image_metrics.ImageScorer(data, model, report, split="test")
    unlabelled = dataclasses.replace(data, y=None, num_classes=0, class_names=[])
    scorer = image_metrics.ImageScorer(unlabelled, model, report)
    assert scorer._reference_images()[1] is None and scorer.reference["labels"] is None
    assert "recall_per_class" not in scorer.score(data.images()[:40])
    monkeypatch.setattr(image_metrics, "REF_MAX", 100)  # a set larger than the reference takes: a fixed subset
    x, y = image_metrics.ImageScorer(data, model, report)._reference_images()
    keep = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:100].sort().values
    assert torch.equal(x, data.x[keep]) and torch.equal(y, data.y[keep])


def test_per_class_fid_from_two_samples_and_the_class_histogram_over_every_class(digits, fresh):
    data, model, report = digits
    scorer = image_metrics.ImageScorer(data, model, report)
    x, labels = samples(data)
    two = torch.cat([x, data.images()[data.y == 7][:2]])
    got = scorer.score(two, torch.cat([labels, torch.tensor([7, 7])]))
    assert got["fid_per_class"][7] is not None  # two samples are enough for a covariance
    assert got["cond_acc_per_class"][0] is None and got["cond_acc_per_class"][3] is not None
    hist = scorer.score(data.images()[data.y == 3][:40])["class_hist"]  # unconditional: one class drawn
    assert len(hist) == 10 and sum(hist) == pytest.approx(1.0) and hist[3] > 0.5
