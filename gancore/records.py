"""What a metrics record holds: every logged or evaluated metric declared once, and score provenance.

The trainer writes records (metrics.jsonl, train.log, status.json "latest"); the dashboard, the
CLI and notebooks read them. All of them take names, grouping, direction and formatting from
`METRICS` below, so a new metric is one line here. Plain Python: readers import this without torch.

Provenance: every evaluation carries which network scored it, against which reference, on how
many samples, with which seed. Two scores are the same metric only when their provenance agrees
(`check_comparable`); the seed is the exception, as it only picks which samples are drawn.
"""
import math
from dataclasses import dataclass

from .errors import GancoreError


@dataclass(frozen=True)
class Metric:
    name: str
    group: str  # loss, d_output, grad, lr, speed, phase, score (an evaluation's scalar), per_class (its lists)
    higher_is_better: bool | None  # None: no direction (a learning rate, a spread)
    latest: bool = False  # kept in status.json "latest" after each evaluation
    listed: bool = False  # shown in run lists (the Runs page, best/last summaries)
    logged: bool = True  # written to train.log's line for the record
    meaning: str = ""
    label: str = ""  # the readable name pages show ("FID", "KID"); the name itself when empty
    share: bool = False  # a fraction of 1, shown as a percent
    short: str = ""  # the name in narrow places (the Runs table); the label when empty

    def format(self, value) -> str:
        """A value as train.log writes it: 4 significant digits."""
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    def display(self, value) -> str:
        """A value as pages show it (the one rule every page follows): a share as a percent with one decimal, a
        whole number as one, anything else to 3 significant digits (thousands grouped, never in e-notation above
        1,000)."""
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return "-" if value is None else str(value)
        if self.share and isinstance(value, (int, float)):
            return f"{100 * value:.1f}%"
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int):
            return f"{value:,}"
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"

    def display_interval(self, mean: float, half: float | None) -> str:
        """`mean ± half` (a 95 % half-width), both to the half-width's second significant digit: `1.95 ± 0.29`,
        `2.0 ± 1.6`, a share as `12.3 ± 4.1%`; `mean (n=1)`-style text is the caller's when half is None."""
        if half is None or not math.isfinite(half) or not math.isfinite(mean):
            return self.display(mean)
        if half == 0:
            return f"{self.display(mean)} ± 0"
        scale, unit, d = self._precision(half)
        return f"{mean * scale:,.{d}f} ± {half * scale:,.{d}f}{unit}"

    def display_range(self, lo: float, hi: float) -> str:
        """An interval `[lo, hi]`, both ends to the second significant digit of its width (shares in percent)."""
        scale, unit, d = self._precision((hi - lo) / 2)
        return f"[{lo * scale:,.{d}f}, {hi * scale:,.{d}f}]{unit}"

    def _precision(self, half: float) -> tuple[float, str, int]:
        """(scale, unit, decimals) that show this metric to the second significant digit of a half-width: a share
        in percent. The one rule display_interval and display_range share."""
        scale, unit = (100.0, "%") if self.share else (1.0, "")
        h = abs(half) * scale
        return scale, unit, 0 if h == 0 else max(0, 1 - math.floor(math.log10(h)))

    @property
    def title(self) -> str:
        return self.label or self.name


METRICS = {m.name: m for m in [
    # --- every logged step (means since the previous record) ---
    Metric("loss_d", "loss", False, meaning="D's loss"),
    Metric("loss_g", "loss", False, meaning="G's loss"),
    Metric("loss_cls_d", "loss", False, meaning="D's extra loss of the conditioning method (ACGAN: class loss)"),
    Metric("loss_cls_g", "loss", False, meaning="G's extra loss of the conditioning method (ACGAN: class loss)"),
    Metric("gp", "loss", False, meaning="WGAN-GP gradient penalty, before weighting"),
    Metric("r1", "loss", False, meaning="R1 penalty, before weighting"),
    Metric("drift", "loss", False, meaning="drift penalty E[D(x)^2] on real scores, before weighting"),
    Metric("fm", "loss", False, meaning="feature matching: squared distance between the batch means of D's last "
           "hidden features on real and generated images, before weighting"),
    Metric("d_real", "d_output", True, meaning="mean D(x): a probability for minimax/nonsaturating, else the raw score"),
    Metric("d_fake", "d_output", False, meaning="mean D(G(z)), as d_real"),
    Metric("grad_norm_d", "grad", None, meaning="D's total gradient L2 norm at this step"),
    Metric("grad_norm_g", "grad", None, meaning="G's total gradient L2 norm at this step"),
    Metric("amp_skipped", "grad", None, meaning="fp16: steps the grad scaler skipped since the previous record "
           "(gradients overflowed); their values are left out of the means"),
    Metric("lr_d", "lr", None, logged=False, meaning="D's learning rate"),
    Metric("lr_g", "lr", None, logged=False, meaning="G's learning rate"),
    Metric("img_per_s", "speed", True, meaning="real images per second over the interval"),
    Metric("resolution", "phase", None, meaning="progressive: the resolution G and D work at (px)"),
    Metric("alpha", "phase", None, meaning="progressive: the fade-in of the current stage (1 = fully in)"),
    # --- every evaluated step ---
    Metric("fid", "score", False, latest=True, listed=True, meaning="Frechet distance of evaluator features", label="FID", short="FID"),
    Metric("fid_lo", "score", None, logged=False,
           meaning="FID's 95% interval, low end: FID plus the spread of 50 bootstrap resamples of the "
           "generated samples (the real statistics fixed): where another draw of as many samples would land"),
    Metric("fid_hi", "score", None, logged=False, meaning="FID's 95% interval, high end (as fid_lo)"),
    Metric("kid_mean", "score", False, latest=True, meaning="kernel distance of the same features (mean over subsets)", label="KID"),
    Metric("kid_std", "score", None, logged=False, meaning="KID's std over subsets"),
    Metric("is_mean", "score", True, latest=True, meaning="Inception-Score analogue from the evaluator's logits", label="IS"),
    Metric("is_std", "score", None, logged=False, meaning="IS's std over splits"),
    Metric("precision", "score", True, latest=True,
           meaning="share of samples inside some real image's 3-nearest-neighbour ball (evaluator features): "
           "samples that look real", label="precision", share=True),
    Metric("recall", "score", True, latest=True,
           meaning="share of real images inside some sample's 3-nearest-neighbour ball: how much of the data "
           "G reaches", share=True),
    Metric("density", "score", True, latest=True,
           meaning="real images' 5-nearest-neighbour balls holding a sample, on average, / 5: about 1 for real "
           "images, near 0 off the data, above 1 where samples crowd the common images"),
    Metric("coverage", "score", True, latest=True,
           meaning="share of real images whose 5-nearest-neighbour ball holds a sample: falls when G misses modes",
           share=True),
    Metric("cond_acc", "score", True, latest=True, listed=True,
           meaning="share of samples made for class k that the evaluator classifies as k", label="conditional accuracy", share=True,
           short="acc"),
    Metric("modes", "score", True, latest=True, listed=True,
           meaning="modes captured: of a 2-D mixture's, or of stacked-mnist's 1,000 digit triples", label="modes captured", short="modes"),
    Metric("hq_share", "score", True, latest=True, listed=True, meaning="2-D: share of samples within 3 sigma of a mode", label="high-quality share", share=True,
           short="HQ"),
    Metric("reverse_kl", "score", False, latest=True,
           meaning="KL(generated mode histogram || uniform): 2-D (high-quality samples) and stacked-mnist", label="reverse KL"),
    Metric("copy_ratio", "score", None, latest=True, label="copying ratio",
           meaning="median distance from a sample to its nearest training image over the same median of real "
           "images to each other, class-matched for conditional runs: about 1 or above, no sign of copying; well "
           "below 1, samples sit on training images"),
    Metric("eval_s", "speed", False, meaning="seconds the evaluation took"),
    Metric("cond_acc_per_class", "per_class", True, logged=False, meaning="cond_acc of each class"),
    Metric("fid_per_class", "per_class", False, logged=False, meaning="FID of each class against its real images"),
    Metric("recall_per_class", "per_class", True, logged=False,
           meaning="recall of each class's real images (against all samples, whatever G was asked for): "
           "a class G drops reads near 0"),
    Metric("class_hist", "per_class", None, logged=False, meaning="share of samples the evaluator assigns to each class"),
    Metric("triple_counts", "per_class", None, logged=False,
           meaning="stacked-mnist: samples read as each digit triple 100 r + 10 g + b (1,000 counts)"),
]}

# A score's spread, drawn around it rather than as a metric of its own: its interval (low, high) or its std.
COMPANIONS = {"fid": ("fid_lo", "fid_hi"), "kid_mean": ("kid_std",), "is_mean": ("is_std",)}
SPREADS = {c for cs in COMPANIONS.values() for c in cs}

# Columns of every record that are not metrics.
RECORD_KEYS = ("step", "images_seen", "time", "provenance")


def names(group: str) -> list[str]:
    """The metrics of one group, in declaration order."""
    return [m.name for m in METRICS.values() if m.group == group]


LATEST = [m.name for m in METRICS.values() if m.latest]  # status.json "latest"
LISTED = [m.name for m in METRICS.values() if m.listed]  # run lists
SCORES = names("score")  # an evaluation's scalar scores
HIGHER_IS_BETTER = {m.name for m in METRICS.values() if m.higher_is_better}


def format_record(r: dict) -> str:
    """A record as one train.log line: `step 50  loss_d 1.32  loss_g 0.71 ...` (the logged metrics present)."""
    parts = [f"step {r['step']}"]
    parts += [f"{m.name} {m.format(float(r[m.name]))}" for m in METRICS.values() if m.logged and m.name in r]
    return "  ".join(parts)


def score_label(name: str, provenance: dict | None = None) -> str:
    """What a score is, in a few words: `FID · mnist-5k evaluator` (its feature network named where it has one, so
    an evaluator FID of 0.17 is never read as an Inception FID)."""
    m = METRICS.get(name)
    title = m.title if m else name
    if provenance and provenance.get("evaluator") and name in ("fid", "kid_mean", "is_mean", "precision", "recall",
                                                                "density", "coverage"):
        feature = provenance["evaluator"]
        return f"{title} · {feature if 'inception' in feature else feature + ' evaluator'}"
    return title


def score_help(name: str, provenance: dict | None = None) -> str:
    """One hover line: what the score means, and the scale it lives on."""
    m = METRICS.get(name)
    meaning = m.meaning if m else ""
    if name == "fid" and provenance and "inception" not in str(provenance.get("evaluator")):
        meaning += (". Not an Inception FID: this evaluator's real images score about 0.03 against themselves and "
                    "0.16 against held-out real ones, blur or one class 20-80 (docs/benchmarks.md, calibration)")
    return meaning


def metric(name: str) -> Metric:
    """The declared metric of this name, or an undeclared one (no direction, no label) that formats like any other."""
    return METRICS.get(name) or Metric(name, "", None)


def display(name: str, value) -> str:
    """A value of metric `name` as every page shows it (Metric.display)."""
    return metric(name).display(value)


def format_scores(scores: dict | None, short: bool = False) -> str:
    """`step 800 · FID 2.01 · conditional accuracy 77.0%`: any dict of metric values (a `step` key included),
    labelled and formatted as pages show them; `short`: the short names (`FID 2.01 · acc 77.0%`)."""
    if not scores:
        return ""
    return " · ".join(f"{(metric(k).short if short else '') or metric(k).title} {display(k, v)}"
                      for k, v in scores.items())


# ---------------------------------------------------------------- provenance
# Provenance fields that must agree for two scores to be compared (all but the seed).
COMPARED = ("evaluator", "weights_sha256", "reference", "data_fingerprint", "n_real", "n_gen")


class ProvenanceMismatch(GancoreError):
    """Two scores were produced differently (another evaluator, reference or sample count)."""


def provenance_difference(a: dict, b: dict) -> str | None:
    """Why scores with provenance a and b are not the same metric, or None when they are.

    a, b: provenance dicts, or evaluation records that hold one under "provenance".
    """
    a, b = a.get("provenance", a), b.get("provenance", b)
    for key in COMPARED:
        if key not in a or key not in b:
            return f"provenance has no {key!r}"
        if a[key] != b[key]:
            return f"{key} differs ({a[key]!r} vs {b[key]!r})"
    return None


def check_comparable(a: dict, b: dict) -> None:
    """Raise ProvenanceMismatch unless two scores (or their provenance) may be compared or combined."""
    reason = provenance_difference(a, b)
    if reason:
        raise ProvenanceMismatch(f"scores are not comparable: {reason}")


def primary_score(scores: dict):
    """(metric name, key) of an evaluation, a larger key being better; None when there is none or it is not finite.

    Images rank by FID (lower is better); 2-D data by modes captured, then high-quality share;
    stacked-mnist without FID by modes captured, then reverse KL (lower is better).
    """
    if "fid" in scores:
        name, key = "fid", (-scores["fid"],)
    elif "modes" in scores and "hq_share" in scores:
        name, key = "modes,hq_share", (scores["modes"], scores["hq_share"])
    elif "modes" in scores and "reverse_kl" in scores:
        name, key = "modes,reverse_kl", (scores["modes"], -scores["reverse_kl"])
    else:
        return None
    return (name, key) if all(isinstance(v, (int, float)) and math.isfinite(v) for v in key) else None
