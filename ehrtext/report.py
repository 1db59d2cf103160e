"""The evaluation report: ``metrics.json`` and a self-contained ``report.html``.

The HTML page needs nothing from outside (no scripts, fonts, images or style sheets fetched;
it opens offline and can be mailed as one file). Plots are inline SVG drawn here, so there is
no matplotlib dependency:

* ROC and precision-recall curves — one line per label for the ``max_curve_labels`` labels
  with the most positives (all of them when there are few), plus the micro-average;
* a reliability (calibration) diagram with the count of predictions per bin (top-label
  confidence for multi-class, every (row, label) pair for multi-label);
* a confusion matrix (multi-class: row-normalised heat map with counts; binary: 2×2; multi-label:
  one TN/FP/FN/TP row per label in the per-label table);
* tables of macro / micro / overall metrics and of per-label metrics with bootstrap 95% CIs.

Example:
    >>> from ehrtext.report import write_report
    >>> m = write_report("out/eval", y_true=[0, 1, 1, 0], probs=[.2, .9, .6, .4],
    ...                  task="binary", labels=["no", "yes"], n_bootstrap=200)  # doctest: +SKIP
    >>> m["macro"]["auroc"]  # doctest: +SKIP
    1.0
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ehrtext import metrics as M

__all__ = ["render_report_html", "write_report"]

PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#ad494a",
)
FONT = (
    "system-ui, -apple-system, 'Segoe UI', 'Noto Sans CJK SC', 'Noto Sans SC', "
    "'WenQuanYi Micro Hei', 'Microsoft YaHei', 'PingFang SC', sans-serif"
)
_MAX_POINTS = 400  # per curve; longer curves are thinned evenly (monotone, so nothing is lost)


def write_report(
    output_dir: str | os.PathLike[str],
    *,
    y_true: Any,
    probs: Any,
    task: str,
    labels: Sequence[str] | None,
    thresholds: Any = None,
    title: str = "ehrtext evaluation report",
    extra: Mapping[str, Any] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    n_bins: int = 15,
    max_curve_labels: int = 10,
) -> dict[str, Any]:
    """Compute every metric and write ``metrics.json`` and ``report.html`` into ``output_dir``.

    Args:
        output_dir: created when missing; both files are written atomically.
        y_true, probs, task, labels, thresholds: as in :func:`ehrtext.metrics.compute_metrics`
            (thresholds from validation data; default 0.5; multi-class uses the arg-max).
        title: page title.
        extra: JSON-serialisable details (model, data split, …) stored under ``"extra"`` and
            shown in a table.
        n_bootstrap, seed, n_bins: bootstrap replicates and seed for the 95% CIs, ECE bins.
        max_curve_labels: at most this many labels (the most frequent) get a curve.

    Returns the metrics dict exactly as written to ``metrics.json`` (NaN → ``None``).

    Example:
        >>> m = write_report("eval/", y_true=y, probs=p, task="multiclass",
        ...                  labels=names, title="CHIP-CTC validation")  # doctest: +SKIP
    """
    result = M.compute_metrics(
        y_true,
        probs,
        task,
        labels,
        thresholds=thresholds,
        n_bootstrap=n_bootstrap,
        seed=seed,
        n_bins=n_bins,
    )
    if extra is not None:
        result["extra"] = dict(extra)
    result = M.to_jsonable(result)
    page = render_report_html(
        result,
        y_true=y_true,
        probs=probs,
        title=title,
        n_bins=n_bins,
        max_curve_labels=max_curve_labels,
    )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(
        out / "metrics.json",
        json.dumps(result, ensure_ascii=False, indent=2, allow_nan=False) + "\n",
    )
    _atomic_write(out / "report.html", page)
    return result


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- page


def render_report_html(
    result: Mapping[str, Any],
    *,
    y_true: Any,
    probs: Any,
    title: str = "ehrtext evaluation report",
    n_bins: int = 15,
    max_curve_labels: int = 10,
) -> str:
    """The report page for a :func:`~ehrtext.metrics.compute_metrics` result and its data.

    Example:
        >>> page = render_report_html(result, y_true=y, probs=p)  # doctest: +SKIP
    """
    task = result["task"]
    prep = M._prepare(y_true, probs, task, result["labels"])
    labels = prep.labels
    support = prep.y.sum(axis=0)
    order = sorted(range(len(labels)), key=lambda j: (-support[j], j))
    shown = [j for j in order if 0 < support[j] < prep.y.shape[0]][:max_curve_labels]

    roc_series, pr_series = [], []
    for rank, j in enumerate(shown):
        color = PALETTE[rank % len(PALETTE)]
        name = labels[j]
        per = result["per_label"][name]
        fpr, tpr, _ = M.roc_curve(prep.y[:, j], prep.p[:, j])
        roc_series.append((_legend(name, per.get("auroc"), "AUC"), fpr, tpr, color, None))
        prec, rec, _ = M.precision_recall_curve(prep.y[:, j], prep.p[:, j])
        steps = _pr_steps(prec, rec)
        pr_series.append((_legend(name, per.get("auprc"), "AP"), *steps, color, None))
    if len(labels) > 1 and 0 < prep.y.sum() < prep.y.size:
        yf, pf = prep.y.reshape(-1), prep.p.reshape(-1)
        fpr, tpr, _ = M.roc_curve(yf, pf)
        micro = result.get("micro", {})
        roc_series.append(
            (_legend("micro-average", micro.get("auroc"), "AUC"), fpr, tpr, "#222", "6 4")
        )
        prec, rec, _ = M.precision_recall_curve(yf, pf)
        steps = _pr_steps(prec, rec)
        pr_series.append(
            (_legend("micro-average", micro.get("auprc"), "AP"), *steps, "#222", "6 4")
        )

    n_labels = len(labels)
    curve_note = (
        f"Curves for the {len(shown)} most frequent of {n_labels} labels"
        if len(shown) < n_labels
        else f"One curve per label ({n_labels})"
    )
    if len(labels) > 1:
        curve_note += ", plus the micro-average (dashed)."
    else:
        curve_note += "."

    roc_svg = _line_chart(
        roc_series,
        x_label="False positive rate",
        y_label="True positive rate",
        title="ROC curve",
        diagonal=True,
    )
    baseline = None
    if task == "binary":
        baseline = float(prep.y.mean())
    pr_svg = _line_chart(
        pr_series,
        x_label="Recall",
        y_label="Precision",
        title="Precision-recall curve",
        horizontal=baseline,
    )

    if task == "multiclass":
        cal_y, cal_p = prep.y_index, prep.p
        cal_note = "Top-label confidence (the arg-max probability) against accuracy."
    elif task == "binary":
        cal_y, cal_p = prep.y[:, 0], prep.p[:, 0]
        cal_note = "Predicted probability against the observed frequency of the positive class."
    else:
        cal_y, cal_p = prep.y, prep.p
        cal_note = (
            "Every (note, label) pair pooled: predicted probability against observed frequency."
        )
    bins = M.calibration_bins(cal_y, cal_p, n_bins=n_bins)
    ece = M.expected_calibration_error(cal_y, cal_p, n_bins=n_bins)
    cal_svg = _reliability_chart(bins, ece)

    if task == "multiclass":
        cm = M.confusion_matrix(y_true, probs, task, labels)
        # classes in the order of the per-label table (most frequent first)
        cm_html = _confusion_svg(cm[np.ix_(order, order)], [labels[j] for j in order])
        cm_note = (
            "Rows: true class; columns: predicted (arg-max) class; classes in the order of the "
            "per-label table (most frequent first). Colour: share of the row; hover a cell for "
            "its count."
        )
    elif task == "binary":
        cm = M.confusion_matrix(y_true, probs, task, labels, thresholds=result["thresholds"])
        cm_html = _binary_confusion_table(cm, labels[0])
        cm_note = f"At threshold {_fmt(result['thresholds'][0])} ({result['threshold_source']})."
    else:
        cm = M.confusion_matrix(y_true, probs, task, labels, thresholds=result["thresholds"])
        cm_html = ""
        cm_note = (
            "Multi-label: each label's 2×2 counts (TN / FP / FN / TP) are in the per-label table."
        )

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        _summary_line(result),
        '<section id="summary"><h2>Summary</h2>',
        _summary_table(result),
        "</section>",
        '<section id="curves"><h2>Discrimination</h2>',
        f'<p class="note">{_e(curve_note)}</p>',
        f'<div class="plots"><figure id="roc">{roc_svg}</figure>',
        f'<figure id="pr">{pr_svg}</figure></div>',
        "</section>",
        '<section id="calibration"><h2>Calibration</h2>',
        f'<p class="note">{_e(cal_note)} Equal-width bins; ECE = {_fmt(ece)}.</p>',
        f'<figure id="reliability">{cal_svg}</figure>',
        "</section>",
        '<section id="confusion"><h2>Confusion matrix</h2>',
        f'<p class="note">{_e(cm_note)}</p>',
        cm_html,
        "</section>",
        '<section id="per-label"><h2>Per label</h2>',
        _per_label_table(result, order, cm if task == "multilabel" else None),
        "</section>",
    ]
    n_boot = int((result.get("ci") or {}).get("n_bootstrap", 0))
    if result.get("extra"):
        parts += [
            '<section id="details"><h2>Details</h2>',
            _details_table(result["extra"]),
            "</section>",
        ]
    parts += [
        "<footer>Written by ehrtext. 95% intervals: percentile bootstrap over notes "
        f"({n_boot} replicates, thresholds fixed). "
        "A dash marks a value that is undefined (hover for the reason).</footer>",
        "</body></html>",
    ]
    return "\n".join(parts)


_CSS = f"""
body {{ font-family: {FONT}; color: #1a1a1a; margin: 24px auto; max-width: 1240px;
  padding: 0 16px; line-height: 1.45; }}
h1 {{ font-size: 1.6em; margin-bottom: 4px; }}
h2 {{ font-size: 1.2em; border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 28px; }}
.sub {{ color: #555; margin-top: 0; }}
.note {{ color: #555; font-size: 0.9em; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 12px; }}
figure {{ margin: 0; }}
table {{ border-collapse: collapse; font-size: 0.88em; margin: 6px 0; }}
th, td {{ border: 1px solid #d8d8d8; padding: 3px 8px; text-align: right; white-space: nowrap; }}
th {{ background: #f3f3f3; }}
td.name, th.name {{ text-align: left; }}
td .ci {{ color: #777; font-size: 0.8em; }}
td.undef {{ color: #999; }}
.scroll {{ overflow-x: auto; }}
footer {{ color: #777; font-size: 0.8em; margin-top: 32px; border-top: 1px solid #eee;
  padding-top: 8px; }}
svg text {{ font-family: {FONT}; }}
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    return f"{float(value):.{digits}f}"


def _compact(count: int) -> str:
    """1704 → '1704', 23456 → '23k', 1234567 → '1.2M' (bar labels)."""
    if count < 10_000:
        return str(count)
    if count < 1_000_000:
        return f"{count // 1000}k"
    return f"{count / 1e6:.1f}M"


def _short(name: str, limit: int = 26) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _legend(name: str, value: Any, what: str) -> str:
    return f"{_short(name, 40)} ({what} {_fmt(value)})"


def _summary_line(result: Mapping[str, Any]) -> str:
    n = result["n_samples"]
    return (
        f'<p class="sub">{_e(result["task"])} · {n} notes · {len(result["labels"])} label(s) · '
        f"decision rule: {_e(result['threshold_source'])}</p>"
    )


def _cell(value: Any, ci: Any = None, reason: str | None = None) -> str:
    if value is None:
        title = f' title="{_e(reason)}"' if reason else ""
        return f'<td class="undef"{title}>—</td>'
    text = _fmt(value)
    if ci:
        text += f'<br><span class="ci">[{_fmt(ci[0])}, {_fmt(ci[1])}]</span>'
    return f"<td>{text}</td>"


_METRIC_TITLES = {
    "auroc": "AUROC",
    "auprc": "AUPRC",
    "f1": "F1",
    "precision": "Precision",
    "recall": "Recall",
    "brier": "Brier",
    "ece": "ECE",
}
_OVERALL_TITLES = {
    "accuracy": "Accuracy",
    "brier_multiclass": "Brier (multi-class)",
    "ece_top_label": "ECE (top label)",
    "subset_accuracy": "Subset accuracy",
    "hamming_accuracy": "Hamming accuracy",
}


def _summary_table(result: Mapping[str, Any]) -> str:
    ci = result.get("ci") or {}
    macro_ci = ci.get("macro", {})
    single = len(result["labels"]) == 1  # binary: macro = micro = the positive label
    if single:
        rows = [
            '<table class="summary"><tr><th class="name">Metric</th><th>Value [95% CI]</th></tr>'
        ]
    else:
        rows = [
            '<table class="summary"><tr><th class="name">Metric</th><th>Macro [95% CI]</th>'
            "<th>Micro</th><th>Labels averaged</th></tr>"
        ]
    for key, label in _METRIC_TITLES.items():
        if key not in result["macro"]:
            continue
        cells = _cell(result["macro"][key], macro_ci.get(key))
        if not single:
            cells += _cell(result["micro"].get(key))
            cells += f"<td>{result['n_labels_averaged'].get(key, '')}</td>"
        rows.append(f'<tr><td class="name">{label}</td>{cells}</tr>')
    for key, label in _OVERALL_TITLES.items():
        if key in result["overall"]:
            cells = _cell(result["overall"][key], ci.get("overall", {}).get(key))
            if not single:
                cells += "<td></td><td></td>"
            rows.append(f'<tr><td class="name">{label}</td>{cells}</tr>')
    rows.append("</table>")
    return "\n".join(rows)


def _per_label_table(result: Mapping[str, Any], order: list[int], cms: Any) -> str:
    labels = result["labels"]
    ci = (result.get("ci") or {}).get("per_label", {})
    metric_keys = [k for k in _METRIC_TITLES if k in result["macro"]]
    head = ['<th class="name">Label</th>', "<th>Positives</th>", "<th>Negatives</th>"]
    if result["thresholds"] is not None:
        head.append("<th>Threshold</th>")
    head += [f"<th>{_METRIC_TITLES[k]}</th>" for k in metric_keys]
    if cms is not None:
        head += ["<th>TN</th>", "<th>FP</th>", "<th>FN</th>", "<th>TP</th>"]
    rows = ['<div class="scroll"><table class="per-label"><tr>' + "".join(head) + "</tr>"]
    for j in order:
        name = labels[j]
        per = result["per_label"][name]
        reasons = result.get("undefined", {}).get(name, {})
        cells = [
            f'<td class="name">{_e(name)}</td>',
            f"<td>{per['support']}</td>",
            f"<td>{per['n_negative']}</td>",
        ]
        if result["thresholds"] is not None:
            cells.append(f"<td>{_fmt(per['threshold'])}</td>")
        for k in metric_keys:
            cells.append(_cell(per.get(k), ci.get(name, {}).get(k), reasons.get(k)))
        if cms is not None:
            (tn, fp), (fn, tp) = cms[j]
            cells += [f"<td>{int(v)}</td>" for v in (tn, fp, fn, tp)]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    rows.append("</table></div>")
    return "\n".join(rows)


def _details_table(extra: Mapping[str, Any]) -> str:
    rows = ['<table class="details">']
    for key, value in extra.items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        rows.append(f'<tr><th class="name">{_e(key)}</th><td class="name">{_e(shown)}</td></tr>')
    rows.append("</table>")
    return "\n".join(rows)


# ----------------------------------------------------------------------------- SVG


def _pr_steps(prec: np.ndarray, rec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The step curve whose area is the average precision: precision ``p_k`` held over the
    recall interval ``(r_{k-1}, r_k]``."""
    r_prev = np.r_[0.0, rec[:-1]]
    rises = rec > r_prev  # points where recall stays put add nothing to AP: no spikes
    xs = np.column_stack([r_prev[rises], rec[rises]]).reshape(-1)
    ys = np.column_stack([prec[rises], prec[rises]]).reshape(-1)
    return xs, ys


def _text_width(text: str, size: float = 11) -> float:
    """Rough rendered width: CJK characters are square, Latin ones about half as wide."""
    return sum(size if ord(ch) > 0x2E80 else size * 0.6 for ch in text)


def _thin(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if xs.size <= _MAX_POINTS:
        return xs, ys
    keep = np.unique(np.linspace(0, xs.size - 1, _MAX_POINTS).round().astype(int))
    return xs[keep], ys[keep]


def _axes(
    x0: float, y0: float, w: float, h: float, x_label: str, y_label: str, title: str
) -> list[str]:
    """Frame, grid, ticks 0..1 and axis titles of a unit-square plot at (x0, y0)."""
    out = [f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="#fff" stroke="#444"/>']
    for i in range(6):
        v = i / 5
        px = x0 + v * w
        py = y0 + h - v * h
        if 0 < i < 5:
            out.append(f'<line x1="{px:.1f}" y1="{y0}" x2="{px:.1f}" y2="{y0 + h}" stroke="#eee"/>')
            out.append(f'<line x1="{x0}" y1="{py:.1f}" x2="{x0 + w}" y2="{py:.1f}" stroke="#eee"/>')
        out.append(
            f'<line x1="{px:.1f}" y1="{y0 + h}" x2="{px:.1f}" y2="{y0 + h + 5}" stroke="#444"/>'
        )
        out.append(
            f'<text x="{px:.1f}" y="{y0 + h + 18}" font-size="11" '
            f'text-anchor="middle">{v:.1f}</text>'
        )
        out.append(f'<line x1="{x0 - 5}" y1="{py:.1f}" x2="{x0}" y2="{py:.1f}" stroke="#444"/>')
        out.append(
            f'<text x="{x0 - 8}" y="{py + 4:.1f}" font-size="11" text-anchor="end">{v:.1f}</text>'
        )
    out.append(
        f'<text x="{x0 + w / 2}" y="{y0 + h + 38}" font-size="12" text-anchor="middle">'
        f"{_e(x_label)}</text>"
    )
    out.append(
        f'<text x="{x0 - 40}" y="{y0 + h / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 {x0 - 40} {y0 + h / 2})">{_e(y_label)}</text>'
    )
    out.append(
        f'<text x="{x0 + w / 2}" y="{y0 - 10}" font-size="14" font-weight="bold" '
        f'text-anchor="middle">{_e(title)}</text>'
    )
    return out


def _line_chart(
    series: list[tuple[str, np.ndarray, np.ndarray, str, str | None]],
    *,
    x_label: str,
    y_label: str,
    title: str,
    diagonal: bool = False,
    horizontal: float | None = None,
) -> str:
    # the legend sits under the plot, so that two charts fit side by side whatever the names
    x0, y0, w, h = 58.0, 34.0, 340.0, 300.0
    legend_x, legend_y = x0, y0 + h + 62
    width = int(
        max(x0 + w + 20, legend_x + 36 + max((_text_width(s[0]) for s in series), default=0))
    )
    height = int(legend_y + 18 * len(series) + 4)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">'
    ]
    out += _axes(x0, y0, w, h, x_label, y_label, title)
    if diagonal:
        out.append(
            f'<line x1="{x0}" y1="{y0 + h}" x2="{x0 + w}" y2="{y0}" stroke="#aaa" '
            'stroke-dasharray="4 4"/>'
        )
    if horizontal is not None and math.isfinite(horizontal):
        py = y0 + h - horizontal * h
        out.append(
            f'<line x1="{x0}" y1="{py:.1f}" x2="{x0 + w}" y2="{py:.1f}" stroke="#aaa" '
            'stroke-dasharray="4 4"><title>prevalence</title></line>'
        )
    for name, xs, ys, color, dash in series:
        xs, ys = _thin(np.asarray(xs, float), np.asarray(ys, float))
        ok = np.isfinite(xs) & np.isfinite(ys)
        pts = " ".join(f"{x0 + x * w:.1f},{y0 + h - y * h:.1f}" for x, y in zip(xs[ok], ys[ok]))
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<polyline class="curve" points="{pts}" fill="none" stroke="{color}" '
            f'stroke-width="1.8"{dash_attr}><title>{_e(name)}</title></polyline>'
        )
    for i, (name, _, _, color, dash) in enumerate(series):
        ly = legend_y + 18 * i
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(
            f'<line x1="{legend_x}" y1="{ly}" x2="{legend_x + 22}" y2="{ly}" stroke="{color}" '
            f'stroke-width="2.5"{dash_attr}/>'
        )
        out.append(f'<text x="{legend_x + 28}" y="{ly + 4}" font-size="11">{_e(name)}</text>')
    out.append("</svg>")
    return "".join(out)


def _reliability_chart(bins: Mapping[str, list], ece: float) -> str:
    x0, y0, w, h = 58.0, 34.0, 360.0, 300.0
    hist_y0, hist_h = y0 + h + 52, 70.0
    width, height = int(x0 + w + 180), int(hist_y0 + hist_h + 44)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Reliability diagram">'
    ]
    out += _axes(x0, y0, w, h, "Predicted probability", "Observed frequency", "Reliability diagram")
    out.append(
        f'<line x1="{x0}" y1="{y0 + h}" x2="{x0 + w}" y2="{y0}" stroke="#aaa" '
        'stroke-dasharray="4 4"/>'
    )
    edges = bins["edges"]
    counts = bins["count"]
    max_count = max(counts) if counts else 0
    for b in range(len(counts)):
        left, right = edges[b], edges[b + 1]
        bx, bw = x0 + left * w + 1, (right - left) * w - 2
        obs, mean_p = bins["observed"][b], bins["mean_predicted"][b]
        if obs is None:
            continue
        tip = (
            f"bin {left:.2f}-{right:.2f}: {counts[b]} predictions, "
            f"mean p {mean_p:.3f}, observed {obs:.3f}"
        )
        out.append(
            f'<rect class="bar" x="{bx:.1f}" y="{y0 + h - obs * h:.1f}" width="{bw:.1f}" '
            f'height="{obs * h:.1f}" fill="#4c78a8" fill-opacity="0.75">'
            f"<title>{_e(tip)}</title></rect>"
        )
        # the gap between observed and predicted, as an outline
        top, bottom = max(obs, mean_p), min(obs, mean_p)
        out.append(
            f'<rect x="{bx:.1f}" y="{y0 + h - top * h:.1f}" width="{bw:.1f}" '
            f'height="{(top - bottom) * h:.1f}" fill="#e45756" fill-opacity="0.25" '
            'stroke="#e45756" stroke-width="1"/>'
        )
        out.append(
            f'<circle cx="{x0 + mean_p * w:.1f}" cy="{y0 + h - obs * h:.1f}" r="3" fill="#222"/>'
        )
    # histogram of counts
    out.append(
        f'<rect x="{x0}" y="{hist_y0}" width="{w}" height="{hist_h}" fill="#fff" stroke="#444"/>'
    )
    for b in range(len(counts)):
        if not counts[b] or not max_count:
            continue
        left, right = edges[b], edges[b + 1]
        bh = hist_h * counts[b] / max_count
        out.append(
            f'<rect x="{x0 + left * w + 1:.1f}" y="{hist_y0 + hist_h - bh:.1f}" '
            f'width="{(right - left) * w - 2:.1f}" height="{bh:.1f}" fill="#9d9d9d">'
            f"<title>{counts[b]} predictions</title></rect>"
        )
        if (right - left) * w >= 18:  # the count above its bar, where there is room
            out.append(
                f'<text x="{x0 + (left + right) / 2 * w:.1f}" y="{hist_y0 + hist_h - bh - 3:.1f}" '
                f'font-size="9" fill="#555" text-anchor="middle">{_compact(counts[b])}</text>'
            )
    out.append(
        f'<text x="{x0 - 8}" y="{hist_y0 + 10}" font-size="11" text-anchor="end">{max_count}</text>'
    )
    out.append(
        f'<text x="{x0 - 8}" y="{hist_y0 + hist_h}" font-size="11" text-anchor="end">0</text>'
    )
    out.append(
        f'<text x="{x0 + w / 2}" y="{hist_y0 + hist_h + 18}" font-size="12" '
        'text-anchor="middle">Predictions per bin</text>'
    )
    lx = x0 + w + 18
    out.append(
        f'<rect x="{lx}" y="{y0 + 4}" width="16" height="12" fill="#4c78a8" fill-opacity="0.75"/>'
    )
    out.append(f'<text x="{lx + 22}" y="{y0 + 14}" font-size="11">observed frequency</text>')
    out.append(
        f'<rect x="{lx}" y="{y0 + 24}" width="16" height="12" fill="#e45756" fill-opacity="0.25" '
        'stroke="#e45756"/>'
    )
    out.append(f'<text x="{lx + 22}" y="{y0 + 34}" font-size="11">gap to predicted</text>')
    out.append(f'<circle cx="{lx + 8}" cy="{y0 + 50}" r="3" fill="#222"/>')
    out.append(f'<text x="{lx + 22}" y="{y0 + 54}" font-size="11">mean predicted</text>')
    out.append(f'<text x="{lx}" y="{y0 + 80}" font-size="12">ECE = {_fmt(ece)}</text>')
    out.append("</svg>")
    return "".join(out)


def _blues(share: float) -> str:
    """White → dark blue for a share in [0, 1]."""
    share = min(max(share, 0.0), 1.0)
    lo, hi = np.array([247, 251, 255]), np.array([8, 48, 107])
    r, g, b = (lo + (hi - lo) * share).round().astype(int)
    return f"rgb({r},{g},{b})"


def _confusion_svg(cm: np.ndarray, labels: Sequence[str]) -> str:
    c = cm.shape[0]
    cell = 44 if c <= 6 else 28 if c <= 15 else 15
    fs = 11 if c <= 15 else 9
    names = [_short(str(n), 22) for n in labels]
    longest = max(_text_width(n, fs) for n in names)
    left = int(34 + longest)  # room for the row labels and the axis title
    top = int(14 + longest * 0.87)  # room for the column labels, rotated by 60 degrees
    width = int(left + c * cell + 20 + longest * 0.5)
    height = int(top + c * cell + 40)
    row_sums = cm.sum(axis=1)
    show_counts = c <= 15
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Confusion matrix">'
    ]
    for i in range(c):
        for j in range(c):
            share = cm[i, j] / row_sums[i] if row_sums[i] else 0.0
            x, y = left + j * cell, top + i * cell
            tip = f"true {labels[i]} → predicted {labels[j]}: {cm[i, j]} ({share:.0%} of row)"
            out.append(
                f'<rect class="cm" x="{x}" y="{y}" width="{cell}" height="{cell}" '
                f'fill="{_blues(share)}" stroke="#fff"><title>{_e(tip)}</title></rect>'
            )
            if show_counts and cm[i, j]:
                color = "#fff" if share > 0.5 else "#222"
                out.append(
                    f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" font-size="{fs}" '
                    f'text-anchor="middle" fill="{color}">{cm[i, j]}</text>'
                )
    for i, name in enumerate(names):
        y = top + i * cell + cell / 2 + 4
        out.append(
            f'<text x="{left - 6}" y="{y}" font-size="{fs}" text-anchor="end">{_e(name)}</text>'
        )
        x = left + i * cell + cell / 2 + 4
        out.append(
            f'<text x="{x}" y="{top - 6}" font-size="{fs}" text-anchor="start" '
            f'transform="rotate(-60 {x} {top - 6})">{_e(name)}</text>'
        )
    out.append(
        f'<text x="{left + c * cell / 2}" y="{top + c * cell + 24}" font-size="12" '
        'text-anchor="middle">Predicted class</text>'
    )
    mid = top + c * cell / 2
    out.append(
        f'<text x="14" y="{mid}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {mid})">True class</text>'
    )
    out.append("</svg>")
    return '<div class="scroll">' + "".join(out) + "</div>"


def _binary_confusion_table(cm: np.ndarray, positive: str) -> str:
    (tn, fp), (fn, tp) = cm
    return (
        '<table class="confusion"><tr><th></th><th>Predicted negative</th>'
        f"<th>Predicted {_e(positive)}</th></tr>"
        f'<tr><th class="name">True negative class</th><td>{tn}</td><td>{fp}</td></tr>'
        f'<tr><th class="name">True {_e(positive)}</th><td>{fn}</td><td>{tp}</td></tr></table>'
    )
