"""The ConText gold set (``tests/text/data/context_gold.jsonl``): reader, split and scorer.

The set holds concept mentions in REAL de-identified EMR sentences under ``../shared/data``,
referenced by location only (the research data may not be copied into the project). One JSON
object a line::

    {"source": "emr_ccl2025_icd/records.jsonl",       # relative to the shared data root
     "locator": {"line": 12, "field": "既往史"},      # 1-based line; "field" for JSON lines
     "start": 40, "end": 71,                          # the sentence: text[start:end]
     "sha1": "…",                                     # SHA-1 of the sentence's UTF-8 bytes
     "mentions": [{"start": 2, "end": 5,              # offsets relative to the sentence
                   "negated": true, "uncertain": false, "historical": true,
                   "family": false, "hypothetical": false}, …]}

``line`` counts lines of the file decoded as UTF-8 (a BOM dropped) and split on ``"\\n"``;
with ``field`` the line is a JSON object and the text is that field's value, else the text is
the line itself. Sources: CCL2025 ``records.jsonl`` (fields), CCKS2017 ``*.txtoriginal.txt``
(one section a file: 一般项目, 病史特点, 诊疗经过, 出院情况) and CCKS2019 (``originalText``).

Annotation guidelines (what a clinician means, not what the rules do):

* Mentions are clinical problems -- diseases, symptoms, signs, abnormal findings, allergies --
  plus procedures or treatments when a history, negation or condition bears on them
  (``必要时DSA``). Every problem mention of a chosen sentence is annotated, cue or no cue.
* ``negated``: stated absent, including a test or sign with a normal result (``Murphy征阴性``,
  ``冠状动脉CTA未见明显异常``, ``cd68(-)``) and "unchanged" (``体重未见明显变化``).
* ``uncertain``: the writer does not assert it (考虑, 可能, 不除外, 待排, 疑似, 可疑, ?). A symptom
  whose cause is pending is certain: ``胸闷原因待查`` does not make 胸闷 uncertain, nor
  ``结节性质待定`` the nodule; a certain finding of uncertain grade (``狭窄（轻度可能）``) stays
  certain.
* ``historical``: part of the patient's past medical history as Chinese EMRs define it
  (既往史 content: earlier or chronic diseases stated as history, ``高血压病史10年``; past
  operations, injuries, transfusions, allergies, infection and contact history; ``X术后``
  entries of a diagnosis list), also when denied (``否认糖尿病史`` is negated AND historical).
  The present illness and its course (现病史 narrative, earlier visits and tests for it, even
  with 曾) and current findings are not historical; nor is a current state written inside a
  history section (``现右臂抬起受限``).
* ``family``: the experiencer is a relative (parents, siblings, children, spouse). A relative's
  condition is never ``historical`` (that flag is about the patient's own past).
* ``hypothetical``: mentioned as a possible future event or a conditional plan
  (``如出现黑便``, ``不适随诊``, ``必要时增强检查``).

Split: ``dev`` or ``heldout`` by the SHA-1 of the sentence id (``source:line:field:start-end``),
deterministic and independent of the rules; rules are tuned on ``dev`` only.

Example:
    >>> rows = load_rows()
    >>> len(rows) > 100, sorted(rows[0])
    (True, ['end', 'locator', 'mentions', 'sha1', 'source', 'start'])
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ehrtext.text.context import ConText
from ehrtext.text.sections import Section, sections_from_fields, split_sections

DATA = Path(__file__).resolve().parent / "data"
GOLD = DATA / "context_gold.jsonl"
FLAGS = ("negated", "uncertain", "historical", "family", "hypothetical")
SPLITS = ("dev", "heldout")


class GoldError(ValueError):
    """A gold line is malformed or no longer matches the data it points to."""


@dataclass(frozen=True)
class GoldSentence:
    """A resolved gold sentence: its document as the pipeline sees it and the mentions.

    ``doc`` is the text ConText runs on (a record built by ``sections_from_fields``, a CCKS
    file's section, or a CCKS2019 text), ``sections`` its sections and ``offset`` the position
    of the sentence in ``doc``. ``text`` is never written anywhere by the tests.
    """

    id: str
    split: str
    text: str
    doc: str
    sections: tuple[Section, ...]
    offset: int
    mentions: tuple[dict, ...]


def sentence_id(row: dict) -> str:
    loc = row["locator"]
    return f"{row['source']}:{loc['line']}:{loc.get('field', '')}:{row['start']}-{row['end']}"


def split_of(row: dict) -> str:
    digest = hashlib.sha1(sentence_id(row).encode("utf-8")).hexdigest()
    return SPLITS[int(digest, 16) % 2]


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def load_rows(path: str | Path = GOLD) -> list[dict]:
    """The rows of the gold file, checked for shape (no shared data needed)."""
    path = Path(path)
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ok = (
                isinstance(row["source"], str)
                and isinstance(row["locator"]["line"], int)
                and 0 <= row["start"] < row["end"]
                and len(row["sha1"]) == 40
                and row["mentions"]
            )
            for m in row["mentions"]:
                ok = ok and 0 <= m["start"] < m["end"] <= row["end"] - row["start"]
                ok = ok and all(isinstance(m[f], bool) for f in FLAGS)
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise GoldError(f"{path.name}:{lineno}: malformed gold row")
        rows.append(row)
    return rows


@lru_cache(maxsize=64)
def _lines(path: str) -> tuple[str, ...]:
    return tuple(Path(path).read_text(encoding="utf-8-sig").split("\n"))


def _document(shared_root: Path, row: dict) -> tuple[str, tuple[Section, ...], int]:
    """The document around a gold sentence, its sections, and the offset of the field/line."""
    source, loc = row["source"], row["locator"]
    path = shared_root / source
    if not path.is_file():
        raise GoldError(f"{source} not found under {shared_root}")
    lines = _lines(str(path))
    if not 1 <= loc["line"] <= len(lines):
        raise GoldError(f"{source}: no line {loc['line']}")
    line = lines[loc["line"] - 1]
    field = loc.get("field")
    if source.startswith("emr_ccl2025_icd/"):
        record = json.loads(line)
        return _record_document(record, field)
    if field is not None:  # CCKS2019: one JSON object a line
        text = json.loads(line)[field]
        return text, tuple(split_sections(text)), 0
    # CCKS2017: the file is one section, named by its folder (病史特点, 诊疗经过 …)
    return _record_document({Path(source).parent.name: line}, Path(source).parent.name)


def _record_document(record: dict, field: str) -> tuple[str, tuple[Section, ...], int]:
    text, outer = sections_from_fields(record)
    _, sections = sections_from_fields(record, split_inner=True)
    for s in outer:
        if text[s.header_start : s.header_end].rstrip("：") == field:
            return text, tuple(sections), s.header_end
    raise GoldError(f"field {field!r} is not a section of its record")


def resolve(shared_root: str | Path, path: str | Path = GOLD) -> list[GoldSentence]:
    """Read the gold sentences from the shared data, checking each SHA-1.

    Raises :class:`GoldError` when a file, line or span is missing or a sentence's SHA-1
    differs (the data changed: the gold row must be re-made, never silently skipped).
    """
    shared_root = Path(shared_root)
    out = []
    for row in load_rows(path):
        doc, sections, offset = _document(shared_root, row)
        start, end = offset + row["start"], offset + row["end"]
        text = doc[start:end]
        if end > len(doc) or sha1(text) != row["sha1"]:
            raise GoldError(f"{sentence_id(row)}: SHA-1 mismatch (the shared data changed)")
        out.append(
            GoldSentence(
                sentence_id(row),
                split_of(row),
                text,
                doc,
                sections,
                start,
                tuple(row["mentions"]),
            )
        )
    return out


def score(
    sentences: list[GoldSentence], ctx: ConText | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """Precision / recall / F1 per flag (and for ``affirmed``) on ``dev``, ``heldout``, ``all``.

    Returns ``{split: {flag: {"tp", "fp", "fn", "support", "precision", "recall", "f1"}}}``
    plus ``{split: {"_mentions": n}}``; also the mistakes by sentence id under ``"errors"``.
    """
    ctx = ctx or ConText()
    names = (*FLAGS, "affirmed")
    counts = {s: {f: [0, 0, 0] for f in names} for s in (*SPLITS, "all")}
    n = {s: 0 for s in (*SPLITS, "all")}
    errors: list[dict[str, Any]] = []
    for sent in sentences:
        spans = [(sent.offset + m["start"], sent.offset + m["end"]) for m in sent.mentions]
        results = ctx.apply(sent.doc, spans, sections=list(sent.sections))
        for m, a in zip(sent.mentions, results, strict=True):
            gold = {f: m[f] for f in FLAGS}
            gold["affirmed"] = not any(gold.values())
            pred = a.flags()
            pred["affirmed"] = a.affirmed
            for split in (sent.split, "all"):
                n[split] += 1
                for f in names:
                    c = counts[split][f]
                    if pred[f] and gold[f]:
                        c[0] += 1
                    elif pred[f]:
                        c[1] += 1
                    elif gold[f]:
                        c[2] += 1
            wrong = [f for f in FLAGS if pred[f] != gold[f]]
            if wrong:
                errors.append(
                    {
                        "id": sent.id,
                        "split": sent.split,
                        "start": m["start"],
                        "end": m["end"],
                        "missed": [f for f in wrong if gold[f]],
                        "spurious": [f for f in wrong if pred[f]],
                    }
                )
    out: dict[str, Any] = {}
    for split, per in counts.items():
        out[split] = {"_mentions": n[split]}
        for f, (tp, fp, fn) in per.items():
            p = tp / (tp + fp) if tp + fp else 0.0
            r = tp / (tp + fn) if tp + fn else 0.0
            f1 = 2 * p * r / (p + r) if p + r else 0.0
            out[split][f] = {
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "support": tp + fn,
                "precision": round(p, 4),
                "recall": round(r, 4),
                "f1": round(f1, 4),
            }
    out["errors"] = errors
    return out
