#!/usr/bin/env python
"""Dictionary-term integrity: of the occurrences of dictionary terms in real notes, the share
that the Tokenizer keeps as one token (target: >= 98 %).

Occurrences: each note is normalised the way the tokenizer does it (``Tokenizer.normalize``,
whose offset map brings matches back to the note as given; the emulation folds full-width to
half-width, 1:1) and scanned with an Aho-Corasick automaton of every word of the dictionary
(normalised the same way); the leftmost-longest non-overlapping matches are kept. A term that
starts or ends with a Latin letter or digit must not touch another one ("B超" is not matched in
"AB超"). An occurrence is

* **kept** when a token starts at its start and a token ends at its end, one token covering it;
* **not split** (looser) when no token boundary falls strictly inside it (the term may be part
  of a longer token; "in longer" reports that share).

Known limit of the scan: leftmost-longest over the medical words alone sometimes picks a term
that straddles the right cut ("面色红润" -> 色红, "静点头孢" -> 点头, "占位性病变" -> 性病),
so a few "broken" occurrences are the scan's errors, not the tokenizer's.

Notes (real, de-identified EMR text under ``../shared/data``; research licences, so nothing of
it is written to files: the JSON holds figures and dictionary terms only, the broken forms with
their neighbouring characters are only printed):

* ``tune``   = CCKS2017 ``corpus/ccks2017_emr/data_origin/*/*.txtoriginal.txt`` (1,200 sections)
  + CCKS2019 ``corpus/ccks2019_yidu_emr`` (1,000 training + 379 test texts);
* ``report`` = CCL2025 ``emr_ccl2025_icd/records.jsonl`` (156 cardiology records, every text
  field a note).

``--min-freq`` of ``scripts/build_medical_dict.py`` is TUNED on ``tune`` only (``--sweep``) and
the chosen value is REPORTED on ``report``; do not tune on ``report``.

Tokenizer: ``ehrtext.text.Tokenizer(backend=...)`` when importable (the shipped dictionary).
Otherwise, or with ``--emulate``, an emulation of its design: width-normalise; dictionary words
with a non-Han character are protected tokens matched literally (leftmost-longest); numbers and
Latin words by regex; runs of Han characters [\\u4e00-\\u9fd5] go to a ``rjieba.Jieba()`` (or
``jieba.Tokenizer()``) to which every pure-Han dictionary word is added with
``add_word(word, freq, tag)`` (it gives the same figures as the Tokenizer). ``--sweep`` rebuilds
the dictionary for each floor (``build_medical_dict.build``) into a temporary file and loads it
with ``Tokenizer(medical_dict=path)``. ``--gold`` also scores the gold segmentation lists of
``tests/text/data`` (span-level token F1, exact-sentence rate).

Results when the dictionary was built (rjieba, HMM on): floor sweep on ``tune`` 97.7 % (300),
97.8 % (2000), 98.0 % (4000-6000), 97.9 % (10000) -> default 5000; at 5000 ``tune`` 98.0 %
kept / 99.2 % not split, ``report`` 98.4 % / 99.2 %.

Examples::

    python scripts/measure_integrity.py                                 # report split
    python scripts/measure_integrity.py --corpus tune --sweep 300,2000,5000,10000 --gold
    python scripts/measure_integrity.py --corpus report --json-out /tmp/integrity.json
"""

from __future__ import annotations

import argparse
import bisect
import collections
import glob
import json
import re
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SHARED = REPO_ROOT.parent / "shared" / "data"
DEFAULT_DICT = REPO_ROOT / "corpora" / "dict" / "medical_words.txt"

_HAN_CHAR = re.compile("[\u4e00-\u9fd5]")
_ASCII_ALNUM = re.compile("[A-Za-z0-9]")
# Emulation only: a rough stand-in for the Tokenizer's regexes (numbers with units, Latin words).
_EMU_RE = re.compile(
    r"(?P<han>[\u4e00-\u9fd5]+)"
    r"|(?P<num>\d+(?:[.:/\-]\d+)*(?:[%A-Za-z\u03bc/^×*\d.]*)?)"
    r"|(?P<lat>[A-Za-z][A-Za-z0-9\-]*)"
    r"|(?P<sp>\s+)"
    r"|(?P<other>.)",
    re.S,
)


def fold_width(text: str) -> str:
    """Full-width ASCII -> half-width, U+3000 -> space; one char for one char."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0xFF01 <= code <= 0xFF5E:
            out.append(chr(code - 0xFEE0))
        elif code == 0x3000:
            out.append(" ")
        else:
            out.append(ch)
    return "".join(out)


def _normalize_for(tokenizer):
    """(text to scan, span -> original span) for a note, the way ``tokenizer`` normalizes."""
    if hasattr(tokenizer, "normalize"):  # ehrtext.text.Tokenizer: its own normalizer + offsets

        def norm(note: str):
            n = tokenizer.normalize(note)
            if n.offsets.is_identity:
                return n.text, None
            return n.text, n.to_original

        return norm
    return lambda note: (fold_width(note), None)


# ----------------------------------------------------------------------------- notes


def load_notes(shared: Path, corpus: str) -> list[tuple[str, str]]:
    """(source label, note text) pairs, in a fixed order."""
    notes: list[tuple[str, str]] = []
    if corpus in ("tune", "all"):
        for path in sorted(
            glob.glob(str(shared / "corpus/ccks2017_emr/data_origin/*/*.txtoriginal.txt"))
        ):
            notes.append(("ccks2017", Path(path).read_text(encoding="utf-8-sig")))
        for name in ("subtask1_training_afterrevise.txt", "task1_test.json"):
            path = shared / "corpus/ccks2019_yidu_emr" / name
            for line in path.read_text(encoding="utf-8-sig").splitlines():
                if line.strip():
                    notes.append(("ccks2019", json.loads(line)["originalText"]))
    if corpus in ("report", "all"):
        skip = {"病案标识", "主要诊断编码", "其他诊断编码"}
        path = shared / "emr_ccl2025_icd/records.jsonl"
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            for key, value in rec.items():
                if key not in skip and isinstance(value, str) and value.strip():
                    notes.append(("ccl2025", value))
    if not notes:
        raise SystemExit(f"no notes found under {shared} for corpus {corpus!r}")
    return notes


# ----------------------------------------------------------------------------- dictionary


def read_dict(path: Path) -> list[tuple[str, int, str]]:
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 3:
            entries.append((parts[0], int(parts[1]), parts[2]))
    return entries


class TermMatcher:
    """Leftmost-longest, non-overlapping dictionary matches with Latin/digit edge guards."""

    def __init__(self, words: Iterable[str]) -> None:
        import ahocorasick

        self.automaton = ahocorasick.Automaton()
        n = 0
        for w in words:
            self.automaton.add_word(w, len(w))
            n += 1
        if n:
            self.automaton.make_automaton()
        self.empty = n == 0

    def find(self, text: str) -> list[tuple[int, int]]:
        if self.empty:
            return []
        cands = []
        for end_idx, length in self.automaton.iter(text):
            start, end = end_idx - length + 1, end_idx + 1
            if (
                _ASCII_ALNUM.match(text[start])
                and start > 0
                and _ASCII_ALNUM.match(text[start - 1])
            ):
                continue
            if (
                _ASCII_ALNUM.match(text[end - 1])
                and end < len(text)
                and _ASCII_ALNUM.match(text[end])
            ):
                continue
            cands.append((start, -end))
        cands.sort()
        out = []
        last = 0
        for start, neg_end in cands:
            if start >= last:
                out.append((start, -neg_end))
                last = -neg_end
        return out


# ----------------------------------------------------------------------------- tokenizers


@dataclass(frozen=True)
class Tok:
    start: int
    end: int
    text: str


class EmulatedTokenizer:
    """Stand-in for ehrtext.text.Tokenizer (see the module docstring)."""

    def __init__(
        self, entries: Sequence[tuple[str, int, str]], backend: str = "rjieba", hmm: bool = True
    ) -> None:
        self.hmm = hmm
        if backend == "rjieba":
            import rjieba

            self.seg = rjieba.Jieba()
            self._cut = lambda s: self.seg.cut(s, self.hmm)
        else:
            import logging

            import jieba

            jieba.setLogLevel(logging.WARNING)
            self.seg = jieba.Tokenizer()
            self.seg.initialize()
            self._cut = lambda s: list(self.seg.cut(s, HMM=self.hmm))
        protected = []
        for word, freq, tag in entries:
            if all(_HAN_CHAR.match(c) for c in word):
                self.seg.add_word(word, freq, tag)
            else:
                protected.append(word)
        self.protected = TermMatcher(protected)

    def _plain(self, text: str, offset: int, out: list[Tok]) -> None:
        for m in _EMU_RE.finditer(text):
            kind = m.lastgroup
            if kind == "sp":
                continue
            if kind == "han":
                pos = m.start()
                for piece in self._cut(m.group()):
                    out.append(Tok(offset + pos, offset + pos + len(piece), piece))
                    pos += len(piece)
            else:
                out.append(Tok(offset + m.start(), offset + m.end(), m.group()))

    def tokenize(self, note: str) -> list[Tok]:
        text = fold_width(note)
        out: list[Tok] = []
        pos = 0
        for start, end in self.protected.find(text):
            self._plain(text[pos:start], pos, out)
            out.append(Tok(start, end, text[start:end]))
            pos = end
        self._plain(text[pos:], pos, out)
        return out


def real_tokenizer(backend: str, medical_dict: Path | None = None, hmm: bool = True):
    from ehrtext.text import Tokenizer  # type: ignore

    if medical_dict is None:
        return Tokenizer(backend=backend, hmm=hmm)
    return Tokenizer(backend=backend, medical_dict=medical_dict, hmm=hmm)


def make_tokenizer(args, entries, dict_path: Path | None):
    """(tokenizer, label): ehrtext's Tokenizer unless --emulate or it cannot be imported."""
    if not args.emulate:
        try:
            return real_tokenizer(args.backend, dict_path, args.hmm), "ehrtext.text.Tokenizer"
        except Exception as exc:  # noqa: BLE001
            print(f"(ehrtext Tokenizer unavailable: {exc!r}; using the emulation)")
    return EmulatedTokenizer(entries, args.backend, args.hmm), "emulation"


# ----------------------------------------------------------------------------- measuring


def measure(
    notes: Sequence[tuple[str, str]],
    tokenizer,
    entries: Sequence[tuple[str, int, str]],
    *,
    top: int = 30,
) -> tuple[dict, list]:
    """Return (summary dict, top broken terms with example forms)."""
    if hasattr(tokenizer, "normalize"):  # the tokenizer normalizes dictionary words too
        tag_of = {tokenizer.normalize(w).text: t for w, _, t in entries}
    else:
        tag_of = {w: t for w, _, t in entries}
    matcher = TermMatcher(tag_of)
    norm = _normalize_for(tokenizer)
    tot = collections.Counter()
    per_tag: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    per_source: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    per_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    broken = collections.Counter()
    forms: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for source, note in notes:
        text, to_original = norm(note)
        toks = tokenizer.tokenize(note)
        starts = {t.start for t in toks}
        ends = {t.end for t in toks}
        spans = {(t.start, t.end) for t in toks}
        bounds = sorted(starts | ends)
        toks_sorted = sorted(toks, key=lambda t: t.start)
        tok_starts = [t.start for t in toks_sorted]
        for ns, ne in matcher.find(text):
            term = text[ns:ne]
            tag = tag_of.get(term)
            if tag is None:  # a word the tokenizer's normalizer rewrote
                continue
            s, e = to_original(ns, ne) if to_original else (ns, ne)
            kept = (s, e) in spans
            i = bisect.bisect_right(bounds, s)
            not_split = not (i < len(bounds) and bounds[i] < e)
            j = bisect.bisect_right(tok_starts, s) - 1
            inside = (not kept) and j >= 0 and toks_sorted[j].end >= e
            kind = "han" if all(_HAN_CHAR.match(c) for c in term) else "mixed"
            for c in (tot, per_tag[tag], per_source[source], per_kind[kind]):
                c["occurrences"] += 1
                c["kept"] += kept
                c["not_split"] += not_split
                c["in_longer_token"] += inside
            if not kept:
                broken[term] += 1
                pieces = [t.text for t in toks if t.end > s and t.start < e]
                forms[term]["|".join(pieces)] += 1

    def fig(c: collections.Counter) -> dict:
        n = c["occurrences"]
        return {
            "occurrences": n,
            "kept": c["kept"],
            "kept_rate": round(c["kept"] / n, 5) if n else None,
            "not_split_rate": round(c["not_split"] / n, 5) if n else None,
            "in_longer_token_rate": round(c["in_longer_token"] / n, 5) if n else None,
        }

    summary = {
        "overall": fig(tot),
        "per_tag": {t: fig(c) for t, c in sorted(per_tag.items())},
        "per_source": {s: fig(c) for s, c in sorted(per_source.items())},
        "per_kind": {k: fig(c) for k, c in sorted(per_kind.items())},
        "notes": len(notes),
        "distinct_terms_broken": len(broken),
        "top_broken": [
            {"term": w, "tag": tag_of[w], "broken": n} for w, n in broken.most_common(top)
        ],
    }
    examples = [(w, n, forms[w].most_common(3)) for w, n in broken.most_common(top)]
    return summary, examples


def gold_scores(tokenizer, shared: Path) -> dict:
    """Span-level token precision / recall / F1 and exact-sentence rate on the gold lists."""
    sys.path.insert(0, str(REPO_ROOT / "tests" / "text"))
    import gold  # tests/text/gold.py

    sets = {"authored": gold.load_authored()}
    try:
        sets["real"] = gold.load_real(shared)
    except Exception as exc:  # noqa: BLE001
        print(f"(real gold unavailable: {exc})")
    out = {}
    for name, pairs in sets.items():
        tp = n_pred = n_gold = exact = 0
        for sentence, expected in pairs:
            gold_spans, pos = set(), 0
            for t in expected:
                pos = sentence.index(t, pos)
                gold_spans.add((pos, pos + len(t)))
                pos += len(t)
            pred = {(t.start, t.end) for t in tokenizer.tokenize(sentence)}
            tp += len(pred & gold_spans)
            n_pred += len(pred)
            n_gold += len(gold_spans)
            exact += pred == gold_spans
        p, r = tp / max(n_pred, 1), tp / max(n_gold, 1)
        out[name] = {
            "sentences": len(pairs),
            "precision": round(p, 4),
            "recall": round(r, 4),
            "f1": round(2 * p * r / max(p + r, 1e-9), 4),
            "exact": round(exact / max(len(pairs), 1), 4),
        }
    return out


def _print(summary: dict, examples: list, label: str) -> None:
    o = summary["overall"]
    print(
        f"== {label}: {summary['notes']:,} notes, {o['occurrences']:,} occurrences, "
        f"kept {o['kept_rate']:.2%}, not split {o['not_split_rate']:.2%}"
    )
    for name, g in summary.get("gold", {}).items():
        print(
            f"   gold   {name:<11}{g['sentences']:>9,}"
            f"  token F1 {g['f1']:.2%}  exact {g['exact']:.2%}"
        )
    for group in ("per_source", "per_kind", "per_tag"):
        for name, f in summary[group].items():
            print(
                f"   {group[4:]:<7}{name:<11}{f['occurrences']:>9,}  kept {f['kept_rate']:.2%}"
                f"  not split {f['not_split_rate']:.2%}  in longer {f['in_longer_token_rate']:.2%}"
            )
    if examples:
        print(f"   {len(examples)} most frequently broken terms (term, count, how it was cut):")
        for w, n, fs in examples:
            shown = "  ".join(f"{f} x{k}" for f, k in fs)
            print(f"     {w:<12}{n:>6}   {shown}")


def _load_builder():
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import build_medical_dict

    return build_medical_dict


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="shared/data folder")
    ap.add_argument("--dict", type=Path, default=DEFAULT_DICT)
    ap.add_argument("--corpus", choices=("tune", "report", "all"), default="report")
    ap.add_argument("--backend", choices=("rjieba", "jieba"), default="rjieba")
    ap.add_argument("--emulate", action="store_true", help="use the emulation, not ehrtext")
    ap.add_argument("--no-hmm", dest="hmm", action="store_false", help="emulation: HMM off")
    ap.add_argument("--sweep", help="comma-separated --min-freq values to try (emulation)")
    ap.add_argument("--max-len", type=int, help="sweep: --max-len of the in-memory builds")
    ap.add_argument("--with-herb", action="store_true", help="sweep: include herb names")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--gold", action="store_true", help="also score tests/text/data gold lists")
    ap.add_argument("--limit", type=int, help="only the first N notes (quick runs)")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args(argv)

    notes = load_notes(args.shared, args.corpus)
    if args.limit:
        notes = notes[: args.limit]
    result: dict = {"corpus": args.corpus, "backend": args.backend}

    if args.sweep:
        import tempfile

        builder = _load_builder()
        seg = builder._Segmenter()
        kwargs = {"with_herb": args.with_herb}
        if args.max_len:
            kwargs["max_len"] = args.max_len
        result.update(hmm=args.hmm, sweep={})
        with tempfile.TemporaryDirectory() as tmp:
            for value in [int(v) for v in args.sweep.split(",")]:
                t0 = time.time()
                entries = builder.build(min_freq=value, seg=seg, **kwargs)
                path = Path(tmp) / f"medical_words_{value}.txt"
                builder.write_dict(entries, path)
                tok, label = make_tokenizer(args, entries, path)
                result["tokenizer"] = label
                summary, examples = measure(notes, tok, entries, top=args.top)
                summary["dict_words"] = len(entries)
                if args.gold:
                    summary["gold"] = gold_scores(tok, args.shared)
                result["sweep"][str(value)] = summary
                _print(
                    summary, examples[:10], f"min-freq {value}, {label} ({time.time() - t0:.0f}s)"
                )
    else:
        entries = read_dict(args.dict)
        default = args.dict.resolve() == DEFAULT_DICT.resolve()
        tok, label = make_tokenizer(args, entries, None if default else args.dict)
        result.update(tokenizer=label, hmm=args.hmm, dict=str(args.dict))
        summary, examples = measure(notes, tok, entries, top=args.top)
        if args.gold:
            summary["gold"] = gold_scores(tok, args.shared)
        result.update(summary)
        _print(summary, examples, f"{args.corpus} / {label}")
        result["target_met"] = summary["overall"]["kept_rate"] >= 0.98

    text = json.dumps(result, ensure_ascii=False, indent=1)
    print(text)
    if args.json_out:
        args.json_out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
