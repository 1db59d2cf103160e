"""Tests of ehrtext.text.context (ConText for Chinese): exact flags on invented sentences,
scopes, sections, offsets, rules as data, and the real-data gold set (shared_data)."""

from __future__ import annotations

import json
import pickle

import pytest

from ehrtext.errors import InputError
from ehrtext.resources import load_json
from ehrtext.text.context import CATEGORIES, Assertion, Assertions, ConText, ContextRule, Cue
from ehrtext.text.normalize import normalize
from ehrtext.text.sections import sections_from_fields, split_sections

CTX = ConText()
FLAG_LETTERS = {"N": "negated", "U": "uncertain", "H": "historical", "F": "family",
                "Y": "hypothetical"}  # fmt: skip


def spans_of(note: str, words: list[str]) -> list[tuple[int, int]]:
    """The spans of ``words`` in ``note``, each found after the previous one."""
    out, pos = [], 0
    for w in words:
        i = note.find(w, pos)
        assert i >= 0, w
        out.append((i, i + len(w)))
        pos = i + len(w)
    return out


def flags(note: str, words: list[str], sections=None, ctx: ConText = CTX) -> list[str]:
    """One string of flag letters a concept ('-' when affirmed)."""
    out = []
    for a in ctx.apply(note, spans_of(note, words), sections=sections):
        got = "".join(k for k, f in FLAG_LETTERS.items() if getattr(a, f))
        out.append(got or "-")
    return out


# --------------------------------------------------------------------------------------------
# Exact flags on invented sentences


@pytest.mark.parametrize(
    "note, words, expected",
    [
        # negation, lists after one cue
        ("否认高血压、糖尿病、冠心病史。", ["高血压", "糖尿病", "冠心病"], ["NH", "NH", "NH"]),
        ("无发热、咳嗽、咳痰。", ["发热", "咳嗽", "咳痰"], ["N", "N", "N"]),
        ("无胸痛及肩背部放射痛。", ["胸痛", "肩背部放射痛"], ["N", "N"]),
        ("不伴恶心、呕吐。", ["恶心", "呕吐"], ["N", "N"]),
        ("未诉胸闷、气短。", ["胸闷", "气短"], ["N", "N"]),
        # a comma ends a forward negation
        ("无发热，咳嗽3天。", ["发热", "咳嗽"], ["N", "-"]),
        ("无胸闷，伴心悸。", ["胸闷", "心悸"], ["N", "-"]),
        # terminators
        ("否认胸痛但诉胸闷。", ["胸痛", "胸闷"], ["N", "-"]),
        ("无发热伴咳嗽。", ["发热", "咳嗽"], ["N", "-"]),
        # pseudo cues
        ("患者无明显诱因出现胸痛。", ["胸痛"], ["-"]),
        ("无明显诱因下出现头晕、乏力。", ["头晕", "乏力"], ["-", "-"]),
        ("四肢无力。", ["四肢无力"], ["-"]),
        ("症状未见明显好转。", ["症状"], ["-"]),
        ("胸闷原因待查。", ["胸闷"], ["-"]),
        ("甲状腺结节性质待定。", ["甲状腺结节"], ["-"]),
        ("二尖瓣狭窄（轻度可能）。", ["二尖瓣狭窄"], ["-"]),
        # backward negation
        ("Murphy征阴性，移动性浊音(-)。", ["Murphy征", "移动性浊音"], ["N", "N"]),
        ("ck(+)、syn(-)、cga(-)。", ["ck", "syn", "cga"], ["-", "N", "N"]),
        ("肝脾肋下未触及。", ["肝脾"], ["N"]),
        ("双肺未闻及干湿性啰音。", ["干湿性啰音"], ["N"]),
        ("心电图未见明显异常。", ["心电图"], ["N"]),
        ("胸痛症状消失。", ["胸痛"], ["N"]),
        ("体重无明显变化。", ["体重"], ["N"]),
        # uncertainty
        ("考虑冠心病可能。", ["冠心病"], ["U"]),
        ("肺部感染待排。", ["肺部感染"], ["U"]),
        ("冠心病？", ["冠心病"], ["U"]),
        ("冠心病?高血压", ["冠心病", "高血压"], ["U", "-"]),
        ("不除外肺栓塞。", ["肺栓塞"], ["U"]),
        ("肺栓塞不除外。", ["肺栓塞"], ["U"]),
        ("疑似骨折。", ["骨折"], ["U"]),
        ("可疑Q波。", ["Q波"], ["U"]),
        ("待除外肋骨骨折。", ["肋骨骨折"], ["U"]),
        # historical
        ("高血压病史10年。", ["高血压"], ["H"]),
        ("既往有糖尿病，规律服药。", ["糖尿病"], ["H"]),
        ("曾行PCI术。", ["PCI术"], ["H"]),
        # family, never historical
        ("母亲患高血压。", ["高血压"], ["F"]),
        ("父亲有高血压病史。", ["高血压"], ["F"]),
        ("1姐患冠心病，2弟体健。", ["冠心病"], ["F"]),
        ("配偶患有糖尿病。", ["糖尿病"], ["F"]),
        ("否认家族遗传病史。", ["遗传病"], ["NF"]),
        ("有高血压家族史。", ["高血压"], ["F"]),
        ("女性，子宫肌瘤。", ["子宫肌瘤"], ["-"]),
        # hypothetical
        ("如出现胸痛、胸闷，及时就诊。", ["胸痛", "胸闷"], ["Y", "Y"]),
        ("如有不适及时就诊。", ["不适"], ["Y"]),
        ("不适随诊。", ["不适"], ["Y"]),
        ("必要时行冠脉造影。", ["冠脉造影"], ["Y"]),
        ("若血压升高，加用药物。", ["血压升高"], ["Y"]),
        ("饮食如常。", ["饮食"], ["-"]),
        # affirmed, several at once
        ("胸闷3天，伴心悸、气短。", ["胸闷", "心悸", "气短"], ["-", "-", "-"]),
        ("否认高血压史，无发热，考虑肺炎。", ["高血压", "发热", "肺炎"], ["NH", "N", "U"]),
    ],
)
def test_flags(note: str, words: list[str], expected: list[str]) -> None:
    assert flags(note, words) == expected


def test_sentence_ends_bound_every_scope() -> None:
    assert flags("否认高血压史。糖尿病10年", ["高血压", "糖尿病"]) == ["NH", "-"]
    assert flags("无发热\n咳嗽", ["发热", "咳嗽"]) == ["N", "-"]
    assert flags("1.冠心病2.高血压？", ["冠心病", "高血压"]) == ["-", "U"]
    assert flags("否认高血压；糖尿病", ["高血压", "糖尿病"]) == ["N", "-"]


def test_max_scope() -> None:
    filler = "、".join(["咳嗽"] * 30)  # 89 chars: beyond the 40 of 无
    note = f"无{filler}、发热"
    res = CTX.apply(note, [(1, 3), (len(note) - 2, len(note))])
    assert [a.negated for a in res] == [True, False]


def test_cue_inside_the_concept_is_no_modifier() -> None:
    assert flags("无痛性血尿。", ["无痛性血尿"]) == ["-"]
    ctx = ConText([ContextRule(cue="家族性", category="FAMILY", direction="forward")])
    assert flags("家族性高胆固醇血症。", ["家族性高胆固醇血症"], ctx=ctx) == ["-"]
    assert flags("家族性高胆固醇血症。", ["高胆固醇血症"], ctx=ctx) == ["F"]


# --------------------------------------------------------------------------------------------
# Sections


NOTE = (
    "主诉：胸痛3天。\n既往史：糖尿病10年，否认肝炎。现右臂麻木。\n"
    "家族史：父亲糖尿病。否认家族遗传病史。"
)


def test_section_defaults() -> None:
    secs = split_sections(NOTE)
    words = ["胸痛", "糖尿病", "肝炎", "右臂麻木", "糖尿病", "遗传病"]
    assert flags(NOTE, words, sections=secs) == ["-", "H", "NH", "H", "F", "NF"]
    # without sections only the cues speak (既往史 is then a cue: up to the sentence end)
    assert flags(NOTE, words) == ["-", "H", "NH", "-", "F", "NF"]
    # the defaults can be switched off (headers still end scopes and are no cues)
    off = ConText(section_defaults=False)
    assert flags(NOTE, words, sections=secs, ctx=off) == ["-", "-", "N", "-", "F", "NF"]


def test_section_default_cue_is_the_header() -> None:
    secs = split_sections(NOTE)
    a = CTX.apply(NOTE, spans_of(NOTE, ["糖尿病"]), sections=secs)[0]
    (cue,) = a.cues
    assert cue.direction == "section" and cue.rule == "past_history"
    assert cue.category == "HISTORICAL"
    assert NOTE[cue.start : cue.end] == "既往史："


def test_headers_end_scopes_and_are_no_cues() -> None:
    note = "个人史：否认\n家族史：高血压"
    secs = split_sections(note)
    # 否认 does not reach over the next header; the 史 of 家族史 is no HISTORICAL cue
    (a,) = CTX.apply(note, spans_of(note, ["高血压"]), sections=secs)
    assert (a.negated, a.historical, a.family) == (False, False, True)


def test_with_sections_from_fields() -> None:
    record = {"既往史": "高血压10年。", "家族史": "母亲体健。", "出院医嘱": "如有胸痛及时就诊。"}
    text, secs = sections_from_fields(record)
    words = ["高血压", "胸痛"]
    assert flags(text, words, sections=secs) == ["H", "Y"]


# --------------------------------------------------------------------------------------------
# Offsets, inputs, results


def test_offsets_are_original_with_normalization() -> None:
    note = "　否认\u200b高血压，（－）心电图？"
    res = CTX.apply(note, [(4, 7)])
    (a,) = res
    assert a.negated and a.historical is False
    (cue,) = a.cues
    assert note[cue.start : cue.end] == "否认"
    assert note[cue.scope_start : cue.scope_end] == "否认\u200b高血压"
    cues = CTX.find_cues(note)
    assert [(note[c.start : c.end], c.category) for c in cues] == [
        ("否认", "NEGATED_EXISTENCE"),
        ("（－）", "NEGATED_EXISTENCE"),
        ("？", "POSSIBLE"),
    ]
    assert CTX.apply(normalize(note), [(4, 7)]) == res


def test_spans_in_any_order_and_shape() -> None:
    note = "无发热。咳嗽。"

    class Span:
        def __init__(self, start: int, end: int) -> None:
            self.start, self.end = start, end

    res = CTX.apply(note, [(4, 6), [1, 3], Span(1, 3), (0, 0)])
    assert [(a.start, a.end, a.negated) for a in res] == [
        (4, 6, False), (1, 3, True), (1, 3, True), (0, 0, False)
    ]  # fmt: skip
    assert CTX.apply(note, []) == []
    assert CTX.apply(note, iter([(1, 3)]))[0].negated


@pytest.mark.parametrize("bad", [(3, 1), (-1, 2), ("a", "b"), (1,), None, 5])
def test_bad_spans_raise_input_error_without_text(bad) -> None:
    note = "否认高血压病史"
    with pytest.raises(InputError) as info:
        CTX.apply(note, [bad])
    assert "高血压" not in str(info.value)


def test_bad_text_type() -> None:
    with pytest.raises(TypeError, match="bytes"):
        CTX.apply(b"x", [(0, 1)])  # type: ignore[arg-type]


def test_assertion_result_shape() -> None:
    (a,) = CTX.apply("否认高血压病史", [(2, 5)])
    assert isinstance(a, Assertion)
    assert a.flags() == {
        "negated": True, "uncertain": False, "historical": True, "family": False,
        "hypothetical": False,
    }  # fmt: skip
    assert not a.affirmed
    assert all(isinstance(c, Cue) for c in a.cues)
    assert {c.category for c in a.cues} == {"NEGATED_EXISTENCE", "HISTORICAL"}
    d = json.loads(json.dumps(a.to_dict()))
    assert d["negated"] is True and d["start"] == 2 and len(d["cues"]) == 2
    assert CTX.apply("胸痛", [(0, 2)])[0].affirmed


# --------------------------------------------------------------------------------------------
# Rules as data


def test_shipped_rules_cover_every_category_and_the_brief() -> None:
    data = load_json("rules", "context.json")
    rules = [ContextRule.from_dict(r) for r in data["rules"]]
    assert {r.category for r in rules if r.direction not in ("pseudo", "terminate")} == set(
        CATEGORIES
    )
    cues = {r.cue for r in rules}
    for cue in (
        "无",
        "否认",
        "未见",
        "未闻及",
        "未触及",
        "未引出",
        "未诉",
        "阴性",
        "(-)",
        "已排除",
        "可能",
        "不除外",
        "待排",
        "待查",
        "考虑",
        "?",
        "疑似",
        "可疑",
        "既往",
        "曾",
        "史",
        "父亲",
        "母亲",
        "家族中",
        "家族史",
        "若",
        "一旦",
        "必要时",
        "无明显诱因",
        "但",
        "但是",
        "然而",
        "目前",
    ):
        assert cue in cues, cue


def test_rules_round_trip() -> None:
    data = json.loads(json.dumps(CTX.to_dict(), ensure_ascii=False))
    again = ConText.from_dict(data)
    assert again.rules == CTX.rules
    note = "否认高血压、糖尿病史，考虑冠心病可能，如有不适随诊。"
    spans = spans_of(note, ["高血压", "糖尿病", "冠心病", "不适"])
    assert again.apply(note, spans) == CTX.apply(note, spans)
    assert ConText.from_dict(load_json("rules", "context.json")).rules == CTX.rules


def test_pickle() -> None:
    note = "否认高血压、糖尿病史，考虑冠心病可能。"
    spans = spans_of(note, ["高血压", "糖尿病", "冠心病"])
    res = CTX.apply(note, spans)
    again = pickle.loads(pickle.dumps(CTX))
    assert again.apply(note, spans) == res
    assert pickle.loads(pickle.dumps(res)) == res


def test_add_rule() -> None:
    ctx = ConText()
    note = "超声未提示血栓形成"
    assert flags(note, ["血栓形成"], ctx=ctx) == ["-"]
    ctx.add_rule({"cue": "未提示", "category": "NEGATED_EXISTENCE", "direction": "forward"})
    assert flags(note, ["血栓形成"], ctx=ctx) == ["N"]
    ctx.add_rule(ContextRule(pattern=r"排除(?=血栓)", direction="pseudo"))
    assert flags("排除血栓", ["血栓"], ctx=ctx) == ["-"]
    assert flags("排除心梗", ["心梗"], ctx=ctx) == ["N"]


def test_cue_written_full_width_is_normalized() -> None:
    ctx = ConText([{"cue": "（阴）", "category": "NEGATED_EXISTENCE", "direction": "backward"}])
    assert flags("乙肝(阴)", ["乙肝"], ctx=ctx) == ["N"]


def test_token_scopes() -> None:
    rule = {"cue": "无", "category": "NEGATED_EXISTENCE", "direction": "forward",
            "max_scope": 1, "scope_unit": "tokens"}  # fmt: skip
    ctx = ConText([rule])
    note = "无发热咳嗽"
    spans = [(1, 3), (3, 5)]
    tokens = [(0, 1), (1, 3), (3, 5)]
    assert [a.negated for a in ctx.apply(note, spans, tokens=tokens)] == [True, False]
    # without tokens a token counts CHARS_PER_TOKEN = 2 chars
    assert [a.negated for a in ctx.apply(note, spans)] == [True, False]


def test_terminator_categories() -> None:
    rules = [
        {"cue": "无", "category": "NEGATED_EXISTENCE", "direction": "forward"},
        {"cue": "既往", "category": "HISTORICAL", "direction": "forward"},
        {"cue": "伴", "direction": "terminate", "categories": ["NEGATED_EXISTENCE"]},
    ]
    ctx = ConText(rules)
    assert flags("无发热伴咳嗽", ["咳嗽"], ctx=ctx) == ["-"]
    assert flags("既往发热伴咳嗽", ["咳嗽"], ctx=ctx) == ["H"]


@pytest.mark.parametrize(
    "rule, message",
    [
        ({"category": "POSSIBLE"}, "exactly one"),
        ({"cue": "a", "pattern": "a", "category": "POSSIBLE"}, "exactly one"),
        ({"cue": "", "category": "POSSIBLE"}, "non-empty"),
        ({"cue": "a", "category": "MAYBE"}, "category"),
        ({"cue": "a", "category": "POSSIBLE", "direction": "sideways"}, "direction"),
        ({"pattern": "(a)", "category": "POSSIBLE"}, "non-capturing"),
        ({"pattern": "a*", "category": "POSSIBLE"}, "empty string"),
        ({"pattern": "(", "category": "POSSIBLE"}, "bad regex"),
        ({"cue": "a", "category": "POSSIBLE", "max_scope": -1}, "max_scope"),
        ({"cue": "a", "category": "POSSIBLE", "max_scope": True}, "max_scope"),
        ({"cue": "a", "category": "POSSIBLE", "scope_unit": "words"}, "scope_unit"),
        ({"cue": "a", "category": "POSSIBLE", "stop_at_comma": "no"}, "stop_at_comma"),
        ({"cue": "a", "category": "POSSIBLE", "categories": ["POSSIBLE"]}, "only terminate"),
        ({"cue": "a", "direction": "terminate", "categories": ["X"]}, "unknown categories"),
        ({"cue": "a", "category": "POSSIBLE", "colour": "red"}, "unknown key"),
    ],
)
def test_bad_rules(rule: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        ContextRule.from_dict(rule)


def test_bad_rule_files() -> None:
    with pytest.raises(InputError, match="format"):
        ConText.from_dict({"format": 2, "rules": []})
    with pytest.raises(InputError, match="rule #0"):
        ConText.from_dict({"rules": [{"cue": "a"}]})
    with pytest.raises(InputError):
        ConText().add_rule("无")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# The gold set of real sentences


def test_gold_file_holds_locations_only() -> None:
    from .context_gold import FLAGS, load_rows, split_of

    rows = load_rows()
    mentions = [m for r in rows for m in r["mentions"]]
    assert len(mentions) >= 300
    for r in rows:
        assert set(r) == {"source", "locator", "start", "end", "sha1", "mentions"}
        assert set(r["locator"]) <= {"line", "field"}
        for m in r["mentions"]:
            assert set(m) == {"start", "end", *FLAGS}
    support = {f: sum(m[f] for m in mentions) for f in FLAGS}
    assert support["negated"] >= 100 and support["uncertain"] >= 30
    assert support["historical"] >= 30 and support["family"] >= 30
    assert support["hypothetical"] >= 10
    assert sum(not any(m[f] for f in FLAGS) for m in mentions) >= 50
    splits = [split_of(r) for r in rows]
    assert 0.35 < splits.count("dev") / len(splits) < 0.65


@pytest.mark.shared_data
def test_gold_set_targets(shared_data) -> None:
    from .context_gold import resolve, score

    result = score(resolve(shared_data))
    full = result["all"]
    assert full["_mentions"] >= 300
    assert full["negated"]["f1"] >= 0.95, full["negated"]
    for flag in ("uncertain", "historical", "family", "hypothetical"):
        assert full[flag]["f1"] >= 0.85, (flag, full[flag])


def test_assertions_columns_behave_as_the_list() -> None:
    note = "否认高血压、糖尿病史。母亲有乳腺癌。考虑肺炎可能。发热3天。"
    words = ["高血压", "糖尿病", "乳腺癌", "肺炎", "发热"]
    spans = [(note.index(w), note.index(w) + len(w)) for w in words]
    rows = ConText().apply(note, spans)
    cols = Assertions.from_list(rows)
    assert len(cols) == 5 and list(cols) == rows and cols == rows
    assert cols.negated == [True, True, False, False, False]
    assert cols.family == [False, False, True, False, False]
    assert cols.uncertain == [False, False, False, True, False]
    assert cols[2] == rows[2] and cols[-1].affirmed
    assert isinstance(cols[1:3], Assertions) and list(cols[1:3]) == rows[1:3]
    assert cols != rows[:4] and cols == Assertions.from_list(rows)
    assert cols.to_list() == [a.to_dict() for a in rows]
    assert pickle.loads(pickle.dumps(cols)) == cols
    assert repr(cols) == "<Assertions n=5>"  # never note text
    empty = Assertions.from_list([])
    assert len(empty) == 0 and empty == [] and list(empty) == []
