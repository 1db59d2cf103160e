"""Readers for the real public datasets in ``../shared/data`` used by the benchmark scripts.

Nothing here is shipped: the data stays outside the project (most of it may not be
redistributed). Each function yields plain note or sentence strings, in a fixed order.

Example:
    >>> from shared_corpus import shared_data, emr_notes
    >>> notes = list(emr_notes(shared_data()))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The admission-time and later sections of the CCL2025 records, in note order.
CCL2025_SECTIONS = [
    "主诉", "现病史", "既往史", "个人史", "婚姻史", "家族史", "入院情况", "入院诊断",
    "诊疗经过", "出院情况", "出院医嘱",
]


def shared_data() -> Path:
    path = Path(os.environ.get("EHRTEXT_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        raise SystemExit(f"the shared datasets are not at {path}; set EHRTEXT_SHARED_DATA")
    return path


def _jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                yield json.loads(line)


def ccl2025_record_text(record: dict, sections=CCL2025_SECTIONS) -> str:
    """A CCL2025 record as one note with its section headers (``主诉：…``)."""
    parts = []
    for name in sections:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            parts.append(f"{name}：{value.strip()}")
    return "\n".join(parts)


def ccl2025_notes(root: Path) -> Iterator[str]:
    for name in ("records.jsonl", "unlabeled_records.jsonl"):
        for rec in _jsonl(root / "emr_ccl2025_icd" / name):
            yield ccl2025_record_text(rec)


def ccks2017_notes(root: Path) -> Iterator[str]:
    for path in sorted((root / "corpus" / "ccks2017_emr").rglob("*.txtoriginal.txt")):
        yield path.read_text(encoding="utf-8")


def ccks2019_notes(root: Path) -> Iterator[str]:
    folder = root / "corpus" / "ccks2019_yidu_emr"
    for name in ("subtask1_training_afterrevise.txt", "task1_test.json"):
        for rec in _jsonl(folder / name):
            yield rec["originalText"]


def emr_notes(root: Path) -> Iterator[str]:
    """Real EMR notes: CCL2025 cardiology records, CCKS2017 and CCKS2019 (Yidu) EMR texts."""
    yield from ccl2025_notes(root)
    yield from ccks2017_notes(root)
    yield from ccks2019_notes(root)


def cmeee_sentences(root: Path) -> Iterator[str]:
    folder = root / "corpus" / "cmeee"
    for name in ("train_data.txt", "val_data.txt"):
        with open(folder / name, encoding="utf-8") as fh:
            for line in fh:
                text = line.split("|||", 1)[0].strip()
                if text:
                    yield text


def chip_ctc_sentences(root: Path) -> Iterator[str]:
    for name in ("train.jsonl", "unlabeled.jsonl"):
        for rec in _jsonl(root / "chip_ctc" / name):
            yield rec["text"]


def cmid_questions(root: Path) -> Iterator[str]:
    for rec in _jsonl(root / "corpus" / "cmid" / "CMID.json"):
        text = rec.get("originalText")
        if isinstance(text, str):
            yield text


def medical_book_paragraphs(root: Path) -> Iterator[str]:
    with open(root / "corpus" / "medical_books" / "medical_books_plaintext.txt", encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if line:
                yield line


def tcm_manuals(root: Path) -> Iterator[str]:
    for rec in _jsonl(root / "corpus" / "tcm_drug_manuals" / "train.jsonl.txt"):
        yield rec["text"]


def mixed_benchmark_texts(root: Path, min_mb: float = 20.0) -> list[str]:
    """At least ``min_mb`` MB (UTF-8) of real text: all EMR notes first, then sentences,
    questions, drug manuals and textbook paragraphs, in a fixed order."""
    texts: list[str] = []
    size = 0
    sources = [emr_notes, cmeee_sentences, chip_ctc_sentences, cmid_questions, tcm_manuals,
               medical_book_paragraphs]
    for source in sources:
        for text in source(root):
            texts.append(text)
            size += len(text.encode("utf-8"))
            if size >= min_mb * 1e6 and source is medical_book_paragraphs:
                return texts
    return texts
