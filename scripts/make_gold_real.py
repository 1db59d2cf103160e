#!/usr/bin/env python
"""Pick, annotate and hash the REAL gold segmentation fragments.

Output: ``tests/text/data/gold_segmentation_real.tsv``.

The research EMR data under ``../shared/data`` may not be copied into the repository, so the gold
list stores locations, a SHA-1 and token lengths only (format: ``tests/text/gold.py``). Fragment
text appears on stdout and in an annotation file you keep OUTSIDE the repository.

Workflow::

    # 1. candidates: clauses (8-40 chars, no whitespace) around tricky terms, printed only
    python scripts/make_gold_real.py candidates --terms 2型糖尿病,呼吸音粗,反跳痛 --per-term 3 \\
        > /tmp/gold_candidates.tsv
    # 2. annotate: in /tmp, replace the fragment column by the expected tokens, "tok | tok | ..."
    #    (guidelines: header of tests/text/data/gold_segmentation_authored.tsv)
    # 3. emit: check that the tokens spell the fragment, hash it, write lengths only
    python scripts/make_gold_real.py emit /tmp/gold_annotated.tsv
    # 4. review: print fragments and expected tokens from the shipped list (stdout only)
    python scripts/make_gold_real.py show

Sources: ``emr_ccl2025_icd/records.jsonl``, ``corpus/ccks2017_emr/data_origin/*/*.txtoriginal.txt``,
``corpus/ccks2019_yidu_emr/subtask1_training_afterrevise.txt`` (real de-identified EMRs).
"""

from __future__ import annotations

import argparse
import glob
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "tests" / "text"))

from gold import REAL, SEP, fragment_at, load_real_rows, sha1  # noqa: E402

DEFAULT_SHARED = REPO_ROOT.parent / "shared" / "data"
SOURCES = (
    "emr_ccl2025_icd/records.jsonl",
    "corpus/ccks2019_yidu_emr/subtask1_training_afterrevise.txt",
    "corpus/ccks2017_emr/data_origin/*/*.txtoriginal.txt",
)
# Clause boundaries: a fragment never crosses one of these, and JSON quoting never enters it.
_CLAUSE_END = re.compile(r'[。；;！？!?\n"\\]|，|,')
HEADER = """\
# ehrtext gold segmentation of REAL EMR fragments, referenced by location (the research data is
# not copied here). Columns: source_file (relative to shared/data), line_number (1-based, UTF-8,
# BOM dropped, split on \\n), char_start, char_end (str indices into the line), sha1 of the
# fragment's UTF-8 bytes, expected token lengths. Expected = a careful clinical annotator's cut
# (guidelines: gold_segmentation_authored.tsv). Reader: tests/text/gold.py; maker:
# scripts/make_gold_real.py.
"""


def _source_files(shared: Path) -> list[str]:
    out = []
    for pattern in SOURCES:
        for path in sorted(glob.glob(str(shared / pattern))):
            out.append(str(Path(path).relative_to(shared)))
    return out


def cmd_candidates(args: argparse.Namespace) -> int:
    terms = [t for t in args.terms.split(",") if t]
    found = {t: 0 for t in terms}
    seen = set()
    for rel in _source_files(args.shared):
        if args.source and args.source not in rel:
            continue
        if all(n >= args.per_term for n in found.values()):
            break
        text = (args.shared / rel).read_text(encoding="utf-8-sig")
        for lineno, line in enumerate(text.split("\n"), 1):
            for term in terms:
                if found[term] >= args.per_term:
                    continue
                pos = line.find(term)
                while pos >= 0 and found[term] < args.per_term:
                    start = pos
                    while start > 0 and not _CLAUSE_END.match(line[start - 1]):
                        start -= 1
                    end = pos + len(term)
                    while end < len(line) and not _CLAUSE_END.match(line[end]):
                        end += 1
                    if end < len(line) and line[end] in "，,。；;":
                        end += 1  # keep the punctuation that closes the clause
                    frag = line[start:end]
                    if (
                        args.min_len <= len(frag) <= args.max_len
                        and not any(c.isspace() for c in frag)
                        and (rel, lineno, start) not in seen
                    ):
                        seen.add((rel, lineno, start))
                        found[term] += 1
                        print(f"{rel}\t{lineno}\t{start}\t{end}\t{frag}")
                    pos = line.find(term, pos + 1)
    missing = [t for t, n in found.items() if n < args.per_term]
    if missing:
        print(f"# fewer than {args.per_term} fragments for: {','.join(missing)}", file=sys.stderr)
    return 0


def cmd_emit(args: argparse.Namespace) -> int:
    rows = []
    bad = 0
    for n, line in enumerate(Path(args.annotations).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        source, lineno, start, end, joined = line.split("\t")[:5]
        text = fragment_at(args.shared, source, int(lineno), int(start), int(end))
        tokens = joined.split(SEP)
        if "".join(tokens) != text:
            print(f"line {n}: tokens do not spell the fragment {text!r}", file=sys.stderr)
            bad += 1
            continue
        if not args.min_len <= len(text) <= args.max_len:
            print(f"line {n}: fragment length {len(text)} outside the range", file=sys.stderr)
            bad += 1
            continue
        lengths = ",".join(str(len(t)) for t in tokens)
        rows.append(f"{source}\t{lineno}\t{start}\t{end}\t{sha1(text)}\t{lengths}")
    if bad:
        print(f"{bad} bad line(s): nothing written", file=sys.stderr)
        return 1
    Path(args.out).write_text(HEADER + "\n".join(rows) + "\n", encoding="utf-8")
    print(f"wrote {len(rows)} gold fragments to {args.out}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    for row in load_real_rows(args.gold):
        text = fragment_at(args.shared, row["source"], row["line"], row["start"], row["end"])
        ok = "ok " if sha1(text) == row["sha1"] else "SHA1-MISMATCH "
        tokens, pos = [], 0
        for n in row["lengths"]:
            tokens.append(text[pos : pos + n])
            pos += n
        print(f"{ok}{row['source']}:{row['line']}:{row['start']}  {SEP.join(tokens)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    ap.add_argument("--min-len", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=40)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("candidates", help="print candidate fragments around terms")
    c.add_argument("--terms", required=True, help="comma-separated terms")
    c.add_argument("--per-term", type=int, default=3)
    c.add_argument("--source", help="only source files whose path contains this")
    e = sub.add_parser("emit", help="annotations (outside the repo) -> gold TSV")
    e.add_argument("annotations")
    e.add_argument("--out", default=str(REAL))
    s = sub.add_parser("show", help="print the gold fragments with their expected tokens")
    s.add_argument("--gold", default=str(REAL))
    args = ap.parse_args(argv)
    return {"candidates": cmd_candidates, "emit": cmd_emit, "show": cmd_show}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
