#!/usr/bin/env python
"""Benchmark: dictionary concept matching on the real EMR notes of ../shared/data.

Engines, on the same normalized notes and the same lexicon (the active terms of the default
``ConceptMatcher``: shipped lexicons, 6 categories), each returning leftmost-longest,
non-overlapping spans without ehrtext's boundary rules:

  (a) ahocorasick_rs (Rust), one call per note over the ``str``
  (c) pyahocorasick (C), ``Automaton.iter_long`` per note
  (d) spaCy ``PhraseMatcher`` on a blank ``zh`` pipeline with its character segmenter
      (``make_doc`` + matcher + a leftmost-longest pass over the overlapping matches)
  (e) the same with docs made from ehrtext ``Tokenizer`` tokens (patterns tokenized alike);
      token-aligned matches only, so it also shows what token alignment changes

Agreement with (a): shared spans / all spans (Jaccard), and recall/precision of each engine's
spans against (a). Also the bare automaton calls of ahocorasick_rs: per note over the ``str``
(a0), and over the UTF-16 code units of 256 notes joined (b0, what ``ConceptMatcher.pipe``
does).

Then the full ``ConceptMatcher`` (normalize, match, boundary rules, offsets into the original
note): ``find`` per note, ``pipe``, ``pipe`` on notes normalized beforehand, the ``tokenizer=``
mode and how many concepts it drops; and linearity on long and pathological inputs.

MB = 10^6 bytes of UTF-8. Each figure is the median of ``--repeats`` runs over the whole corpus.

    python scripts/bench_concepts.py                    # ~3 min on 2 busy cores
    python scripts/bench_concepts.py --repeats 3 --skip-spacy --json out.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shared_corpus import emr_notes, shared_data  # noqa: E402

BATCH = 256


def _mb(texts: list[str]) -> float:
    return sum(len(t.encode("utf-8")) for t in texts) / 1e6


def _rates(fn, texts: list[str], repeats: int) -> dict:
    mb = _mb(texts)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(texts)
        rates.append(mb / (time.perf_counter() - start))
    return {"median_mb_s": statistics.median(rates), "runs_mb_s": rates}


def _leftmost_longest(matches: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Greedy leftmost-longest, non-overlapping selection from overlapping (start, end) spans."""
    out = []
    pos = -1
    for s, e in sorted(matches, key=lambda m: (m[0], -m[1])):
        if s >= pos:
            out.append((s, e))
            pos = e
    return out


def _agreement(ref: list[list[tuple[int, int]]], got: list[list[tuple[int, int]]]) -> dict:
    a = {(i, s, e) for i, spans in enumerate(ref) for s, e in spans}
    b = {(i, s, e) for i, spans in enumerate(got) for s, e in spans}
    both = len(a & b)
    return {
        "spans": len(b),
        "jaccard": both / max(1, len(a | b)),
        "recall_vs_a": both / max(1, len(a)),
        "precision_vs_a": both / max(1, len(b)),
    }


def _best(fn, arg, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(arg)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure (default 5)")
    parser.add_argument("--json", type=Path, default=Path("bench_out/bench_concepts.json"))
    parser.add_argument("--skip-spacy", action="store_true")
    args = parser.parse_args(argv)

    import ahocorasick
    import ahocorasick_rs

    from ehrtext import __version__
    from ehrtext.text import Tokenizer
    from ehrtext.text.concepts import ConceptMatcher
    from ehrtext.text.normalize import normalize_many

    load_start = os.getloadavg()
    notes = list(emr_notes(shared_data()))
    mb = _mb(notes)
    print(
        f"corpus: {len(notes):,} EMR notes, {mb:.2f} MB; {os.cpu_count()} CPUs, load {load_start}"
    )

    start = time.perf_counter()
    matcher = ConceptMatcher()
    matcher.find("预热")
    build_s = time.perf_counter() - start
    table = matcher._build().table  # the active terms (normalized), by pattern id
    terms = table.terms
    print(f"lexicon: {len(terms):,} active terms, matcher built in {build_s:.2f} s")
    normalized = normalize_many(notes)
    texts = [n.text for n in normalized]

    # ---- engines --------------------------------------------------------------------------
    ac = ahocorasick_rs.AhoCorasick(terms, matchkind=ahocorasick_rs.MatchKind.LeftmostLongest)
    ac16 = ahocorasick_rs.BytesAhoCorasick(
        [t.encode("utf-16-le") for t in terms], matchkind=ahocorasick_rs.MatchKind.LeftmostLongest
    )
    pyac = ahocorasick.Automaton()
    for i, t in enumerate(terms):
        pyac.add_word(t, (i, len(t)))
    pyac.make_automaton()

    def a_rs_str(batch):
        return [[(s, e) for _, s, e in ac.find_matches_as_indexes(t)] for t in batch]

    def b0_rs_utf16_batched_call_only(batch):
        for k in range(0, len(batch), BATCH):
            ac16.find_matches_as_indexes("\x05".join(batch[k : k + BATCH]).encode("utf-16-le"))

    def a0_rs_str_call_only(batch):
        for t in batch:
            ac.find_matches_as_indexes(t)

    def c_pyahocorasick(batch):
        return [[(e - n + 1, e + 1) for e, (_, n) in pyac.iter_long(t)] for t in batch]

    engines = {
        "a_ahocorasick_rs_str": a_rs_str,
        "c_pyahocorasick_iter_long": c_pyahocorasick,
    }
    call_only = {
        "a0_ahocorasick_rs_str_call_only": a0_rs_str_call_only,
        "b0_ahocorasick_rs_utf16_batched_call_only": b0_rs_utf16_batched_call_only,
    }
    tok = Tokenizer()
    tok.tokenize("预热")
    if not args.skip_spacy:
        import spacy
        from spacy.matcher import PhraseMatcher
        from spacy.tokens import Doc

        nlp = spacy.blank("zh")  # segmenter "char": one token per character
        pm = PhraseMatcher(nlp.vocab, attr="ORTH")
        pm.add("C", [nlp.make_doc(t) for t in terms])

        def d_spacy_char(batch):
            out = []
            for t in batch:
                doc = nlp.make_doc(t)
                spans = [(doc[s].idx, doc[e - 1].idx + len(doc[e - 1])) for _, s, e in pm(doc)]
                out.append(_leftmost_longest(spans))
            return out

        def _doc(toks) -> Doc:
            spaces = [e < s for e, s in zip(toks.ends, toks.starts[1:], strict=False)] + [False]
            return Doc(nlp.vocab, words=toks.norms, spaces=spaces)

        pm_tok = PhraseMatcher(nlp.vocab, attr="ORTH")
        pm_tok.add("C", [_doc(tok.tokenize(t)) for t in terms])

        def e_spacy_ehrtext_tokens(batch):
            out = []
            for toks in tok.pipe(batch):
                if not len(toks):
                    out.append([])
                    continue
                starts, ends = toks.starts, toks.ends
                spans = [(starts[s], ends[e - 1]) for _, s, e in pm_tok(_doc(toks))]
                out.append(_leftmost_longest(spans))
            return out

        engines["d_spacy_phrasematcher_char"] = d_spacy_char
        engines["e_spacy_phrasematcher_ehrtext_tokens"] = e_spacy_ehrtext_tokens

    results: dict[str, dict] = {}
    reference = a_rs_str(texts)
    for name, fn in engines.items():
        reps = args.repeats if not name.startswith(("d_", "e_")) else max(1, args.repeats // 2)
        fn(texts[:20])  # warm up
        results[name] = _rates(fn, texts, reps)
        results[name]["agreement"] = _agreement(reference, fn(texts))
        ag = results[name]["agreement"]
        print(
            f"  {name:38s} {results[name]['median_mb_s']:8.2f} MB/s  spans {ag['spans']:,}  "
            f"jaccard {ag['jaccard']:.4f}"
        )

    for name, fn in call_only.items():  # the automaton call alone (its match list included)
        fn(texts[:20])
        results[name] = _rates(fn, texts, args.repeats)
        print(f"  {name:38s} {results[name]['median_mb_s']:8.2f} MB/s")

    # ---- the ConceptMatcher --------------------------------------------------------------
    def consume(it):
        for _ in it:
            pass

    matcher_runs = {
        "normalize_only": lambda b: normalize_many(b),
        "find": lambda b: consume(matcher.find(t) for t in b),
        "pipe": lambda b: consume(matcher.pipe(b, batch_size=BATCH)),
    }
    for name, fn in matcher_runs.items():
        results[f"matcher_{name}"] = _rates(fn, notes, args.repeats)
    # on notes normalized beforehand (the pipeline normalizes once for every component)
    mb_norm = _mb(notes)
    rates = []
    for _ in range(args.repeats):
        pre = normalize_many(notes)  # fresh objects: their offset tables are not cached yet
        start = time.perf_counter()
        consume(matcher.pipe(pre, batch_size=BATCH))
        rates.append(mb_norm / (time.perf_counter() - start))
    results["matcher_pipe_prenormalized"] = {
        "median_mb_s": statistics.median(rates),
        "runs_mb_s": rates,
    }

    aligned = ConceptMatcher(tokenizer=tok)
    results["matcher_pipe_tokenizer_mode"] = _rates(
        lambda b: consume(aligned.pipe(b, batch_size=BATCH)), notes, max(1, args.repeats // 2)
    )
    results["tokenizer_pipe_only"] = _rates(
        lambda b: consume(tok.pipe(b, batch_size=BATCH)), notes, max(1, args.repeats // 2)
    )
    for name in (
        "matcher_normalize_only",
        "matcher_find",
        "matcher_pipe",
        "matcher_pipe_prenormalized",
        "matcher_pipe_tokenizer_mode",
        "tokenizer_pipe_only",
    ):
        print(f"  {name:38s} {results[name]['median_mb_s']:8.2f} MB/s")

    # what the rules and the tokenizer mode change
    plain = list(matcher.pipe(notes))
    tokmode = list(aligned.pipe(notes))
    per_cat = collections.Counter(c for cs in plain for c in cs.categories)
    plain_set = {(i, c.start, c.end, c.norm) for i, cs in enumerate(plain) for c in cs}
    tok_set = {(i, c.start, c.end, c.norm) for i, cs in enumerate(tokmode) for c in cs}
    dropped = collections.Counter(
        (t, table.categories[matcher._state.index[t]]) for _, _, _, t in plain_set - tok_set
    )
    raw_ll = sum(len(spans) for spans in reference)
    effect = {
        "concepts": len(plain_set),
        "per_category": dict(per_cat.most_common()),
        "raw_leftmost_longest_spans": raw_ll,
        "tokenizer_mode_concepts": len(tok_set),
        "tokenizer_mode_kept": len(plain_set & tok_set) / max(1, len(plain_set)),
        "tokenizer_mode_only": len(tok_set - plain_set),
        "tokenizer_mode_dropped_top": [[t, c, n] for (t, c), n in dropped.most_common(25)],
    }
    print(
        f"  concepts {effect['concepts']:,} (raw leftmost-longest spans {raw_ll:,}); tokenizer "
        f"mode keeps {effect['tokenizer_mode_kept']:.1%}, adds {effect['tokenizer_mode_only']:,}"
    )
    print("  per category:", effect["per_category"])
    print("  dropped by token alignment (top):", effect["tokenizer_mode_dropped_top"][:12])

    # ---- linearity ------------------------------------------------------------------------
    one_mb = "\n".join(notes).encode("utf-8")[:1_000_000].decode("utf-8", "ignore")
    t1, t10 = _best(matcher.find, one_mb), _best(matcher.find, one_mb * 10)
    linear = {"note_1mb_s": t1, "note_10mb_s": t10, "ratio_10x": t10 / t1}
    print(f"  long note: 1 MB {t1:.3f}s, 10 MB {t10:.3f}s -> {t10 / t1:.1f}x time for 10x text")
    patho = {}
    for label, unit in (
        ("digits", "1234567890"),
        ("punctuation", "，。！？；：、（）"),
        ("latin", "CTAPCIS"),
        ("han_no_punctuation_yielding", "双肺炎左胸痛乙状结肠癌"),
    ):
        small = (unit * (200_000 // len(unit) + 1))[:200_000]
        ts, tb = _best(matcher.find, small), _best(matcher.find, small * 10)
        patho[label] = {"200k_s": ts, "2m_s": tb, "ratio_10x": tb / ts}
        print(f"  pathological {label}: 200k {ts:.4f}s, 2M {tb:.4f}s -> {tb / ts:.1f}x")

    rate = {k: v["median_mb_s"] for k, v in results.items()}
    ratios = {
        "b0_batched_call_over_a0_call": rate["b0_ahocorasick_rs_utf16_batched_call_only"]
        / rate["a0_ahocorasick_rs_str_call_only"]
    }
    ratios["a_over_c_pyahocorasick"] = (
        rate["a_ahocorasick_rs_str"] / rate["c_pyahocorasick_iter_long"]
    )
    if "d_spacy_phrasematcher_char" in rate:
        ratios["a_over_d_spacy_char"] = (
            rate["a_ahocorasick_rs_str"] / rate["d_spacy_phrasematcher_char"]
        )
        ratios["a_over_e_spacy_tokens"] = (
            rate["a_ahocorasick_rs_str"] / rate["e_spacy_phrasematcher_ehrtext_tokens"]
        )
        ratios["matcher_pipe_over_d_spacy_char"] = (
            rate["matcher_pipe"] / rate["d_spacy_phrasematcher_char"]
        )
    ratios["matcher_pipe_over_target_30"] = rate["matcher_pipe"] / 30.0
    ratios["matcher_pipe_prenormalized_over_target_30"] = rate["matcher_pipe_prenormalized"] / 30.0
    for key, value in ratios.items():
        print(f"  ratio {key:32s} {value:7.2f}x")

    try:
        import spacy

        spacy_version = spacy.__version__
    except ImportError:
        spacy_version = None

    report = {
        "benchmark": "concepts",
        "ehrtext_version": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_start_end": [load_start, os.getloadavg()],
        "versions": {
            "ahocorasick_rs": getattr(ahocorasick_rs, "__version__", "1.x"),
            "pyahocorasick": getattr(ahocorasick, "__version__", "2.x"),
            "spacy": spacy_version,
        },
        "corpus": {"notes": len(notes), "mb": mb, "source": "emr_notes(shared_data())"},
        "lexicon": {"active_terms": len(terms), "build_s": build_s},
        "results": results,
        "effect": effect,
        "long_note": linear,
        "pathological": patho,
        "ratios": ratios,
        "command": "python scripts/bench_concepts.py " + " ".join(argv or sys.argv[1:]),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
