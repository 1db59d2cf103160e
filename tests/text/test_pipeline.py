"""TextPipeline: one normalization per note, the same results as the stages called one by one."""

from __future__ import annotations

import gc
import json
import pickle
from pathlib import Path

import pytest

from ehrtext.text import NormalizerConfig, Tokenizer
from ehrtext.text.concepts import ConceptMatcher
from ehrtext.text.context import ConText
from ehrtext.text.pipeline import TextPipeline
from ehrtext.text.sections import split_sections

REPO = Path(__file__).resolve().parents[2]


def _sample_notes() -> list[str]:
    path = REPO / "corpora" / "samples" / "notes.jsonl"
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]


EXTRA = [
    "",
    "   ",
    "主诉：胸痛2小时。\n既往史：否认高血压、糖尿病、冠心病史。\n家族史：母亲有乳腺癌。",
    "ＢＰ　150/90mmHg，\u200b无发热，考虑肺炎可能。",  # full width and zero width: offsets move
    "1234567890" * 50,
    "，。！？" * 100,
]


@pytest.fixture(scope="module")
def pipe() -> TextPipeline:
    return TextPipeline()


_STAGES: dict[str, object] = {}


def _stagewise(note: str) -> tuple:
    """What the pipeline must give: each stage on the note as given."""
    if not _STAGES:
        _STAGES.update(concepts=ConceptMatcher(), context=ConText(), tokenizer=Tokenizer())
    matcher, context, tokenizer = _STAGES["concepts"], _STAGES["context"], _STAGES["tokenizer"]
    sections = split_sections(note)
    concepts = matcher.find(note)  # type: ignore[attr-defined]
    spans = list(zip(concepts.starts, concepts.ends, strict=True))
    assertions = context.apply(note, spans, sections) if spans else []  # type: ignore[attr-defined]
    return sections, concepts, assertions, tokenizer.tokenize(note).to_list()  # type: ignore[attr-defined]


def test_annotate_equals_the_stages_one_by_one(pipe: TextPipeline) -> None:
    notes = _sample_notes() + EXTRA
    n_concepts = n_flagged = 0
    for note in notes:
        a = pipe.annotate(note)
        sections, concepts, assertions, tokens = _stagewise(note)
        assert a.text == note
        assert a.sections == sections
        assert a.concepts == concepts
        assert a.assertions == assertions
        assert a.tokens is not None and a.tokens.to_list() == tokens
        for c in a.concepts:
            assert note[c.start : c.end] == c.text
        n_concepts += len(a.concepts)
        n_flagged += sum(x.negated or x.uncertain or x.historical or x.family for x in a.assertions)
    assert n_concepts > 300 and n_flagged > 50  # the sample notes exercise every stage


def test_flags_of_a_note(pipe: TextPipeline) -> None:
    d = pipe.annotate(EXTRA[2]).to_dict()
    assert [s["name"] for s in d["sections"]] == [
        "chief_complaint",
        "past_history",
        "family_history",
    ]
    got = {
        c["text"]: (c["negated"], c["historical"], c["family"], c["section"]) for c in d["concepts"]
    }
    assert got == {
        "胸痛": (False, False, False, "chief_complaint"),
        "高血压": (True, True, False, "past_history"),
        "糖尿病": (True, True, False, "past_history"),
        "冠心病": (True, True, False, "past_history"),
        "乳腺癌": (False, False, True, "family_history"),
    }
    assert "tokens" not in d and pipe.annotate(EXTRA[2]).to_dict(with_tokens=True)["tokens"]


@pytest.mark.parametrize("batch_size", [1, 7, 256])
def test_pipe_equals_annotate(pipe: TextPipeline, batch_size: int) -> None:
    notes = _sample_notes() + EXTRA

    def plain(a):
        return a.sections, a.concepts, a.assertions, a.tokens.to_list()

    got = [plain(a) for a in pipe.pipe(notes, batch_size=batch_size)]
    assert got == [plain(pipe.annotate(n)) for n in notes]


def test_without_tokens_and_with_gc_running() -> None:
    notes = _sample_notes()
    full = list(TextPipeline().pipe(notes))
    lean = list(TextPipeline(tokenize=False, pause_gc=False).pipe(notes))
    assert all(a.tokens is None for a in lean)
    assert [(a.sections, a.concepts, a.assertions) for a in lean] == [
        (a.sections, a.concepts, a.assertions) for a in full
    ]


def test_batch_cues_are_made_when_read(pipe: TextPipeline) -> None:
    # a whole batch (the numpy path) keeps its cues as columns until they are read; read in
    # any order, sliced, pickled or after the rest of the batch is gone, they are the cues
    # that ConText.apply gives note by note
    notes = _sample_notes() + EXTRA
    results = list(pipe.pipe(notes, batch_size=256))
    assert sum(map(len, (a.concepts for a in results))) >= 256
    lazy = [a for a in results if a.assertions and a.assertions._plan is not None]
    assert len(lazy) > 10
    want = {id(a): _stagewise(a.text)[2] for a in lazy}
    last, first = lazy[-1], lazy[0]
    assert list(last.assertions[2:]) == want[id(last)][2:]  # a slice first
    assert pickle.loads(pickle.dumps(first.assertions)) == want[id(first)]
    keep = lazy[len(lazy) // 2]
    plan = keep.assertions._plan  # the note's own cues only: nothing of the rest of the batch
    assert len(plan.lo) == len(keep.concepts) and plan.fields[0]
    assert all(0 <= s < len(keep.text) for s in plan.fields[0])
    assert len(plan.fields[0]) <= len(pipe.context.find_cues(keep.text, keep.sections))
    del results, lazy[:-1]
    gc.collect()
    assert keep.assertions.cues == [x.cues for x in want[id(keep)]]
    assert keep.assertions._plan is None  # made once, then kept
    n_cues = sum(len(c) for c in keep.assertions.cues)
    assert n_cues > 0


def test_gc_state_is_restored(pipe: TextPipeline) -> None:
    assert gc.isenabled()
    list(pipe.pipe(["无发热。", "咳嗽3天"]))
    assert gc.isenabled()
    with pytest.raises(TypeError, match="int at position 1"):
        list(pipe.pipe(["无发热。", 5]))  # type: ignore[list-item]
    assert gc.isenabled()
    gc.disable()
    try:
        pipe.annotate("无发热。")
        assert not gc.isenabled()  # left off when the caller turned it off
    finally:
        gc.enable()


def test_stage_with_its_own_normalizer() -> None:
    """A stage whose normalizer differs from the tokenizer's normalizes the note itself."""
    t2s = NormalizerConfig(traditional_to_simplified=True)
    note = "患者無發熱，否認高血壓病史。"
    own = TextPipeline(context=ConText(normalizer=t2s), concepts=ConceptMatcher(normalizer=t2s))
    assert not own._context_shared and not own._concepts_shared
    a = own.annotate(note)
    assert [(c.text, x.negated) for c, x in zip(a.concepts, a.assertions, strict=True)] == [
        ("發熱", True),
        ("高血壓病", True),
    ]
    assert TextPipeline().annotate(note).concepts.texts == []  # the default one does not map 發熱


def test_bad_input(pipe: TextPipeline) -> None:
    with pytest.raises(TypeError, match="bytes at position 0"):
        pipe.annotate(b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        list(pipe.pipe(["无"], batch_size=0))


@pytest.mark.shared_data
def test_real_notes_equal_the_stages(shared_data: Path) -> None:
    path = shared_data / "corpus" / "ccks2019_yidu_emr" / "subtask1_training_afterrevise.txt"
    notes = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                notes.append(json.loads(line)["originalText"])
            if len(notes) >= 120:
                break
    got = list(TextPipeline().pipe(notes, batch_size=50))
    for note, a in zip(notes, got, strict=True):
        sections, concepts, assertions, tokens = _stagewise(note)
        assert (a.sections, a.concepts, a.assertions, a.tokens.to_list()) == (
            sections,
            concepts,
            assertions,
            tokens,
        )
