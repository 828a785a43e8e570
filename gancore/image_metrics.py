"""Image metrics: FID (with a bootstrap interval), KID, the Inception-Score analogue, precision, recall,
density and coverage, conditional accuracy, per-class FID and recall, and the class histogram, scored
against the real data with the project's evaluator as feature network.

FID, KID and IS are torchmetrics' own metrics; only the feature network is ours (`FeatureModule`):
the evaluator's penultimate features for FID/KID, its logits for IS. With `backend="inception"` the
network is torch-fidelity's standard Inception (pool3 features, unbiased logits) instead, its weights
fetched once into gancore's cache and checked by sha256 (`inception_weights`).

The real side of FID/KID (the *reference*) is computed once per (feature network, data fingerprint,
split, count): kept in memory for the process and on disk under `<cache>/reference/` (see
`evaluator.cache_root`), as torchmetrics metric states restored with `merge_state`, beside the real
features themselves and their labels.

Precision and recall (Kynkaenniemi et al. 2019, k = 3) and density and coverage (Naeem et al. 2020,
k = 5) compare the same features by k-nearest-neighbour balls (`prdc`; the `prdc` package is the
test's oracle). The estimates depend on the set sizes, so they always compare equal counts: m =
min(generated, reference) features from each side, a random subset (drawn with the score's seed) of the
reference, and of the generated set when it is the larger one. The FID interval (`fid_interval`)
resamples the generated features with replacement against the reference's fixed mean and covariance.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from .data import as_float, quantize
from .downloads import DownloadError, fetch, sha256_of
from .errors import ConfigError
from .catalogue import FEATURE_BACKENDS, STACKED
from .evaluator import EvaluatorError, cache_root, fingerprint, heldout_split, weights_sha256
from .runs import torch_save_atomic

REF_MAX = 10_000        # real images in a reference at most (a fixed random subset beyond that)
KID_SUBSET = 500        # KID subset size (fewer when fewer samples); 100 subsets, torchmetrics' default
BATCH = 500             # images per evaluator call
REF_FORMAT = 2          # bump when what a cached reference holds changes (2: its features and labels)
K_PR = 3                # neighbours of precision and recall (Kynkaenniemi et al. 2019)
K_DC = 5                # neighbours of density and coverage (Naeem et al. 2020)
FID_RESAMPLES = 50      # bootstrap resamples of the generated set behind fid_lo, fid_hi (a 95 % interval)
DIST_ROWS = 1000        # rows of a distance matrix held at once (1000 x 10,000 float64: 80 MB)
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"  # what torch-fidelity downloads into torch hub
# torch-fidelity's URL_INCEPTION_V3 (feature_extractor_inceptionv3.py, 0.4.0), what torchmetrics' FID loads;
# GANCORE_INCEPTION_URL overrides it (a mirror, or a local server in tests). The file is 95,628,359 bytes.
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_FILE
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"  # its name's "6726825d"
INCEPTION_NAME = "inception-v3-compat"

_REFERENCES: dict[tuple, dict] = {}  # in-process cache of reference states
# Scores are computed by one process on the samples it holds: torchmetrics would otherwise gather its state
# from every rank of a multi-process run at compute(), waiting on ranks that are not evaluating.
LOCAL = dict(sync_on_compute=False)


class _Outputs:
    """A feature network's (features, logits) of the last batch it saw.

    FID, KID and IS each call their feature module on the same batch tensor; remembering the last
    one means the network (most of the cost on a CPU) runs once per batch instead of four times.
    `network(x) -> (features (N, F), logits (N, K))`.
    """

    def __init__(self, network, num_features: int, num_classes: int):
        self.network, self.num_features, self.num_classes = network, num_features, num_classes
        self.last = None

    @torch.no_grad()
    def __call__(self, x):
        if self.last is None or self.last[0] is not x:
            self.last = (x, *self.network(x))
        return self.last[1], self.last[2]


def _evaluator_outputs(evaluator) -> _Outputs:
    def network(x):  # (N, C, H, W) in [-1, 1]
        f = evaluator.features(x)  # (N, F)
        return f, evaluator.classifier(f)  # what forward() does in eval mode (no dropout)

    return _Outputs(network, evaluator.num_features, evaluator.num_classes)


def _inception_outputs(path, device) -> _Outputs:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                      feature_extractor_weights_path=str(path)).to(device)
    return _Outputs(net, 2048, 1008)  # uint8 (N, 3, H, W) -> pool3 features, ImageNet logits


class FeatureModule(nn.Module):
    """torchmetrics' feature module: the network's features (FID, KID) or logits (IS) of a batch."""

    def __init__(self, outputs: _Outputs, logits: bool = False):
        super().__init__()
        self.outputs, self.logits = outputs, logits
        # torchmetrics reads num_features rather than probing the module with a dummy uint8 image
        self.num_features = outputs.num_classes if logits else outputs.num_features

    def forward(self, x):
        features, logits = self.outputs(x)
        # IS in float64: with float32, a class whose softmax underflows to 0 in a whole split makes it NaN
        return logits.double() if self.logits else features


def inception_weights() -> Path:
    """The Inception weights file for fid_backend=inception, whose sha256 must be INCEPTION_SHA256.

    torch-fidelity's own copy (torch hub's checkpoints) or gancore's (`<cache>/inception/`) when one
    matches; else fetched into gancore's cache from INCEPTION_URL (or $GANCORE_INCEPTION_URL) and kept
    from then on. A cached copy that does not match is removed and fetched again. ConfigError (one
    line) when torch-fidelity is missing, or when the weights cannot be fetched: the file to copy and where.
    """
    if importlib.util.find_spec("torch_fidelity") is None:
        raise ConfigError("--fid_backend: inception needs the torch-fidelity package, which is not installed "
                          "(pip install torch-fidelity); or use --fid_backend evaluator (the project's own evaluator)")
    hub = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    cached = cache_root() / "inception" / INCEPTION_FILE
    for path in (hub, cached):
        if path.is_file() and sha256_of(path) == INCEPTION_SHA256:
            return path
    cached.unlink(missing_ok=True)  # torn or not the file; torch hub's copy is torch-fidelity's, left alone
    url = os.environ.get("GANCORE_INCEPTION_URL") or INCEPTION_URL
    try:
        return fetch(url, cached, INCEPTION_SHA256, what="torch-fidelity's Inception weights")
    except DownloadError as e:
        raise ConfigError(f"--fid_backend: inception needs the Inception weights at {cached}, and {e}; copy "
                          f"{INCEPTION_FILE} (sha256 {INCEPTION_SHA256}) there from a machine that has it, "
                          f"or use --fid_backend evaluator") from None


def _quiet(make):
    """Build a torchmetrics metric without its 'will save all extracted features' memory warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        return make()


class ImageScorer:
    """Scores images against one real dataset (or one split of it) with one feature network.

    `evaluator`, `report`: from `evaluator.evaluator_for`; the evaluator's logits also give the
    conditional accuracy and the class histogram. Backend "inception" uses neither (FID, KID, IS,
    precision/recall/density/coverage and per-class FID and recall only: Inception's classes are not the
    data's). `split`: "all", or the evaluator's "train"/"holdout" split (`heldout_split`).
    """

    def __init__(self, data, evaluator=None, report=None, backend="evaluator", split="all", device="cpu"):
        if data.kind != "image":
            raise EvaluatorError(f"dataset {data.name!r} holds 2-D points; image metrics need images")
        if backend not in FEATURE_BACKENDS:
            raise ConfigError(f"--fid_backend: unknown value {backend!r}; choose one of {', '.join(FEATURE_BACKENDS)}")
        if evaluator is None and backend == "evaluator":
            raise EvaluatorError(f"dataset {data.name!r}: no evaluator given for fid_backend evaluator")
        self.device = torch.device(device)
        self.data, self.backend, self.split, self.report = data, backend, split, report
        self.fingerprint = fingerprint(data)
        if backend == "inception":
            path = inception_weights()
            self.outputs = _inception_outputs(path, self.device)
            self.network, self.sha = INCEPTION_NAME, hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            self.outputs = _evaluator_outputs(evaluator.to(self.device).eval())
            self.network, self.sha = report["dataset"], weights_sha256(evaluator)
        x, y = self._reference_images()
        self.n_real = len(x)
        self.reference = self._reference(x, y)

    # ---------------------------------------------------------------- torchmetrics objects
    # normalize stays False throughout: with a custom module FID and KID ignore it, but IS would turn
    # our [-1, 1] floats into bytes ((imgs * 255).byte()) before calling the module.
    def _fid(self):
        return FrechetInceptionDistance(FeatureModule(self.outputs), **LOCAL).to(self.device)

    def _kid(self, subset_size: int):
        feature = FeatureModule(self.outputs)
        return _quiet(lambda: KernelInceptionDistance(feature, subset_size=subset_size, **LOCAL)).to(self.device)

    def _is(self):
        return _quiet(lambda: InceptionScore(FeatureModule(self.outputs, logits=True), **LOCAL)).to(self.device)

    def _input(self, x):
        """A batch (floats in [-1, 1], or uint8 as a Dataset stores them) as the feature network takes it:
        [-1, 1] floats (evaluator) or uint8 RGB (Inception)."""
        x = as_float(x.to(self.device))
        if self.backend == "inception":
            x = quantize(x)
            x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        return x

    # ---------------------------------------------------------------- the real side, cached
    def _reference_images(self):
        """The real images of the reference (at most REF_MAX) as stored (uint8 for most sets: 4x smaller
        than floats; `_input` converts each batch), and their labels or None."""
        n, y = len(self.data), None if self.data.y is None else self.data.y.cpu()
        if self.split in ("train", "holdout") and self.report is not None:
            train_idx, hold_idx = heldout_split(n, self.report["seed"], self.report["holdout"])
            idx = train_idx if self.split == "train" else hold_idx
        elif self.split == "all":
            idx = torch.arange(n)
        else:
            raise EvaluatorError(f"reference split must be all, or train/holdout with an evaluator "
                                 f"(got {self.split!r})")
        if len(idx) > REF_MAX:  # a fixed subset: the same images every time
            idx = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(0))[:REF_MAX].sort().values]
        return self.data.x[idx].cpu(), None if y is None else y[idx]

    def _reference(self, x, y) -> dict:
        key = (self.backend, self.sha, self.fingerprint, self.split, len(x))
        if key in _REFERENCES:
            return _REFERENCES[key]
        name = f"{self.backend}-{self.sha[:16]}-{self.fingerprint}-{self.split}-{len(x)}.pt"
        path = cache_root() / "reference" / name
        ref = _load_reference(path, key)
        if ref is None:
            ref = self._compute_reference(x, y)
            ref["key"] = list(key)
            _save_reference(path, ref)
        _REFERENCES[key] = ref
        return ref

    @torch.no_grad()
    def _compute_reference(self, x, y) -> dict:
        fid, kid, per_class, features, labels = self._fid(), self._kid(KID_SUBSET), {}, [], []
        for c, idx in _class_batches(y, len(x)):
            xb = self._input(x[idx])
            fid.update(xb, real=True)
            kid.update(xb, real=True)
            features.append(self.outputs(xb)[0].float().cpu())  # what the two updates just computed
            labels.append(torch.full((len(idx),), c))
            if y is not None:
                per_class.setdefault(c, self._fid()).update(xb, real=True)
        # features (N, F) float32 and labels (N,) (None: unlabelled data) in class-batch order
        return {"format": REF_FORMAT, "fid": _cpu(fid.metric_state), "kid": _cpu(kid.metric_state),
                "fid_per_class": {c: _cpu(m.metric_state) for c, m in per_class.items()},
                "features": torch.cat(features), "labels": None if y is None else torch.cat(labels)}

    def _with_reference(self, metric, state):
        """A fresh metric holding the cached real-side state (torchmetrics' merge_state adds it in)."""
        metric.merge_state(_to(state, self.device))
        return metric

    # ---------------------------------------------------------------- scoring
    def _real_gaussian(self):
        """(mean (F,), covariance (F, F)) of the reference features, float64, as FID computes them."""
        state = _to(self.reference["fid"], self.device)
        n = state["real_features_num_samples"]
        mu = state["real_features_sum"] / n
        return mu, (state["real_features_cov_sum"] - n * torch.outer(mu, mu)) / (n - 1)

    def _prdc(self, real, fake, seed: int) -> dict:
        """precision, recall, density, coverage (and recall_per_class, labelled data) of equal-sized subsets."""
        m = min(len(real), len(fake))
        g = torch.Generator().manual_seed(seed)
        real_idx = torch.randperm(len(real), generator=g)[:m]
        fake_idx = torch.randperm(len(fake), generator=g)[:m] if len(fake) > m else torch.arange(m)
        s = prdc(real[real_idx.to(self.device)], fake[fake_idx.to(self.device)])
        recalled = s.pop("recalled")
        if self.reference["labels"] is not None:
            y = self.reference["labels"][real_idx]
            s["recall_per_class"] = [float(recalled[y == c].double().mean()) if (y == c).any() else None
                                     for c in range(self.data.num_classes)]
        return s

    def provenance(self, n_gen: int, seed: int) -> dict:
        return {"evaluator": self.network, "weights_sha256": self.sha, "reference": f"{self.data.name}:{self.split}",
                "data_fingerprint": self.fingerprint, "n_real": self.n_real, "n_gen": int(n_gen), "seed": int(seed)}

    @torch.no_grad()
    def score(self, x: torch.Tensor, labels: torch.Tensor | None = None, seed: int = 0) -> dict:
        """Metrics of images x (N, C, H, W) in [-1, 1] (or uint8 levels, as a Dataset stores them); `labels` (N,):
        the class each was made for, or None.

        Returns fid, fid_lo, fid_hi, kid_mean, kid_std, is_mean, is_std, precision, recall, density,
        coverage; recall_per_class when the real data are labelled (whatever G was asked for); with labels
        fid_per_class and (evaluator) cond_acc, cond_acc_per_class; without labels (evaluator) class_hist;
        and `provenance`.
        """
        n, k = len(x), self.data.num_classes
        if n < 10:
            raise EvaluatorError(f"--n: image metrics need at least 10 samples (got {n})")
        if tuple(x.shape[1:]) != tuple(self.data.shape):
            raise EvaluatorError(f"images are {tuple(x.shape[1:])} (C, H, W) but the reference data "
                                 f"{self.data.name!r} is {tuple(self.data.shape)}; resize one of them")
        fid = self._with_reference(self._fid(), self.reference["fid"])
        kid = self._with_reference(self._kid(min(KID_SUBSET, n, self.n_real)), self.reference["kid"])
        is_, per_class = self._is(), {}
        preds = torch.empty(n, dtype=torch.long)
        features = torch.empty(n, self.outputs.num_features, device=self.device)  # (N, F): FID's and KID's
        for c, idx in _class_batches(labels, n):  # one class per batch, so per-class FID sees whole batches
            xb = self._input(x[idx])
            fid.update(xb, real=False)
            kid.update(xb, real=False)
            is_.update(xb)
            features[idx.to(self.device)] = self.outputs(xb)[0].float()  # computed by the updates above
            if labels is not None and c in self.reference["fid_per_class"]:
                if c not in per_class:
                    per_class[c] = self._with_reference(self._fid(), self.reference["fid_per_class"][c])
                per_class[c].update(xb, real=False)
            if self.backend == "evaluator":  # the evaluator's logits of this batch, computed above
                preds[idx] = self.outputs(xb)[1].argmax(1).cpu()

        with torch.random.fork_rng(devices=[]):  # KID subsets and IS splits draw from the CPU's global RNG
            torch.random.default_generator.manual_seed(seed)  # not torch.manual_seed: that reseeds every GPU too
            kid_mean, kid_std = kid.compute()
            is_mean, is_std = is_.compute()
        fid_lo, fid_hi = fid_interval(*self._real_gaussian(), features, seed)
        out = {"fid": float(fid.compute()), "fid_lo": fid_lo, "fid_hi": fid_hi, "kid_mean": float(kid_mean),
               "kid_std": float(kid_std), "is_mean": float(is_mean), "is_std": float(is_std)}
        out.update(self._prdc(self.reference["features"].to(self.device), features, seed))
        if labels is not None:
            labels = labels.cpu()
            out["fid_per_class"] = [float(per_class[c].compute()) if c in per_class and (labels == c).sum() >= 2
                                    else None for c in range(k)]
            if self.backend == "evaluator":
                hit = preds == labels
                out["cond_acc"] = int(hit.sum()) / n
                out["cond_acc_per_class"] = [int(hit[labels == c].sum()) / int((labels == c).sum())
                                             if (labels == c).any() else None for c in range(k)]
        elif self.backend == "evaluator":
            out["class_hist"] = [int(c) / n for c in torch.bincount(preds, minlength=k)]
        out["provenance"] = self.provenance(n, seed)
        return out


@torch.no_grad()
def prdc(real: torch.Tensor, fake: torch.Tensor, k_pr: int = K_PR, k_dc: int = K_DC, rows: int = DIST_ROWS) -> dict:
    """Precision and recall (k_pr nearest neighbours), density and coverage (k_dc) of fake (M, F) against
    real (N, F) features, in float64 on their device.

    Each sample's ball reaches its k-th nearest neighbour in its own set (itself not counted), as in the
    `prdc` package, and "inside" is strictly closer, as there:
    - precision: share of fakes inside some real ball (k_pr): how much of G's output looks real;
    - recall: share of reals inside some fake ball (k_pr): how much of the data G reaches;
    - density: fakes' mean count of real balls (k_dc) they are inside, / k_dc (about 1 for real samples;
      above 1 where fakes crowd the dense parts of the data);
    - coverage: share of reals whose ball (k_dc) holds at least one fake.
    Also `recalled`: (N,) bool, which reals count toward recall (for recall per class). Distance
    matrices are computed `rows` rows at a time.
    """
    if len(real) <= max(k_pr, k_dc) or len(fake) <= k_pr:
        raise ValueError(f"prdc needs more than {max(k_pr, k_dc)} real and {k_pr} fake samples, "
                         f"got {len(real)} and {len(fake)}")
    real, fake = real.double(), fake.double()
    real_pr, real_dc = _kth_neighbour(real, (k_pr, k_dc), rows)  # (N,) ball radii
    (fake_pr,) = _kth_neighbour(fake, (k_pr,), rows)               # (M,)
    looks_real = torch.zeros(len(fake), dtype=torch.bool, device=fake.device)  # inside a real k_pr ball
    crowding = torch.zeros(len(fake), dtype=torch.float64, device=fake.device)  # real k_dc balls around it
    recalled = torch.empty(len(real), dtype=torch.bool, device=real.device)
    covered = torch.empty(len(real), dtype=torch.bool, device=real.device)
    for i in range(0, len(real), rows):
        d = torch.cdist(real[i:i + rows], fake)  # (rows, M)
        looks_real |= (d < real_pr[i:i + rows, None]).any(0)
        crowding += (d < real_dc[i:i + rows, None]).sum(0)
        recalled[i:i + rows] = (d < fake_pr[None, :]).any(1)
        covered[i:i + rows] = d.min(1).values < real_dc[i:i + rows]
    return {"precision": float(looks_real.double().mean()), "recall": float(recalled.double().mean()),
            "density": float(crowding.mean()) / k_dc, "coverage": float(covered.double().mean()),
            "recalled": recalled.cpu()}


def _kth_neighbour(x: torch.Tensor, ks: tuple[int, ...], rows: int) -> list[torch.Tensor]:
    """For each k in ks, the distance (N,) from each row of x (N, F) to its k-th nearest other row."""
    out = [[] for _ in ks]
    for i in range(0, len(x), rows):
        near = torch.cdist(x[i:i + rows], x).topk(max(ks) + 1, dim=1, largest=False).values  # (rows, k+1), self first
        for o, k in zip(out, ks):
            o.append(near[:, k])
    return [torch.cat(o) for o in out]


@torch.no_grad()
def fid_interval(mu_r: torch.Tensor, cov_r: torch.Tensor, fake: torch.Tensor, seed: int,
                 resamples: int = FID_RESAMPLES, level: float = 0.95) -> tuple[float, float]:
    """A `level` bootstrap interval of FID from the generated features fake (M, F) alone: how far FID moves
    when the M samples are drawn again; the real mean mu_r (F,) and covariance cov_r (F, F) stay fixed.

    `resamples` draws of the fake features with replacement, each scored against the real statistics; the
    interval is the point FID plus the draws' percentile spread about their median (the low end at least
    0). The draws' plain percentiles would sit wholly above FID: resampling adds FID's small-sample bias
    (the noise of an estimated covariance under a square root) a second time; on 1,000 samples of 64
    Gaussian features they lay 0.8-1.0 above FID, 2-4 times their width, and held no fresh sample's FID.
    Re-centred, the interval held 80-97 % of fresh samples' FIDs (tests/test_prdc.py checks a case).
    tr sqrt(S_r S_f) is computed as tr sqrt(A S_f A), A = S_r^(1/2): the same eigenvalues, of a symmetric
    matrix; the point FID equals torchmetrics'. float64 on the features' device, except the draws'
    Gram matrices (float32, of features centred in float64).
    """
    mu_r, cov_r, fake = mu_r.double(), cov_r.double(), fake.double()
    lam, v = torch.linalg.eigh(cov_r)
    root_r = (v * lam.clamp(min=0).sqrt()) @ v.T  # S_r^(1/2)
    m, mean = len(fake), fake.mean(0)
    point = _frechet(mu_r, cov_r, root_r, mean, torch.cov(fake.T))
    centred = (fake - mean).float()  # (M, F): each draw's Gram in float32 (the cost), without cancellation
    draws = torch.randint(m, (resamples, m), generator=torch.Generator().manual_seed(seed))
    fids = []
    for draw in draws:
        w = torch.bincount(draw, minlength=m).to(centred)  # (M,) times each fake is drawn
        shift = (w @ centred).double() / m  # the draw's mean - the sample's
        cov = (((centred.T * w) @ centred).double() - m * torch.outer(shift, shift)) / (m - 1)
        fids.append(_frechet(mu_r, cov_r, root_r, mean + shift, cov))
    q = torch.tensor([(1 - level) / 2, 0.5, (1 + level) / 2]).to(fake)
    lo, mid, hi = torch.quantile(torch.stack(fids), q)
    return max(0.0, float(point + lo - mid)), float(point + hi - mid)  # FID is never below 0


def _frechet(mu_r, cov_r, root_r, mu, cov) -> torch.Tensor:
    """FID of the Gaussian (mu, cov) against (mu_r, cov_r), root_r = cov_r^(1/2): ||mu - mu_r||^2 +
    tr(cov_r + cov - 2 (cov_r cov)^(1/2)), the trace of the root from the symmetric root_r cov root_r."""
    root_prod = torch.linalg.eigvalsh(root_r @ cov @ root_r).clamp(min=0).sqrt().sum()
    return (mu - mu_r).square().sum() + cov_r.trace() + cov.trace() - 2 * root_prod


def _cpu(state: dict) -> dict:
    return _to(state, "cpu")


def _to(state: dict, device) -> dict:
    """A metric state (tensors and lists of tensors) moved to `device`."""
    return {k: [t.to(device) for t in v] if isinstance(v, list) else v.to(device) for k, v in state.items()}


def scorer_for(data, backend: str = "evaluator", train: bool = False, device="cpu") -> ImageScorer:
    """The ImageScorer of this data: its shipped or cached evaluator (trained now when `train`), or
    Inception (backend "inception"). Raises EvaluatorError / ConfigError saying what is missing."""
    from .evaluator import evaluator_for

    if backend == "inception":
        return ImageScorer(data, backend="inception", device=device)
    model, report = evaluator_for(data, train_if_missing=train)
    return ImageScorer(data, model, report, device=device)


def scorer_or_why(data, backend: str = "evaluator", train: bool = False, device="cpu"):
    """(the ImageScorer of `data`, None), or (None, why there is none) for stacked MNIST without an evaluator of
    its own: its mode count needs none (metrics.triple_counts reads each channel with the MNIST-5k evaluator).
    The one place that decides; any other set without an evaluator raises EvaluatorError (scorer_for)."""
    from .evaluator import EvaluatorError

    try:
        return scorer_for(data, backend, train=train, device=device), None
    except EvaluatorError:
        if data.name != STACKED or train:
            raise
        return None, "FID/KID/IS off (no stacked-mnist evaluator); modes and reverse KL are counted"


def _class_batches(y: torch.Tensor | None, n: int):
    """(class, indices) batches of at most BATCH, one class per batch; y None: (0, indices) of range(n)."""
    y = torch.zeros(n, dtype=torch.long) if y is None else y.cpu()
    for c in y.unique().tolist():
        idx = (y == c).nonzero().flatten()
        for i in range(0, len(idx), BATCH):
            yield int(c), idx[i:i + BATCH]


def _load_reference(path: Path, key: tuple):
    try:
        ref = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # missing, truncated or foreign: recompute (and overwrite)
        return None
    if not isinstance(ref, dict) or ref.get("format") != REF_FORMAT or ref.get("key") != list(key):
        return None
    ref["fid_per_class"] = {int(k): v for k, v in ref["fid_per_class"].items()}
    return ref


def _save_reference(path: Path, ref: dict) -> None:
    """Atomically (temp + rename); a cache that cannot be written is only slower, never an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch_save_atomic(ref, path)
    except OSError:
        pass
