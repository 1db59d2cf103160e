"""Train clinical word2vec on the shared corpora and evaluate it (the figures in BENCHMARKS).

One command:

    python scripts/train_embeddings.py                    # all text, ~76 MB (a few minutes)
    python scripts/train_embeddings.py --limit-mb 5       # a quick look

Text (read from ../shared/data, or $EHRTEXT_SHARED_DATA; nothing is copied into the project;
exact duplicate texts are dropped):

* EMR notes: CCL2025 cardiology records (+ unlabelled), CCKS2017 and CCKS2019 (Yidu) EMR texts;
* corpus/: CBLUE texts (CHIP-CDN raw diagnoses — the ``text`` field only, never the
  normalized answers the evaluation scores —, CHIP-STS, CMeEE, CMeIE, KUAKE-QIC/QQR/QTR
  queries and titles), CMeEE sentences, CMID questions, drug manuals, the medical textbooks.

Training: skip-gram, 200 dimensions, window 5, negative 5, min_count 5, 5 epochs, 2 gensim
workers, seed 42, 2 tokenizing processes, the default Tokenizer (rjieba + medical dictionary).

Evaluation (``ehrtext.embeddings.evaluate``):

* synonym retrieval, MRR and hit@10 of the standard term among the raw term's neighbours, on
  pairs where both sides are single tokens in the vocabulary: CHIP-CDN train+dev (raw
  diagnosis -> standard ICD name, records with one standard term) and CMeKG disease names ->
  the ICD-10 Beijing clinical name of their code;
* category coherence, precision@10 that a word's neighbours share its category, for the 1,000
  most frequent drugs / symptoms / diseases of the vocabulary, categories from the tags of the
  shipped dictionary ``corpora/dict/medical_words.txt`` (and, as a cross-check, from the
  QASystemOnMedicalKG lists, local use only).

Writes ``OUTPUT/report.json`` (with the vectors in OUTPUT) and prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from shared_corpus import (  # noqa: E402
    _jsonl,
    cmeee_sentences,
    cmid_questions,
    emr_notes,
    medical_book_paragraphs,
    shared_data,
    tcm_manuals,
)

REPO = Path(__file__).resolve().parents[1]


def _json_array(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8-sig"))


def cblue_texts(root: Path) -> Iterator[str]:
    """Text fields of the CBLUE sets (labels and normalized answers are never read)."""
    base = root / "corpus" / "cblue_other"
    fields = {
        "CHIP-CDN": ["text"],
        "CHIP-STS": ["text1", "text2"],
        "CMeEE": ["text"],
        "CMeIE": ["text"],
        "KUAKE-QIC": ["query"],
        "KUAKE-QQR": ["query1", "query2"],
        "KUAKE-QTR": ["query", "title"],
    }
    for name, keys in fields.items():
        for path in sorted((base / name).glob(f"{name}_*.json")):
            head = path.read_text(encoding="utf-8-sig").lstrip()[:1]
            rows = _json_array(path) if head == "[" else list(_jsonl(path))
            for row in rows:
                for key in keys:
                    value = row.get(key)
                    if isinstance(value, str) and value.strip():
                        yield value


def cmeee_test_lines(root: Path) -> Iterator[str]:
    for name in ("test1.txt", "test2.txt"):
        with open(root / "corpus" / "cmeee" / name, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield line.strip()


def drug_manuals(root: Path) -> Iterator[str]:
    yield from tcm_manuals(root)
    for rec in _jsonl(root / "corpus" / "tcm_drug_manuals" / "test.jsonl.txt"):
        yield rec["text"]
    folder = root / "corpus" / "tcm_drug_manuals" / "chusai_xuanshou_unlabeled"
    for path in sorted(folder.glob("*.txt"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0):
        yield path.read_text(encoding="utf-8")
    # brat_train/*.txt are the texts of train.jsonl.txt again: not read


SOURCES = {
    "emr": emr_notes,
    "cblue": cblue_texts,
    "cmeee": lambda root: (*cmeee_sentences(root), *cmeee_test_lines(root)),
    "cmid": cmid_questions,
    "drug_manuals": drug_manuals,
    "medical_books": medical_book_paragraphs,
}


class CorpusStream:
    """All source texts once each (exact duplicates dropped), counting per source."""

    def __init__(self, root: Path, limit_mb: float | None = None) -> None:
        self.root = root
        self.limit = limit_mb * 1e6 if limit_mb else None
        self.per_source: dict[str, dict[str, float]] = {}
        self.duplicates = 0

    def __iter__(self) -> Iterator[str]:
        seen: set[bytes] = set()
        total = 0
        for name, source in SOURCES.items():
            stats = self.per_source.setdefault(name, {"texts": 0, "mb": 0.0})
            for text in source(self.root):
                data = text.encode("utf-8")
                digest = hashlib.blake2b(data, digest_size=12).digest()
                if digest in seen:
                    self.duplicates += 1
                    continue
                seen.add(digest)
                stats["texts"] += 1
                stats["mb"] += len(data) / 1e6
                total += len(data)
                yield text
                if self.limit and total >= self.limit:
                    return


def qasystem_categories(root: Path) -> dict[str, str]:
    folder = root / "lexicons" / "qasystem_medicalkg_dict"
    out: dict[str, str] = {}
    for label in ("disease", "drug", "symptom"):  # disease first, as the shipped dictionary
        for line in (folder / f"{label}.txt").read_text(encoding="utf-8").splitlines():
            word = line.strip()
            if word:
                out.setdefault(word, label)
    return out


def markdown(report: dict) -> str:
    info = report["training"]
    c = info["corpus"]
    t = info["timing"]
    lines = [
        f"Corpus: {c['notes']:,} texts ({c['note_mb']:.1f} MB), {c['lines']:,} lines, "
        f"{c['tokens']:,} tokens; vocabulary {info['vocab_size']:,} words (min_count "
        f"{info['params']['min_count']}).",
        f"Time: tokenize {t['prepare_seconds']:.1f} s ({c['mb_per_s']:.2f} MB/s, "
        f"{info['params']['prep_workers']} processes), train {t['train_seconds']:.1f} s "
        f"({t['words_per_second'] / 1e6:.2f} M words/s, {info['params']['epochs']} epochs, "
        f"{info['params']['workers']} workers), total {t['total_seconds']:.1f} s.",
        "",
        "| synonym set | pairs | single-token pairs | evaluated | MRR | hit@10 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["evaluation"]["synonyms"].items():
        lines.append(
            f"| {name} | {r['pairs_total']:,} | {r['pairs_single_token']:,} | "
            f"{r['pairs_evaluated']:,} | {r['mrr']:.3f} | {r['hit_at_k']:.3f} |"
        )
    for title, key in (("shipped dictionary tags", "evaluation"), ("QASystem lexicons", "qa")):
        coh = report[key]["coherence"]
        lines += [
            "",
            f"| category ({title}) | query words | precision@10 | chance | lift |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, r in coh.items():
            if name == "macro_precision":
                continue
            lines.append(
                f"| {name} | {r['queries']:,} | {r['precision']:.3f} | {r['chance']:.3f} | "
                f"{r['lift']:.1f}× |"
            )
        lines.append(f"| macro | | {coh['macro_precision']:.3f} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", type=Path, default=REPO / "out" / "embeddings_shared")
    parser.add_argument("--limit-mb", type=float, default=None, help="Stop after N MB of text.")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--dim", type=int, default=200)
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--cbow", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--prep-workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    from ehrtext.embeddings import evaluate_vectors, train_word2vec
    from ehrtext.embeddings.evaluate import load_cdn_pairs, load_icd_alias_pairs

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    for name in ("gensim", "datasets", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    root = shared_data()
    stream = CorpusStream(root, args.limit_mb)
    t0 = time.perf_counter()
    res = train_word2vec(
        stream,
        args.output,
        sg=0 if args.cbow else 1,
        vector_size=args.dim,
        window=5,
        min_count=args.min_count,
        negative=5,
        epochs=args.epochs,
        workers=args.workers,
        prep_workers=args.prep_workers,
        seed=args.seed,
        overwrite=True,
        save_formats=("bin", "txt"),
    )
    wall = time.perf_counter() - t0
    tok = res.tokenizer()
    pairs = {
        "CHIP-CDN (raw -> ICD name)": load_cdn_pairs(root / "corpus/cblue_other/CHIP-CDN"),
        "CMeKG disease -> ICD name": load_icd_alias_pairs(root / "lexicons"),
    }
    t1 = time.perf_counter()
    evaluation = evaluate_vectors(res, pairs=pairs, tokenizer=tok, k=10).to_dict()
    qa = evaluate_vectors(res, categories=qasystem_categories(root), k=10).to_dict()
    eval_seconds = time.perf_counter() - t1
    report = {
        "command": "python scripts/train_embeddings.py"
        + (" " + " ".join(argv) if argv else " ".join([""] + sys.argv[1:])).rstrip(),
        "training": res.info,
        "sources": {"per_source": stream.per_source, "duplicates_dropped": stream.duplicates},
        "wall_seconds": round(wall, 1),
        "evaluation": evaluation,
        "qa": {"coherence": qa["coherence"]},
        "eval_seconds": round(eval_seconds, 1),
    }
    (args.output / "report.json").write_text(
        json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    print(markdown(report))
    print(f"\nreport: {args.output / 'report.json'}")
    return report


if __name__ == "__main__":
    main()
