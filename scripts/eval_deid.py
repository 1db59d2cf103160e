"""Measure ehrtext.text.deid: recall and precision per PHI type on real notes with synthetic PHI
inserted (tests/text/deid_generator.py), hits per 10,000 characters on the real notes as they
are, and speed.

    .venv/bin/python scripts/eval_deid.py [--notes 800] [--seed 0] [--json out.json]
    .venv/bin/python scripts/eval_deid.py --review name     # print real-note hits to adjudicate

Definitions
* recall (a gold PHI instance is found when every one of its chars lies inside predicted spans,
  whatever their type: what matters for privacy is that the value is gone); typed recall also
  asks for the gold type; exact counts predicted spans equal to the gold span.
* precision: a predicted span on inserted text is right when it overlaps a gold span, wrong
  otherwise. Hits that lie wholly in the real text around the insertions are not counted here:
  they are measured on the untouched notes below.
* real notes: the notes are research data that was de-identified by its publishers, but not
  perfectly. Every hit there is either residual PHI (a date, a doctor's or patient's name, a
  village address, a hospital) or a false positive. Dates are reported apart (real notes are
  full of them, and under the Safe Harbor rule a date finer than a year IS PHI); the other types
  are reported per 10,000 chars as an upper bound of the false-positive rate. ``--review TYPE``
  prints the hits with context to the terminal (nowhere else), so that a person can adjudicate
  them: never paste that output into a file, an issue or a commit.

The research data stays in ../shared/data (or $EHRTEXT_SHARED_DATA); nothing of it is written.
The JSON holds figures only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "text"))

from deid_generator import generate, real_notes  # noqa: E402

from ehrtext.text.deid import PHI_TYPES, Deidentifier  # noqa: E402


def shared_data() -> Path:
    path = Path(os.environ.get("EHRTEXT_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        raise SystemExit(f"the shared datasets are not at {path}; set EHRTEXT_SHARED_DATA")
    return path


def score_synthetic(deid: Deidentifier, examples) -> dict:
    """Recall / precision per type on the examples of deid_generator.generate."""
    gold_n: Counter = Counter()
    found: Counter = Counter()
    typed: Counter = Counter()
    exact: Counter = Counter()
    pred_tp: Counter = Counter()
    pred_fp: Counter = Counter()
    outside = 0
    for ex in examples:
        spans = deid.find(ex.text)
        covered = bytearray(len(ex.text))
        by_type: dict[str, bytearray] = {}
        for s in spans:
            covered[s.start : s.end] = b"\x01" * (s.end - s.start)
            arr = by_type.setdefault(s.type, bytearray(len(ex.text)))
            arr[s.start : s.end] = b"\x01" * (s.end - s.start)
        span_set = {(s.start, s.end) for s in spans}
        for gs, ge, gt in ex.gold:
            gold_n[gt] += 1
            if all(covered[gs:ge]):
                found[gt] += 1
            if gt in by_type and all(by_type[gt][gs:ge]):
                typed[gt] += 1
            if (gs, ge) in span_set:
                exact[gt] += 1
        for s in spans:
            if any(s.start < ge and gs < s.end for gs, ge, _ in ex.gold):
                pred_tp[s.type] += 1
            elif any(s.start < ie and is_ < s.end for is_, ie in ex.inserted):
                pred_fp[s.type] += 1
            else:
                outside += 1
    per_type = {}
    for t in PHI_TYPES:
        n = gold_n[t]
        p = pred_tp[t] + pred_fp[t]
        per_type[t] = {
            "gold": n,
            "recall": round(found[t] / n, 4) if n else None,
            "typed_recall": round(typed[t] / n, 4) if n else None,
            "exact": round(exact[t] / n, 4) if n else None,
            "predicted": p,
            "false_positives": pred_fp[t],
            "precision": round(pred_tp[t] / p, 4) if p else None,
        }
    total = sum(gold_n.values())
    return {
        "notes": len(examples),
        "chars": sum(len(e.text) for e in examples),
        "phi_instances": total,
        "recall_all": round(sum(found.values()) / total, 4) if total else None,
        "per_type": per_type,
        "hits_in_real_text_around_insertions": outside,
    }


def score_real(deid: Deidentifier, notes: list[str]) -> tuple[dict, dict[str, list[str]]]:
    """Hits per type on the untouched real notes, and their contexts (for --review only)."""
    chars = sum(len(n) for n in notes)
    hits: Counter = Counter()
    rules: dict[str, Counter] = defaultdict(Counter)
    contexts: dict[str, list[str]] = defaultdict(list)
    for note in notes:
        for s in deid.find(note):
            hits[s.type] += 1
            rules[s.type][s.rule] += 1
            left = note[max(0, s.start - 10) : s.start].replace("\n", " ")
            right = note[s.end : s.end + 8].replace("\n", " ")
            contexts[s.type].append(f"{s.rule}\t{left}【{note[s.start : s.end]}】{right}")
    per10k = {t: round(hits[t] / chars * 1e4, 3) for t in PHI_TYPES}
    non_date = sum(v for t, v in hits.items() if t != "date")
    return {
        "notes": len(notes),
        "chars": chars,
        "hits": {t: hits[t] for t in PHI_TYPES},
        "hits_by_rule": {t: dict(rules[t]) for t in PHI_TYPES if rules[t]},
        "hits_per_10k_chars": per10k,
        "dates_per_10k_chars": per10k["date"],
        "non_date_hits_per_10k_chars": round(non_date / chars * 1e4, 3),
    }, contexts


def measure_speed(notes: list[str], repeats: int = 3) -> dict:
    """find + replace (tag strategy) over the real notes, best of ``repeats``."""
    deid = Deidentifier(strategy="tag")
    for n in notes[:50]:
        deid.deidentify(n)  # warm up (lazy tables)
    size = sum(len(n.encode("utf-8")) for n in notes)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for n in notes:
            deid.deidentify(n)
        best = min(best, time.perf_counter() - t0)
    return {
        "bytes_utf8": size,
        "chars": sum(len(n) for n in notes),
        "seconds": round(best, 3),
        "mb_per_s": round(size / 1e6 / best, 2),
        "chars_per_s": round(sum(len(n) for n in notes) / best),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--notes", type=int, default=800, help="real notes that get insertions")
    ap.add_argument("--per-note", type=int, default=3, help="sentences inserted per note")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write the figures to this JSON file")
    ap.add_argument("--review", choices=PHI_TYPES, help="print real-note hits of one type")
    ap.add_argument("--no-speed", action="store_true", help="skip the speed measurement")
    args = ap.parse_args(argv)

    root = shared_data()
    deid = Deidentifier()
    examples = generate(root, n_notes=args.notes, per_note=args.per_note, seed=args.seed)
    syn = score_synthetic(deid, examples)
    notes = [t for _, t in real_notes(root) if t.strip()]
    real, contexts = score_real(deid, notes)
    result = {"synthetic": syn, "real_notes": real, "seed": args.seed}
    if not args.no_speed:
        result["speed"] = measure_speed(notes)

    print(f"synthetic: {syn['notes']} notes, {syn['chars']} chars, {syn['phi_instances']} PHI")
    print(
        f"{'type':<10} {'gold':>5} {'recall':>7} {'typed':>7} {'exact':>7} {'pred':>5} "
        f"{'prec':>7} | {'real hits':>9} {'/10k ch':>8}"
    )
    for t in PHI_TYPES:
        r = syn["per_type"][t]

        def f(x):
            return "   -   " if x is None else f"{x:7.4f}"

        print(
            f"{t:<10} {r['gold']:>5} {f(r['recall'])} {f(r['typed_recall'])} {f(r['exact'])} "
            f"{r['predicted']:>5} {f(r['precision'])} | {real['hits'][t]:>9} "
            f"{real['hits_per_10k_chars'][t]:>8.3f}"
        )
    print(f"recall, all types: {syn['recall_all']}")
    print(
        f"real notes: {real['notes']} notes, {real['chars']} chars; dates "
        f"{real['dates_per_10k_chars']}/10k chars; other types "
        f"{real['non_date_hits_per_10k_chars']}/10k chars (residual PHI + false positives)"
    )
    if "speed" in result:
        s = result["speed"]
        print(f"speed: {s['mb_per_s']} MB/s ({s['chars_per_s']} chars/s), find + tag, one process")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", "utf-8")
        print(f"wrote {args.json}")
    if args.review:
        print(f"\n-- real-note hits of type {args.review} (local review only; do not save) --")
        for line in contexts[args.review]:
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
