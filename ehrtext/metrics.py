"""Evaluation metrics and calibration for binary, multi-class and multi-label risk models.

Pure numpy (scipy for the temperature search); no torch. Every metric is computed per label
(one-vs-rest for multi-class) and averaged:

* **macro** — the unweighted mean over the labels where the metric is defined;
* **micro** — the metric over all (sample, label) pairs pooled together.

Metrics are chosen by name, as in PyHealth: ``auroc``, ``auprc`` (average precision, the
step-wise sum that scikit-learn's ``average_precision_score`` computes), ``f1``, ``precision``,
``recall``, ``accuracy``, ``brier`` and ``ece``.

Decision rules (what "predicted positive" means for F1 / precision / recall / accuracy):

* binary and multi-label: ``probability >= threshold`` per label. Thresholds come from
  :func:`tune_thresholds` run on a **validation** split (the F1-maximising cut per label); when
  none are given, 0.5 is used and the result says so (``"threshold_source"``). Never tune on
  the split whose figures you report.
* multi-class: the arg-max class (no thresholds); ``tune_thresholds`` returns ``None``.

Undefined values: a label with no positive example in ``y_true`` has no AUROC, AUPRC, recall or
F1; a label with no negative example has no AUROC. Those values are ``None`` in the result,
with the reason in ``result["undefined"][label][metric]``, and macro averages skip them
(``result["n_labels_averaged"]`` says over how many labels each average runs). Nothing raises
on a single-class label.

Confidence intervals: percentile bootstrap (rows resampled with replacement, ``n_bootstrap``
replicates, seeded), for the macro/overall metrics and for every per-label metric, at the
thresholds given (they are not re-tuned inside a replicate). Replicates in which a metric is
undefined are dropped for that metric; ``ci["n_valid"]`` counts the ones kept.

Calibration: :func:`expected_calibration_error` (equal-width bins), the Brier score, and
temperature scaling (:func:`fit_temperature` / :func:`apply_temperature`).

Example:
    >>> import numpy as np
    >>> from ehrtext.metrics import compute_metrics
    >>> m = compute_metrics([0, 1, 1, 0], np.array([0.1, 0.8, 0.6, 0.3]), "binary", n_bootstrap=0)
    >>> m["macro"]["auroc"], m["macro"]["f1"]
    (1.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ehrtext.errors import InputError

__all__ = [
    "METRIC_NAMES",
    "TASKS",
    "apply_temperature",
    "calibration_bins",
    "calibration_nll",
    "compute_metrics",
    "confusion_matrix",
    "expected_calibration_error",
    "fit_temperature",
    "precision_recall_curve",
    "probs_to_logits",
    "roc_curve",
    "to_jsonable",
    "tune_thresholds",
]

TASKS = ("binary", "multiclass", "multilabel")
METRIC_NAMES = ("auroc", "auprc", "f1", "precision", "recall", "accuracy", "brier", "ece")
_PER_LABEL = ("auroc", "auprc", "f1", "precision", "recall", "brier", "ece")
_DEFAULT_THRESHOLD = 0.5
# Upper bound on the number of floats in one bootstrap work array (memory stays ~ tens of MB).
_CHUNK_FLOATS = 2_000_000


# ----------------------------------------------------------------------------- input handling


@dataclass
class _Prepared:
    task: str
    labels: list[str]
    y: np.ndarray  # (n, L) float 0/1 indicator matrix (one-hot for multi-class)
    p: np.ndarray  # (n, L) probabilities
    y_index: np.ndarray | None  # (n,) class index, multi-class only


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise InputError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    return task


def _as_float_array(values: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be numeric ({exc.__class__.__name__})") from None
    if arr.size and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise InputError(f"{what} has a non-finite value (NaN or inf) at index {tuple(bad)}")
    return arr


def _binary_scores(probs: Any) -> np.ndarray:
    """Positive-class probabilities from ``(n,)``, ``(n, 1)`` or ``(n, 2)`` input."""
    p = _as_float_array(probs, "probs")
    if p.ndim == 2 and p.shape[1] == 2:
        return p[:, 1]
    if p.ndim == 2 and p.shape[1] == 1:
        return p[:, 0]
    if p.ndim != 1:
        raise InputError(f"binary probs must have shape (n,), (n, 1) or (n, 2); got {p.shape}")
    return p


def _check_prob_range(p: np.ndarray) -> None:
    if p.size and (p.min() < -1e-9 or p.max() > 1 + 1e-9):
        raise InputError(
            f"probs must lie in [0, 1] (got min {p.min():.4g}, max {p.max():.4g}); "
            "pass probabilities, not logits (see apply_temperature)"
        )


def _prepare(y_true: Any, probs: Any, task: str, labels: Sequence[str] | None) -> _Prepared:
    _check_task(task)
    if task == "binary":
        p = _binary_scores(probs)
        y = _as_float_array(y_true, "y_true").reshape(-1)
        if y.shape[0] != p.shape[0]:
            raise InputError(f"y_true has {y.shape[0]} rows but probs has {p.shape[0]}")
        if not np.all((y == 0) | (y == 1)):
            raise InputError("binary y_true must contain only 0 and 1")
        names = list(labels) if labels is not None else ["positive"]
        if len(names) not in (1, 2):
            raise InputError(f"binary labels must name 1 or 2 classes; got {len(names)}")
        _check_prob_range(p)
        return _Prepared(task, [str(names[-1])], y[:, None], p[:, None], None)

    p = _as_float_array(probs, "probs")
    if p.ndim != 2:
        raise InputError(f"{task} probs must have shape (n, n_labels); got {p.shape}")
    _check_prob_range(p)
    n, n_labels = p.shape
    names = [str(x) for x in labels] if labels is not None else [str(i) for i in range(n_labels)]
    if len(names) != n_labels:
        raise InputError(f"{len(names)} labels given but probs has {n_labels} columns")
    if len(set(names)) != len(names):
        raise InputError("labels must be unique")

    if task == "multiclass":
        raw = np.asarray(y_true)
        if raw.ndim != 1:
            raise InputError(f"multiclass y_true must be 1-D class indices; got shape {raw.shape}")
        if raw.dtype.kind in "USO":
            index = {name: i for i, name in enumerate(names)}
            try:
                y_idx = np.array([index[str(v)] for v in raw], dtype=np.int64)
            except KeyError as exc:
                raise InputError(f"y_true holds a class not in labels: {exc.args[0]!r}") from None
        else:
            yf = _as_float_array(raw, "y_true")
            if not np.all(yf == np.round(yf)):
                raise InputError("multiclass y_true must hold integer class indices")
            y_idx = yf.astype(np.int64)
        if y_idx.shape[0] != n:
            raise InputError(f"y_true has {y_idx.shape[0]} rows but probs has {n}")
        if y_idx.size and (y_idx.min() < 0 or y_idx.max() >= n_labels):
            raise InputError(f"multiclass y_true must lie in [0, {n_labels}); got {y_idx.max()}")
        y = np.zeros((n, n_labels))
        y[np.arange(n), y_idx] = 1.0
        return _Prepared(task, names, y, p, y_idx)

    y = _as_float_array(y_true, "y_true")
    if y.shape != p.shape:
        raise InputError(f"multilabel y_true has shape {y.shape} but probs has {p.shape}")
    if not np.all((y == 0) | (y == 1)):
        raise InputError("multilabel y_true must be a 0/1 indicator matrix")
    return _Prepared(task, names, y, p, None)


def _resolve_thresholds(prep: _Prepared, thresholds: Any) -> tuple[np.ndarray | None, str]:
    if prep.task == "multiclass":
        return None, "argmax"
    n_labels = prep.y.shape[1]
    if thresholds is None:
        return np.full(n_labels, _DEFAULT_THRESHOLD), "default 0.5"
    if isinstance(thresholds, Mapping):
        try:
            thresholds = [thresholds[name] for name in prep.labels]
        except KeyError as exc:
            raise InputError(f"thresholds has no value for label {exc.args[0]!r}") from None
    t = _as_float_array(thresholds, "thresholds").reshape(-1)
    if t.size == 1 and n_labels > 1:
        t = np.full(n_labels, float(t[0]))
    if t.size != n_labels:
        raise InputError(f"{t.size} thresholds given for {n_labels} labels")
    return t, "given"


def _predictions(prep: _Prepared, thr: np.ndarray | None) -> np.ndarray:
    if prep.task == "multiclass":
        pred = np.zeros_like(prep.p)
        pred[np.arange(prep.p.shape[0]), np.argmax(prep.p, axis=1)] = 1.0
        return pred
    assert thr is not None
    return (prep.p >= thr[None, :]).astype(np.float64)


# ----------------------------------------------------------------------------- ranking core


class _Ranking:
    """One label's scores sorted once; weighted ROC/PR statistics for many weight vectors.

    Bootstrap replicates are weight vectors (how often each row was drawn), so the sort is done
    once and every replicate costs two cumulative sums.
    """

    def __init__(self, y: np.ndarray, s: np.ndarray):
        self.order = np.argsort(-s, kind="mergesort")
        s_sorted = s[self.order]
        # last index of each run of equal scores: thresholds are the distinct scores
        self.ends = np.r_[np.nonzero(np.diff(s_sorted))[0], s_sorted.size - 1]
        self.thresholds = s_sorted[self.ends]
        self.y_sorted = y[self.order]

    def counts(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative (weighted) TP and FP at each distinct threshold; ``w`` is ``(B, n)``."""
        ws = w[:, self.order]
        everything = np.cumsum(ws, axis=1)[:, self.ends]
        ws *= self.y_sorted
        tp = np.cumsum(ws, axis=1)[:, self.ends]
        return tp, everything - tp

    @staticmethod
    def auroc(tp: np.ndarray, fp: np.ndarray) -> np.ndarray:
        pos, neg = tp[:, -1], fp[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            tpr = np.concatenate([np.zeros((tp.shape[0], 1)), tp / pos[:, None]], axis=1)
            fpr = np.concatenate([np.zeros((fp.shape[0], 1)), fp / neg[:, None]], axis=1)
            auc = np.sum(np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]) / 2.0, axis=1)
        auc[(pos <= 0) | (neg <= 0)] = np.nan
        return auc

    @staticmethod
    def average_precision(tp: np.ndarray, fp: np.ndarray) -> np.ndarray:
        pos = tp[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            denom = tp + fp
            precision = np.where(denom > 0, tp / np.where(denom > 0, denom, 1.0), 0.0)
            recall = tp / pos[:, None]
            recall_prev = np.concatenate([np.zeros((tp.shape[0], 1)), recall[:, :-1]], axis=1)
            ap = np.sum((recall - recall_prev) * precision, axis=1)
        ap[pos <= 0] = np.nan
        return ap


def roc_curve(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve of one binary label: ``(fpr, tpr, thresholds)``, starting at (0, 0).

    ``thresholds[k]`` is the cut of point ``k + 1`` (predict positive when score >= it); the
    first threshold is ``inf``. NaN rates when a class is absent.

    Example:
        >>> fpr, tpr, _ = roc_curve([0, 1], [0.2, 0.9])
        >>> fpr.tolist(), tpr.tolist()
        ([0.0, 0.0, 1.0], [0.0, 1.0, 1.0])
    """
    y = _as_float_array(y_true, "y_true").reshape(-1)
    s = _as_float_array(scores, "scores").reshape(-1)
    rk = _Ranking(y, s)
    tp, fp = rk.counts(np.ones((1, y.size)))
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = np.r_[0.0, tp[0] / tp[0, -1]]
        fpr = np.r_[0.0, fp[0] / fp[0, -1]]
    return fpr, tpr, np.r_[np.inf, rk.thresholds]


def precision_recall_curve(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall points of one binary label: ``(precision, recall, thresholds)``.

    One point per distinct score, from the highest threshold down (recall rising).

    Example:
        >>> p, r, _ = precision_recall_curve([0, 1, 1], [0.2, 0.9, 0.4])
        >>> p.tolist(), r.tolist()
        ([1.0, 1.0, 0.6666666666666666], [0.5, 1.0, 1.0])
    """
    y = _as_float_array(y_true, "y_true").reshape(-1)
    s = _as_float_array(scores, "scores").reshape(-1)
    rk = _Ranking(y, s)
    tp, fp = rk.counts(np.ones((1, y.size)))
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp[0] / (tp[0] + fp[0])
        recall = tp[0] / tp[0, -1]
    return precision, recall, rk.thresholds


# ----------------------------------------------------------------------------- thresholds


def _best_f1_threshold(y: np.ndarray, s: np.ndarray) -> float:
    if y.sum() <= 0:
        return _DEFAULT_THRESHOLD
    rk = _Ranking(y, s)
    tp, fp = rk.counts(np.ones((1, y.size)))
    f1 = 2 * tp[0] / (tp[0] + fp[0] + y.sum())
    k = int(np.argmax(f1))  # first maximum = the highest threshold among ties
    if k + 1 < rk.thresholds.size:
        return float((rk.thresholds[k] + rk.thresholds[k + 1]) / 2.0)
    return float(rk.thresholds[k])


def tune_thresholds(y_true: Any, probs: Any, task: str) -> np.ndarray | None:
    """Per-label decision thresholds that maximise F1 on (validation) data.

    For each label the scores are sorted and F1 is computed at every distinct score; the
    returned threshold is the midpoint between the best cut's score and the next lower score
    (so ``probability >= threshold`` reproduces the best cut and generalises symmetrically),
    or the lowest score when predicting every row positive is best. Ties: the highest
    threshold. A label without any positive gets 0.5.

    Returns an array of shape ``(n_labels,)`` (``(1,)`` for binary), or ``None`` for
    multi-class, whose decision rule is the arg-max class.

    Example:
        >>> tune_thresholds([0, 0, 1, 1], [0.1, 0.4, 0.3, 0.8], "binary").tolist()
        [0.2]
    """
    prep = _prepare(y_true, probs, task, None)
    if task == "multiclass":
        return None
    n_labels = prep.y.shape[1]
    return np.array([_best_f1_threshold(prep.y[:, j], prep.p[:, j]) for j in range(n_labels)])


# ----------------------------------------------------------------------------- calibration


def _bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    return np.minimum((p * n_bins).astype(np.int64), n_bins - 1).clip(0)


def _ece_weighted(w: np.ndarray, y: np.ndarray, p: np.ndarray, n_bins: int) -> np.ndarray:
    """ECE of one label for each weight row of ``w`` (``(B, n)``) -> ``(B,)``."""
    return _ece_columns(w, y[:, None], p[:, None], n_bins)[:, 0]


def _ece_columns(w: np.ndarray, y: np.ndarray, p: np.ndarray, n_bins: int) -> np.ndarray:
    """ECE of every column of ``y``/``p`` (``(n, L)``) for each weight row -> ``(B, L)``.

    ``sum_b (n_b / N) |mean_y_b - mean_p_b| = sum_b |sum_{i in b} w_i (y_i - p_i)| / N``, so one
    matrix product with a (row, label-bin) indicator scaled by ``y - p`` does all labels.
    """
    n, n_labels = p.shape
    total = w.sum(axis=1)
    out = np.empty((w.shape[0], n_labels))
    block = max(1, _CHUNK_FLOATS // max(n * n_bins, 1))
    rows = np.arange(n)
    for start in range(0, n_labels, block):
        stop = min(n_labels, start + block)
        k = stop - start
        diff = np.zeros((n, k * n_bins))
        bins = _bin_index(p[:, start:stop], n_bins) + n_bins * np.arange(k)[None, :]
        diff[rows[:, None], bins] = y[:, start:stop] - p[:, start:stop]
        sums = (w @ diff).reshape(w.shape[0], k, n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, start:stop] = np.abs(sums).sum(axis=2) / total[:, None]
    return out


def _ece_inputs(y: Any, p: Any) -> tuple[np.ndarray, np.ndarray]:
    """(correctness or outcome, confidence) pairs for the three input shapes."""
    pa = _as_float_array(p, "p")
    ya = np.asarray(y)
    if pa.ndim == 2 and pa.shape[1] > 1 and ya.ndim == 1:  # multi-class: top-label
        yi = _as_float_array(ya, "y").astype(np.int64)
        if yi.shape[0] != pa.shape[0]:
            raise InputError(f"y has {yi.shape[0]} rows but p has {pa.shape[0]}")
        conf = pa.max(axis=1)
        correct = (np.argmax(pa, axis=1) == yi).astype(np.float64)
        return correct, conf
    yf = _as_float_array(ya, "y")
    if pa.ndim == 2 and pa.shape[1] == 1:
        pa = pa[:, 0]
    if yf.ndim == 2 and yf.shape[1] == 1:
        yf = yf[:, 0]
    if yf.shape != pa.shape:
        raise InputError(f"y has shape {yf.shape} but p has {pa.shape}")
    _check_prob_range(pa)
    return yf.reshape(-1), pa.reshape(-1)


def expected_calibration_error(y: Any, p: Any, n_bins: int = 15) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins over [0, 1].

    ``ECE = sum_b (n_b / N) * |mean(y in b) - mean(p in b)|``. Bin ``b`` holds the
    probabilities in ``[b / n_bins, (b + 1) / n_bins)``; the last bin also holds 1.0.

    * binary: ``y`` 0/1 of shape ``(n,)``, ``p`` the positive-class probability;
    * multi-class: ``y`` class indices ``(n,)``, ``p`` ``(n, C)`` — top-label ECE
      (confidence = max probability, outcome = arg-max is correct; Guo et al. 2017);
    * multi-label: ``y`` and ``p`` both ``(n, L)`` — every (row, label) pair pooled.

    Example:
        >>> expected_calibration_error([0, 1, 1, 1], [0.2, 0.6, 0.7, 0.9], n_bins=5)
        0.25
    """
    if n_bins < 1:
        raise InputError(f"n_bins must be >= 1; got {n_bins}")
    yv, pv = _ece_inputs(y, p)
    if yv.size == 0:
        return float("nan")
    return float(_ece_weighted(np.ones((1, yv.size)), yv, pv, n_bins)[0])


def calibration_bins(y: Any, p: Any, n_bins: int = 15) -> dict[str, list]:
    """Reliability-diagram data: per equal-width bin, the count, mean probability and the
    observed frequency (``None`` for empty bins). Same input shapes as
    :func:`expected_calibration_error`.

    Example:
        >>> calibration_bins([0, 1], [0.1, 0.9], n_bins=2)["observed"]
        [0.0, 1.0]
    """
    yv, pv = _ece_inputs(y, p)
    idx = _bin_index(pv, n_bins)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    sum_p = np.bincount(idx, weights=pv, minlength=n_bins)
    sum_y = np.bincount(idx, weights=yv, minlength=n_bins)
    mean_p = [float(a / c) if c else None for a, c in zip(sum_p, count)]
    observed = [float(a / c) if c else None for a, c in zip(sum_y, count)]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return {
        "edges": edges.tolist(),
        "count": count.astype(int).tolist(),
        "mean_predicted": mean_p,
        "observed": observed,
    }


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _logit_kind(logits: np.ndarray, task: str) -> str:
    """'softmax' or 'sigmoid' for these logits."""
    _check_task(task)
    if task == "multiclass":
        if logits.ndim != 2:
            raise InputError(f"multiclass logits must have shape (n, C); got {logits.shape}")
        return "softmax"
    if task == "binary":
        if logits.ndim == 2 and logits.shape[1] == 2:
            return "softmax"
        if logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1):
            return "sigmoid"
        raise InputError(
            f"binary logits must have shape (n,), (n, 1) or (n, 2); got {logits.shape}"
        )
    if logits.ndim != 2:
        raise InputError(f"multilabel logits must have shape (n, L); got {logits.shape}")
    return "sigmoid"


def _nll(z: np.ndarray, y: np.ndarray, kind: str) -> float:
    if kind == "softmax":
        zmax = z.max(axis=1, keepdims=True)
        lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
        return float(np.mean(lse - z[np.arange(z.shape[0]), y.astype(np.int64)]))
    # binary cross-entropy with logits: log(1 + e^z) - y z, computed stably
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def _nll_targets(logits: np.ndarray, y_true: Any, kind: str) -> np.ndarray:
    if kind == "softmax":
        y = _as_float_array(y_true, "y_true").reshape(-1)
        if y.shape[0] != logits.shape[0]:
            raise InputError(f"y_true has {y.shape[0]} rows but logits has {logits.shape[0]}")
        if y.size and (y.min() < 0 or y.max() >= logits.shape[1] or not np.all(y == np.round(y))):
            raise InputError(f"y_true must hold class indices in [0, {logits.shape[1]})")
        return y
    if np.size(y_true) != logits.size:
        raise InputError(f"y_true has {np.size(y_true)} values but logits has {logits.size}")
    y = _as_float_array(y_true, "y_true").reshape(logits.shape)
    if not np.all((y == 0) | (y == 1)):
        raise InputError("y_true must be 0/1 for sigmoid outputs")
    return y


def calibration_nll(logits: Any, y_true: Any, task: str, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``y_true`` under ``logits / temperature``.

    Softmax cross-entropy for multi-class (and two-column binary logits); mean binary
    cross-entropy over every (row, label) for binary and multi-label sigmoid outputs.

    Example:
        >>> round(calibration_nll([0.0], [1], "binary"), 4)  # -log(0.5)
        0.6931
    """
    z = _as_float_array(logits, "logits")
    kind = _logit_kind(z, task)
    y = _nll_targets(z, y_true, kind)
    if temperature <= 0:
        raise InputError(f"temperature must be > 0; got {temperature}")
    return _nll(z / temperature, y, kind)


def fit_temperature(
    logits: Any, y_true: Any, task: str, bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """Temperature ``T`` minimising the validation NLL of ``softmax(logits / T)`` (multi-class)
    or ``sigmoid(logits / T)`` (binary, multi-label; one shared ``T``). Guo et al. 2017.

    A bounded scalar search over ``log T`` (scipy ``minimize_scalar``); the NLL is convex in
    ``1 / T``, so the minimum found is the global one within ``bounds``. Separable data drive
    ``T`` to the lower bound. ``T > 1`` means the model was over-confident. Fit on validation
    logits only, then apply to test logits with :func:`apply_temperature`.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> z = rng.normal(size=(4000, 3)) * 2
        >>> y = np.array([rng.choice(3, p=np.exp(r) / np.exp(r).sum()) for r in z])
        >>> round(fit_temperature(z * 3, y, "multiclass"), 1)  # logits 3x too sharp
        3.0
    """
    from scipy.optimize import minimize_scalar

    z = _as_float_array(logits, "logits")
    kind = _logit_kind(z, task)
    y = _nll_targets(z, y_true, kind)
    if z.shape[0] == 0:
        raise InputError("fit_temperature needs at least one row")
    lo, hi = bounds
    if not 0 < lo < hi:
        raise InputError(f"bounds must satisfy 0 < low < high; got {bounds}")
    res = minimize_scalar(
        lambda log_t: _nll(z / math.exp(log_t), y, kind),
        bounds=(math.log(lo), math.log(hi)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(math.exp(res.x))


def apply_temperature(logits: Any, temperature: float, task: str) -> np.ndarray:
    """Calibrated probabilities ``softmax(logits / T)`` or ``sigmoid(logits / T)``.

    Output shape follows the input: ``(n,)`` for 1-D binary logits, ``(n, C)`` otherwise.

    Example:
        >>> apply_temperature([[2.0, 0.0]], 2.0, "multiclass").round(4).tolist()
        [[0.7311, 0.2689]]
    """
    z = _as_float_array(logits, "logits")
    if not temperature > 0:
        raise InputError(f"temperature must be > 0; got {temperature}")
    kind = _logit_kind(z, task)
    z = z / float(temperature)
    return _softmax(z) if kind == "softmax" else _sigmoid(z)


def probs_to_logits(probs: Any, task: str, eps: float = 1e-7) -> np.ndarray:
    """Logits that reproduce ``probs`` (for models that only output probabilities, such as a
    calibrated linear model): ``log p`` for multi-class, ``log(p / (1 - p))`` for sigmoid
    outputs. Probabilities are clipped to ``[eps, 1 - eps]``.

    Example:
        >>> probs_to_logits([0.5, 0.8807971], "binary").round(3).tolist()
        [0.0, 2.0]
    """
    p = np.clip(_as_float_array(probs, "probs"), eps, 1 - eps)
    _check_task(task)
    if task == "multiclass" or (task == "binary" and p.ndim == 2 and p.shape[1] == 2):
        return np.log(p)
    return np.log(p) - np.log1p(-p)


# ----------------------------------------------------------------------------- confusion


def confusion_matrix(
    y_true: Any,
    probs: Any,
    task: str,
    labels: Sequence[str] | None = None,
    thresholds: Any = None,
) -> np.ndarray:
    """Confusion counts at the decision rule of :func:`compute_metrics`.

    * multi-class: ``(C, C)``, rows = true class, columns = predicted (arg-max) class;
    * binary: ``(2, 2)`` ``[[TN, FP], [FN, TP]]``;
    * multi-label: ``(L, 2, 2)``, one ``[[TN, FP], [FN, TP]]`` per label.

    Example:
        >>> confusion_matrix([0, 1, 1], [0.2, 0.7, 0.4], "binary").tolist()
        [[1, 0], [1, 1]]
    """
    prep = _prepare(y_true, probs, task, labels)
    thr, _ = _resolve_thresholds(prep, thresholds)
    pred = _predictions(prep, thr)
    if task == "multiclass":
        c = prep.p.shape[1]
        cm = np.zeros((c, c), dtype=np.int64)
        np.add.at(cm, (prep.y_index, np.argmax(prep.p, axis=1)), 1)
        return cm
    y = prep.y
    tp = (y * pred).sum(axis=0)
    fp = ((1 - y) * pred).sum(axis=0)
    fn = (y * (1 - pred)).sum(axis=0)
    tn = ((1 - y) * (1 - pred)).sum(axis=0)
    cms = np.stack([np.stack([tn, fp], -1), np.stack([fn, tp], -1)], axis=1).astype(np.int64)
    return cms[0] if task == "binary" else cms


# ----------------------------------------------------------------------------- metrics


def _per_label_weighted(
    w: np.ndarray,
    prep: _Prepared,
    pred: np.ndarray,
    rankings: list[_Ranking] | None,
    wanted: set[str],
    n_bins: int,
) -> dict[str, np.ndarray]:
    """Every per-label metric for each weight row of ``w`` (``(B, n)``): arrays ``(B, L)``."""
    y, p = prep.y, prep.p
    out: dict[str, np.ndarray] = {}
    total = w.sum(axis=1)[:, None]
    pos = w @ y
    tp = w @ (y * pred)
    fp = w @ ((1 - y) * pred)
    fn = pos - tp
    no_pos = pos <= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        if "precision" in wanted:
            denom = tp + fp
            prec = np.where(denom > 0, tp / np.where(denom > 0, denom, 1), 0.0)
            prec[(denom <= 0) & no_pos] = np.nan
            out["precision"] = prec
        if "recall" in wanted:
            rec = tp / pos
            rec[no_pos] = np.nan
            out["recall"] = rec
        if "f1" in wanted:
            f1 = 2 * tp / (2 * tp + fp + fn)
            f1[no_pos] = np.nan
            out["f1"] = f1
        if "brier" in wanted:
            out["brier"] = (w @ (p - y) ** 2) / total
    if "ece" in wanted:
        out["ece"] = _ece_columns(w, y, p, n_bins)
    if rankings is not None and ({"auroc", "auprc"} & wanted):
        aurocs, aps = [], []
        for rk in rankings:
            tpc, fpc = rk.counts(w)
            if "auroc" in wanted:
                aurocs.append(_Ranking.auroc(tpc, fpc))
            if "auprc" in wanted:
                aps.append(_Ranking.average_precision(tpc, fpc))
        if aurocs:
            out["auroc"] = np.stack(aurocs, axis=1)
        if aps:
            out["auprc"] = np.stack(aps, axis=1)
    return out


def _overall_weighted(
    w: np.ndarray, prep: _Prepared, pred: np.ndarray, wanted: set[str], n_bins: int
) -> dict[str, np.ndarray]:
    """Row-level metrics (accuracy & co) for each weight row: arrays ``(B,)``."""
    out: dict[str, np.ndarray] = {}
    total = w.sum(axis=1)
    y, p = prep.y, prep.p
    if prep.task == "multiclass":
        correct = pred[np.arange(y.shape[0]), prep.y_index]
        if "accuracy" in wanted:
            out["accuracy"] = (w @ correct) / total
        if "brier" in wanted:
            out["brier_multiclass"] = (w @ ((p - y) ** 2).sum(axis=1)) / total
        if "ece" in wanted:
            out["ece_top_label"] = _ece_weighted(w, correct, p.max(axis=1), n_bins)
    elif prep.task == "binary":
        if "accuracy" in wanted:
            out["accuracy"] = (w @ (pred[:, 0] == y[:, 0]).astype(np.float64)) / total
    else:
        if "accuracy" in wanted:
            exact = np.all(pred == y, axis=1).astype(np.float64)
            out["subset_accuracy"] = (w @ exact) / total
            out["hamming_accuracy"] = (w @ (pred == y).mean(axis=1)) / total
    return out


def _macro(values: np.ndarray) -> np.ndarray:
    """Mean over labels, skipping NaN; NaN when every label is undefined. ``(B, L) -> (B,)``."""
    finite = np.isfinite(values)
    count = finite.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, np.where(finite, values, 0).sum(axis=1) / count, np.nan)


def _num(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _parse_metric_names(metrics: Iterable[str] | None) -> list[str]:
    if metrics is None:
        return list(METRIC_NAMES)
    names = [str(m).lower() for m in metrics]
    unknown = [m for m in names if m not in METRIC_NAMES]
    if unknown:
        raise InputError(f"unknown metric(s) {unknown}; choose from {', '.join(METRIC_NAMES)}")
    return list(dict.fromkeys(names))


def compute_metrics(
    y_true: Any,
    probs: Any,
    task: str,
    labels: Sequence[str] | None = None,
    thresholds: Any = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    metrics: Iterable[str] | None = None,
    n_bins: int = 15,
    ci_level: float = 0.95,
) -> dict[str, Any]:
    """Per-label, macro and micro metrics with percentile-bootstrap confidence intervals.

    Args:
        y_true: binary ``(n,)`` 0/1; multi-class ``(n,)`` class indices (or label strings);
            multi-label ``(n, L)`` 0/1.
        probs: binary ``(n,)`` / ``(n, 1)`` / ``(n, 2)``; otherwise ``(n, L)`` probabilities.
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        labels: label names (binary: ``[negative, positive]`` or ``[positive]``).
        thresholds: per-label cut-offs (array, one float, or ``{label: cut}``), ideally from
            :func:`tune_thresholds` on validation data; default 0.5. Ignored for multi-class.
        n_bootstrap: bootstrap replicates for the intervals (0 = none).
        seed: bootstrap seed (same seed, same intervals).
        metrics: names among :data:`METRIC_NAMES`; default all.
        n_bins: ECE bins.
        ci_level: interval coverage.

    Returns a JSON-ready dict (``None`` where undefined): ``task``, ``n_samples``, ``labels``,
    ``thresholds``, ``threshold_source``, ``macro``, ``micro``, ``overall`` (accuracy;
    multi-class Brier and top-label ECE; subset/hamming accuracy for multi-label),
    ``per_label`` (``{label: {support, n_negative, threshold, <metrics>}}``), ``undefined``
    (reasons), ``n_labels_averaged`` and ``ci``.

    Example:
        >>> import numpy as np
        >>> y = [0, 1, 2, 1]
        >>> p = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .3, .6], [.5, .4, .1]])
        >>> m = compute_metrics(y, p, "multiclass", ["a", "b", "c"], n_bootstrap=0)
        >>> m["overall"]["accuracy"], round(m["macro"]["f1"], 4)
        (0.75, 0.7778)
    """
    names = _parse_metric_names(metrics)
    wanted = set(names)
    if n_bootstrap < 0:
        raise InputError(f"n_bootstrap must be >= 0; got {n_bootstrap}")
    if not 0 < ci_level < 1:
        raise InputError(f"ci_level must lie in (0, 1); got {ci_level}")
    prep = _prepare(y_true, probs, task, labels)
    thr, thr_source = _resolve_thresholds(prep, thresholds)
    pred = _predictions(prep, thr)
    n, n_labels = prep.y.shape
    if n == 0:
        raise InputError("compute_metrics needs at least one row")
    rankings = (
        [_Ranking(prep.y[:, j], prep.p[:, j]) for j in range(n_labels)]
        if {"auroc", "auprc"} & wanted
        else None
    )

    ones = np.ones((1, n))
    per_full = _per_label_weighted(ones, prep, pred, rankings, wanted, n_bins)
    per = {k: v[0] for k, v in per_full.items()}
    overall = {k: v[0] for k, v in _overall_weighted(ones, prep, pred, wanted, n_bins).items()}

    support = prep.y.sum(axis=0)
    n_neg = n - support
    undefined: dict[str, dict[str, str]] = {}
    for j, label in enumerate(prep.labels):
        reasons: dict[str, str] = {}
        if support[j] == 0:
            why = f"no positive example of this label among {n} rows"
            for m in ("auroc", "auprc", "recall", "f1"):
                if m in wanted:
                    reasons[m] = why
            if "precision" in wanted and not np.isfinite(per["precision"][j]):
                reasons["precision"] = why + " and none predicted"
        elif n_neg[j] == 0 and "auroc" in wanted:
            reasons["auroc"] = f"no negative example of this label among {n} rows"
        if reasons:
            undefined[label] = reasons

    per_label: dict[str, dict[str, Any]] = {}
    for j, label in enumerate(prep.labels):
        row: dict[str, Any] = {"support": int(support[j]), "n_negative": int(n_neg[j])}
        row["threshold"] = None if thr is None else float(thr[j])
        for m in _PER_LABEL:
            if m in per:
                row[m] = _num(per[m][j])
        per_label[label] = row

    macro = {m: _num(_macro(per[m][None, :])[0]) for m in _PER_LABEL if m in per}
    averaged = {m: int(np.isfinite(per[m]).sum()) for m in _PER_LABEL if m in per}
    micro = _micro(prep, pred, wanted, n_bins) if n_labels > 1 else dict(macro)

    result: dict[str, Any] = {
        "task": prep.task,
        "n_samples": int(n),
        "labels": list(prep.labels),
        "metrics": names,
        "thresholds": None if thr is None else [float(t) for t in thr],
        "threshold_source": thr_source,
        "macro": macro,
        "micro": micro,
        "overall": {k: _num(v) for k, v in overall.items()},
        "per_label": per_label,
        "undefined": undefined,
        "n_labels_averaged": averaged,
        "ci": None,
    }
    if n_bootstrap > 0:
        result["ci"] = _bootstrap(prep, pred, rankings, wanted, n_bins, n_bootstrap, seed, ci_level)
    return result


def _micro(prep: _Prepared, pred: np.ndarray, wanted: set[str], n_bins: int) -> dict[str, Any]:
    y, p, pr = prep.y.reshape(-1), prep.p.reshape(-1), pred.reshape(-1)
    ones = np.ones((1, y.size))
    out: dict[str, Any] = {}
    if {"auroc", "auprc"} & wanted:
        rk = _Ranking(y, p)
        tpc, fpc = rk.counts(ones)
        if "auroc" in wanted:
            out["auroc"] = _num(_Ranking.auroc(tpc, fpc)[0])
        if "auprc" in wanted:
            out["auprc"] = _num(_Ranking.average_precision(tpc, fpc)[0])
    tp, fp = float((y * pr).sum()), float(((1 - y) * pr).sum())
    fn = float((y * (1 - pr)).sum())
    if "precision" in wanted:
        out["precision"] = tp / (tp + fp) if tp + fp > 0 else None
    if "recall" in wanted:
        out["recall"] = tp / (tp + fn) if tp + fn > 0 else None
    if "f1" in wanted:
        out["f1"] = 2 * tp / (2 * tp + fp + fn) if tp + fn > 0 else None
    if "brier" in wanted:
        out["brier"] = float(np.mean((p - y) ** 2))
    if "ece" in wanted:
        out["ece"] = _num(_ece_weighted(ones, y, p, n_bins)[0])
    return out


def _bootstrap(
    prep: _Prepared,
    pred: np.ndarray,
    rankings: list[_Ranking] | None,
    wanted: set[str],
    n_bins: int,
    n_bootstrap: int,
    seed: int,
    ci_level: float,
) -> dict[str, Any]:
    n, n_labels = prep.y.shape
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_bootstrap, _CHUNK_FLOATS // max(n, 1)))
    per_reps: dict[str, list[np.ndarray]] = {}
    overall_reps: dict[str, list[np.ndarray]] = {}
    uniform = np.full(n, 1.0 / n)
    done = 0
    while done < n_bootstrap:
        b = min(chunk, n_bootstrap - done)
        # counts are small integers: exact in float32, which halves the memory traffic
        w = rng.multinomial(n, uniform, size=b).astype(np.float32)
        for k, v in _per_label_weighted(w, prep, pred, rankings, wanted, n_bins).items():
            per_reps.setdefault(k, []).append(v)
        for k, v in _overall_weighted(w, prep, pred, wanted, n_bins).items():
            overall_reps.setdefault(k, []).append(v)
        done += b
    lo_q, hi_q = 100 * (1 - ci_level) / 2, 100 * (1 + ci_level) / 2

    def interval(samples: np.ndarray) -> list[float | None] | None:
        finite = samples[np.isfinite(samples)]
        if finite.size == 0:
            return None
        lo, hi = np.percentile(finite, [lo_q, hi_q])
        return [float(lo), float(hi)]

    macro_ci: dict[str, Any] = {}
    per_ci: dict[str, dict[str, Any]] = {label: {} for label in prep.labels}
    n_valid: dict[str, int] = {}
    for k, parts in per_reps.items():
        reps = np.concatenate(parts, axis=0)  # (B, L)
        macro_reps = _macro(reps)
        macro_ci[k] = interval(macro_reps)
        n_valid[f"macro_{k}"] = int(np.isfinite(macro_reps).sum())
        for j, label in enumerate(prep.labels):
            per_ci[label][k] = interval(reps[:, j])
    overall_ci = {k: interval(np.concatenate(v)) for k, v in overall_reps.items()}
    return {
        "level": ci_level,
        "method": "percentile bootstrap over rows (thresholds fixed)",
        "n_bootstrap": int(n_bootstrap),
        "seed": int(seed),
        "macro": macro_ci,
        "overall": overall_ci,
        "per_label": per_ci,
        "n_valid": n_valid,
    }


# ----------------------------------------------------------------------------- JSON


def to_jsonable(obj: Any) -> Any:
    """A copy of ``obj`` that ``json.dumps`` accepts in strict mode: numpy scalars and arrays
    become Python numbers and lists, NaN and infinities become ``None``.

    Example:
        >>> import numpy as np
        >>> to_jsonable({"a": np.float32(0.5), "b": [float("nan")], "c": np.arange(2)})
        {'a': 0.5, 'b': [None], 'c': [0, 1]}
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    return obj
