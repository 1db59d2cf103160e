"""Tests of ehrtext.text.sections: header variants, false headers, offsets, records, rules."""

from __future__ import annotations

import json
import pickle
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ehrtext.errors import InputError
from ehrtext.resources import load_json
from ehrtext.text.normalize import normalize
from ehrtext.text.sections import (
    PREAMBLE,
    Section,
    Sectionizer,
    SectionRule,
    sections_from_fields,
    split_sections,
)


def names(text: str) -> list[str]:
    return [s.name for s in split_sections(text)]


def headers(text: str) -> list[str]:
    return [text[s.header_start : s.header_end] for s in split_sections(text) if s.name != PREAMBLE]


# --------------------------------------------------------------------------------------------
# The shipped rules


def test_shipped_rules_are_well_formed() -> None:
    data = load_json("rules", "sections.json")
    rules = [SectionRule.from_dict(r) for r in data["rules"]]
    names_ = [r.name for r in rules]
    assert len(names_) == len(set(names_))
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", n) for n in names_)
    by_title = {r.title: r for r in rules}
    for title in (
        "主诉",
        "现病史",
        "既往史",
        "个人史",
        "婚姻史",
        "月经史",
        "家族史",
        "体格检查",
        "专科检查",
        "辅助检查",
        "入院情况",
        "入院诊断",
        "诊疗经过",
        "出院情况",
        "出院诊断",
        "出院医嘱",
        "一般项目",
        "病史特点",
        "手术经过",
        "病理诊断",
    ):
        assert title in by_title, title
    assert by_title["既往史"].attributes["history"] is True
    assert by_title["家族史"].attributes["family"] is True
    assert by_title["主诉"].attributes["admission_time"] is True
    assert by_title["入院诊断"].attributes["admission_time"] is True
    assert not by_title["出院诊断"].attributes.get("admission_time")
    assert by_title["既往史"].name == "past_history"
    assert by_title["主诉"].name == "chief_complaint"


def test_every_variant_is_found_at_line_start_with_a_colon() -> None:
    sz = Sectionizer()
    for rule in sz.rules:
        for word in (*rule.variants, *rule.colon_variants):
            secs = sz(f"患者男。\n{word}：内容。")
            assert [s.name for s in secs] == [PREAMBLE, rule.name], word


# --------------------------------------------------------------------------------------------
# Header forms


@pytest.mark.parametrize(
    "note, header",
    [
        ("【主诉】发热3天", "【主诉】"),
        ("[主诉]发热3天", "[主诉]"),
        ("一、主诉：发热3天", "一、主诉："),
        ("(一)主诉：发热3天", "(一)主诉："),
        ("（一）主诉：发热3天", "（一）主诉："),
        ("1.主诉：发热3天", "1.主诉："),
        ("1、主诉：发热3天", "1、主诉："),
        ("①主诉：发热3天", "①主诉："),
        ("主诉：发热3天", "主诉："),
        ("主诉:发热3天", "主诉:"),
        ("主诉 ： 发热3天", "主诉 ： "),
        ("主诉 发热3天", "主诉 "),
        ("主诉发热3天", "主诉"),
    ],
)
def test_header_variants(note: str, header: str) -> None:
    secs = split_sections(note)
    assert [s.name for s in secs] == ["chief_complaint"]
    s = secs[0]
    assert (s.start, s.end, s.header_start) == (0, len(note), 0)
    assert note[s.header_start : s.header_end] == header
    assert note[s.header_end :] == "发热3天"


def test_inline_headers_on_one_line() -> None:
    note = "主诉：发热3天。现病史：3天前受凉后发热，最高38.5℃。既往史：否认高血压病史。"
    secs = split_sections(note)
    assert [s.name for s in secs] == ["chief_complaint", "present_illness", "past_history"]
    assert [note[s.start : s.end] for s in secs] == [
        "主诉：发热3天。",
        "现病史：3天前受凉后发热，最高38.5℃。",
        "既往史：否认高血压病史。",
    ]
    assert secs[2].attributes == {"history": True, "admission_time": True}


def test_headers_at_line_start_without_colon() -> None:
    note = "主诉 胸痛2小时\n现病史 2小时前突发胸痛\n既往史 体健\n家族史 无特殊"
    assert names(note) == ["chief_complaint", "present_illness", "past_history", "family_history"]
    assert headers(note) == ["主诉 ", "现病史 ", "既往史 ", "家族史 "]


def test_other_sections() -> None:
    note = (
        "一般项目：男，65岁。\n病史特点：胸痛。\n体格检查：T36.5℃。\n查体：心肺无异常。\n"
        "专科检查：无。\n辅助检查：心电图。\n入院情况：稳定。\n初步诊断：冠心病。\n"
        "诊疗经过：PCI。\n手术经过：顺利。\n病理诊断：腺癌。\n出院情况：好转。\n"
        "出院诊断：冠心病。\n出院医嘱：随诊。\n婚育史：适龄结婚。\n月经史：已绝经。\n个人史：吸烟。"
    )
    assert names(note) == [
        "general_info", "case_summary", "physical_exam", "physical_exam", "specialist_exam",
        "auxiliary_exam", "admission_status", "admission_diagnosis", "hospital_course",
        "operation", "pathology_diagnosis", "discharge_status", "discharge_diagnosis",
        "discharge_instructions", "marital_history", "menstrual_history", "personal_history",
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------
# False headers


@pytest.mark.parametrize(
    "note",
    [
        "否认既往史中所述的其他疾病。",
        "有高血压家族史。",
        "患者主诉胸痛3天。",
        "平日自行服用药物见现病史，余无特殊。",
        "心肺查体未见明显异常。",
        "否认家族史。",
    ],
)
def test_header_words_inside_sentences_open_nothing(note: str) -> None:
    assert names(note) == [PREAMBLE]


def test_running_text_at_line_start_is_no_header() -> None:
    assert names("患者1天前出现胸痛。\n查体发现血压升高。") == [PREAMBLE]
    assert names("行PCI术。手术过程顺利。") == [PREAMBLE]


def test_header_after_sentence_end_without_colon() -> None:
    note = "发热3天。既往史否认高血压。"
    assert names(note) == [PREAMBLE, "past_history"]


def test_colon_variants_need_a_colon_and_no_glued_han() -> None:
    # 既往 alone is a header only with a colon
    assert names("入院情况：胸痛入院。既往：高血压病史。") == ["admission_status", "past_history"]
    assert names("入院情况：胸痛入院。既往体健。") == ["admission_status"]
    # glued to the Han char before it (入院后化验：) a colon variant opens nothing
    assert names("主诉：胸痛。患者入院后化验：血常规正常。") == ["chief_complaint"]
    assert names("主诉：胸痛。【化验】血常规正常。") == ["chief_complaint", "auxiliary_exam"]


def test_header_with_colon_mid_sentence_opens_a_section() -> None:
    assert names("患者胸痛3天，既往史：高血压。") == [PREAMBLE, "past_history"]


# --------------------------------------------------------------------------------------------
# Offsets into the original text


def test_offsets_point_into_the_original_text() -> None:
    note = "　患者男\u200b，65岁。\r\n【主诉】胸痛２小时\r\n现病史：\u200b２小时前胸痛。"
    secs = split_sections(note)
    assert [s.name for s in secs] == [PREAMBLE, "chief_complaint", "present_illness"]
    pre, cc, hpi = secs
    assert (pre.start, pre.end, pre.header_start, pre.header_end) == (0, cc.start, 0, 0)
    assert note[cc.header_start : cc.header_end] == "【主诉】"
    assert note[hpi.header_start : hpi.header_end] == "现病史："
    assert note[hpi.header_end : hpi.end] == "\u200b２小时前胸痛。"
    assert hpi.end == len(note)
    assert cc.end == hpi.start


def test_normalized_input_gives_the_same_sections() -> None:
    note = "主诉：胸痛２小时。现病史：２小时前胸痛。"
    assert split_sections(normalize(note)) == split_sections(note)


def test_preamble_rules() -> None:
    assert split_sections("") == []
    assert split_sections("   \n ") == []
    assert names("患者男，65岁。") == [PREAMBLE]
    assert names("  \n主诉：胸痛") == ["chief_complaint"]  # blank text before: no preamble
    s = split_sections("  \n主诉：胸痛")[0]
    assert s.start == 3


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "主诉",
                "现病史",
                "既往史",
                "家族史",
                "：",
                ":",
                "。",
                "\n",
                "【",
                "】",
                "1.",
                "否认",
                "高血压",
                "，",
                " ",
                "\u3000",
                "\u200b",
                "查体",
                "既往",
                "史",
            ]
        ),
        max_size=30,
    ).map("".join)
)
def test_sections_are_ordered_and_within_the_text(note: str) -> None:
    secs = split_sections(note)
    pos = 0
    for s in secs:
        assert pos <= s.start <= s.header_start <= s.header_end <= s.end <= len(note)
        assert s.start == s.header_start or s.name == PREAMBLE
        pos = s.end
    if secs:
        assert secs[-1].end == len(note)
    for a, b in zip(secs, secs[1:], strict=False):
        assert a.end == b.start


# --------------------------------------------------------------------------------------------
# Records


CCL_LIKE = {
    "病案标识": "ZY0001",
    "主诉": "胸闷3天。",
    "现病史": "患者3天前出现胸闷。",
    "既往史": "否认糖尿病史。",
    "个人史": "否认吸烟史。",
    "婚姻史": "适龄结婚。",
    "家族史": "父亲有高血压。",
    "入院情况": "胸闷入院。查体：双肺呼吸音清。",
    "入院诊断": "1.冠心病",
    "诊疗经过": "给予治疗。",
    "出院情况": "好转。",
    "出院医嘱": "不适随诊。",
    "主要诊断编码": "I20.0",
}


def test_sections_from_fields_maps_record_keys() -> None:
    text, secs = sections_from_fields(CCL_LIKE)
    assert [s.name for s in secs] == [
        "chief_complaint", "present_illness", "past_history", "personal_history",
        "marital_history", "family_history", "admission_status", "admission_diagnosis",
        "hospital_course", "discharge_status", "discharge_instructions",
    ]  # fmt: skip
    assert text.startswith("主诉：胸闷3天。\n现病史：")
    keys = [k for k in CCL_LIKE if k not in ("病案标识", "主要诊断编码")]
    for key, s in zip(keys, secs, strict=True):
        assert text[s.header_start : s.header_end] == f"{key}："
        assert text[s.header_end : s.end] == CCL_LIKE[key]
    assert "ZY0001" not in text and "I20.0" not in text
    assert secs[5].attributes["family"] is True
    # splitting the built note again finds the same sections (plus the inner 查体)
    again = split_sections(text)
    assert [s.name for s in again if s.name != "physical_exam"] == [s.name for s in secs]


def test_sections_from_fields_split_inner() -> None:
    text, secs = sections_from_fields(CCL_LIKE, split_inner=True)
    i = [s.name for s in secs].index("admission_status")
    adm, exam = secs[i], secs[i + 1]
    assert exam.name == "physical_exam"
    assert text[adm.header_end : adm.end] == "胸闷入院。"
    assert text[exam.header_start : exam.header_end] == "查体："
    assert text[exam.header_end : exam.end] == "双肺呼吸音清。"
    assert secs[i + 2].name == "admission_diagnosis"


def test_sections_from_fields_skips_blanks_and_unknown_keys() -> None:
    text, secs = sections_from_fields({"主诉": "  ", "现病史": "发热", "备注": "x", "家族史": 3})
    assert text == "现病史：发热"
    assert [s.name for s in secs] == ["present_illness"]
    assert sections_from_fields({}) == ("", [])
    with pytest.raises(InputError):
        sections_from_fields(["主诉"])  # type: ignore[arg-type]


def test_lookup_of_field_names() -> None:
    sz = Sectionizer()
    assert sz.lookup("婚姻史").name == "marital_history"  # type: ignore[union-attr]
    assert sz.lookup("【既往史】").name == "past_history"  # type: ignore[union-attr]
    assert sz.lookup("入院诊断：").name == "admission_diagnosis"  # type: ignore[union-attr]
    assert sz.lookup("病案标识") is None


# --------------------------------------------------------------------------------------------
# Rules as data


def test_sectionizer_round_trip_and_add_rule() -> None:
    sz = Sectionizer()
    sz.add_rule({"name": "imaging", "title": "影像学检查", "variants": ["影像学检查"]})
    note = "主诉：胸痛。影像学检查：胸片未见异常。"
    assert [s.name for s in sz(note)] == ["chief_complaint", "imaging"]
    again = Sectionizer.from_dict(json.loads(json.dumps(sz.to_dict(), ensure_ascii=False)))
    assert again.rules == sz.rules
    assert again(note) == sz(note)
    # a rule with the same name replaces the old one
    sz.add_rule(SectionRule("imaging", "影像", ["影像"], attributes={"x": 1}))
    assert sz.rule("imaging").title == "影像"
    assert sum(r.name == "imaging" for r in sz.rules) == 1
    assert split_sections(note, rules=[sz.rule("chief_complaint")])[0].name == "chief_complaint"
    assert [note[s.header_start : s.header_end] for s in sz(note)] == ["主诉：", "影像"]


def test_pickle() -> None:
    sz = Sectionizer()
    note = "主诉：胸痛。既往史：高血压。"
    again = pickle.loads(pickle.dumps(sz))
    assert again(note) == sz(note)
    secs = sz(note)
    assert pickle.loads(pickle.dumps(secs)) == secs


def test_section_dict_round_trip() -> None:
    s = split_sections("家族史：父亲有高血压病史。")[0]
    assert Section.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert s.body == (4, 13)
    assert "父亲" not in repr(s)
    with pytest.raises(InputError):
        Section.from_dict({"name": "x"})


@pytest.mark.parametrize(
    "rule, message",
    [
        ({"name": "Bad Name", "title": "x", "variants": ["x"]}, "snake_case"),
        ({"name": "preamble", "title": "x", "variants": ["x"]}, "reserved"),
        ({"name": "a", "title": "", "variants": ["x"]}, "title"),
        ({"name": "a", "title": "x"}, "no header words"),
        ({"name": "a", "title": "x", "variants": "主诉"}, "list of strings"),
        ({"name": "a", "title": "x", "variants": [""]}, "non-empty"),
        ({"name": "a", "title": "x", "variants": ["x"], "attributes": []}, "attributes"),
        ({"name": "a", "title": "x", "variants": ["x"], "colour": 1}, "unknown key"),
        ({"title": "x"}, "needs 'name'"),
    ],
)
def test_bad_rules_raise_input_error(rule: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        Sectionizer([rule])


def test_bad_inputs() -> None:
    with pytest.raises(TypeError, match="bytes"):
        split_sections(b"abc")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="format"):
        Sectionizer.from_dict({"format": 99, "rules": []})
    with pytest.raises(InputError):
        Sectionizer.from_dict({"rules": "x"})


def test_sections_found_equal_those_built_by_the_dataclass() -> None:
    """The splitter builds its Section objects without the dataclass __init__: they must be
    the same objects in every respect (fields, equality, repr, pickling, frozen)."""
    note = "主诉：胸痛2小时。\n既往史：否认高血压。\n家族史：母亲有乳腺癌。"
    found = split_sections("  前言。" + note)
    assert len(found) == 4
    for sec in found:
        twin = Section(
            sec.name, sec.title, sec.start, sec.end, sec.header_start, sec.header_end,
            sec.attributes,
        )  # fmt: skip
        assert sec == twin and repr(sec) == repr(twin) and vars(sec) == vars(twin)
        assert pickle.loads(pickle.dumps(sec)) == twin
        with pytest.raises(AttributeError):
            sec.start = 0  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Real notes


@pytest.mark.shared_data
def test_real_records_find_their_sections(shared_data) -> None:
    path = shared_data / "emr_ccl2025_icd" / "records.jsonl"
    n = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        text, secs = sections_from_fields(record)
        top = [s.name for s in secs]
        found = [s.name for s in split_sections(text)]
        # every field header is found again, in order (inner headers may come in between)
        it = iter(found)
        assert all(name in it for name in top)
        n += 1
    assert n >= 150
