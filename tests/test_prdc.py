"""Precision, recall, density, coverage and the FID interval: the `prdc` package as oracle, the direction
of precision and recall, per-class recall, and the scorer wiring them into every image evaluation."""
import numpy as np
import pytest
import torch
from prdc import compute_prdc
from torchmetrics.image.fid import _compute_fid

import gancore.evaluator as ev
from gancore import image_metrics, records
from gancore.data import load_dataset
from gancore.image_metrics import fid_interval, prdc

TOL = 1e-12  # the oracle and we count the same comparisons: only the final means' rounding may differ
PRDC_KEYS = {"precision", "recall", "density", "coverage"}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small matrix work runs faster on one thread


def gaussian(n, dim=64, scale=1.0, shift=0.0, seed=0):
    return shift + scale * torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def oracle(real, fake):
    """The prdc package's four numbers at our neighbour counts (k = 3 for P/R, k = 5 for D/C)."""
    pr = compute_prdc(real.numpy(), fake.numpy(), nearest_k=image_metrics.K_PR)
    dc = compute_prdc(real.numpy(), fake.numpy(), nearest_k=image_metrics.K_DC)
    return {"precision": pr["precision"], "recall": pr["recall"], "density": dc["density"],
            "coverage": dc["coverage"]}


# ---------------------------------------------------------------- against the oracle
@pytest.mark.parametrize("n_real,n_fake,scale,shift,rows", [
    (500, 500, 1.2, 0.3, 1000),   # shifted and wider fakes, one distance block
    (500, 500, 0.8, 0.1, 64),     # narrower fakes, the distance matrices in blocks of 64 rows
    (500, 300, 1.0, 0.0, 128),    # the same distribution, unequal sizes
])
def test_equals_the_prdc_package(n_real, n_fake, scale, shift, rows):
    real = gaussian(n_real, seed=1)
    fake = gaussian(n_fake, scale=scale, shift=shift, seed=2)
    ours = prdc(real, fake, rows=rows)
    want = oracle(real, fake)
    for key in PRDC_KEYS:
        assert ours[key] == pytest.approx(want[key], abs=TOL), key
    assert ours["recalled"].shape == (n_real,) and ours["recalled"].double().mean() == pytest.approx(ours["recall"])


def test_one_k_for_all_four_equals_the_package_at_that_k():
    real, fake = gaussian(400, dim=16, seed=3), gaussian(400, dim=16, scale=1.5, seed=4)
    for k in (3, 5):
        ours, want = prdc(real, fake, k_pr=k, k_dc=k), compute_prdc(real.numpy(), fake.numpy(), nearest_k=k)
        assert all(ours[key] == pytest.approx(want[key], abs=TOL) for key in PRDC_KEYS)


def test_precision_and_recall_are_not_swapped():
    """torch-fidelity once returned them the wrong way round. Fakes in a narrow core of the data all look
    real (precision ~1) but reach little of it (recall ~0); fakes spread far wider reach everything and
    rarely look real."""
    real = gaussian(500, seed=5)
    narrow = prdc(real, gaussian(500, scale=0.1 ** 0.5, seed=6))  # N(0, 0.1 I)
    assert narrow["precision"] > 0.95 and narrow["recall"] < 0.05
    assert narrow["density"] > 1 and narrow["coverage"] > 0.5  # crowded on the common part of the data
    wide = prdc(real, gaussian(500, scale=3.0, seed=7))  # N(0, 9 I)
    assert wide["precision"] < 0.05 and wide["recall"] > 0.95
    assert wide["density"] < 0.05 and wide["coverage"] < 0.05


def test_too_few_samples_are_refused():
    with pytest.raises(ValueError, match="more than 5 real"):
        prdc(gaussian(5), gaussian(50))


# ---------------------------------------------------------------- the FID interval
def test_frechet_form_equals_torchmetrics_fid():
    real, fake = gaussian(600, dim=32, seed=8).double(), gaussian(500, dim=32, scale=1.3, shift=0.2, seed=9).double()
    mu_r, cov_r, mu, cov = real.mean(0), torch.cov(real.T), fake.mean(0), torch.cov(fake.T)
    lam, v = torch.linalg.eigh(cov_r)
    root_r = (v * lam.clamp(min=0).sqrt()) @ v.T
    assert float(image_metrics._frechet(mu_r, cov_r, root_r, mu, cov)) == pytest.approx(
        float(_compute_fid(mu_r, cov_r, mu, cov)), rel=1e-9)


def test_fid_interval_holds_its_fid_and_what_fresh_samples_score():
    """The interval is about the generated sample: fresh draws of the same size from the same distribution
    mostly score inside it, and it narrows with more samples."""
    real = gaussian(5000, dim=16, seed=10).double()
    mu_r, cov_r = real.mean(0), torch.cov(real.T)

    def fid(fake):
        f = fake.double()
        return float(_compute_fid(mu_r, cov_r, f.mean(0), torch.cov(f.T)))

    fresh = np.array([fid(gaussian(200, dim=16, shift=0.3, seed=100 + i)) for i in range(60)])
    spread = np.quantile(fresh, 0.975) - np.quantile(fresh, 0.025)  # what the interval should be as wide as
    held, widths = [], []
    for i in range(10):
        small = gaussian(200, dim=16, shift=0.3, seed=i)
        lo, hi = fid_interval(mu_r, cov_r, small, seed=i)
        assert lo < fid(small) < hi
        held.append(np.mean((lo <= fresh) & (fresh <= hi)))
        widths.append(hi - lo)
    assert np.mean(held) >= 0.7 and 0.5 * spread < np.mean(widths) < 2 * spread, (held, widths, spread)
    large = gaussian(2000, dim=16, shift=0.3, seed=0)
    lo_large, hi_large = fid_interval(mu_r, cov_r, large, 0)
    assert lo_large < fid(large) < hi_large and hi_large - lo_large < 0.5 * np.mean(widths)
    assert fid_interval(mu_r, cov_r, small, seed=9) == (lo, hi)  # the seed fixes it
    assert fid_interval(mu_r, cov_r, small, seed=0) != (lo, hi)


# ---------------------------------------------------------------- in the scorer
@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    model, report = ev.evaluator_for(data)
    return data, image_metrics.ImageScorer(data, model, report)


def test_scorer_gives_the_packages_numbers_on_its_own_features(digits, monkeypatch):
    """Held-out images against the evaluator's training split: none is a copy of a reference image (a copy
    sits exactly as far from a real image as that image's neighbour it copies: a tie only rounding decides)."""
    data, _ = digits
    model, report = ev.evaluator_for(data)
    scorer = image_metrics.ImageScorer(data, model, report, split="train")
    hold = ev.heldout_split(len(data), report["seed"], report["holdout"])[1]
    seen = []

    def spy(real, fake, **kw):
        seen.append((real.cpu(), fake.cpu()))
        return prdc(real, fake, **kw)

    monkeypatch.setattr(image_metrics, "prdc", spy)
    s = scorer.score(data.x[hold], seed=0)  # 359 samples against 1,438 reference images: 359 of each
    (real, fake), = seen
    assert real.shape == fake.shape == (len(hold), model.num_features)
    want = oracle(real.float(), fake.float())
    assert all(s[key] == pytest.approx(want[key], abs=TOL) for key in PRDC_KEYS), (s, want)
    # the features are the evaluator's of these images (reused from FID/KID's pass, not computed again)
    torch.testing.assert_close(fake, model.features(image_metrics.as_float(data.x[hold])))


def test_scorer_keys_are_declared_with_their_direction(digits):
    data, scorer = digits
    s = scorer.score(data.x[:300], seed=0)
    assert PRDC_KEYS | {"fid_lo", "fid_hi", "recall_per_class"} <= set(s)
    assert set(s) - {"provenance"} <= set(records.METRICS)
    assert PRDC_KEYS <= records.HIGHER_IS_BETTER and {"precision", "recall"} <= set(records.LATEST)
    assert records.METRICS["recall_per_class"].group == "per_class"
    assert s["fid_lo"] <= s["fid_hi"] and len(s["recall_per_class"]) == 10


def test_dropped_class_shows_in_recall_per_class_and_one_class_keeps_precision(digits):
    data, scorer = digits
    g = torch.Generator().manual_seed(0)
    real = torch.randperm(len(data), generator=g)[:800]
    without_3 = scorer.score(data.x[real[data.y[real] != 3]], seed=0)
    recall = np.array(without_3["recall_per_class"])
    assert recall[3] < 0.3 and np.delete(recall, 3).min() > 0.6, recall
    one = scorer.score(data.x[data.y == 1], seed=0)  # each class-1 image once (repeats would shrink G's balls)
    everything = scorer.score(data.x[real], seed=0)
    assert one["precision"] > 0.8 * everything["precision"]
    assert one["recall"] < 0.3 and one["coverage"] < 0.3 < everything["coverage"]
    assert one["recall_per_class"][1] > 0.5 and max(np.delete(one["recall_per_class"], 1)) < 0.1
