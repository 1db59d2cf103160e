"""Bootstrap confidence intervals: ehrtext.metrics against a plain scikit-learn loop, same run.

Both compute the same replicates (the same row counts drawn from one seeded generator): ours
sorts each label's scores once and turns every replicate into weighted cumulative sums; the
baseline calls scikit-learn's roc_auc_score / average_precision_score / f1_score on the resampled
rows, label by label, replicate by replicate. The script checks that the two agree on every
replicate, then prints medians over repeats and the ratio, and writes bench_out/metrics.json.

    .venv/bin/python scripts/bench_metrics.py                 # CHIP-CTC-sized: 2,300 x 44
    .venv/bin/python scripts/bench_metrics.py --rows 500 --labels 10 --replicates 200
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from sklearn import metrics as skm

from ehrtext import metrics as M


def make_data(rows: int, labels: int, seed: int):
    """Multi-class probabilities shaped like a CHIP-CTC validation split (skewed classes)."""
    rng = np.random.default_rng(seed)
    prior = rng.dirichlet(np.full(labels, 0.7))
    y = rng.choice(labels, size=rows, p=prior)
    z = rng.normal(size=(rows, labels))
    z[np.arange(rows), y] += 2.5
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    return y, p


def ours(prep, pred, rankings, counts):
    return M._per_label_weighted(counts, prep, pred, rankings, {"auroc", "auprc", "f1"}, 15)


def baseline(y, p, counts):
    n_rep, labels = counts.shape[0], p.shape[1]
    out = {k: np.full((n_rep, labels), np.nan) for k in ("auroc", "auprc", "f1")}
    pred = p.argmax(1)
    for b in range(n_rep):
        idx = np.repeat(np.arange(len(y)), counts[b].astype(int))
        yb, pb, predb = y[idx], p[idx], pred[idx]
        for j in range(labels):
            yj = (yb == j).astype(int)
            if 0 < yj.sum() < len(yj):
                out["auroc"][b, j] = skm.roc_auc_score(yj, pb[:, j])
            if yj.sum() > 0:
                out["auprc"][b, j] = skm.average_precision_score(yj, pb[:, j])
                out["f1"][b, j] = skm.f1_score(yj, predb == j, zero_division=0)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=2300)
    ap.add_argument("--labels", type=int, default=44)
    ap.add_argument("--replicates", type=int, default=100, help="replicates timed on both sides")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    y, p = make_data(args.rows, args.labels, args.seed)
    prep = M._prepare(y, p, "multiclass", None)
    pred = M._predictions(prep, None)
    rng = np.random.default_rng(args.seed)
    counts = rng.multinomial(args.rows, np.full(args.rows, 1 / args.rows), size=args.replicates)
    counts = counts.astype(np.float64)

    t_ours, t_base = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        rankings = [M._Ranking(prep.y[:, j], prep.p[:, j]) for j in range(args.labels)]
        got = ours(prep, pred, rankings, counts)
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ref = baseline(y, p, counts)
        t_base.append(time.perf_counter() - t0)
    max_diff = {k: float(np.nanmax(np.abs(got[k] - ref[k]))) for k in ("auroc", "auprc", "f1")}
    same_nan = all(bool(np.array_equal(np.isnan(got[k]), np.isnan(ref[k]))) for k in ref)

    # the full public call, 1000 replicates, for the figure users see
    t0 = time.perf_counter()
    M.compute_metrics(y, p, "multiclass", n_bootstrap=1000, seed=args.seed)
    t_full = time.perf_counter() - t0

    med_ours, med_base = statistics.median(t_ours), statistics.median(t_base)
    result = {
        "rows": args.rows,
        "labels": args.labels,
        "replicates": args.replicates,
        "repeats": args.repeats,
        "ours_s": med_ours,
        "sklearn_loop_s": med_base,
        "speedup": med_base / med_ours,
        "max_abs_difference": max_diff,
        "undefined_replicates_agree": same_nan,
        "compute_metrics_1000_bootstrap_s": t_full,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(
        f"{args.rows} rows x {args.labels} labels, {args.replicates} replicates "
        f"(AUROC, AUPRC, F1 per label), median of {args.repeats}:"
    )
    print(f"  ehrtext.metrics   {med_ours:8.3f} s")
    print(f"  sklearn loop      {med_base:8.3f} s")
    print(f"  speed-up          {med_base / med_ours:8.1f}x")
    print(f"  max |difference|  {max_diff}; undefined replicates agree: {same_nan}")
    print(f"  compute_metrics(..., n_bootstrap=1000), every metric: {t_full:.2f} s")
    out = Path("bench_out")
    out.mkdir(exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
