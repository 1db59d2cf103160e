"""Parity: do the rjieba and jieba backends give identical tokens with the same dictionary?

Runs both backends of ehrtext's Tokenizer (shipped medical dictionary, default settings) over
real notes and sentences from ../shared/data — all EMR notes (CCL2025, CCKS2017, CCKS2019),
CMeEE sentences, CHIP-CTC sentences and CMID questions — and compares tokens and offsets.

    python scripts/check_parity.py [--limit N] [--json bench_out/parity.json]

Prints counts and, for differing texts, the first differing token pair (local console only;
the JSON report holds counts, never text).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shared_corpus import (  # noqa: E402
    chip_ctc_sentences,
    cmeee_sentences,
    cmid_questions,
    emr_notes,
    shared_data,
)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=0, help="at most N texts per source (0: all)")
    parser.add_argument("--json", type=Path, default=Path("bench_out/parity.json"))
    parser.add_argument("--show", type=int, default=10, help="print at most N differences")
    args = parser.parse_args(argv)

    from ehrtext.text import Tokenizer

    root = shared_data()
    rj, jb = Tokenizer(backend="rjieba"), Tokenizer(backend="jieba")
    sources = {
        "emr_notes": emr_notes(root),
        "cmeee_sentences": cmeee_sentences(root),
        "chip_ctc_sentences": chip_ctc_sentences(root),
        "cmid_questions": cmid_questions(root),
    }
    per_source = {}
    shown = 0
    start = time.perf_counter()
    for name, texts in sources.items():
        if args.limit:
            texts = itertools.islice(texts, args.limit)
        n = same = tokens = 0
        for text in texts:
            n += 1
            a, b = rj.tokenize(text), jb.tokenize(text)
            tokens += len(a)
            if a.norms == b.norms and a.starts == b.starts and a.ends == b.ends:
                same += 1
            elif shown < args.show:
                shown += 1
                first = next(
                    i for i, (x, y) in enumerate(itertools.zip_longest(a.norms, b.norms)) if x != y
                )
                print(f"  differ in {name} #{n}: rjieba {a.norms[first:first + 3]} "
                      f"vs jieba {b.norms[first:first + 3]}")
        per_source[name] = {"texts": n, "identical": same, "tokens": tokens}
        print(f"{name:20s} {same:,}/{n:,} identical ({tokens:,} tokens)")
    total = sum(v["texts"] for v in per_source.values())
    same = sum(v["identical"] for v in per_source.values())
    report = {
        "check": "backend parity (rjieba vs jieba), shipped medical dictionary",
        "texts": total,
        "identical": same,
        "identical_share": same / total if total else None,
        "tokens": sum(v["tokens"] for v in per_source.values()),
        "per_source": per_source,
        "seconds": time.perf_counter() - start,
        "command": "python scripts/check_parity.py " + " ".join(argv or sys.argv[1:]),
    }
    print(f"total: {same:,}/{total:,} texts identical")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
