"""ehrtext.report: metrics.json (strict JSON) and a self-contained report.html with SVG plots."""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from sklearn import metrics as skm

from ehrtext import metrics as M
from ehrtext.report import write_report

SVG_NS = "{http://www.w3.org/2000/svg}"


def _strict_json(path):
    def no_constants(name):
        raise AssertionError(f"non-strict JSON constant {name} in {path}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=no_constants)


def _svgs(page):
    """Every inline SVG, parsed as XML (so each one is well-formed)."""
    return [ET.fromstring(s) for s in re.findall(r"<svg\b.*?</svg>", page, flags=re.S)]


def _multiclass(n=600, c=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    z = rng.normal(size=(n, c))
    z[np.arange(n), y] += 1.5
    return y, np.exp(z) / np.exp(z).sum(1, keepdims=True)


def _assert_self_contained(page):
    low = page.lower()
    for needle in ("<script", "<link", "<img", "<iframe", "@import", "url("):
        assert needle not in low, needle
    # the only URL is the SVG namespace, which is an identifier, never fetched
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) <= {"http://www.w3.org/2000/svg"}


def test_multiclass_report_files_and_content(tmp_path):
    y, p = _multiclass()
    labels = ["冠心病", "心衰", "房颤", "高血压", "<b>x</b>", "other"]
    result = write_report(
        tmp_path / "eval",
        y_true=y,
        probs=p,
        task="multiclass",
        labels=labels,
        title="CCL <test> report",
        extra={"split": "seed 0", "n_train": 100},
        n_bootstrap=200,
    )
    on_disk = _strict_json(tmp_path / "eval" / "metrics.json")
    assert on_disk == result
    assert on_disk["extra"] == {"split": "seed 0", "n_train": 100}
    assert on_disk["overall"]["accuracy"] == pytest.approx(skm.accuracy_score(y, p.argmax(1)))
    assert on_disk["ci"]["n_bootstrap"] == 200

    page = (tmp_path / "eval" / "report.html").read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert "CCL &lt;test&gt; report" in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "<b>x</b>" not in page
    svgs = _svgs(page)
    titles = [s.get("aria-label") for s in svgs]
    assert titles == [
        "ROC curve",
        "Precision-recall curve",
        "Reliability diagram",
        "Confusion matrix",
    ]
    roc, pr, rel, cm = svgs
    # one curve per class plus the micro-average; legends name the AUC from metrics.json
    assert len(roc.findall(f"{SVG_NS}polyline")) == 7
    legend = [t.text for t in roc.iter(f"{SVG_NS}text") if t.text and "AUC" in t.text]
    auc = on_disk["per_label"]["心衰"]["auroc"]
    assert f"心衰 (AUC {auc:.3f})" in legend
    # axis ticks 0.0 .. 1.0 on both axes
    ticks = [t.text for t in roc.iter(f"{SVG_NS}text")]
    assert all(ticks.count(f"{v / 5:.1f}") == 2 for v in range(6))
    # every curve point lies inside the plot frame
    frame = roc.find(f"{SVG_NS}rect")
    x0, y0 = float(frame.get("x")), float(frame.get("y"))
    x1, y1 = x0 + float(frame.get("width")), y0 + float(frame.get("height"))
    for line in roc.findall(f"{SVG_NS}polyline"):
        pts = np.array([[float(v) for v in pt.split(",")] for pt in line.get("points").split()])
        assert (pts[:, 0] >= x0 - 0.1).all() and (pts[:, 0] <= x1 + 0.1).all()
        assert (pts[:, 1] >= y0 - 0.1).all() and (pts[:, 1] <= y1 + 0.1).all()
    # confusion matrix: one cell per (true, predicted) pair, counts in the tooltips
    cells = [r for r in cm.iter(f"{SVG_NS}rect") if r.get("class") == "cm"]
    assert len(cells) == 36
    counts = skm.confusion_matrix(y, p.argmax(1), labels=range(len(labels)))
    # classes in the per-label table's order (most frequent first), rows and columns alike
    order = sorted(range(len(labels)), key=lambda j: (-np.sum(y == j), j))
    for k, cell in enumerate(cells):
        i, j = order[k // len(labels)], order[k % len(labels)]
        tip = cell.find(f"{SVG_NS}title").text
        assert tip.startswith(f"true {labels[i]} → predicted {labels[j]}: {counts[i, j]} ")
    start = page.index('<table class="per-label"')
    table = page[start : page.index("</table>", start)]
    rows = re.findall(r'<td class="name">(.*?)</td>', table)
    assert [html.unescape(r) for r in rows] == [labels[j] for j in order]
    # reliability bars: one per non-empty bin, their counts add up to the rows
    bars = [r for r in rel.iter(f"{SVG_NS}rect") if r.get("class") == "bar"]
    bins = M.calibration_bins(y, p, n_bins=15)
    assert len(bars) == sum(1 for c in bins["count"] if c)
    assert sum(bins["count"]) == len(y)


def test_many_labels_show_only_the_most_frequent_curves(tmp_path):
    y, p = _multiclass(n=900, c=44, seed=1)
    write_report(
        tmp_path,
        y_true=y,
        probs=p,
        task="multiclass",
        labels=[f"c{i}" for i in range(44)],
        n_bootstrap=0,
        max_curve_labels=10,
    )
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    roc = _svgs(page)[0]
    assert len(roc.findall(f"{SVG_NS}polyline")) == 11  # 10 labels + micro-average
    assert "Curves for the 10 most frequent of 44 labels" in page
    support = np.bincount(y, minlength=44)
    top = np.argsort(-support, kind="stable")[:10]
    names = [t.text.split(" (")[0] for t in roc.iter(f"{SVG_NS}text") if t.text and "AUC" in t.text]
    assert names[:10] == [f"c{i}" for i in top]
    assert (
        len([r for r in _svgs(page)[3].iter(f"{SVG_NS}rect") if r.get("class") == "cm"]) == 44 * 44
    )


def test_multilabel_report_with_a_label_that_never_occurs(tmp_path):
    rng = np.random.default_rng(2)
    y = (rng.random((200, 4)) < 0.3).astype(int)
    y[:, 3] = 0  # never positive in this split
    p = np.clip(0.4 * y + 0.6 * rng.random((200, 4)), 0, 1)
    thr = [0.4, 0.5, 0.6, 0.5]
    result = write_report(
        tmp_path,
        y_true=y,
        probs=p,
        task="multilabel",
        labels=["a", "b", "c", "rare"],
        thresholds=thr,
        n_bootstrap=100,
    )
    on_disk = _strict_json(tmp_path / "metrics.json")
    assert on_disk["per_label"]["rare"]["auroc"] is None
    assert "no positive" in on_disk["undefined"]["rare"]["auroc"]
    assert result["macro"]["auroc"] == pytest.approx(
        np.mean([skm.roc_auc_score(y[:, j], p[:, j]) for j in range(3)])
    )
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert re.search(r'<td class="undef" title="no positive example[^"]*">—</td>', page)
    # per-label 2x2 counts in the table match scikit-learn's
    mcm = skm.multilabel_confusion_matrix(y, (p >= np.array(thr)).astype(int))
    row = re.search(r'<td class="name">b</td>(.*?)</tr>', page).group(1)
    tail = re.findall(r"<td>(\d+)</td>", row)[-4:]
    (tn, fp), (fn, tp) = mcm[1]
    assert tail == [str(tn), str(fp), str(fn), str(tp)]
    # the curve plot skips the label that has no positives
    roc = _svgs(page)[0]
    assert len(roc.findall(f"{SVG_NS}polyline")) == 4  # a, b, c + micro


def test_binary_report(tmp_path):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.35 * y + 0.65 * rng.random(300), 0, 1)
    result = write_report(
        tmp_path,
        y_true=y,
        probs=p,
        task="binary",
        labels=["阴性", "肺炎"],
        thresholds=[0.45],
        n_bootstrap=100,
    )
    assert result["per_label"]["肺炎"]["auroc"] == pytest.approx(skm.roc_auc_score(y, p))
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    (tn, fp), (fn, tp) = skm.confusion_matrix(y, p >= 0.45)
    assert f"<td>{tn}</td><td>{fp}</td>" in page and f"<td>{fn}</td><td>{tp}</td>" in page
    assert "Value [95% CI]" in page and "<th>Micro</th>" not in page
    assert [s.get("aria-label") for s in _svgs(page)] == [
        "ROC curve",
        "Precision-recall curve",
        "Reliability diagram",
    ]


def test_report_bad_input_writes_nothing(tmp_path):
    from ehrtext.errors import InputError

    with pytest.raises(InputError):
        write_report(tmp_path / "r", y_true=[0, 1], probs=[0.1], task="binary", labels=None)
    assert not (tmp_path / "r").exists()


@pytest.mark.shared_data
def test_report_on_real_notes(shared_data, tmp_path):
    """A real model on real notes: DXY self-reports, TF-IDF + logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    rows = [
        json.loads(line)
        for line in (shared_data / "dxy_selfreport" / "train.jsonl").open(encoding="utf-8")
    ]
    labels = sorted({r["disease"] for r in rows})
    y = np.array([labels.index(r["disease"]) for r in rows])
    texts = [r["self_report"] for r in rows]
    idx = np.random.default_rng(0).permutation(len(rows))
    train, test = idx[:300], idx[300:]
    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 2), min_df=2)
    model = LogisticRegression(C=10, max_iter=1000).fit(
        vec.fit_transform([texts[i] for i in train]), y[train]
    )
    probs = model.predict_proba(vec.transform([texts[i] for i in test]))
    result = write_report(
        tmp_path, y_true=y[test], probs=probs, task="multiclass", labels=labels, n_bootstrap=200
    )
    assert result["overall"]["accuracy"] == pytest.approx(
        skm.accuracy_score(y[test], probs.argmax(1))
    )
    assert result["overall"]["accuracy"] > 0.6  # the model really learned something
    lo, hi = result["ci"]["overall"]["accuracy"]
    assert lo < result["overall"]["accuracy"] < hi
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    _assert_self_contained(page)
    assert all(name in page for name in labels)
