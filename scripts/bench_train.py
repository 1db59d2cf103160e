"""Training speed: length-bucketed vs random batches (epoch time at equal metrics), and the
epoch time of a BiGRU on the whole CHIP-CTC training file, on this machine.

Data: ``../shared/data/chip_ctc/train.jsonl`` (22,962 eligibility criteria, 44 classes). A
stratified 10% validation split is carved from it (seed 0); nothing else is used, and no test
figure is reported here. The vocabulary comes from the training split only.

1. **Bucketed vs random** on a seeded random subset of the training split (``--train-rows``,
   default 6000): the same BiGRU (emb 200, hidden 128, attention pooling), the same seed and
   settings, trained for ``--epochs`` epochs with a constant learning rate. The two runs are
   *interleaved* epoch by epoch (bucketed epoch 1, random epoch 1, bucketed epoch 2, …, via
   checkpoint/resume), so both see the same machine load. Reported: the median epoch time
   (training loop only), the speed-up, the validation macro-F1 of each after the last epoch,
   and the padded-token ratio (tokens the RNN would see with padding / real tokens), which
   does not depend on the load.
2. **Full epoch**: one bucketed epoch on the whole training split (about 20.7k notes), with the
   default schedule, timed the same way.

3. **Packed vs unpacked training step** (``--packing-only`` runs just this part): one
   forward + backward pass of the same BiGRU over a batch of 32 random 700-token notes of
   lengths 600..700 (CCL-like long notes, little padding), through the packed sequence (what
   inference uses) and through the two plain calls :class:`ehrtext.models.rnn.RNNClassifier`
   uses when training on little-padded batches; alternated, medians of ``--packing-reps``,
   CPU seconds (process time) beside the wall time.

    .venv/bin/python scripts/bench_train.py                      # all parts
    .venv/bin/python scripts/bench_train.py --train-rows 3000 --epochs 2 --no-full   # quick

Writes ``bench_out/bench_train.json``. Timings on a shared 2-core machine are noisy: the
ratio measured in the same interleaved run is the figure to trust.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "chip_ctc" / "train.jsonl"


def padded_tokens(sampler, lengths) -> int:
    total = 0
    for batch in sampler:
        total += max(lengths[i] for i in batch) * len(batch)
    return total


def packing_bench(reps: int) -> dict:
    """Part 3: one training step, packed vs the unpacked two-call path (same model, batch)."""
    import torch

    from ehrtext.models import rnn as rnn_mod

    torch.manual_seed(0)
    model = rnn_mod.RNNClassifier(5000, 5, "multiclass", embedding_dim=200, hidden_size=128)
    ids = torch.randint(2, 5000, (32, 700))
    lengths = torch.randint(600, 701, (32,))
    lengths[0] = 700
    times: dict[str, list[tuple[float, float]]] = {"packed": [], "unpacked": []}
    for _ in range(reps):
        for mode in times:
            model.zero_grad()
            w0, c0 = time.perf_counter(), time.process_time()
            if mode == "packed":  # the packed path, as with more padding or more layers
                emb = model.embedding(ids)
                packed = rnn_mod.pack_padded_sequence(emb, lengths, batch_first=True,
                                                      enforce_sorted=False)
                out, _ = model.rnn(packed)
                states, _ = rnn_mod.pad_packed_sequence(out, batch_first=True, total_length=700)
                mask = rnn_mod.sequence_mask(lengths, 700)
                logits = model.head(model.pool(states, mask)[0])
            else:
                logits = model(ids, lengths)
            logits.sum().backward()
            times[mode].append((time.perf_counter() - w0, time.process_time() - c0))
    out_d: dict = {}
    for mode, ts in times.items():
        out_d[mode] = {"median_wall_s": round(statistics.median(t[0] for t in ts), 3),
                       "median_cpu_s": round(statistics.median(t[1] for t in ts), 3)}
    out_d["speedup_cpu"] = round(out_d["packed"]["median_cpu_s"]
                                 / out_d["unpacked"]["median_cpu_s"], 2)
    out_d["speedup_wall"] = round(out_d["packed"]["median_wall_s"]
                                  / out_d["unpacked"]["median_wall_s"], 2)
    return out_d


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--train-rows", type=int, default=6000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--no-full", action="store_true", help="skip the full-epoch timing")
    ap.add_argument("--packing-only", action="store_true", help="only part 3")
    ap.add_argument("--packing-reps", type=int, default=5)
    ap.add_argument("--out", default=str(REPO / "bench_out" / "bench_train.json"))
    args = ap.parse_args()

    import torch

    from ehrtext.data import LengthBucketSampler
    from ehrtext.models.rnn import RNNClassifier
    from ehrtext.train_cli import TrainOptions, prepare_data
    from ehrtext.training import BatchLoader, RandomBatchSampler, TrainConfig, Trainer

    torch.set_num_threads(args.threads)
    packing = packing_bench(args.packing_reps)
    print(f"training step, 32 x 600-700 tokens: packed {packing['packed']['median_cpu_s']} s "
          f"CPU, unpacked {packing['unpacked']['median_cpu_s']} s CPU -> "
          f"{packing['speedup_cpu']}x", file=sys.stderr)
    if args.packing_only:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"packing": packing}, indent=2), encoding="utf-8")
        return 0
    if not Path(args.data).is_file():
        print(f"missing {args.data}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    opts = TrainOptions(
        data=args.data,
        label_field="label",
        id_field="id",
        task="multiclass",
        val_fraction=0.1,
        seed=0,
        max_len=args.max_len,
        progress=False,
    )
    prepared = prepare_data(opts)
    prep_s = time.perf_counter() - t0
    task, n_labels = prepared.spec.task, len(prepared.spec.labels)
    train_all, val = prepared.train_examples, prepared.val_examples
    print(
        f"prepared {len(train_all)} train / {len(val)} validation rows, vocab "
        f"{len(prepared.vocab)}, {n_labels} labels in {prep_s:.1f} s",
        file=sys.stderr,
    )

    rng = np.random.default_rng(0)
    subset_idx = np.sort(
        rng.choice(len(train_all), size=min(args.train_rows, len(train_all)), replace=False)
    )
    subset = [train_all[i] for i in subset_idx]
    lengths = [max(1, len(e["input_ids"])) for e in subset]
    val_lengths = [max(1, len(e["input_ids"])) for e in val]

    def model():
        torch.manual_seed(0)
        return RNNClassifier(
            len(prepared.vocab),
            n_labels,
            task,
            embedding_dim=200,
            hidden_size=128,
            rnn="gru",
            dropout=0.3,
            pooling="attention",
        )

    def loaders(mode, rows, lens):
        sampler = (
            LengthBucketSampler(lens, args.batch_size, shuffle=True, seed=0)
            if mode == "bucketed"
            else RandomBatchSampler(len(rows), args.batch_size, seed=0)
        )
        val_dl = BatchLoader(val, LengthBucketSampler(val_lengths, 256, shuffle=False), task=task)
        return BatchLoader(rows, sampler, task=task), val_dl

    modes = ("bucketed", "random")
    results = {m: {"epoch_seconds": [], "val_macro_f1": []} for m in modes}
    for m in modes:
        s = (
            LengthBucketSampler(lengths, args.batch_size, shuffle=True, seed=0)
            if m == "bucketed"
            else RandomBatchSampler(len(subset), args.batch_size, seed=0)
        )
        s.set_epoch(1)
        results[m]["padded_tokens"] = padded_tokens(s, lengths)
    real = int(sum(lengths))
    with tempfile.TemporaryDirectory() as tmp:
        for epoch in range(1, args.epochs + 1):
            for m in modes:
                train_dl, val_dl = loaders(m, subset, lengths)
                cfg = TrainConfig(
                    epochs=epoch,
                    batch_size=args.batch_size,
                    lr=args.lr,
                    schedule="constant",
                    patience=0,
                    seed=0,
                    checkpoint_dir=os.path.join(tmp, m),
                    resume=True,
                    progress=False,
                    num_threads=args.threads,
                )
                res = Trainer(model(), task, cfg).fit(train_dl, val_dl)
                last = res.history[-1]
                results[m]["epoch_seconds"].append(round(last["seconds"], 2))
                results[m]["val_macro_f1"].append(round(100 * last["val_metric"], 2))
                print(
                    f"epoch {epoch} {m:8s}: {last['seconds']:.1f} s, val macro-F1 "
                    f"{100 * last['val_metric']:.2f}",
                    file=sys.stderr,
                )
    for m in modes:
        r = results[m]
        r["median_epoch_seconds"] = statistics.median(r["epoch_seconds"])
        r["notes_per_second"] = round(len(subset) / r["median_epoch_seconds"], 1)
        r["padding_overhead"] = round(r["padded_tokens"] / real, 3)
    speedup = (
        results["random"]["median_epoch_seconds"] / results["bucketed"]["median_epoch_seconds"]
    )
    summary = {
        "speedup_bucketed_over_random": round(speedup, 2),
        "padded_token_ratio_random_over_bucketed": round(
            results["random"]["padded_tokens"] / results["bucketed"]["padded_tokens"], 2
        ),
        "final_val_macro_f1": {m: results[m]["val_macro_f1"][-1] for m in modes},
    }
    print(
        f"bucketed vs random: {speedup:.2f}x per epoch (median of {args.epochs}); padded "
        f"tokens {summary['padded_token_ratio_random_over_bucketed']:.2f}x; val macro-F1 "
        f"{summary['final_val_macro_f1']}"
    )

    full = None
    if not args.no_full:
        full_lengths = [max(1, len(e["input_ids"])) for e in train_all]
        train_dl, val_dl = loaders("bucketed", train_all, full_lengths)
        cfg = TrainConfig(
            epochs=1,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=0,
            progress=False,
            num_threads=args.threads,
        )
        res = Trainer(model(), task, cfg).fit(train_dl, val_dl)
        sec = res.history[-1]["seconds"]
        full = {
            "rows": len(train_all),
            "epoch_seconds": round(sec, 1),
            "notes_per_second": round(len(train_all) / sec, 1),
            "val_macro_f1_after_1_epoch": round(100 * res.best_metric, 2),
        }
        print(
            f"full CHIP-CTC epoch (bucketed, {len(train_all)} notes): {sec:.1f} s "
            f"({len(train_all) / sec:.0f} notes/s)"
        )

    out = {
        "data": str(args.data),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "model": "BiGRU emb 200 hidden 128 attention, AdamW, constant lr (part 1)",
        "train_rows_subset": len(subset),
        "validation_rows": len(val),
        "vocab": len(prepared.vocab),
        "prepare_seconds": round(prep_s, 1),
        "results": results,
        "summary": summary,
        "full_epoch": full,
        "packing": packing,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "loadavg_end": os.getloadavg(),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
