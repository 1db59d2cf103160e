#!/usr/bin/env python
"""Benchmark the scale-out paths against their single-machine baselines, in one run.

1. **Spark vs ``ehrtext score``**: the same N notes (real de-identified EMR texts from CCKS2019
   ``task1_test.json`` when ../shared/data is there, else the shipped sample notes, repeated
   with unique ids) in one Parquet file, scored with the same BiGRU model directory by
   ``ehrtext score --workers 2`` (Parquet out) and by ``scripts/score_spark.py`` in
   ``local[2]`` (Parquet out). Wall time of each command, end to end (process start, model
   loading, JVM start for Spark), alternated ``--repeats`` times; medians and the ratio.
   The outputs are compared (same ids, probabilities within 1e-6).
2. **DDP 2 processes vs 1**: ``python -m ehrtext train`` vs ``torchrun --nproc_per_node=2 -m
   ehrtext train`` on a CHIP-CTC subset (else the sample notes), same options, with the same
   global ``--batch-size`` (each rank half of each batch, same steps) and with it doubled (a
   full batch per rank, half the steps); epoch time is the median of the per-epoch training
   seconds recorded in ``ehrtext.json`` (validation and start-up excluded). Alternated
   ``--ddp-repeats`` times.

The machine this was written on has 2 CPU cores shared with other jobs: the ratio is the
figure to read, and both sides of each ratio run in the same session, alternated.

    python scripts/bench_scale.py --notes 100000 --out benchmarks/bench_scale.json
    python scripts/bench_scale.py --notes 2000 --repeats 1 --ddp-rows 2000   # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EHRTEXT_SHARED_DATA", REPO.parent / "shared" / "data"))
SAMPLES = REPO / "corpora" / "samples" / "notes.jsonl"
PY = sys.executable


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
            "PYSPARK_PYTHON": PY, "PYSPARK_DRIVER_PYTHON": PY}


def _run(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-3000:]}")
    return seconds


def base_texts() -> tuple[list[str], str]:
    path = SHARED / "corpus" / "ccks2019_yidu_emr" / "task1_test.json"
    if path.is_file():
        texts = [json.loads(x)["originalText"] for x in path.read_text("utf-8").splitlines()
                 if x.strip()]
        texts = [t.strip("，, ") for t in texts if t.strip("，, ")]
        return texts, f"CCKS2019 Yidu-S4K task1_test.json ({len(texts)} real de-identified EMR texts)"
    texts = [json.loads(x)["text"] for x in SAMPLES.read_text("utf-8").splitlines()]
    return texts, f"corpora/samples/notes.jsonl ({len(texts)} invented notes)"


def write_notes(path: Path, n: int) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts, source = base_texts()
    ids = [f"n{i:07d}" for i in range(n)]
    notes = [texts[i % len(texts)] for i in range(n)]
    pq.write_table(pa.table({"id": ids, "text": notes}), path, row_group_size=8192)
    return {"notes": n, "source": source,
            "mean_chars": round(sum(len(t) for t in notes) / max(1, n), 1)}


def train_scoring_model(out: Path, hidden: int, max_len: int) -> None:
    """A BiGRU on the shipped samples (its accuracy does not matter here, its size does)."""
    cmd = [PY, "-m", "ehrtext", "train", "--data", str(SAMPLES), "--label-field", "label",
           "--epochs", "1", "--threads", "1", "--no-progress", "--set", "n_bootstrap=0",
           "--set", f"hidden_size={hidden}", "--set", f"embedding_dim={hidden}",
           "--set", f"max_len={max_len}", "--output", str(out)]
    _run(cmd, REPO)


def compare_outputs(a: Path, b: Path) -> dict:
    import numpy as np
    import pyarrow.parquet as pq

    ta = pq.read_table(a).to_pandas().sort_values("id").reset_index(drop=True)
    tb = pq.read_table(b).to_pandas().sort_values("id").reset_index(drop=True)
    probs = [c for c in ta.columns if c.startswith("p_")]
    same_ids = ta["id"].tolist() == tb["id"].tolist()
    diff = float(np.abs(ta[probs].to_numpy() - tb[probs].to_numpy()).max()) if same_ids else None
    return {"same_ids": same_ids, "rows": len(ta), "max_abs_prob_diff": diff,
            "labels_equal": bool(same_ids and (ta["label"] == tb["label"]).all())}


def bench_spark(
    work: Path, n: int, repeats: int, workers: int, hidden: int, max_len: int
) -> dict:
    model = work / "model"
    train_scoring_model(model, hidden, max_len)
    notes = work / "notes.parquet"
    info = write_notes(notes, n)
    times: dict[str, list[float]] = {"ehrtext_score": [], "spark": []}
    for r in range(repeats):
        for kind in ("ehrtext_score", "spark") if r % 2 == 0 else ("spark", "ehrtext_score"):
            if kind == "ehrtext_score":
                out = work / f"score_{r}.parquet"
                cmd = [PY, "-m", "ehrtext", "score", "--model", str(model), "--input",
                       str(notes), "--output", str(out), "--workers", str(workers),
                       "--no-progress"]
            else:
                out = work / f"spark_{r}"
                cmd = [PY, str(REPO / "scripts" / "score_spark.py"), "--model", str(model),
                       "--input", str(notes), "--output", str(out),
                       "--master", f"local[{workers}]"]
            times[kind].append(_run(cmd, work))
            print(f"  {kind} run {r + 1}: {times[kind][-1]:.1f} s", file=sys.stderr)
    check = compare_outputs(work / "score_0.parquet", work / "spark_0")
    med = {k: statistics.median(v) for k, v in times.items()}
    return {**info, "workers": workers, "repeats": repeats, "seconds": times,
            "model": f"BiGRU hidden {hidden}, embedding {hidden}, max_len {max_len}",
            "median_seconds": med,
            "notes_per_second": {k: round(n / v, 1) for k, v in med.items()},
            "ratio_spark_over_ehrtext_score": round(med["spark"] / med["ehrtext_score"], 3),
            "outputs": check}


def ddp_data(work: Path, rows: int) -> tuple[Path, list[str], str]:
    path = SHARED / "chip_ctc" / "train.jsonl"
    if path.is_file():
        lines = path.read_text("utf-8").splitlines()[:rows]
        out = work / "ctc.jsonl"
        out.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return out, ["--label-field", "label"], f"CHIP-CTC train, first {len(lines)} rows"
    return SAMPLES, ["--label-field", "label"], "corpora/samples/notes.jsonl (30 notes)"


def bench_ddp(work: Path, rows: int, epochs: int, repeats: int, batch: int) -> dict:
    data, label_args, source = ddp_data(work, rows)
    common = ["train", "--data", str(data), *label_args, "--epochs", str(epochs),
              "--threads", "1", "--no-progress", "--set", "n_bootstrap=0",
              "--set", "patience=0", "--set", "calibrate=false"]
    # --batch-size is the global batch: "2_processes" splits the same batches (half per rank,
    # the same steps); "2_processes_batch_2x" doubles it (a full batch per rank, half the steps)
    kinds = {"1_process": (1, batch), "2_processes": (2, batch),
             "2_processes_batch_2x": (2, 2 * batch)}
    epoch_s: dict[str, list[float]] = {k: [] for k in kinds}
    wall: dict[str, list[float]] = {k: [] for k in kinds}
    metric: dict[str, list[float]] = {k: [] for k in kinds}
    for r in range(repeats):
        order = list(kinds) if r % 2 == 0 else list(reversed(kinds))
        for kind in order:
            nproc, bs = kinds[kind]
            out = work / f"ddp_{kind}_{r}"
            args = [*common, "--batch-size", str(bs), "--output", str(out)]
            if nproc == 1:
                cmd = [PY, "-m", "ehrtext", *args]
            else:
                cmd = [PY, "-m", "torch.distributed.run", "--standalone",
                       f"--nproc_per_node={nproc}", "-m", "ehrtext", *args]
            wall[kind].append(_run(cmd, work))
            cfg = json.loads((out / "ehrtext.json").read_text("utf-8"))
            hist = cfg["train"]["history"]
            epoch_s[kind].append(statistics.median(h["seconds"] for h in hist))
            metric[kind].append(json.loads((out / "metrics.json").read_text("utf-8"))
                                ["macro"]["f1"])
            print(f"  DDP {kind} run {r + 1}: epoch {epoch_s[kind][-1]:.1f} s, "
                  f"wall {wall[kind][-1]:.1f} s", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in epoch_s.items()}
    return {"data": source, "epochs": epochs, "repeats": repeats, "batch_size": batch,
            "configs": {k: {"processes": n, "global_batch": b} for k, (n, b) in kinds.items()},
            "epoch_seconds": epoch_s, "median_epoch_seconds": med,
            "wall_seconds": wall, "validation_macro_f1": metric,
            "speedup_2_over_1": round(med["1_process"] / med["2_processes"], 3),
            "speedup_2_batch_2x_over_1": round(med["1_process"] / med["2_processes_batch_2x"],
                                               3)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--notes", type=int, default=100_000)
    p.add_argument("--repeats", type=int, default=1, help="alternated runs of each side")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=64, help="scoring model: hidden = embedding")
    p.add_argument("--max-len", type=int, default=256, help="scoring model: tokens kept")
    p.add_argument("--ddp-rows", type=int, default=4000)
    p.add_argument("--ddp-epochs", type=int, default=2)
    p.add_argument("--ddp-repeats", type=int, default=2)
    p.add_argument("--ddp-batch", type=int, default=32, help="global batch of 1 vs 2 procs")
    p.add_argument("--skip-spark", action="store_true")
    p.add_argument("--skip-ddp", action="store_true")
    p.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "bench_scale.json"))
    args = p.parse_args()
    result: dict = {"machine": f"{os.cpu_count()} CPUs, shared with other jobs",
                    "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as tmp:
        work = Path(tmp)
        if not args.skip_spark:
            print(f"Spark local[{args.workers}] vs ehrtext score --workers {args.workers}, "
                  f"{args.notes} notes", file=sys.stderr)
            result["spark"] = s = bench_spark(
                work, args.notes, args.repeats, args.workers, args.hidden, args.max_len
            )
            print(f"spark/ehrtext-score time ratio: {s['ratio_spark_over_ehrtext_score']} "
                  f"(medians {s['median_seconds']}); outputs {s['outputs']}")
        if not args.skip_ddp:
            print("DDP 2 processes vs 1", file=sys.stderr)
            result["ddp"] = d = bench_ddp(work, args.ddp_rows, args.ddp_epochs, args.ddp_repeats,
                                         args.ddp_batch)
            print(f"DDP epoch-time speed-up (1 proc / 2 procs): {d['speedup_2_over_1']} same "
                  f"global batch, {d['speedup_2_batch_2x_over_1']} with it doubled "
                  f"(medians {d['median_epoch_seconds']})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False), "utf-8")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
