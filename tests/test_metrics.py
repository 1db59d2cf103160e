"""ehrtext.metrics against scikit-learn and against small cases computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from ehrtext import metrics as M
from ehrtext.errors import InputError


def _multilabel_data(n=300, n_labels=5, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, n_labels)) < np.linspace(0.1, 0.5, n_labels)).astype(int)
    p = np.clip(0.35 * y + rng.random((n, n_labels)) * 0.65, 0, 1)
    if ties:
        p = np.round(p, 1)  # many tied scores: the tie handling must match scikit-learn
    return y, p


def _multiclass_data(n=400, n_classes=4, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes))
    logits[np.arange(n), y] += 1.2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, p


# ----------------------------------------------------------------------------- hand cases


def test_binary_hand_computed_exact_values():
    y = [0, 0, 1, 1, 1, 0]
    p = [0.1, 0.6, 0.7, 0.4, 0.9, 0.2]
    m = M.compute_metrics(y, p, "binary", ["no", "yes"], n_bootstrap=0)
    # positives 0.7, 0.4, 0.9 against negatives 0.1, 0.6, 0.2: 8 of 9 pairs ordered
    assert m["macro"]["auroc"] == pytest.approx(8 / 9)
    # ranking 0.9+ 0.7+ 0.6- 0.4+ ...: AP = (1 + 1 + 3/4) / 3
    assert m["macro"]["auprc"] == pytest.approx((1 + 1 + 0.75) / 3)
    # at 0.5: predicted 0.6, 0.7, 0.9 -> TP 2, FP 1, FN 1
    assert m["per_label"]["yes"]["precision"] == pytest.approx(2 / 3)
    assert m["per_label"]["yes"]["recall"] == pytest.approx(2 / 3)
    assert m["per_label"]["yes"]["f1"] == pytest.approx(2 / 3)
    assert m["overall"]["accuracy"] == pytest.approx(4 / 6)
    brier = np.mean((np.array(p) - np.array(y)) ** 2)
    assert m["macro"]["brier"] == pytest.approx(brier)
    assert m["threshold_source"] == "default 0.5"
    assert list(m["per_label"]) == ["yes"]


def test_multiclass_hand_computed():
    y = [0, 1, 2, 1]
    p = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1]])
    m = M.compute_metrics(y, p, "multiclass", ["a", "b", "c"], n_bootstrap=0)
    assert m["overall"]["accuracy"] == 0.75
    assert m["per_label"]["a"]["f1"] == pytest.approx(2 / 3)  # TP 1, FP 1
    assert m["per_label"]["b"]["f1"] == pytest.approx(2 / 3)  # TP 1, FN 1
    assert m["per_label"]["c"]["f1"] == pytest.approx(1.0)
    assert m["macro"]["f1"] == pytest.approx(7 / 9)
    assert m["micro"]["f1"] == pytest.approx(0.75)  # micro-F1 = accuracy for arg-max
    assert m["thresholds"] is None and m["threshold_source"] == "argmax"
    # multi-class Brier: mean over rows of the squared distance to the one-hot target
    onehot = np.eye(3)[y]
    assert m["overall"]["brier_multiclass"] == pytest.approx(((p - onehot) ** 2).sum(1).mean())
    # string labels are accepted in place of indices
    m2 = M.compute_metrics(["a", "b", "c", "b"], p, "multiclass", ["a", "b", "c"], n_bootstrap=0)
    assert m2["macro"] == m["macro"]


def test_ece_hand_computed():
    # bins of width 0.2: [0.2] -> |0 - .2|, [0.6, 0.7] -> |1 - .65|, [0.9] -> |1 - .9|
    assert M.expected_calibration_error([0, 1, 1, 1], [0.2, 0.6, 0.7, 0.9], n_bins=5) == (
        pytest.approx(0.2 / 4 + 0.35 * 2 / 4 + 0.1 / 4)
    )
    # 1.0 falls into the last bin, 0.0 into the first
    assert M.expected_calibration_error([1, 0], [1.0, 0.0], n_bins=10) == 0.0
    # a perfectly calibrated bin has no error
    assert M.expected_calibration_error([0, 1, 0, 1], [0.5] * 4, n_bins=10) == 0.0


def test_ece_multiclass_is_top_label():
    y = [0, 1, 1]
    p = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8]])
    # confidences 0.9 (right), 0.7 (wrong), 0.8 (right); bins of 0.1 each hold one row
    expected = (abs(1 - 0.9) + abs(0 - 0.7) + abs(1 - 0.8)) / 3
    assert M.expected_calibration_error(y, p, n_bins=10) == pytest.approx(expected)


def test_calibration_bins_counts_and_observed():
    bins = M.calibration_bins([0, 1, 1, 0], [0.05, 0.95, 0.9, 0.55], n_bins=2)
    assert bins["count"] == [1, 3]
    assert bins["observed"][0] == 0.0 and bins["observed"][1] == pytest.approx(2 / 3)
    assert bins["mean_predicted"][1] == pytest.approx((0.95 + 0.9 + 0.55) / 3)
    empty = M.calibration_bins([1], [0.95], n_bins=4)
    assert empty["observed"][:3] == [None, None, None]


def test_confusion_matrices():
    assert M.confusion_matrix([0, 1, 1, 0], [0.6, 0.7, 0.2, 0.1], "binary").tolist() == [
        [1, 1],
        [1, 1],
    ]
    y, p = _multiclass_data(60, 3)
    cm = M.confusion_matrix(y, p, "multiclass")
    assert cm.tolist() == skm.confusion_matrix(y, p.argmax(1), labels=[0, 1, 2]).tolist()
    ym, pm = _multilabel_data(80, 3)
    cml = M.confusion_matrix(ym, pm, "multilabel", thresholds=[0.3, 0.5, 0.7])
    ref = skm.multilabel_confusion_matrix(ym, (pm >= np.array([0.3, 0.5, 0.7])).astype(int))
    assert cml.tolist() == ref.tolist()


# ----------------------------------------------------------------------------- vs scikit-learn


def test_multilabel_matches_sklearn_per_label_macro_micro():
    y, p = _multilabel_data()
    thr = np.array([0.3, 0.4, 0.5, 0.6, 0.45])
    labels = [f"L{j}" for j in range(y.shape[1])]
    m = M.compute_metrics(y, p, "multilabel", labels, thresholds=thr, n_bootstrap=0)
    pred = (p >= thr).astype(int)
    for j, lab in enumerate(labels):
        row = m["per_label"][lab]
        assert row["auroc"] == pytest.approx(skm.roc_auc_score(y[:, j], p[:, j]))
        assert row["auprc"] == pytest.approx(skm.average_precision_score(y[:, j], p[:, j]))
        assert row["f1"] == pytest.approx(skm.f1_score(y[:, j], pred[:, j]))
        assert row["precision"] == pytest.approx(skm.precision_score(y[:, j], pred[:, j]))
        assert row["recall"] == pytest.approx(skm.recall_score(y[:, j], pred[:, j]))
        assert row["brier"] == pytest.approx(skm.brier_score_loss(y[:, j], p[:, j]))
        assert row["support"] == int(y[:, j].sum())
        assert row["threshold"] == pytest.approx(thr[j])
    assert m["macro"]["auroc"] == pytest.approx(skm.roc_auc_score(y, p, average="macro"))
    assert m["micro"]["auroc"] == pytest.approx(skm.roc_auc_score(y, p, average="micro"))
    assert m["macro"]["auprc"] == pytest.approx(skm.average_precision_score(y, p, average="macro"))
    assert m["micro"]["auprc"] == pytest.approx(skm.average_precision_score(y, p, average="micro"))
    assert m["macro"]["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["micro"]["f1"] == pytest.approx(skm.f1_score(y, pred, average="micro"))
    assert m["micro"]["precision"] == pytest.approx(skm.precision_score(y, pred, average="micro"))
    assert m["overall"]["subset_accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["overall"]["hamming_accuracy"] == pytest.approx(1 - skm.hamming_loss(y, pred))


def test_multiclass_matches_sklearn():
    y, p = _multiclass_data()
    m = M.compute_metrics(y, p, "multiclass", n_bootstrap=0)
    pred = p.argmax(1)
    assert m["overall"]["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["macro"]["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["macro"]["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro"))
    assert m["macro"]["recall"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert m["macro"]["auroc"] == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr"))
    onehot = np.eye(p.shape[1])[y]
    assert m["micro"]["auroc"] == pytest.approx(skm.roc_auc_score(onehot, p, average="micro"))
    assert m["macro"]["auprc"] == pytest.approx(skm.average_precision_score(onehot, p))


def test_binary_matches_sklearn_with_two_column_probs():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p1 = np.clip(0.3 * y + 0.7 * rng.random(500), 0, 1).round(2)
    m = M.compute_metrics(y, np.c_[1 - p1, p1], "binary", ["neg", "pos"], n_bootstrap=0)
    assert m["macro"]["auroc"] == pytest.approx(skm.roc_auc_score(y, p1))
    assert m["macro"]["auprc"] == pytest.approx(skm.average_precision_score(y, p1))
    assert m["overall"]["accuracy"] == pytest.approx(skm.accuracy_score(y, p1 >= 0.5))


def test_curves_match_sklearn():
    y, p = _multilabel_data(200, 1)
    fpr, tpr, _ = M.roc_curve(y[:, 0], p[:, 0])
    sk_fpr, sk_tpr, _ = skm.roc_curve(y[:, 0], p[:, 0], drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    prec, rec, thr = M.precision_recall_curve(y[:, 0], p[:, 0])
    sk_prec, sk_rec, sk_thr = skm.precision_recall_curve(y[:, 0], p[:, 0])
    # scikit-learn lists ascending thresholds and appends the (1, 0) end point
    np.testing.assert_allclose(prec, sk_prec[:-1][::-1])
    np.testing.assert_allclose(rec, sk_rec[:-1][::-1])
    np.testing.assert_allclose(thr, sk_thr[::-1])


def test_weighted_replicate_equals_metrics_on_resampled_rows():
    """A bootstrap replicate is a count vector; its metrics must equal scikit-learn's on the
    rows repeated that many times (this is what makes the one-sort bootstrap correct)."""
    y, p = _multilabel_data(150, 3, seed=5)
    prep = M._prepare(y, p, "multilabel", None)
    thr = np.full(3, 0.5)
    pred = M._predictions(prep, thr)
    rankings = [M._Ranking(prep.y[:, j], prep.p[:, j]) for j in range(3)]
    rng = np.random.default_rng(11)
    counts = rng.multinomial(150, np.full(150, 1 / 150), size=4).astype(float)
    got = M._per_label_weighted(counts, prep, pred, rankings, set(M.METRIC_NAMES), 10)
    for b in range(4):
        idx = np.repeat(np.arange(150), counts[b].astype(int))
        for j in range(3):
            yb, pb = y[idx, j], p[idx, j]
            assert got["auroc"][b, j] == pytest.approx(skm.roc_auc_score(yb, pb))
            assert got["auprc"][b, j] == pytest.approx(skm.average_precision_score(yb, pb))
            assert got["f1"][b, j] == pytest.approx(skm.f1_score(yb, pb >= 0.5))
            assert got["brier"][b, j] == pytest.approx(skm.brier_score_loss(yb, pb))
            assert got["ece"][b, j] == pytest.approx(
                M.expected_calibration_error(yb, pb, n_bins=10)
            )


# ----------------------------------------------------------------------------- thresholds


def test_tune_thresholds_reaches_the_best_f1():
    y, p = _multilabel_data(400, 4, seed=7, ties=False)
    thr = M.tune_thresholds(y, p, "multilabel")
    assert thr.shape == (4,)
    for j in range(4):
        best_grid = max(skm.f1_score(y[:, j], p[:, j] >= t) for t in np.unique(p[:, j]))
        assert skm.f1_score(y[:, j], p[:, j] >= thr[j]) == pytest.approx(best_grid)


def test_tune_thresholds_midpoint_and_special_cases():
    # best cut keeps 0.8 and 0.3 (F1 0.8); midpoint to the next score 0.1
    assert M.tune_thresholds([0, 0, 1, 1], [0.1, 0.4, 0.3, 0.8], "binary").tolist() == [
        pytest.approx(0.2)
    ]
    assert M.tune_thresholds([0, 1, 2], np.eye(3), "multiclass") is None
    # a label without positives falls back to 0.5; predicting all positive keeps the lowest score
    thr = M.tune_thresholds([[0, 1], [0, 1]], [[0.2, 0.3], [0.9, 0.6]], "multilabel")
    assert thr.tolist() == [0.5, 0.3]


# ----------------------------------------------------------------------------- undefined labels


def test_single_class_labels_give_none_with_reason_never_crash():
    y = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]])
    p = np.array([[0.9, 0.1, 0.8], [0.2, 0.6, 0.7], [0.7, 0.2, 0.9], [0.4, 0.3, 0.6]])
    m = M.compute_metrics(y, p, "multilabel", ["a", "never", "always"], n_bootstrap=50)
    never, always = m["per_label"]["never"], m["per_label"]["always"]
    for name in ("auroc", "auprc", "recall", "f1"):
        assert never[name] is None
        assert "no positive" in m["undefined"]["never"][name]
    assert never["precision"] == 0.0  # one false positive: defined, and 0
    assert always["auroc"] is None and "no negative" in m["undefined"]["always"]["auroc"]
    assert always["auprc"] == 1.0 and always["f1"] == 1.0
    assert m["macro"]["auroc"] == pytest.approx(1.0)  # only label "a" is defined
    assert m["n_labels_averaged"]["auroc"] == 1
    assert m["n_labels_averaged"]["f1"] == 2
    assert m["ci"]["per_label"]["never"]["auroc"] is None
    json.dumps(M.to_jsonable(m), allow_nan=False)


# ----------------------------------------------------------------------------- bootstrap


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    y, p = _multiclass_data(300, 3)
    a = M.compute_metrics(y, p, "multiclass", n_bootstrap=300, seed=4)
    b = M.compute_metrics(y, p, "multiclass", n_bootstrap=300, seed=4)
    c = M.compute_metrics(y, p, "multiclass", n_bootstrap=300, seed=5)
    assert a["ci"] == b["ci"]
    assert a["ci"]["macro"]["auroc"] != c["ci"]["macro"]["auroc"]
    for name in ("auroc", "auprc", "f1", "brier", "ece"):
        lo, hi = a["ci"]["macro"][name]
        assert lo < hi
        assert lo <= a["macro"][name] <= hi or name == "ece"  # ECE is biased upwards
    lo, hi = a["ci"]["overall"]["accuracy"]
    assert lo < a["overall"]["accuracy"] < hi
    # the interval width behaves like a binomial standard error (~ 2 * 1.96 * sqrt(pq/n))
    acc = a["overall"]["accuracy"]
    expected_width = 2 * 1.96 * np.sqrt(acc * (1 - acc) / 300)
    assert 0.7 * expected_width < hi - lo < 1.3 * expected_width
    assert a["ci"]["n_bootstrap"] == 300 and a["ci"]["level"] == 0.95


def test_no_bootstrap_and_metric_selection():
    y, p = _multilabel_data(100, 3)
    m = M.compute_metrics(y, p, "multilabel", metrics=["AUROC", "f1"], n_bootstrap=0)
    assert m["ci"] is None
    assert set(m["macro"]) == {"auroc", "f1"}
    assert set(m["per_label"]["0"]) == {"support", "n_negative", "threshold", "auroc", "f1"}
    with pytest.raises(InputError, match="unknown metric"):
        M.compute_metrics(y, p, "multilabel", metrics=["roc"])


# ----------------------------------------------------------------------------- temperature


def _sample_multiclass(n, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 4)) * 2
    pz = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = (pz.cumsum(1) > rng.random((n, 1))).argmax(1)
    return z, y


def test_fit_temperature_recovers_the_scale_multiclass():
    z, y = _sample_multiclass(6000, 0)
    t = M.fit_temperature(2.5 * z, y, "multiclass")
    assert t == pytest.approx(2.5, rel=0.08)
    # it is the minimum of the NLL: a grid around it does no better
    nll = M.calibration_nll(2.5 * z, y, "multiclass", t)
    for other in (t * 0.9, t * 1.1, 1.0):
        assert M.calibration_nll(2.5 * z, y, "multiclass", other) > nll
    probs = M.apply_temperature(2.5 * z, t, "multiclass")
    assert M.expected_calibration_error(y, probs) < M.expected_calibration_error(
        y, M.apply_temperature(2.5 * z, 1.0, "multiclass")
    )


def test_fit_temperature_binary_and_multilabel():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(5000, 3)) * 1.5
    y = (rng.random(z.shape) < 1 / (1 + np.exp(-z))).astype(int)
    assert M.fit_temperature(z * 0.5, y, "multilabel") == pytest.approx(0.5, rel=0.1)
    assert M.fit_temperature(z[:, 0] * 4, y[:, 0], "binary") == pytest.approx(4, rel=0.15)
    # two-column binary logits use the softmax
    zz = np.c_[np.zeros(5000), z[:, 0] * 4]
    assert M.fit_temperature(zz, y[:, 0], "binary") == pytest.approx(4, rel=0.15)


def test_apply_temperature_and_probs_to_logits_exact():
    np.testing.assert_allclose(
        M.apply_temperature([0.0, 2.0], 2.0, "binary"), [0.5, 1 / (1 + np.exp(-1.0))]
    )
    z = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(
        M.apply_temperature(z, 1.0, "multiclass"), np.exp(z) / np.exp(z).sum()
    )
    p = np.array([[0.2, 0.5, 0.3]])
    np.testing.assert_allclose(M.apply_temperature(M.probs_to_logits(p, "multiclass"), 1, "multiclass"), p)
    np.testing.assert_allclose(
        M.apply_temperature(M.probs_to_logits([0.1, 0.7], "binary"), 1, "binary"), [0.1, 0.7]
    )
    assert M.calibration_nll([0.0, 0.0], [1, 0], "binary") == pytest.approx(np.log(2))
    with pytest.raises(InputError, match="temperature"):
        M.apply_temperature(z, 0.0, "multiclass")


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args, match",
    [
        (([0, 1], [0.2], "binary"), "rows"),
        (([0, 1], [0.2, float("nan")], "binary"), "non-finite"),
        (([0, 2], [0.2, 0.3], "binary"), "only 0 and 1"),
        (([0, 1], [0.2, 1.7], "binary"), r"\[0, 1\]"),
        (([0, 3], np.full((2, 3), 1 / 3), "multiclass"), "lie in"),
        (([[0, 1]], [[0.2, 0.3, 0.1]], "multilabel"), "shape"),
        (([0, 1], [0.2, 0.3], "regression"), "task must be"),
    ],
)
def test_bad_input_raises_input_error(args, match):
    with pytest.raises(InputError, match=match):
        M.compute_metrics(*args, n_bootstrap=0)


def test_to_jsonable_is_strict_json():
    m = M.compute_metrics([0, 0], [0.2, 0.4], "binary", n_bootstrap=20)
    text = json.dumps(M.to_jsonable(m), allow_nan=False)
    assert json.loads(text)["macro"]["auroc"] is None
