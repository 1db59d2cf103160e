#!/usr/bin/env python
"""Evaluate ehrtext's ConText rules on the gold set, and time sections + context on real notes.

The gold set (``tests/text/data/context_gold.jsonl``, format and guidelines in
``tests/text/context_gold.py``) points into ``../shared/data``; each sentence is evaluated
inside its document (record, CCKS section file or CCKS2019 text) with the sections that
``ehrtext.text.sections`` finds there, as the pipeline runs it.

Usage::

    python scripts/eval_context.py                       # P/R/F1 per category: dev, held-out, all
    python scripts/eval_context.py --json out.json       # the same, as JSON (offsets only)
    python scripts/eval_context.py --show-errors         # DEV mistakes with their sentences
                                                         # (stdout only: never save the output
                                                         # into the repository)
    python scripts/eval_context.py --bench               # MB/s of sections + context on the
                                                         # real EMR notes (CCL2025, CCKS)

Rules are tuned on ``dev`` only; ``--show-errors`` never prints held-out sentences.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "scripts"))

from ehrtext.text.context import ConText  # noqa: E402
from ehrtext.text.normalize import normalize  # noqa: E402
from ehrtext.text.sections import default_sectionizer  # noqa: E402
from tests.text.context_gold import FLAGS, resolve, score  # noqa: E402

DEFAULT_SHARED = REPO_ROOT.parent / "shared" / "data"
TARGETS = {
    "negated": 0.95,
    "uncertain": 0.85,
    "historical": 0.85,
    "family": 0.85,
    "hypothetical": 0.85,
}


def print_table(result: dict) -> None:
    for split in ("dev", "heldout", "all"):
        per = result[split]
        print(f"\n{split} ({per['_mentions']} mentions)")
        print(f"  {'category':<13}{'support':>8}{'P':>8}{'R':>8}{'F1':>8}   target")
        for f in (*FLAGS, "affirmed"):
            m = per[f]
            target = TARGETS.get(f)
            mark = "" if target is None else ("ok" if m["f1"] >= target else f"< {target}")
            print(
                f"  {f:<13}{m['support']:>8}{m['precision']:>8.3f}{m['recall']:>8.3f}"
                f"{m['f1']:>8.3f}   {mark}"
            )


def show_errors(sentences, result: dict) -> None:
    by_id = {s.id: s for s in sentences}
    for err in result["errors"]:
        if err["split"] != "dev":
            continue
        s = by_id[err["id"]]
        t = s.text
        marked = t[: err["start"]] + "[" + t[err["start"] : err["end"]] + "]" + t[err["end"] :]
        print(f"{err['id']}  missed={err['missed']} spurious={err['spurious']}\n    {marked}")


def _load_bench_docs(
    shared: Path, problems_only: bool = False
) -> list[tuple[str, list[tuple[int, int]]]]:
    """Real EMR notes with concept spans.

    CCKS2017/2019 texts come with gold entity spans (diseases, symptoms, tests, drugs, body
    parts …; with ``problems_only`` just diseases and symptoms, what assertions are about).
    CCL2025 records have none, so a stand-in concept matcher -- the CCKS disease and symptom
    strings (2+ chars) as a dictionary, longest match -- gives them spans.
    """
    from shared_corpus import ccl2025_notes

    problems = {"症状和体征", "疾病和诊断"}
    docs: list[tuple[str, list[tuple[int, int]]]] = []
    terms: set[str] = set()
    folder = shared / "corpus" / "ccks2017_emr" / "data_origin"
    for path in sorted(folder.rglob("*.txtoriginal.txt")):
        text = path.read_text(encoding="utf-8")
        spans = []
        ann = path.with_name(path.name.replace(".txtoriginal.txt", ".txt"))
        if ann.is_file():
            for line in ann.read_text(encoding="utf-8").splitlines():
                cols = line.split("\t")
                if len(cols) >= 4 and cols[1].isdigit() and cols[2].isdigit():
                    s, e = int(cols[1]), int(cols[2]) + 1  # inclusive end in the files
                    if cols[3] in problems:
                        terms.add(text[s:e])
                    elif problems_only:
                        continue
                    spans.append((s, e))
        docs.append((text, spans))
    k19 = shared / "corpus" / "ccks2019_yidu_emr" / "subtask1_training_afterrevise.txt"
    with open(k19, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                text = rec["originalText"]
                spans = []
                for ent in rec.get("entities", []):
                    s, e = ent["start_pos"], ent["end_pos"]
                    if ent.get("label_type") in problems:
                        terms.add(text[s:e])
                    elif problems_only:
                        continue
                    spans.append((s, e))
                docs.append((text, spans))
    words = sorted((w for w in terms if len(w) >= 2 and w.strip() == w), key=len, reverse=True)
    matcher = re.compile("|".join(re.escape(w) for w in words))
    for text in ccl2025_notes(shared):
        docs.append((text, [m.span() for m in matcher.finditer(text)]))
    return docs


def bench(shared: Path, repeat: int = 3, tokenize: bool = True) -> dict:
    """MB/s (10^6 bytes of UTF-8 per CPU second, best of ``repeat`` runs, one process) of
    sections + context on real EMR notes, with and without tokenization."""
    from ehrtext.text import Tokenizer

    docs = _load_bench_docs(shared)
    problem_docs = _load_bench_docs(shared, problems_only=True)
    size = sum(len(t.encode("utf-8")) for t, _ in docs) / 1e6
    sz = default_sectionizer()
    ctx = ConText()
    tok = Tokenizer()
    for text, spans in docs[:50]:  # warm up (compile rules, load the dictionary)
        ctx.apply(text, spans, sections=sz(text))
        tok.tokenize(text)

    def run(fn) -> float:
        best = float("inf")
        for _ in range(repeat):
            t0 = time.process_time()  # CPU time: robust to other processes on the machine
            fn()
            best = min(best, time.process_time() - t0)
        return round(size / best, 1)

    def sections_only():
        for text, _ in docs:
            sz(text)

    def sections_context():
        for text, spans in docs:
            norm = normalize(text)  # once: both components take the Normalized
            ctx.apply(norm, spans, sections=sz(norm))

    def sections_context_problems():
        for text, spans in problem_docs:
            norm = normalize(text)
            ctx.apply(norm, spans, sections=sz(norm))

    def with_tokens():
        for text, spans in docs:
            toks = tok.tokenize(text)
            norm = normalize(text)
            ctx.apply(norm, spans, sections=sz(norm), tokens=toks)

    out = {
        "documents": len(docs),
        "megabytes": round(size, 3),
        "concept_spans": sum(len(s) for _, s in docs),
        "sections_mb_s": run(sections_only),
        "sections_context_mb_s": run(sections_context),
        "problem_spans": sum(len(s) for _, s in problem_docs),
        "sections_context_problem_spans_mb_s": run(sections_context_problems),
    }
    if tokenize:
        out["tokenize_only_mb_s"] = run(lambda: [tok.tokenize(text) for text, _ in docs])
        out["tokenize_sections_context_mb_s"] = run(with_tokens)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="shared data root")
    ap.add_argument("--json", type=Path, help="write the results here as JSON")
    ap.add_argument("--show-errors", action="store_true", help="print DEV mistakes (stdout)")
    ap.add_argument("--bench", action="store_true", help="also time sections + context")
    args = ap.parse_args(argv)
    if not args.shared.is_dir():
        print(f"the shared datasets are not at {args.shared}; pass --shared", file=sys.stderr)
        return 2
    sentences = resolve(args.shared)
    result = score(sentences)
    print_table(result)
    if args.show_errors:
        print()
        show_errors(sentences, result)
    out = {k: v for k, v in result.items() if k != "errors"}
    out["errors"] = result["errors"]  # ids and offsets only
    if args.bench:
        out["bench"] = bench(args.shared)
        print("\nbench:", json.dumps(out["bench"]))
    if args.json:
        args.json.write_text(json.dumps(out, ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
