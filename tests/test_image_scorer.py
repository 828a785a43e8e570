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
