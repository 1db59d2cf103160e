"""Multimodal evidence: text-only / image-only / fusion, cross-validated, plus a constructed task.

1. ``../shared/data/multimodal_covid_cxr`` (April 2020 copy of the COVID-19 image data
   collection: English clinical notes + chest X-rays/CT slices, 158 rows, 85 patients).
   Binary label: finding == COVID-19 (133) against everything else (25) — small and heavily
   imbalanced. 5-fold cross-validation grouped by patient and stratified (every image of a
   patient in one fold); each fold trains text-only, image-only, tabular-only (age, sex),
   text + image and text + image + tabular models (the same ``MultimodalModel`` restricted to
   some modalities), and a TF-IDF + logistic-regression text baseline. The notes often NAME the
   finding ("SARS in a 74-year-old man", "COVID-19 pneumonia"), so the text is also run with
   the finding names masked (``--mask-findings``, the default adds this variant).
2. A CONSTRUCTED controlled task (synthetic, documented as such): each record has a Chinese
   note mentioning 咳嗽 or 头痛 among filler, and a 16-px image with or without a bright
   square; the label is their exclusive or, so each modality alone is at chance and only the
   fusion can decide it. Fresh test records, several seeds.

Out-of-fold probabilities are pooled over the folds for AUROC / AUPRC; the per-fold AUROCs
give the spread. Nothing is tuned on the held-out folds (thresholds are not used: AUROC and
AUPRC are threshold-free). Writes JSON to ``--out``.

    nice -n 5 .venv/bin/python scripts/bench_multimodal.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("EHRTEXT_SHARED_DATA", REPO.parent / "shared" / "data"))
FINDINGS = re.compile(
    r"covid[- ]?19|covid|sars[- ]?cov[- ]?2|sars|coronavirus|ncov|ards|streptococc\w*|"
    r"pneumocystis|pcp|mers",
    re.IGNORECASE,
)


def covid_records(mask: bool) -> list[dict]:
    import pandas as pd

    folder = DATA / "multimodal_covid_cxr"
    df = pd.read_csv(folder / "metadata.csv", dtype=str, keep_default_na=False)
    out = []
    for i, r in df.iterrows():
        note = r["clinical notes"].strip() or None
        if note and mask:
            note = FINDINGS.sub("[finding]", note)
        out.append(
            {
                "id": f"r{i}",
                "patient": r["Patientid"],
                "note": note,
                "image": str(folder / "images" / r["filename"]),
                "age": r["age"] or None,
                "sex": r["sex"] or None,
                "label": "covid" if r["finding"] == "COVID-19" else "other",
            }
        )
    return out


def auc_pr(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    return float(roc_auc_score(y, p)), float(average_precision_score(y, p))


def tfidf_baseline(train: list[dict], test: list[dict]) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    xt = vec.fit_transform([r["note"] or "" for r in train])
    clf = LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced")
    clf.fit(xt, [r["label"] == "covid" for r in train])
    return clf.predict_proba(vec.transform([r["note"] or "" for r in test]))[:, 1]


def run_covid(args: argparse.Namespace, mask: bool) -> dict:
    from ehrtext.data import TaskSpec, kfold_indices
    from ehrtext.multimodal import MultimodalConfig, train_multimodal

    records = covid_records(mask)
    spec = TaskSpec(
        ["note"], "binary", label_field="label", labels=["other", "covid"], patient_field="patient"
    )
    folds = kfold_indices(records, spec, k=args.folds, seed=args.seed)
    y = np.array([r["label"] == "covid" for r in records], dtype=int)
    variants = {
        "text (BiGRU)": ["text"],
        "image (CNN)": ["image"],
        "tabular (age, sex)": ["tabular"],
        "text + image": ["text", "image"],
        "text + image + tabular": ["text", "image", "tabular"],
    }
    if mask:  # masking the notes changes nothing for the image and tabular models
        variants = {k: v for k, v in variants.items() if "text" in v}
    base = dict(
        text_fields=["note"],
        image_field="image",
        tabular=["age", "sex"],
        image_size=64,
        widths=[16, 32, 64],
        embedding_dim=48,
        hidden_size=48,
        fusion_dim=48,
        epochs=args.epochs,
        batch_size=16,
        learning_rate=2e-3,
        class_weight=True,
        threads=args.threads,
        seed=args.seed,
        max_len=200,
        fusion=args.fusion,
    )
    oof = {name: np.zeros(len(records)) for name in [*variants, "text (TF-IDF + LR)"]}
    cache: dict = {}  # decoded images, shared by folds and variants
    fold_auc: dict[str, list[float]] = {name: [] for name in oof}
    seconds: dict[str, float] = {name: 0.0 for name in oof}
    for k, (tr, te) in enumerate(folds):
        train = [records[i] for i in tr]
        test = [records[i] for i in te]
        for name, mods in variants.items():
            t0 = time.perf_counter()
            cfg = MultimodalConfig(**base, modalities=mods)
            model = train_multimodal(
                train,
                None,
                label_field="label",
                labels=["other", "covid"],
                id_field="id",
                patient_field="patient",
                config=cfg,
                image_cache=cache,
            )
            seconds[name] += time.perf_counter() - t0
            model.pre.cache = cache
            oof[name][te] = model.predict_proba(test)
        t0 = time.perf_counter()
        oof["text (TF-IDF + LR)"][te] = tfidf_baseline(train, test)
        seconds["text (TF-IDF + LR)"] += time.perf_counter() - t0
        for name in oof:
            if len(set(y[te])) == 2:
                fold_auc[name].append(auc_pr(y[te], oof[name][te])[0])
        print(f"  fold {k + 1}/{len(folds)} done ({len(te)} held-out rows)", flush=True)
    rows = []
    for name in oof:
        auc, ap = auc_pr(y, oof[name])
        rows.append(
            {
                "model": name,
                "oof_auroc": auc,
                "oof_auprc": ap,
                "fold_auroc_mean": float(np.mean(fold_auc[name])),
                "fold_auroc_sd": float(np.std(fold_auc[name])),
                "train_seconds_total": round(seconds[name], 1),
            }
        )
        print(
            f"{'masked' if mask else 'raw':>6} notes | {name:>24}: OOF AUROC {auc:.3f}  "
            f"AUPRC {ap:.3f}  (per fold {np.mean(fold_auc[name]):.3f} ± "
            f"{np.std(fold_auc[name]):.3f})",
            flush=True,
        )
    return {
        "notes": "finding names masked" if mask else "as given",
        "rows": len(records),
        "patients": len({r["patient"] for r in records}),
        "positives": int(y.sum()),
        "with_image_file": int(sum(Path(r["image"]).is_file() for r in records)),
        "with_note": int(sum(r["note"] is not None for r in records)),
        "results": rows,
    }


def run_constructed(args: argparse.Namespace) -> dict:
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from ehrtext.multimodal import MultimodalConfig, train_multimodal
    from tests.imaging.test_multimodal import BASE, write_manifest

    out: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.constructed_seeds):
            root = Path(tmp) / f"s{seed}"
            train_path, _ = write_manifest(root / "train", 400, seed=100 + seed)
            test_path, rows = write_manifest(root / "test", 300, seed=200 + seed)
            y = [r["label"] == "yes" for r in rows]
            test = pd.read_csv(test_path, dtype=str)
            for name, over in {
                "text only": {"modalities": ["text"]},
                "image only": {"modalities": ["image"]},
                "fusion (attention)": {"fusion": "attention"},
                "fusion (gated)": {"fusion": "gated"},
            }.items():
                cfg = MultimodalConfig(**{**BASE, "seed": seed, **over})
                model = train_multimodal(train_path, None, label_field="label", config=cfg)
                model.base = test_path.parent
                out.setdefault(name, []).append(float(roc_auc_score(y, model.predict_proba(test))))
            print(
                f"  constructed seed {seed}: "
                + ", ".join(f"{k} {v[-1]:.3f}" for k, v in out.items()),
                flush=True,
            )
    return {
        "task": "CONSTRUCTED: label = (note mentions 咳嗽) XOR (image has a bright square); "
        "400 training / 300 fresh test records per seed; age column is noise",
        "auroc": {
            k: {"mean": float(np.mean(v)), "min": float(np.min(v)), "runs": v}
            for k, v in out.items()
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--fusion", default="attention")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--constructed-seeds", type=int, default=2)
    ap.add_argument("--skip-covid", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "bench_out" / "bench_multimodal.json")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    result: dict = {
        "command": " ".join(sys.argv),
        "load_avg_start": os.getloadavg()[0],
        "machine": f"{os.cpu_count()} CPUs shared with other jobs",
    }
    if not args.skip_covid:
        result["covid"] = [run_covid(args, mask=False), run_covid(args, mask=True)]
    result["constructed"] = run_constructed(args)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["load_avg_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"wrote {args.out} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
