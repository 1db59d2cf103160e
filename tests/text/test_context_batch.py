"""ConText's batch path (``_apply_many``, what TextPipeline runs) gives exactly what the
note-by-note sweep gives: the same offsets, flags and cues, whatever the batch size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ehrtext.text.concepts import ConceptMatcher
from ehrtext.text.context import ConText
from ehrtext.text.normalize import Normalized, OffsetMap, normalize_many
from ehrtext.text.sections import Sectionizer

REPO = Path(__file__).resolve().parents[2]
MATCHER = ConceptMatcher()
SECTIONIZER = Sectionizer()

EXTRA = [
    "",
    "   ",
    "主诉：胸痛2小时。\n既往史：否认高血压、糖尿病、冠心病史。\n家族史：母亲有乳腺癌。",
    "ＢＰ　150/90mmHg，\u200b无发热，考虑肺炎可能。",  # offsets move
    "1234567890" * 50,
    "，。！？" * 100,
    "既往史：否认糖尿病，1.无咳嗽 2.未见皮疹；(1)无发热(2)不除外肺炎；一、无腹痛。",
    "家族史：父亲有高血压病史，母亲否认糖尿病。既往史：曾患肺炎，如出现胸痛及时就诊。",
    "无\ue041\u4e65发热，否认咳嗽",  # a cue's UTF-16 bytes at an odd offset: redone on str
    "𠀀否认发热，𠀀无咳嗽",  # characters outside the BMP
    "无发热" + "，咳嗽" * 30 + "。",  # scopes cut by max_scope
]


def _notes() -> list[str]:
    path = REPO / "corpora" / "samples" / "notes.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines] + EXTRA


def _one_by_one(ctx: ConText, norms, columns, sections) -> list:
    return [
        ctx._sweep(n, s, e, secs, None) if s else []
        for n, (s, e), secs in zip(norms, columns, sections, strict=True)
    ]


def _batched(ctx: ConText, norms, columns, sections, size: int) -> list:
    out: list = []
    for i in range(0, len(norms), size):
        batch = slice(i, i + size)
        out.extend(ctx._apply_many(norms[batch], columns[batch], sections[batch], min_concepts=0))
    return out


def check_same(ctx: ConText, notes: list[str], sizes=(1, 3, 256)) -> list:
    """The assertions of ``notes`` (concepts of the shipped matcher, shipped sections) by the
    batch path, checked equal to the note-by-note ones for each batch size."""
    norms = normalize_many(notes)
    sections = [SECTIONIZER(n) for n in norms]
    columns = [(c.starts, c.ends) for c in MATCHER.pipe(norms)]
    expected = _one_by_one(ctx, norms, columns, sections)
    for size in sizes:
        assert _batched(ctx, norms, columns, sections, size) == expected, size
    return expected


def _flagged(results: list) -> int:
    return sum(not a.affirmed for note in results for a in note)


def test_shipped_rules_on_sample_notes() -> None:
    got = check_same(ConText(), _notes())
    n_cues = sum(len(a.cues) for note in got for a in note)
    assert _flagged(got) > 80 and n_cues > 100  # the notes exercise every kind of cue


def test_without_section_defaults() -> None:
    got = check_same(ConText(section_defaults=False), _notes())
    assert not any(c.direction == "section" for note in got for a in note for c in a.cues)


def test_rules_of_every_shape() -> None:
    ctx = ConText()
    for rule in (
        # a scope that crosses commas, both ways
        {"cue": "未", "category": "NEGATED_EXISTENCE", "direction": "bidirectional",
         "stop_at_comma": False},
        # a second rule on a shipped cue: two cues at one place
        {"cue": "否认", "category": "HISTORICAL", "direction": "forward", "max_scope": 6},
        # patterns with anchors: they see the note's own start and end
        {"pattern": "^主诉", "category": "HYPOTHETICAL", "direction": "forward"},
        {"pattern": "(?:可能|待排)$", "category": "POSSIBLE", "direction": "backward",
         "stop_at_comma": False},
        {"pattern": "(?<![^，])考虑", "category": "POSSIBLE", "direction": "forward"},
        # a token limit (no tokens given: two characters a token)
        {"cue": "疑似", "category": "POSSIBLE", "direction": "forward", "max_scope": 2,
         "scope_unit": "tokens"},
        {"cue": "除外", "direction": "terminate", "categories": ["NEGATED_EXISTENCE"]},
        {"cue": "无明显", "direction": "pseudo"},
    ):  # fmt: skip
        ctx.add_rule(rule)
    notes = _notes() + ["主诉：发热", "考虑肺炎可能", "，考虑肺炎，疑似结核病待排"]
    got = check_same(ctx, notes)
    assert _flagged(got) > 80


def test_overlapping_spans_and_a_separator_in_a_note() -> None:
    ctx = ConText()
    text = "否认高血压病史，无\x05发热"  # not normalized: the separator is in the note
    norm = Normalized(text, text, OffsetMap(None, len(text)))
    nested = ([2, 3, 10], [6, 5, 12])  # 高血压病 ⊃ 血压: sorted by (start, end), nested
    plain = ([2, 10], [5, 12])
    for columns in (nested, plain):
        expected = _one_by_one(ctx, [norm, norm], [columns, plain], [None, None])
        got = ctx._apply_many([norm, norm], [columns, plain], [None, None], min_concepts=0)
        assert got == expected
        assert expected[1][0].negated and expected[1][1].negated


@pytest.mark.shared_data
def test_real_notes(shared_data: Path) -> None:
    """Every EMR note of ../shared/data: the batch path equals the note-by-note sweep."""
    import sys

    sys.path.insert(0, str(REPO / "scripts"))
    from shared_corpus import emr_notes

    notes = list(emr_notes(shared_data))
    got = check_same(ConText(), notes, sizes=(256, 61))
    assert len(got) > 2500 and _flagged(got) > 20_000


@pytest.mark.shared_data
def test_gold_sentences(shared_data: Path) -> None:
    """The ConText gold set: its documents through the batch path give the assertions that
    ``apply`` gives (so the gold figures of tests/text/test_context.py hold for it too)."""
    from .context_gold import resolve

    ctx = ConText()
    docs: dict[str, tuple] = {}
    for sent in resolve(shared_data):
        spans = docs.setdefault(sent.doc, (list(sent.sections), set()))[1]
        spans.update((sent.offset + m["start"], sent.offset + m["end"]) for m in sent.mentions)
    texts = list(docs)
    norms = normalize_many(texts)
    columns = []
    for t in texts:
        spans = sorted(docs[t][1])
        columns.append(([s for s, _ in spans], [e for _, e in spans]))
    sections = [docs[t][0] for t in texts]
    got = ctx._apply_many(norms, columns, sections, min_concepts=0)
    for t, (s, e), secs, mine in zip(texts, columns, sections, got, strict=True):
        assert mine == ctx.apply(t, list(zip(s, e, strict=True)), sections=secs)
    assert sum(map(len, got)) >= 300


def test_boundary_classes_agree_with_the_regexes() -> None:
    """What the batch path assumes of each BMP character: class 0 starts no boundary match
    (the regex's own lookahead rejects it), 1 and 2 always start a "c" / "s" match of one
    character, 3 may start one; and no "s" match starts with a comma."""
    import re

    from ehrtext.text import context as cx

    lut = cx._boundary_classes()
    counts = [0, 0, 0, 0]
    for shift, rx, sentence, first in (
        (0, cx._BOUNDARY, cx._SENTENCE, cx._FIRST_CLASS),
        (2, cx._BOUNDARY_REV, cx._SENTENCE_REV, cx._FIRST_CLASS_REV),
    ):
        assert rx.pattern.startswith(f"(?={first})")
        first_rx = re.compile(first)
        for code in range(1 << 16):
            ch = chr(code)
            cls = (int(lut[code]) >> shift) & 3
            counts[cls] += 1
            assert (cls != 0) == bool(first_rx.fullmatch(ch)), hex(code)
            if cls in (1, 2):
                m = rx.match(ch)
                assert m is not None and m.lastgroup == "cs"[cls - 1], hex(code)
                assert (sentence.match(ch) is not None) == (cls == 2), hex(code)
    assert min(counts) >= 4 and counts[3] > 20  # digits of every script are class 3
