"""Accuracy benchmarks of issue 5 §8: the linear baseline and the deep model in the same run.

One command per benchmark (the data stay in ../shared/data, or $EHRTEXT_SHARED_DATA):

    python scripts/bench_accuracy.py --task chip_ctc
    python scripts/bench_accuracy.py --task ccl_main
    python scripts/bench_accuracy.py --task ccl_comorbidity
    python scripts/bench_accuracy.py --task dxy
    python scripts/bench_accuracy.py --task ccl_main+entities     # + the 750 entity records

Models (``--models``, comma-separated): ``linear_svm`` (TF-IDF char 1–3-grams + words,
LinearSVC with calibrated probabilities), ``linear_lr`` (the same features, logistic
regression), ``bigru`` / ``bilstm`` (ehrtext's RNNClassifier through ehrtext.training.Trainer:
rjieba words, vocabulary from the training part only, masked attention pooling, early stopping
on a dev part carved from the training data), ``hbigru`` / ``hbilstm`` (the same, hierarchical:
a word-level BiRNN over windows of ``--chunk-len`` tokens, then a BiRNN over the windows), and
``ensemble`` (the mean of the first linear
model's and the first deep model's probabilities; no weight is tuned).

Protocols (``scripts/tasks.py``): CHIP-CTC — per seed a stratified split of the training
file into train 80 % / dev 10 % / eval 10 % (eval reported); the CCL2025 and DXY sets —
stratified 5-fold CV per seed (out-of-fold predictions pooled, one figure per seed), the deep
model's dev part carved from each training fold. The linear models train on everything that
is not evaluated (train + dev); the deep model trains on train and stops on dev.

Each seed changes the split (and the deep model's initialisation); figures are mean ± sd over
seeds. Writes ``bench_out/accuracy_<task>.json`` and prints a Markdown table.

Knobs for the expensive deep runs: ``--seeds``, ``--epochs``, ``--max-train`` (cap on deep
training rows), ``--max-len`` (tokens per note), ``--embeddings DIR`` (word2vec vectors from
``ehrtext embed train`` / ``scripts/train_embeddings.py``), ``--granularity word+char``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from tasks import BUILDERS, BenchTask, build_task  # noqa: E402

from ehrtext.data import (  # noqa: E402
    LengthBucketSampler,
    TaskSpec,
    Vocab,
    kfold_indices,
    split_dataset,
    tokenize_dataset,
)

LINEAR = ("linear_svm", "linear_lr")
DEEP = ("bigru", "bilstm", "hbigru", "hbilstm")


# ---- metrics ---------------------------------------------------------------------------------


def evaluate(task: str, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Headline metrics. Multi-class: accuracy and macro-F1 over the classes present in ``y``.
    Multi-label: macro / micro AUROC and macro AUPRC over labels with both classes in ``y``."""
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        f1_score,
        roc_auc_score,
    )

    if task == "multiclass":
        pred = p.argmax(axis=1)
        present = sorted(set(y.tolist()))
        return {
            "accuracy": float(accuracy_score(y, pred)),
            "macro_f1": float(f1_score(y, pred, labels=present, average="macro",
                                       zero_division=0)),
        }
    if task == "binary":
        return {"auroc": float(roc_auc_score(y, p)),
                "auprc": float(average_precision_score(y, p))}
    ok = [j for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
    return {
        "macro_auroc": float(np.mean([roc_auc_score(y[:, j], p[:, j]) for j in ok])),
        "macro_auprc": float(np.mean([average_precision_score(y[:, j], p[:, j]) for j in ok])),
        "micro_auroc": float(roc_auc_score(y[:, ok].ravel(), p[:, ok].ravel())),
        "n_labels": len(ok),
    }


# ---- models ----------------------------------------------------------------------------------


def _texts(spec: TaskSpec, rows: list[dict[str, Any]]) -> list[str]:
    return [spec.join_text(r, row=i) for i, r in enumerate(rows)]


def _targets(spec: TaskSpec, rows: list[dict[str, Any]]) -> np.ndarray:
    return np.asarray([spec.target(r, row=i) for i, r in enumerate(rows)])


def run_linear(kind: str, spec: TaskSpec, train: list[dict], evaluate_rows: list[dict],
               seed: int) -> tuple[np.ndarray, dict[str, float]]:
    from ehrtext.models.linear import TfidfLinearModel

    model = TfidfLinearModel(classifier="svm" if kind == "linear_svm" else "logreg", seed=seed)
    t0 = time.perf_counter()
    model.fit(_texts(spec, train), _targets(spec, train), spec.task, spec.labels)
    fit_s = time.perf_counter() - t0
    texts = _texts(spec, evaluate_rows)
    t0 = time.perf_counter()
    probs = model.predict_proba(texts)
    pred_s = time.perf_counter() - t0
    return probs, {"fit_seconds": fit_s, "predict_notes_per_second": len(texts) / pred_s,
                   "n_features": int(model.coef_.shape[1])}


def _dataset(spec: TaskSpec, rows: list[dict]):
    import datasets

    cols = spec.columns
    return datasets.Dataset.from_list([{c: r.get(c) for c in cols} for r in rows])


def run_deep(kind: str, spec: TaskSpec, train: list[dict], dev: list[dict],
             evaluate_rows: list[dict], seed: int, args: argparse.Namespace,
             vectors: Any) -> tuple[np.ndarray, dict[str, Any]]:
    import torch

    from ehrtext.models.rnn import RNNClassifier
    from ehrtext.training import BatchLoader, TrainConfig, Trainer, predict_logits

    torch.set_num_threads(args.threads)
    if args.max_train and len(train) > args.max_train:
        rng = np.random.default_rng(seed)
        train = [train[i] for i in sorted(rng.choice(len(train), args.max_train, replace=False))]
    parts = {}
    t0 = time.perf_counter()
    for name, rows in (("train", train), ("dev", dev), ("eval", evaluate_rows)):
        parts[name] = tokenize_dataset(_dataset(spec, rows), spec, granularity=args.granularity,
                                       max_tokens=args.max_len)
    tokenize_s = time.perf_counter() - t0
    vocab = Vocab.build(parts["train"]["tokens"], min_freq=args.min_freq)

    def examples(ds):
        return [{"input_ids": vocab.encode(t), "target": y}
                for t, y in zip(ds["tokens"], ds["target"])]

    ex = {name: examples(ds) for name, ds in parts.items()}
    pretrained, coverage = None, None
    if vectors is not None:
        from ehrtext.embeddings import build_embedding_matrix

        pretrained, cov = build_embedding_matrix(vocab.itos, vectors, seed=seed, as_tensor=False)
        coverage = round(cov.in_vocab_rate, 4) if hasattr(cov, "in_vocab_rate") else None
    model = RNNClassifier(
        len(vocab), len(spec.labels) if spec.task != "binary" else 1, spec.task,
        embedding_dim=args.embedding_dim, hidden_size=args.hidden,
        rnn="gru" if "gru" in kind else "lstm", dropout=args.dropout, pooling=args.pooling,
        pretrained=pretrained, freeze_embeddings=False,
        chunk_len=args.chunk_len if kind.startswith("h") else 0,
    )
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         patience=args.patience, seed=seed, num_threads=args.threads,
                         class_weight=args.class_weight, progress=False)
    torch.manual_seed(seed)
    lengths = {name: [len(e["input_ids"]) or 1 for e in ex[name]] for name in ex}
    train_loader = BatchLoader(ex["train"], LengthBucketSampler(lengths["train"],
                               args.batch_size, shuffle=True, seed=seed), task=spec.task)
    dev_loader = BatchLoader(ex["dev"], LengthBucketSampler(lengths["dev"], 128,
                             shuffle=False), task=spec.task)
    eval_loader = BatchLoader(ex["eval"], LengthBucketSampler(lengths["eval"], 128,
                              shuffle=False), task=spec.task)
    t0 = time.perf_counter()
    result = Trainer(model, spec.task, config).fit(train_loader, dev_loader)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    logits, _ = predict_logits(model, eval_loader)
    pred_s = time.perf_counter() - t0
    if spec.task == "multiclass":
        z = logits - logits.max(axis=1, keepdims=True)
        probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    else:
        probs = 1.0 / (1.0 + np.exp(-logits))
        if spec.task == "binary":
            probs = probs.reshape(-1)
    epoch_s = [h["seconds"] for h in result.history]
    return probs, {
        "tokenize_seconds": tokenize_s, "train_seconds": train_s,
        "epochs_run": len(result.history), "best_epoch": result.best_epoch,
        "dev_metric": result.best_metric, "median_epoch_seconds": float(np.median(epoch_s)),
        "train_notes_per_second": len(ex["train"]) / float(np.median(epoch_s)),
        "predict_notes_per_second": len(ex["eval"]) / pred_s,
        "vocab_size": len(vocab), "train_rows": len(ex["train"]), "embedding_coverage": coverage,
    }


# ---- protocol --------------------------------------------------------------------------------


def splits_for(task: BenchTask, seed: int) -> list[tuple[list[int], list[int], list[int]]]:
    """(train, dev, eval) row indices: one triple (holdout) or one per fold (cv)."""
    ds = _dataset(task.spec, task.rows).add_column("_i", list(range(len(task.rows))))
    spec = task.spec
    if task.protocol == "holdout":
        parts = split_dataset(ds, spec, val_fraction=0.1, test_fraction=0.1, seed=seed)
        return [(parts["train"]["_i"], parts["validation"]["_i"], parts["test"]["_i"])]
    out = []
    for train_idx, eval_idx in kfold_indices(ds, spec, k=task.folds, seed=seed):
        inner = split_dataset(ds.select(train_idx), spec, val_fraction=0.15, seed=seed)
        out.append((inner["train"]["_i"], inner["validation"]["_i"], eval_idx))
    return out


def run_seed(task: BenchTask, seed: int, models: list[str], args: argparse.Namespace,
             vectors: Any) -> dict[str, Any]:
    spec = task.spec
    n = len(task.rows)
    probs: dict[str, np.ndarray] = {}
    info: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    y_all = _targets(spec, task.rows)
    covered = np.zeros(n, dtype=bool)
    for fold, (tr, dev, ev) in enumerate(splits_for(task, seed)):
        train_rows = [task.rows[i] for i in tr]
        dev_rows = [task.rows[i] for i in dev]
        eval_rows = [task.rows[i] for i in ev]
        covered[ev] = True
        fold_probs: dict[str, np.ndarray] = {}
        for m in models:
            if m in LINEAR:
                p, meta = run_linear(m, spec, train_rows + dev_rows + task.extra_train,
                                     eval_rows, seed)
            elif m in DEEP:
                p, meta = run_deep(m, spec, train_rows + task.extra_train, dev_rows,
                                   eval_rows, seed, args, vectors)
            else:
                continue
            fold_probs[m] = p
            meta["fold"] = fold
            info[m].append(meta)
            print(f"  seed {seed} fold {fold} {m}: "
                  + json.dumps(evaluate(spec.task, y_all[ev], p)), flush=True)
        if "ensemble" in models:
            lin = next((m for m in models if m in LINEAR), None)
            deep = next((m for m in models if m in DEEP), None)
            if lin and deep:
                fold_probs["ensemble"] = (fold_probs[lin] + fold_probs[deep]) / 2
        for m, p in fold_probs.items():
            if m not in probs:
                probs[m] = np.zeros((n,) + p.shape[1:], dtype=np.float64)
            probs[m][ev] = p
    out = {}
    for m, p in probs.items():
        out[m] = {"metrics": evaluate(spec.task, y_all[covered], p[covered]),
                  "runs": info.get(m, [])}
    return out


def summarise(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for m in per_seed[0]:
        keys = [k for k, v in per_seed[0][m]["metrics"].items() if isinstance(v, float)]
        summary[m] = {}
        for k in keys:
            vals = np.array([s[m]["metrics"][k] for s in per_seed])
            summary[m][k] = {"mean": float(vals.mean()),
                             "sd": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                             "values": vals.round(4).tolist()}
    return summary


def print_table(name: str, summary: dict[str, Any]) -> None:
    """The Markdown table of ``summary`` (mean ± sd; AUROC/AUPRC as fractions, others in %)."""
    keys = sorted({k for m in summary for k in summary[m]})
    print(f"\n| {name} | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for m in summary:
        cells = []
        for k in keys:
            s = summary[m].get(k)
            scale = 1 if k.endswith("auroc") or k.endswith("auprc") else 100
            cells.append("–" if s is None else (
                f"{s['mean'] * scale:.3f} ± {s['sd'] * scale:.3f}" if scale == 1
                else f"{s['mean'] * scale:.1f} ± {s['sd'] * scale:.1f}"))
        print(f"| {m} | " + " | ".join(cells) + " |")


def merge(paths: list[str], out: str | None) -> int:
    """Pools single-seed runs (``--first-seed k --seeds 1``, one JSON each) into one summary,
    so a long benchmark can run seed by seed and be reported with the seeds that finished."""
    runs = [json.loads(Path(p).read_text("utf-8")) for p in paths]
    first = runs[0]
    for r in runs[1:]:
        if r["task"] != first["task"]:
            raise SystemExit(f"cannot merge {r['task']} with {first['task']}")
    # models run in every file (a seed may have run an extra model, e.g. hbigru)
    common = [m for m in first["models"] if all(m in r["models"] for r in runs)]
    dropped = sorted({m for r in runs for m in r["models"]} - set(common))
    if dropped:
        print(f"models not in every file, left out of the pooled summary: {dropped}")
    per_seed = [{m: s[m] for m in common if m in s} for r in runs for s in r["per_seed"]]
    seeds = [k for r in runs for k in r["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"a seed appears twice: {seeds}")
    summary = summarise(per_seed)
    report = {k: v for k, v in first.items() if k not in ("summary", "per_seed", "seeds")}
    report.update({"models": common, "seeds": seeds, "commands": [r["command"] for r in runs],
                   "seconds": sum(r["seconds"] for r in runs), "merged_from": paths,
                   "summary": summary, "per_seed": per_seed})
    target = Path(out) if out else REPO / "bench_out" / f"accuracy_{first['task']}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, ensure_ascii=False, indent=1, default=float), "utf-8")
    print_table(first["task"], summary)
    print(f"\n{len(per_seed)} seeds {seeds}, {report['seconds']:.0f} s; JSON: {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=sorted(BUILDERS))
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="pool single-seed result files into one summary (writes --out)")
    ap.add_argument("--models", default="linear_svm,linear_lr",
                    help="comma-separated: linear_svm, linear_lr, bigru, bilstm, ensemble")
    ap.add_argument("--seeds", type=int, default=5, help="number of seeds (0..n-1)")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--embedding-dim", type=int, default=200)
    ap.add_argument("--dropout", type=float, default=0.3)
    ap.add_argument("--pooling", default="attention+max")
    ap.add_argument("--chunk-len", type=int, default=64,
                    help="window size (tokens) of the hierarchical hbigru / hbilstm")
    ap.add_argument("--max-len", type=int, default=None, help="tokens kept per note")
    ap.add_argument("--max-train", type=int, default=None, help="cap on deep training rows")
    ap.add_argument("--min-freq", type=int, default=2)
    ap.add_argument("--class-weight", default=None, choices=["balanced"],
                    help="deep models: class weights (multi-class) / pos_weight (multi-label)")
    ap.add_argument("--granularity", default="word", choices=["word", "char", "word+char"])
    ap.add_argument("--embeddings", default=None, help="word2vec vectors directory")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None,
                    help="JSON output (default bench_out/accuracy_<task>[_tag].json)")
    ap.add_argument("--tag", default="", help="suffix of the default output name")
    args = ap.parse_args(argv)
    if args.merge:
        return merge(args.merge, args.out)
    if not args.task:
        ap.error("--task is required (or --merge)")

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(models) - set(LINEAR) - set(DEEP) - {"ensemble"}
    if unknown:
        ap.error(f"unknown models {sorted(unknown)}")
    task = build_task(args.task)
    vectors = None
    if args.embeddings and any(m in DEEP for m in models):
        from ehrtext.embeddings import load_vectors

        vectors = load_vectors(args.embeddings)
    print(f"# {task.name}: {len(task.rows)} rows, {len(task.spec.labels)} labels, "
          f"protocol {task.protocol}, models {models}, seeds {args.seeds}", flush=True)
    for note in task.notes:
        print(f"#   {note}")
    per_seed = []
    t0 = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        per_seed.append(run_seed(task, seed, models, args, vectors))
    total_s = time.perf_counter() - t0
    summary = summarise(per_seed)
    cmd = "python scripts/bench_accuracy.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report = {
        "task": task.name, "rows": len(task.rows), "labels": task.spec.labels,
        "protocol": task.protocol, "folds": task.folds if task.protocol == "cv" else None,
        "primary": task.primary, "notes": task.notes, "models": models,
        "seeds": list(range(args.first_seed, args.first_seed + args.seeds)),
        "settings": vars(args), "command": cmd, "seconds": total_s,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "summary": summary, "per_seed": per_seed,
    }
    out = Path(args.out) if args.out else (
        REPO / "bench_out" / f"accuracy_{task.name}{('_' + args.tag) if args.tag else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=1, default=float), "utf-8")
    print_table(task.name, summary)
    print(f"\n{len(per_seed)} seeds, {total_s:.0f} s; JSON: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
