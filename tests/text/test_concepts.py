"""Tests for ehrtext.text.concepts: exact matches with offsets into the original note, longest
match, categories, the Latin/digit-run and body-part rules, user terms, persistence, pipe == find,
and a brute-force reference on random texts. All sentences are invented."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehrtext.errors import InputError
from ehrtext.text import Tokenizer, concepts, normalize
from ehrtext.text.concepts import (
    CATEGORIES,
    GENERIC_TERMS,
    YIELDING,
    Concept,
    ConceptMatcher,
    Concepts,
    read_lexicon,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def m() -> ConceptMatcher:
    return ConceptMatcher()


def spans(concepts) -> list[tuple[str, int, int, str]]:
    return [(c.text, c.start, c.end, c.category) for c in concepts]


# --------------------------------------------------------------------------------------------
# exact matches and offsets


def test_exact_matches_with_offsets(m):
    text = "否认冠状动脉粥样硬化性心脏病史，双肺呼吸音清，双下肢无水肿。"
    assert spans(m.find(text)) == [
        ("冠状动脉粥样硬化性心脏病", 2, 14, "disease"),
        ("双肺", 16, 18, "body_part"),
        ("呼吸音", 18, 21, "symptom"),
        ("双下肢", 23, 26, "body_part"),
        ("水肿", 27, 29, "disease"),  # CMeKG lists 水肿 as a disease
    ]


def test_full_width_text_maps_to_original_offsets(m):
    # full-width digits and letters, an ideographic space run and a zero-width space
    text = "既往２型糖尿病　　\u200b行ＰＣＩ术"
    cs = m.find(text)
    assert spans(cs) == [("２型糖尿病", 2, 7, "disease"), ("ＰＣＩ", 11, 14, "procedure")]
    assert [c.norm for c in cs] == ["2型糖尿病", "PCI"]
    for c in cs:
        assert text[c.start : c.end] == c.text


def test_concept_fields_and_container(m):
    cs = m.find("发热伴咳嗽，予阿司匹林肠溶片")
    assert isinstance(cs, Concepts)
    assert cs[0] == Concept(0, 2, "发热", "发热", "symptom", "medical_words")
    assert cs.texts == ["发热", "咳嗽", "阿司匹林肠溶片"]
    assert cs.categories == ["symptom", "disease", "drug"]
    assert cs.sources == ["medical_words"] * 3
    assert cs.to_list()[2] == [7, 14, "阿司匹林肠溶片", "drug"]
    assert list(cs[1:]) == list(cs)[1:]
    assert repr(cs) == "<Concepts n=3>"  # never note text
    assert cs == list(cs)


def test_longest_match_wins(m):
    assert m.find("冠状动脉粥样硬化性心脏病").texts == ["冠状动脉粥样硬化性心脏病"]
    assert m.find("心脏病").texts == ["心脏病"]
    assert m.find("阵发性心房颤动").texts == ["阵发性心房颤动"]


def test_matches_do_not_overlap_and_are_sorted(m):
    text = "患者因胸闷、气促伴双下肢水肿入院，行冠状动脉造影示前降支狭窄，予支架植入术。"
    cs = m.find(text)
    ends = [0, *cs.ends]
    assert all(s >= e for s, e in zip(cs.starts, ends, strict=False))
    assert all(text[c.start : c.end] == c.text for c in cs)


# --------------------------------------------------------------------------------------------
# categories and lexicons


@pytest.mark.parametrize(
    ("text", "term", "category"),
    [
        ("诊断：高血压病", "高血压病", "disease"),
        ("头晕伴恶心", "头晕", "symptom"),
        ("口服硝苯地平控释片", "硝苯地平控释片", "drug"),
        ("查血常规", "血常规", "exam"),
        ("行冠状动脉造影", "冠状动脉造影", "procedure"),
        ("行射频消融术", "射频消融术", "procedure"),
        ("规律血液透析", "血液透析", "procedure"),
        ("剑突下压痛", "剑突下", "body_part"),
        ("颈静脉无怒张", "颈静脉", "body_part"),
        ("左下肺湿啰音", "左下肺", "body_part"),
    ],
)
def test_categories(m, text, term, category):
    found = {c.text: c.category for c in m.find(text)}
    assert found.get(term) == category


def test_concept_files_override_medical_words_tags(m):
    assert m.lookup("淋巴结") == ("body_part", "concepts_body_part")  # a CMeKG "symptom"
    assert m.lookup("化疗") == ("procedure", "concepts_procedure")  # a CMeKG "symptom"
    assert m.lookup("ＰＣＩ") == ("procedure", "concepts_procedure")  # normalized first


def test_generic_department_and_medical_are_left_out_by_default(m):
    assert m.categories == frozenset(CATEGORIES)
    assert "病史" in GENERIC_TERMS and m.lookup("病史") is None
    assert m.lookup("心内科") is None  # department
    assert m.lookup("患者") is None  # THUOCL's generic `medical`
    wide = ConceptMatcher(categories=[*CATEGORIES, "department"], exclude=())
    assert wide.lookup("心内科") == ("department", "medical_words")
    assert wide.lookup("病史") is not None
    # a shorter term inside an excluded one still matches
    assert m.find("否认外伤史").texts == ["外伤"]


def test_categories_are_checked():
    with pytest.raises(ValueError, match="unknown categories"):
        ConceptMatcher(categories=["diseases"])
    only = ConceptMatcher(categories="drug")
    assert only.find("高血压，口服美托洛尔").texts == ["美托洛尔"]


def test_custom_lexicon_from_mapping_pairs_and_file(tmp_path):
    a = ConceptMatcher(lexicon={"胸闷": "symptom", "心衰": "disease"})
    b = ConceptMatcher(lexicon=[("胸闷", "symptom"), ("心衰", "disease")])
    f = tmp_path / "lex.txt"
    f.write_text("# comment\n胸闷 symptom\n心衰 5000 disease\n", encoding="utf-8")
    c = ConceptMatcher(lexicon=f)
    text = "胸闷，考虑心衰"
    assert spans(a.find(text)) == spans(b.find(text)) == spans(c.find(text))
    assert a.find(text).sources == ["lexicon", "lexicon"]
    assert a.categories == {"symptom", "disease"}
    assert read_lexicon(f) == [("胸闷", "symptom"), ("心衰", "disease")]
    bad = tmp_path / "bad.txt"
    bad.write_text("胸闷\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 1"):
        read_lexicon(bad)
    assert read_lexicon(bad, "symptom") == [("胸闷", "symptom")]


def test_min_len():
    lex = {"痛": "symptom", "胸痛": "symptom"}
    assert ConceptMatcher(lexicon=lex).find("痛，胸痛").texts == ["胸痛"]
    assert ConceptMatcher(lexicon=lex, min_len=1).find("痛，胸痛").texts == ["痛", "胸痛"]


# --------------------------------------------------------------------------------------------
# boundary rules


def test_no_match_inside_latin_or_digit_runs():
    m = ConceptMatcher(lexicon={"CT": "exam", "2型糖尿病": "disease", "糖尿病": "disease"})
    assert m.find("行CT检查").texts == ["CT"]
    assert m.find("CTA示狭窄").texts == []  # CT followed by a Latin letter
    assert m.find("HCT正常").texts == []  # CT preceded by one
    assert m.find("CT2").texts == []  # digits count as well
    assert m.find("行ＣＴ检查").texts == ["ＣＴ"]  # full-width is normalized first
    # a rejected term gives way to a shorter one inside it
    assert m.find("12型糖尿病").texts == ["糖尿病"]
    assert m.find("5.2型糖尿病").texts == ["2型糖尿病"]


def test_rejected_longest_match_falls_back_to_shorter_one():
    m = ConceptMatcher(lexicon={"维生素B1": "drug", "维生素": "drug", "B12": "drug"})
    cs = m.find("维生素B12缺乏")
    assert spans(cs) == [("维生素", 0, 3, "drug"), ("B12", 3, 6, "drug")]


def test_body_part_gives_way_to_a_finding_it_would_cut(m):
    assert "body_part" in YIELDING
    assert m.find("右下肺炎").texts == ["肺炎"]
    assert m.find("乙状结肠癌").texts == ["结肠癌"]
    assert m.find("双侧胸腔积液").texts == ["胸腔积液"]
    # ... but not when a term starts right after it and reaches as far
    assert m.find("颜面浮肿").texts == ["颜面", "浮肿"]
    assert m.find("胸椎骨质增生").texts == ["胸椎", "骨质增生"]
    assert m.find("双肺结节").texts == ["双肺", "结节"]


def test_match_not_on_a_utf16_character_boundary_is_ignored():
    # "AN乎" in UTF-16-LE is 41 00 4E 00 4E 4E: the bytes of "一一" (00 4E 00 4E) occur at an
    # odd offset; the matcher must not report them.
    m = ConceptMatcher(lexicon={"一一": "disease", "乎": "symptom"}, min_len=1)
    assert spans(m.find("AN乎")) == [("乎", 2, 3, "symptom")]
    assert spans(m.find("一一")) == [("一一", 0, 2, "disease")]


def test_characters_outside_the_bmp():
    m = ConceptMatcher(lexicon={"胸痛": "symptom", "𠀀病": "disease"})
    text = "𠀀病伴胸痛😀胸痛"
    assert spans(m.find(text)) == [
        ("𠀀病", 0, 2, "disease"),
        ("胸痛", 3, 5, "symptom"),
        ("胸痛", 6, 8, "symptom"),
    ]
    assert list(m.pipe([text, "胸痛"])) == [m.find(text), m.find("胸痛")]


def test_tokenizer_mode_keeps_only_token_aligned_matches():
    tok = Tokenizer()
    lex = {"胆囊": "body_part", "B超": "exam", "冠状动脉造影术": "procedure"}
    plain = ConceptMatcher(lexicon=lex)
    aligned = ConceptMatcher(lexicon=lex, tokenizer=tok)
    text = "B超示胆囊结石，行冠状动脉造影术"  # the tokenizer keeps 胆囊结石 as one token
    assert plain.find(text).texts == ["B超", "胆囊", "冠状动脉造影术"]
    assert aligned.find(text).texts == ["B超", "冠状动脉造影术"]  # may span several tokens
    assert list(aligned.pipe([text, text])) == [aligned.find(text)] * 2
    assert aligned.normalizer == tok.normalizer


# --------------------------------------------------------------------------------------------
# user terms


def test_user_terms(m):
    mm = ConceptMatcher()
    assert mm.find("考虑冠脉慢血流").texts == ["冠脉"]
    mm.add_terms(["冠脉慢血流"], "disease")
    mm.add_terms("ＥＧＦＲ突变", "gene")  # any category; normalized
    assert spans(mm.find("考虑冠脉慢血流，EGFR突变")) == [
        ("冠脉慢血流", 2, 7, "disease"),
        ("EGFR突变", 8, 14, "gene"),
    ]
    assert mm.lookup("冠脉慢血流") == ("disease", "user")
    # user terms win over the lexicon and over `exclude`
    mm.add_terms(["病史"], "exam")
    mm.add_terms(["心脏病"], "symptom")
    assert {c.text: c.category for c in mm.find("心脏病病史")} == {
        "心脏病": "symptom",
        "病史": "exam",
    }
    assert m.lookup("冠脉慢血流") is None  # other matchers are untouched


def test_add_terms_checks_its_input():
    mm = ConceptMatcher(lexicon={"胸痛": "symptom"})
    with pytest.raises(TypeError, match="int at position 1"):
        mm.add_terms(["胸闷", 3], "symptom")  # type: ignore[list-item]
    with pytest.raises(ValueError, match="empty"):
        mm.add_terms(["  "], "symptom")
    with pytest.raises(ValueError, match="category"):
        mm.add_terms(["胸闷"], "")
    assert len(mm) == 1


# --------------------------------------------------------------------------------------------
# persistence


def test_dict_round_trip_keeps_user_terms(m):
    mm = ConceptMatcher(categories=["disease", "procedure"], exclude=["手术"])
    mm.add_terms(["冠脉慢血流"], "disease")
    data = json.loads(json.dumps(mm.to_dict(), ensure_ascii=False))
    back = ConceptMatcher.from_dict(data)
    text = "冠脉慢血流，手术，高血压，头晕"
    assert back.find(text) == mm.find(text)
    assert back.find(text).texts == ["冠脉慢血流", "高血压"]
    assert back.lexicon_hash == mm.lexicon_hash != m.lexicon_hash


def test_disk_round_trip(tmp_path):
    lex = {"胸痛": "symptom", "CT": "exam", "0.9% NS": "drug"}  # a term with a space
    mm = ConceptMatcher(lexicon=lex, tokenizer=Tokenizer())
    mm.add_terms(["冠脉慢血流"], "disease")
    mm.to_disk(tmp_path / "concepts")
    assert (tmp_path / "concepts" / "lexicon.tsv").exists()
    back = ConceptMatcher.from_disk(tmp_path / "concepts")
    text = "胸痛，查CT，冠脉慢血流，予0.9%　NS"
    assert back.find(text) == mm.find(text)
    assert back.find(text).norms == ["胸痛", "CT", "冠脉慢血流", "0.9% NS"]
    assert back.tokenizer is not None
    assert back.lexicon_hash == mm.lexicon_hash


def test_shipped_lexicon_round_trip_and_pickle(tmp_path, m):
    mm = ConceptMatcher()
    mm.add_terms(["冠脉慢血流"], "disease")
    mm.to_disk(tmp_path)
    assert not (tmp_path / "lexicon.tsv").exists()  # the shipped lexicons are not copied
    text = "冠脉慢血流，双肺呼吸音清"
    assert ConceptMatcher.from_disk(tmp_path).find(text) == mm.find(text)
    assert pickle.loads(pickle.dumps(mm)).find(text) == mm.find(text)


def test_from_disk_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="concepts.json"):
        ConceptMatcher.from_disk(tmp_path)
    (tmp_path / "concepts.json").write_text('{"format": 99}', encoding="utf-8")
    with pytest.raises(InputError, match="newer"):
        ConceptMatcher.from_disk(tmp_path)


# --------------------------------------------------------------------------------------------
# input handling, pipe


def test_empty_and_wrong_input(m):
    assert list(m.find("")) == []
    assert list(m.find("，。 \n")) == []
    with pytest.raises(TypeError, match="NoneType"):
        m.find(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bytes"):
        m.find("胸痛".encode())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="NoneType at position 1"):
        list(m.pipe(["胸痛", None]))  # type: ignore[list-item]
    assert [list(c) for c in m.pipe([])] == []


def test_normalized_input_is_not_normalized_again(m):
    text = "既往２型糖尿病"
    assert m.find(normalize(text)) == m.find(text)
    assert list(m.pipe([normalize(text), text])) == [m.find(text)] * 2


def _sample_notes() -> list[str]:
    path = REPO / "corpora" / "samples" / "notes.jsonl"
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_pipe_equals_find_on_sample_notes(m):
    notes = _sample_notes()
    texts = [*notes, "", "ＢＰ　１５０／９０ｍｍＨｇ", "胸痛" * 100, *notes[:3]]
    found = [m.find(t) for t in texts]
    assert sum(map(len, found)) > 300
    for batch_size in (1, 7, 256):
        assert list(m.pipe(texts, batch_size=batch_size)) == found
    with pytest.raises(ValueError, match="batch_size"):
        list(m.pipe(texts, batch_size=0))


# --------------------------------------------------------------------------------------------
# the fast path equals a brute-force reference


_LEX = {
    "胸痛": "symptom",
    "胸闷": "symptom",
    "痛": "symptom",
    "肺炎": "disease",
    "肺结节": "disease",
    "结节": "symptom",
    "双肺": "body_part",
    "右下肺": "body_part",
    "胸": "body_part",
    "左胸": "body_part",
    "CT": "exam",
    "胸部CT": "exam",
    "B1": "drug",
    "维生素B1": "drug",
    "维生素": "drug",
    "2型糖尿病": "disease",
    "糖尿病": "disease",
}
_ALPHABET = list("胸痛闷肺炎结节双右下左部维生素型糖尿病无，") + ["CT", "B", "1", "2", "Ｃ", " "]


def _reference(text: str) -> list[tuple[int, int, str]]:
    """Leftmost-longest over the allowed matches, found by brute force on the normalized text."""
    n = normalize(text)
    s = n.text
    terms = _LEX
    alnum = lambda ch: ch.isascii() and ch.isalnum()  # noqa: E731
    cands = []
    for x in range(len(s)):
        for y in range(x + 1, len(s) + 1):
            t = s[x:y]
            if t not in terms:
                continue
            if alnum(t[0]) and x > 0 and alnum(s[x - 1]):
                continue
            if alnum(t[-1]) and y < len(s) and alnum(s[y]):
                continue
            cands.append((x, y, t))
    reach = {}
    for x, y, _ in cands:
        reach[x] = max(reach.get(x, -1), y)
    kept = []
    for x, y, t in cands:
        if terms[t] in YIELDING and any(
            x < x2 < y < y2 and terms[t2] not in YIELDING and reach.get(y, -1) < y2
            for x2, y2, t2 in cands
        ):
            continue
        kept.append((x, y, t))
    kept.sort(key=lambda c: (c[0], -c[1]))
    out, pos = [], 0
    for x, y, t in kept:
        if x >= pos:
            a, b = n.to_original(x, y)
            out.append((a, b, t))
            pos = y
    return out


@pytest.fixture(scope="module")
def small() -> ConceptMatcher:
    return ConceptMatcher(lexicon=_LEX, min_len=1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_ALPHABET), max_size=30).map("".join), max_size=5))
def test_matches_equal_brute_force_reference(small, texts):
    expected = [_reference(t) for t in texts]
    got = [[(c.start, c.end, c.norm) for c in small.find(t)] for t in texts]
    assert got == expected
    piped = [[(c.start, c.end, c.norm) for c in cs] for cs in small.pipe(texts, batch_size=2)]
    assert piped == expected


@pytest.mark.parametrize("threshold", [1, 10**9])
def test_numpy_path_equals_python_path(small, monkeypatch, threshold):
    # many matches go through the numpy checks, few through Python: force each in turn
    monkeypatch.setattr(concepts, "_NUMPY_MIN_MATCHES", threshold)
    pieces = ["双肺炎", "右下肺结节", "左胸痛", "胸部CT", "CTA", "维生素B12", "12型糖尿病", "胸闷"]
    texts = [*pieces, "，".join(pieces * 20), "𠀀" + "，".join(pieces)]
    for text in texts:
        assert [(c.start, c.end, c.norm) for c in small.find(text)] == _reference(text)
    assert list(small.pipe(texts)) == [small.find(t) for t in texts]


# --------------------------------------------------------------------------------------------
# real notes (not shipped)


@pytest.mark.shared_data
def test_pipe_equals_find_on_real_notes(shared_data, m):
    import sys

    sys.path.insert(0, str(REPO / "scripts"))
    from shared_corpus import emr_notes

    notes = []
    for text in emr_notes(shared_data):
        notes.append(text)
        if len(notes) == 300:
            break
    found = [m.find(t) for t in notes]
    assert list(m.pipe(notes, batch_size=64)) == found
    for text, cs in zip(notes, found, strict=True):
        assert all(text[c.start : c.end] == c.text for c in cs)
