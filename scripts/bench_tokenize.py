"""Benchmark: tokenization speed on >= 20 MB of real text from ../shared/data.

Measured in one run, on the same texts:
  (a) jieba.lcut (the reference Python segmenter, default dictionary, HMM on)
  (b) spaCy's blank "zh" pipeline with the jieba segmenter (tokenizer only)
  (c) ehrtext: normalize + tokenize + offsets into the original note, rjieba backend
  (d) the same with the jieba backend
  (e) rjieba.cut alone (no normalization, no offsets) for scale
plus linearity on long notes (1 MB vs 10 MB) and on pathological inputs (100k vs 1M digits
and punctuation marks).

The corpus is split into 5 interleaved slices (every 5th text), so each slice has the same mix;
each method is timed on every slice and the median MB/s is reported (MB = 10^6 bytes of UTF-8).

    python scripts/bench_tokenize.py                 # full run (~3 min on 2 cores)
    python scripts/bench_tokenize.py --mb 2 --json out.json   # a quick look
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shared_corpus import emr_notes, mixed_benchmark_texts, shared_data  # noqa: E402

SLICES = 5


def _mb(texts: list[str]) -> float:
    return sum(len(t.encode("utf-8")) for t in texts) / 1e6


def _time(fn, texts: list[str]) -> float:
    start = time.perf_counter()
    for text in texts:
        fn(text)
    return time.perf_counter() - start


def _median_rate(fn, slices: list[list[str]]) -> dict:
    rates = [_mb(s) / _time(fn, s) for s in slices]
    return {"median_mb_s": statistics.median(rates), "slice_mb_s": rates}


def _best_time(fn, text: str, repeats: int = 3) -> float:
    return min(_time(fn, [text]) for _ in range(repeats))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=20.0, help="corpus size in MB (default 20)")
    parser.add_argument("--json", type=Path, default=Path("bench_out/bench_tokenize.json"))
    parser.add_argument("--skip-spacy", action="store_true")
    args = parser.parse_args(argv)

    import jieba
    import rjieba

    from ehrtext import __version__
    from ehrtext.text import Tokenizer

    jieba.setLogLevel(logging.WARNING)
    root = shared_data()
    texts = mixed_benchmark_texts(root, args.mb)
    slices = [texts[i::SLICES] for i in range(SLICES)]
    total_mb = _mb(texts)
    print(f"corpus: {len(texts):,} texts, {total_mb:.1f} MB, {SLICES} interleaved slices")

    jieba.initialize()
    tok_r = Tokenizer(backend="rjieba")
    tok_j = Tokenizer(backend="jieba")
    tok_r.tokenize("预热")
    tok_j.tokenize("预热")
    raw = rjieba.Jieba()

    def ehrtext_offsets(tok):
        def run(text):
            toks = tok.tokenize(text)
            return toks.starts, toks.ends  # offsets into the original note are part of the work
        return run

    def ehrtext_pipe(tok):
        def run_slice(texts):
            for toks in tok.pipe(texts, batch_size=256):
                toks.starts, toks.ends
        return run_slice

    methods = {
        "a_jieba_lcut": jieba.lcut,
        "c_ehrtext_rjieba": ehrtext_offsets(tok_r),
        "d_ehrtext_jieba": ehrtext_offsets(tok_j),
        "e_rjieba_cut_only": raw.cut,
    }
    if not args.skip_spacy:
        import spacy

        nlp = spacy.blank("zh", config={"nlp": {"tokenizer": {"segmenter": "jieba"}}})
        nlp.make_doc("预热")
        methods["b_spacy_zh_jieba"] = nlp.make_doc

    results: dict[str, dict] = {}
    for name in sorted(methods):
        results[name] = _median_rate(methods[name], slices)
        print(f"  {name:22s} {results[name]['median_mb_s']:8.2f} MB/s (median of {SLICES})")
    # the batched API (Tokenizer.pipe): same tokens and offsets, one segmenter call per batch
    name = "c2_ehrtext_rjieba_pipe"
    run_slice = ehrtext_pipe(tok_r)
    rates = []
    for s in slices:
        start = time.perf_counter()
        run_slice(s)
        rates.append(_mb(s) / (time.perf_counter() - start))
    results[name] = {"median_mb_s": statistics.median(rates), "slice_mb_s": rates}
    print(f"  {name:22s} {results[name]['median_mb_s']:8.2f} MB/s (median of {SLICES})")

    rate = {k: v["median_mb_s"] for k, v in results.items()}
    ratios = {
        "c_over_a": rate["c_ehrtext_rjieba"] / rate["a_jieba_lcut"],
        "c2_pipe_over_a": rate["c2_ehrtext_rjieba_pipe"] / rate["a_jieba_lcut"],
        "d_over_a": rate["d_ehrtext_jieba"] / rate["a_jieba_lcut"],
        "c_over_e": rate["c_ehrtext_rjieba"] / rate["e_rjieba_cut_only"],
        "c2_pipe_over_e": rate["c2_ehrtext_rjieba_pipe"] / rate["e_rjieba_cut_only"],
    }
    if "b_spacy_zh_jieba" in rate:
        ratios["c_over_b"] = rate["c_ehrtext_rjieba"] / rate["b_spacy_zh_jieba"]
        ratios["c2_pipe_over_b"] = rate["c2_ehrtext_rjieba_pipe"] / rate["b_spacy_zh_jieba"]
    for key, value in ratios.items():
        print(f"  ratio {key:10s} {value:6.1f}x")

    # Linearity: one long note made of real EMR notes; 1 MB vs 10 MB.
    emr = "\n".join(emr_notes(root))
    one_mb = emr.encode("utf-8")[:1_000_000].decode("utf-8", "ignore")
    ten_mb = one_mb * 10
    t1 = _best_time(tok_r.tokenize, one_mb)
    t10 = _best_time(tok_r.tokenize, ten_mb)
    linear = {"note_1mb_s": t1, "note_10mb_s": t10, "ratio_10x": t10 / t1}
    print(f"  long note: 1 MB {t1:.3f}s, 10 MB {t10:.3f}s -> {t10 / t1:.1f}x time for 10x text")

    # Pathological inputs: 200k vs 2M characters (both well outside the CPU caches).
    patho = {}
    for label, unit in (("digits", "1234567890"), ("punctuation", "，。！？；：、（）")):
        small = (unit * (200_000 // len(unit) + 1))[:200_000]
        big = small * 10
        ts, tb = _best_time(tok_r.tokenize, small), _best_time(tok_r.tokenize, big)
        patho[label] = {"200k_s": ts, "2m_s": tb, "ratio_10x": tb / ts}
        print(f"  pathological {label}: 200k {ts:.4f}s, 2M {tb:.4f}s -> {tb / ts:.1f}x")

    report = {
        "benchmark": "tokenize",
        "ehrtext_version": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "corpus": {"texts": len(texts), "mb": total_mb, "slices": SLICES},
        "results": results,
        "ratios": ratios,
        "long_note": linear,
        "pathological": patho,
        "command": "python scripts/bench_tokenize.py " + " ".join(argv or sys.argv[1:]),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
