"""Write an evaluation report and an explanation page from a real model on real notes.

A quick TF-IDF (character 1-3-grams) + logistic regression is trained on a training split carved
from a shared dataset; thresholds and the temperature are fitted on a validation split; the
report is computed on a held-out test split that nothing was tuned on.

    .venv/bin/python scripts/example_report.py chip_ctc --out out/report_chip_ctc
    .venv/bin/python scripts/example_report.py dxy_symptoms --out out/report_dxy_symptoms
    .venv/bin/python scripts/example_report.py dxy_binary --out out/report_dxy_binary

Each run writes OUT/metrics.json, OUT/report.html and OUT/explanation.html (one test note,
characters weighted by the model's character-unigram coefficients for the predicted label).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from ehrtext import metrics as M
from ehrtext.explain_html import render_explanation
from ehrtext.report import write_report

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load(name: str):
    """(texts, y, task, labels) for one of the example tasks."""
    if name == "chip_ctc":
        rows = [
            json.loads(line) for line in open(DATA / "chip_ctc" / "train.jsonl", encoding="utf-8")
        ]
        texts = [r["text"].strip() for r in rows]
        labels = sorted({r["label"] for r in rows})
        index = {lab: i for i, lab in enumerate(labels)}
        return texts, np.array([index[r["label"]] for r in rows]), "multiclass", labels
    rows = [
        json.loads(line) for line in open(DATA / "dxy_selfreport" / "train.jsonl", encoding="utf-8")
    ]
    texts = [r["self_report"] for r in rows]
    if name == "dxy_binary":
        return (
            texts,
            np.array([int(r["disease"] == "肺炎") for r in rows]),
            "binary",
            ["其他", "肺炎"],
        )
    if name == "dxy_symptoms":  # which symptoms the consultation records (multi-label)
        counts: dict[str, int] = {}
        for r in rows:
            for s in r["explicit_symptoms"]:
                counts[s] = counts.get(s, 0) + 1
        labels = sorted(s for s, c in counts.items() if c >= 20)
        y = np.array([[int(s in r["explicit_symptoms"]) for s in labels] for r in rows])
        return texts, y, "multilabel", labels
    raise SystemExit(f"unknown dataset {name!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dataset", choices=["chip_ctc", "dxy_symptoms", "dxy_binary"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    texts, y, task, labels = load(args.dataset)
    idx = np.arange(len(texts))
    strat = y if task != "multilabel" else None
    idx_train, idx_rest = train_test_split(
        idx, test_size=0.3, random_state=args.seed, stratify=strat
    )
    strat_rest = y[idx_rest] if task != "multilabel" else None
    idx_val, idx_test = train_test_split(
        idx_rest, test_size=0.5, random_state=args.seed, stratify=strat_rest
    )

    t0 = time.perf_counter()
    vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, sublinear_tf=True)
    x_train = vec.fit_transform([texts[i] for i in idx_train])
    x_val = vec.transform([texts[i] for i in idx_val])
    x_test = vec.transform([texts[i] for i in idx_test])
    if task == "multilabel":
        models = [
            LogisticRegression(C=10, max_iter=2000).fit(x_train, y[idx_train, j])
            for j in range(y.shape[1])
        ]
        val_p = np.column_stack([m.predict_proba(x_val)[:, 1] for m in models])
        test_p = np.column_stack([m.predict_proba(x_test)[:, 1] for m in models])
        coefs = np.stack([m.coef_[0] for m in models])
    else:
        model = LogisticRegression(C=10, max_iter=2000).fit(x_train, y[idx_train])
        val_p, test_p = model.predict_proba(x_val), model.predict_proba(x_test)
        coefs = model.coef_ if task == "multiclass" else model.coef_[[0]]
        if task == "binary":
            val_p, test_p = val_p[:, 1], test_p[:, 1]
    print(f"trained in {time.perf_counter() - t0:.1f} s on {len(idx_train)} notes", file=sys.stderr)

    # calibration and thresholds: validation split only
    temperature = M.fit_temperature(M.probs_to_logits(val_p, task), y[idx_val], task)
    test_cal = M.apply_temperature(M.probs_to_logits(test_p, task), temperature, task)
    val_cal = M.apply_temperature(M.probs_to_logits(val_p, task), temperature, task)
    thresholds = M.tune_thresholds(y[idx_val], val_cal, task)
    ece_before = M.expected_calibration_error(y[idx_test], test_p)
    ece_after = M.expected_calibration_error(y[idx_test], test_cal)
    print(
        f"temperature {temperature:.3f}; test ECE {ece_before:.4f} -> {ece_after:.4f}",
        file=sys.stderr,
    )

    t0 = time.perf_counter()
    result = write_report(
        args.out,
        y_true=y[idx_test],
        probs=test_cal,
        task=task,
        labels=labels,
        thresholds=thresholds,
        title=f"TF-IDF + logistic regression on {args.dataset} (held-out test split)",
        extra={
            "dataset": args.dataset,
            "split": f"train {len(idx_train)} / validation {len(idx_val)} / test {len(idx_test)}, seed {args.seed}",
            "temperature (fitted on validation)": round(temperature, 4),
            "test ECE before / after temperature": [round(ece_before, 4), round(ece_after, 4)],
        },
        n_bootstrap=args.n_bootstrap,
        seed=args.seed,
    )
    print(f"report in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    # an explanation: characters weighted by the character-unigram coefficient of the label
    vocab = vec.vocabulary_
    i = int(idx_test[np.argmax([len(texts[k]) for k in idx_test[:200]])])
    row = int(np.where(idx_test == i)[0][0])
    probs_row = np.atleast_1d(test_cal[row])
    if task == "multiclass":
        target = int(np.argmax(probs_row))
        prob_table = sorted(zip(labels, probs_row.tolist()), key=lambda r: -r[1])[:5]
    elif task == "binary":
        target = 0
        prob_table = [(labels[1], float(probs_row[0]))]
    else:
        target = int(np.argmax(probs_row))
        prob_table = list(zip(labels, probs_row.tolist()))
    text = texts[i]
    spans = []
    for pos, ch in enumerate(text):
        col = vocab.get(ch.lower())
        if col is not None and coefs[target, col] > 0:
            spans.append((pos, pos + 1, float(coefs[target, col])))
    page = render_explanation(
        text,
        spans,
        title=f"Why {labels[-1] if task == 'binary' else labels[target]}?",
        probabilities=prob_table,
    )
    (Path(args.out) / "explanation.html").write_text(page, encoding="utf-8")
    summary = {k: result["macro"].get(k) for k in ("auroc", "auprc", "f1")}
    summary.update(result["overall"])
    print(json.dumps(summary, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
