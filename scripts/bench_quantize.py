"""Benchmark: ``--quantize`` (dynamic int8 LSTM/GRU/Linear) — speed-up and macro-F1 change.

On CHIP-CTC (``../shared/data/chip_ctc/train.jsonl``; its test split is unlabelled), a fixed
seeded split of the labelled training file: ``--train`` rows to train a BiGRU with
``ehrtext train`` (which carves its own 10 % for early stopping / calibration) and ``--val``
other rows as the validation set measured here. Nothing is tuned on these validation rows.

Measured in the same process, alternating fp32 and int8 ``--repeat`` times: notes/s of
``RiskModel.predict_proba`` on the validation notes (tokenize + encode + forward; one torch
thread) and of the bare forward on pre-encoded batches; macro-F1 / accuracy of both models,
and the largest probability difference. Prints the medians and ratios and writes JSON.

    python scripts/bench_quantize.py                       # trains once (~5 min), then ~2 min
    python scripts/bench_quantize.py --model DIR           # an existing CHIP-CTC model

The machine may be shared with other jobs: the JSON keeps every run next to the medians.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench_out"


def split_rows(n_train: int, n_val: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    from shared_corpus import shared_data

    with open(shared_data() / "chip_ctc" / "train.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    rng = random.Random(seed)
    rng.shuffle(rows)
    return rows[:n_train], rows[n_train : n_train + n_val]


def ensure_model(model: str | None, train_rows: list[dict], epochs: int) -> Path:
    if model:
        return Path(model)
    out = OUT / "quantize_model"
    if (out / "ehrtext.json").exists():
        return out
    from ehrtext.train_cli import TrainOptions, train_model

    OUT.mkdir(exist_ok=True)
    data = OUT / "quantize_train.jsonl"
    with open(data, "w", encoding="utf-8") as fh:
        for r in train_rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"training a BiGRU on {len(train_rows)} CHIP-CTC rows ({epochs} epochs) -> {out}")
    train_model(
        TrainOptions(
            data=str(data),
            label_field="label",
            id_field="id",
            model="bigru",
            epochs=epochs,
            max_len=128,
            val_fraction=0.1,
            n_bootstrap=0,
            progress=False,
            seed=0,
            num_threads=1,
            output=str(out),
        )
    )
    return out


def macro_f1(y_true: list[str], y_pred: list[str]) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="an existing CHIP-CTC model directory")
    ap.add_argument("--train", type=int, default=8000)
    ap.add_argument("--val", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=str(OUT / "bench_quantize.json"))
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from ehrtext.data import collate
    from ehrtext.predict import RiskModel
    from ehrtext.scoring import quantize_scorer

    train_rows, val_rows = split_rows(args.train, args.val)
    model_dir = ensure_model(args.model, train_rows, args.epochs)
    texts = [r["text"] for r in val_rows]
    gold = [r["label"] for r in val_rows]

    fp32 = RiskModel.load(model_dir)
    int8 = RiskModel.load(model_dir)
    if not quantize_scorer(int8):
        raise SystemExit("this model has no torch module to quantize")

    ids = fp32.scorer.encoder.encode(texts)
    order = np.argsort([len(x) for x in ids], kind="stable")
    batches = [
        collate([{"input_ids": ids[i]} for i in order[s : s + 64]])
        for s in range(0, len(order), 64)
    ]

    def forward(m: RiskModel) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for b in batches:
                m.scorer.model(b["input_ids"], b["lengths"])
        return len(texts) / (time.perf_counter() - t0)

    def e2e(m: RiskModel) -> float:
        t0 = time.perf_counter()
        m.predict_proba(texts)
        return len(texts) / (time.perf_counter() - t0)

    e2e(fp32), e2e(int8)  # warm-up (dictionaries, allocator)
    runs: dict[str, list[float]] = {k: [] for k in ("fwd_fp32", "fwd_int8", "e2e_fp32", "e2e_int8")}
    for _ in range(args.repeat):
        runs["fwd_fp32"].append(forward(fp32))
        runs["fwd_int8"].append(forward(int8))
        runs["e2e_fp32"].append(e2e(fp32))
        runs["e2e_int8"].append(e2e(int8))
    med = {k: statistics.median(v) for k, v in runs.items()}

    p32, p8 = fp32.predict_proba(texts), int8.predict_proba(texts)
    labels = fp32.labels
    pred32 = [labels[i] for i in p32.argmax(1)]
    pred8 = [labels[i] for i in p8.argmax(1)]
    f32, f8 = macro_f1(gold, pred32), macro_f1(gold, pred8)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, shared with other jobs",
        "model": str(model_dir),
        "train_rows": len(train_rows),
        "val_rows": len(val_rows),
        "torch_threads": 1,
        "runs_notes_per_s": runs,
        "median_notes_per_s": med,
        "speedup_forward": med["fwd_int8"] / med["fwd_fp32"],
        "speedup_end_to_end": med["e2e_int8"] / med["e2e_fp32"],
        "macro_f1_fp32": f32,
        "macro_f1_int8": f8,
        "macro_f1_change_points": 100 * (f8 - f32),
        "accuracy_fp32": float(np.mean(np.array(pred32) == np.array(gold))),
        "accuracy_int8": float(np.mean(np.array(pred8) == np.array(gold))),
        "same_prediction": float(np.mean(np.array(pred32) == np.array(pred8))),
        "max_abs_prob_diff": float(np.abs(p32 - p8).max()),
        "model_bytes": sum(p.stat().st_size for p in Path(model_dir).iterdir()),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "runs_notes_per_s"}, indent=1))
    print(
        f"int8 vs fp32: forward {result['speedup_forward']:.2f}x, end-to-end "
        f"{result['speedup_end_to_end']:.2f}x; macro-F1 {100 * f32:.2f} -> {100 * f8:.2f} "
        f"({result['macro_f1_change_points']:+.2f} points)"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
