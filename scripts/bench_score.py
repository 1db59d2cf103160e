"""Benchmark: batch scoring (``ehrtext score``) on real notes from ../shared/data.

Three measurements, printed as medians and ratios and written to ``--out`` (default
``bench_out/bench_score.json``, rewritten after every phase):

1. **End-to-end vs pure forward.** The engine, ``score(notes.jsonl -> scores.jsonl)`` with one
   process (read → normalize → tokenize → encode → model → write, fsync per chunk), against
   the model's forward pass alone on the same notes pre-encoded into padded tensors, batched
   exactly as the engine batches them (chunks of ``--chunk-size``, length-sorted batches of
   64 inside each chunk); the two alternate run by run (``--repeat`` times). Ratio = end-to-end notes/s ÷ forward notes/s (≥ 0.80 wanted). The
   forward figure with batches sorted over the whole input is printed too (an upper bound the
   engine cannot reach without holding the input in memory).
2. **Peak RSS at two input sizes** (``--rss-small`` and ``--rss-large`` notes, default 10k and
   200k): each run in a fresh interpreter scoring a JSONL file made by repeating real notes
   with unique ids; peak RSS from ``getrusage`` (VmHWM). Growth wanted < 50 MB.
   ``--rss-model DIR`` scores these runs with another (e.g. smaller) model: the growth
   measured is the engine's, and a small model makes 200k notes affordable on 2 cores.
3. **2 workers vs 1**: wall time of the scoring loop (model loading excluded) with
   ``workers=1`` (in-process, torch's default threads), ``workers=1`` with one torch thread,
   and ``workers=2`` (spawned, one torch thread each), alternating, medians, on
   ``--workers-notes`` notes; also the steady-state rates after the first committed chunk
   (the workers' start-up excluded). Ratio wanted ≥ 1.6.

The model: ``--model DIR`` (any ehrtext model directory), else a BiGRU with the default
architecture (embedding 200, hidden 128, attention) trained for one epoch on 4,000 CHIP-CTC
training rows, saved in ``bench_out/score_model`` and reused (accuracy is beside the point
here; the architecture and vocabulary are real). Notes: the CCL2025 cardiology records,
CCKS2017 and CCKS2019 EMR texts (long notes, ~1-3k characters) and CHIP-CTC sentences (short),
interleaved; the RSS runs cycle through the same pool.

    python scripts/bench_score.py --notes 2000 --skip-rss          # throughput and workers
    python scripts/bench_score.py --skip-throughput --skip-workers \
        --rss-model corpora/models/toyhom_im_departments --out bench_out/bench_score_rss.json
    python scripts/bench_score.py --notes 1000 --rss-large 50000 --repeat 1   # a quick look

The machine is shared with other jobs: the JSON keeps every run next to the medians.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench_out"


def _hwm_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def note_pool(max_short: int = 6000) -> list[str]:
    """Real notes: every EMR note (long) interleaved with CHIP-CTC sentences (short)."""
    from shared_corpus import chip_ctc_sentences, emr_notes, shared_data

    root = shared_data()
    long_notes = [n for n in emr_notes(root) if n.strip()]
    short = [s for s in itertools.islice(chip_ctc_sentences(root), max_short) if s.strip()]
    pool: list[str] = []
    for i in range(max(len(long_notes), len(short))):
        if i < len(long_notes):
            pool.append(long_notes[i])
        if i < len(short):
            pool.append(short[i])
    return pool


def write_input(path: Path, pool: list[str], n: int) -> Path:
    """``n`` notes cycled from ``pool``, each with a unique id."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for i, text in zip(range(n), itertools.cycle(pool)):
            fh.write(json.dumps({"id": f"n{i:07d}", "text": text}, ensure_ascii=False) + "\n")
    return path


def ensure_model(model: str | None) -> Path:
    if model:
        return Path(model)
    out = OUT / "score_model"
    if (out / "ehrtext.json").exists():
        return out
    from shared_corpus import shared_data

    from ehrtext.train_cli import TrainOptions, train_model

    rows = []
    with open(shared_data() / "chip_ctc" / "train.jsonl", encoding="utf-8") as fh:
        for line in itertools.islice(fh, 4000):
            rows.append(json.loads(line))
    data = OUT / "score_model_train.jsonl"
    with open(data, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"training a BiGRU on {len(rows)} CHIP-CTC rows (1 epoch) -> {out}", flush=True)
    train_model(
        TrainOptions(
            data=str(data),
            label_field="label",
            id_field="id",
            model="bigru",
            epochs=1,
            max_len=512,
            val_fraction=0.1,
            n_bootstrap=0,
            progress=False,
            seed=0,
            output=str(out),
        )
    )
    return out


def forward_rate(model_dir: Path, texts: list[str], chunk: int, batch: int, repeat: int):
    """Notes/s of the bare forward pass on pre-encoded, pre-padded tensors."""
    import numpy as np
    import torch

    from ehrtext.data import collate
    from ehrtext.predict import RiskModel

    rm = RiskModel.load(model_dir)
    net = rm.scorer.model
    ids = rm.scorer.encoder.encode(texts)

    def batches(global_sort: bool) -> list[dict]:
        out = []
        groups = [range(len(ids))] if global_sort else [
            range(s, min(s + chunk, len(ids))) for s in range(0, len(ids), chunk)]
        for g in groups:
            idx = list(g)
            lengths = np.array([max(1, len(ids[i])) for i in idx])
            order = [idx[j] for j in np.argsort(lengths, kind="stable")]
            for s in range(0, len(order), batch):
                out.append(collate([{"input_ids": ids[i]} for i in order[s : s + batch]]))
        return out

    results = {}
    for name, global_sort in (("chunked", False), ("global", True)):
        bs = batches(global_sort)
        times = []
        with torch.inference_mode():
            net(bs[0]["input_ids"], bs[0]["lengths"])  # warm-up
            for _ in range(repeat):
                t = time.perf_counter()
                for b in bs:
                    net(b["input_ids"], b["lengths"])
                times.append(time.perf_counter() - t)
        results[name] = {"seconds": times, "notes_per_s": len(texts) / statistics.median(times)}
    return results


def e2e_rate(model_dir: Path, src: Path, chunk: int, workers: int, repeat: int,
             torch_threads: int | None = None) -> dict:
    import torch

    from ehrtext.scoring import ModelDirectory, score

    threads_before = torch.get_num_threads()  # a 1-thread run must not leak into the next
    runs = []
    for r in range(repeat):
        out = OUT / f"bench_score_out_w{workers}_{r}.jsonl"
        scorer = ModelDirectory(str(model_dir), torch_threads=torch_threads)
        s = score(src, out, scorer, chunk_size=chunk, workers=workers,
                  overwrite=True, progress=False, batch_size=64)
        busy = s.seconds - s.load_seconds
        steady = (s.scored - s.first_commit_rows) / max(1e-9, s.seconds - s.first_commit_seconds)
        runs.append({"seconds": s.seconds, "load_seconds": s.load_seconds, "busy": busy,
                     "scored": s.scored, "first_commit_seconds": s.first_commit_seconds,
                     "steady_notes_per_s": steady})
        out.unlink(missing_ok=True)
    torch.set_num_threads(threads_before)
    med = statistics.median(r["busy"] for r in runs)
    return {"runs": runs, "notes_per_s": runs[0]["scored"] / med,
            "steady_notes_per_s": statistics.median(r["steady_notes_per_s"] for r in runs)}


def rss_child(model_dir: str, src: str, chunk: int) -> None:
    from ehrtext.scoring import ModelDirectory, score

    out = Path(src).with_suffix(".scores.jsonl")
    s = score(src, out, ModelDirectory(model_dir), chunk_size=chunk, overwrite=True,
              progress=False)
    out.unlink(missing_ok=True)
    print(json.dumps({"peak_rss_mb": _hwm_mb(), "scored": s.scored, "seconds": s.seconds}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--notes", type=int, default=3000, help="notes for throughput")
    p.add_argument("--chunk-size", type=int, default=256)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--rss-small", type=int, default=10_000)
    p.add_argument("--rss-large", type=int, default=200_000)
    p.add_argument("--out", default=str(OUT / "bench_score.json"), help="JSON report path")
    p.add_argument("--skip-rss", action="store_true")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--rss-model", default=None,
                   help="model for the RSS runs (default: the same model); memory growth is "
                        "the engine's, a small model makes 200k notes affordable")
    p.add_argument("--skip-workers", action="store_true")
    p.add_argument("--workers-notes", type=int, default=None,
                   help="notes for the workers comparison (default: --notes); a long input "
                        "amortises the workers' start-up as a real archive does")
    p.add_argument("--rss-child", nargs=2, metavar=("MODEL", "INPUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], args.rss_child[1], args.chunk_size)
        return

    OUT.mkdir(exist_ok=True)
    model_dir = ensure_model(args.model)
    pool = note_pool()
    # one input file per run: two runs at once (throughput, RSS) must not share it
    src = write_input(OUT / f"bench_score_notes_{os.getpid()}.jsonl", pool, args.notes)
    texts = [json.loads(line)["text"] for line in open(src, encoding="utf-8")]
    chars = sum(map(len, texts))
    report: dict = {
        "machine": f"{platform.node()} {os.cpu_count()} CPUs (shared with other jobs)",
        "model": str(model_dir),
        "notes": args.notes,
        "mean_chars": chars / len(texts),
        "long_notes_share": sum(len(t) > 500 for t in texts) / len(texts),
        "chunk_size": args.chunk_size,
    }
    print(f"{args.notes} real notes, mean {chars / len(texts):.0f} chars, "
          f"{report['long_notes_share']:.0%} over 500 chars; model {model_dir}", flush=True)

    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every phase, so that an interrupted run keeps what it measured
        out_path.write_text(json.dumps(report, indent=2, ensure_ascii=False))

    # 1. end-to-end vs forward, alternating run by run so that load changes hit both
    if not args.skip_throughput:
        fwd_runs, e2e_runs = [], []
        for _ in range(args.repeat):
            fwd_runs.append(forward_rate(model_dir, texts, args.chunk_size, 64, 1))
            e2e_runs.append(e2e_rate(model_dir, src, args.chunk_size, 1, 1))
        fwd = {
            name: {
                "seconds": [r[name]["seconds"][0] for r in fwd_runs],
                "notes_per_s": statistics.median(r[name]["notes_per_s"] for r in fwd_runs),
            }
            for name in ("chunked", "global")
        }
        e2e = {
            "runs": [r["runs"][0] for r in e2e_runs],
            "notes_per_s": statistics.median(r["notes_per_s"] for r in e2e_runs),
        }
        ratio = e2e["notes_per_s"] / fwd["chunked"]["notes_per_s"]
        report["forward"] = fwd
        report["end_to_end_1_worker"] = e2e
        report["e2e_over_forward"] = ratio
        report["e2e_over_forward_global_sort"] = e2e["notes_per_s"] / fwd["global"]["notes_per_s"]
        print(f"forward (engine batching) {fwd['chunked']['notes_per_s']:.0f} notes/s; "
              f"forward (global sort) {fwd['global']['notes_per_s']:.0f} notes/s; "
              f"end-to-end {e2e['notes_per_s']:.0f} notes/s; ratio {ratio:.2f} "
              f"(vs global sort {report['e2e_over_forward_global_sort']:.2f})", flush=True)
        save()

    # 3. workers
    if not args.skip_workers:
        # "1t": one process with one torch thread, the per-process setting of the workers
        wsrc = src
        if args.workers_notes and args.workers_notes != args.notes:
            wsrc = write_input(OUT / f"bench_score_wnotes_{os.getpid()}.jsonl", pool,
                               args.workers_notes)
        runs = {"1": [], "1t": [], "2": []}
        steady = {"1": [], "1t": [], "2": []}
        for _ in range(max(1, args.repeat - 1)):
            for key, w, threads in (("1", 1, None), ("1t", 1, 1), ("2", 2, None)):
                res = e2e_rate(model_dir, wsrc, args.chunk_size, w, 1, threads)
                runs[key].append(res["notes_per_s"])
                steady[key].append(res["steady_notes_per_s"])
        w1, w1t, w2 = (statistics.median(runs[k]) for k in ("1", "1t", "2"))
        s1, s1t, s2 = (statistics.median(steady[k]) for k in ("1", "1t", "2"))
        report["workers"] = {"notes": args.workers_notes or args.notes,
                             "runs": runs, "w1": w1, "w1_one_thread": w1t, "w2": w2,
                             "speedup": w2 / w1, "speedup_vs_one_thread": w2 / w1t,
                             "steady_runs": steady, "steady_speedup": s2 / s1,
                             "steady_speedup_vs_one_thread": s2 / s1t}
        print(f"workers=1 {w1:.0f} notes/s (torch default threads), workers=1 with 1 torch "
              f"thread {w1t:.0f}, workers=2 (1 thread each) {w2:.0f} notes/s: "
              f"{w2 / w1:.2f}x vs default, {w2 / w1t:.2f}x vs 1 thread; after the first "
              f"commit (start-up excluded): {s2 / s1:.2f}x and {s2 / s1t:.2f}x", flush=True)
        if wsrc != src:
            wsrc.unlink(missing_ok=True)
        save()

    # 2. peak RSS at two sizes, each in a fresh interpreter
    if not args.skip_rss:
        rss_model = Path(args.rss_model) if args.rss_model else model_dir
        report["rss_model"] = str(rss_model)
        rss = {}
        for n in (args.rss_small, args.rss_large):
            path = write_input(OUT / f"bench_score_rss_{n}.jsonl", pool, n)
            res = subprocess.run(
                [sys.executable, __file__, "--chunk-size", str(args.chunk_size), "--rss-child",
                 str(rss_model), str(path)],
                capture_output=True, text=True, check=True, cwd=REPO)
            rss[n] = json.loads(res.stdout.strip().splitlines()[-1])
            path.unlink()
            print(f"{n} notes: peak RSS {rss[n]['peak_rss_mb']:.0f} MB "
                  f"({rss[n]['seconds']:.0f} s)", flush=True)
        growth = rss[args.rss_large]["peak_rss_mb"] - rss[args.rss_small]["peak_rss_mb"]
        report["rss"] = {str(k): v for k, v in rss.items()}
        report["rss_growth_mb"] = growth
        print(f"peak RSS growth {args.rss_small} -> {args.rss_large} notes: {growth:.1f} MB",
              flush=True)

    save()
    src.unlink(missing_ok=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
