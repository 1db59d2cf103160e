"""Tests of ehrtext.text.normalize: exact behaviour on EMR strings, offsets, and properties."""

from __future__ import annotations

import importlib
import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ehrtext.errors import InputError
from ehrtext.resources import load_json
from ehrtext.text.normalize import Normalized, NormalizerConfig, OffsetMap, normalize

# ``ehrtext.text`` re-exports the function ``normalize``, which shadows the submodule attribute.
normalize_module = importlib.import_module("ehrtext.text.normalize")

_RULES = load_json("rules", "normalize.json")
EXPANSION_KEYS = set(_RULES["expansions"]) | {"İ"}  # 'İ'.lower() is two chars
MAX_EXTRA = max(len(v) for v in _RULES["expansions"].values()) - 1


# --------------------------------------------------------------------------------------------
# Exact behaviour


def test_fullwidth_bp_reading() -> None:
    n = normalize("ＢＰ　１５０／９０ｍｍＨｇ")
    assert n.text == "BP 150/90mmHg"
    assert n.offsets.is_identity
    assert n.to_original(3, 9) == (3, 9)
    assert n.original[3:9] == "１５０／９０"
    assert n.original[slice(*n.to_original(9, 13))] == "ｍｍＨｇ"


def test_fullwidth_note_with_collapse_crlf_and_strip() -> None:
    original = "　体温：３８．５℃，　　脉搏：９０次／分\r\n血压：１５０／９０ｍｍＨｇ　"
    n = normalize(original)
    assert n.text == "体温:38.5℃, 脉搏:90次/分\n血压:150/90mmHg"
    assert n.original is original
    assert len(n.offsets) == len(n.text) == 32
    assert n.offsets.index == [
        *range(1, 11),  # 体温:38.5℃, and the first of the two ideographic spaces
        *range(12, 21),  # 脉搏:90次/分 and '\r' of '\r\n'
        *range(22, 35),  # 血压:150/90mmHg
    ]
    assert n.to_original(10, 12) == (12, 14)
    assert original[12:14] == "脉搏"
    assert n.to_original(22, 32) == (25, 35)
    assert original[25:35] == "１５０／９０ｍｍＨｇ"
    assert n.to_original(0, 32) == (1, 35)


def test_zero_width_and_soft_hyphen_removed_with_offsets() -> None:
    n = normalize("发\u200b热\ufeff３８\u00ad℃")
    assert n.text == "发热38℃"
    assert n.offsets.index == [0, 2, 4, 5, 7]
    assert n.to_original(1, 4) == (2, 6)
    assert n.to_original(0, 5) == (0, 8)


def test_control_chars_removed() -> None:
    n = normalize("\x00a\x07b\x7fc\x85d\x9fe\u2060f\u200c\u200dg")
    assert n.text == "abcdefg"
    assert n.offsets.index == [1, 3, 5, 7, 9, 11, 14]


def test_crlf_and_cr() -> None:
    n = normalize("a\r\nb\rc")
    assert n.text == "a\nb\nc"
    assert n.offsets.index == [0, 1, 3, 4, 5]
    assert normalize("a\r\n\r\nb").text == "a\nb"
    m = normalize("a\r\n\r\nb", collapse_whitespace=False)
    assert m.text == "a\n\nb"
    assert m.offsets.index == [0, 2, 4, 5]
    assert normalize("a\rb", collapse_whitespace=False).text == "a\nb"
    assert normalize("x\u2028y\u2029z").text == "x\ny\nz"


def test_keep_newlines_false() -> None:
    assert normalize("头痛\r\n发热\u2028咳嗽", keep_newlines=False).text == "头痛 发热 咳嗽"
    n = normalize("a\r\nb\rc\n\nd", keep_newlines=False, collapse_whitespace=False)
    assert n.text == "a b c  d"
    assert n.offsets.index == [0, 2, 3, 4, 5, 6, 7, 8]


def test_collapse_whitespace() -> None:
    n = normalize("头痛  \t 发热\n \n\n咳嗽")
    assert n.text == "头痛 发热\n咳嗽"
    assert n.offsets.index == [0, 1, 2, 6, 7, 8, 12, 13]
    assert normalize("a \u00a0\u3000\u2003\u202f\u205f\u1680\v\fb").text == "a b"
    m = normalize("头痛  \t 发热\n \n\n咳嗽", collapse_whitespace=False)
    assert m.text == "头痛    发热\n \n\n咳嗽"
    assert m.offsets.is_identity


def test_strip() -> None:
    original = "  \u3000发热\u200b \n"
    n = normalize(original)
    assert n.text == "发热"
    assert n.offsets.index == [3, 4]
    assert n.to_original(0, 2) == (3, 5)
    kept = normalize(original, strip=False)
    assert kept.text == " 发热\n"
    assert kept.offsets.index == [0, 3, 4, 7]


def test_empty_and_all_whitespace() -> None:
    e = normalize("")
    assert e.text == "" and e.offsets.is_identity and len(e.offsets) == 0
    assert e.to_original(0, 0) == (0, 0)
    w = normalize(" \u3000\u200b\n")
    assert w.text == ""
    assert len(w.offsets) == 0
    assert w.to_original(0, 0) == (4, 4)


def test_traditional_to_simplified() -> None:
    same = normalize("糖尿病", traditional_to_simplified=True)
    assert same.text == "糖尿病" and same.offsets.is_identity
    n = normalize("高血壓，髮熱３天", traditional_to_simplified=True)
    assert n.text == "高血压,发热3天"
    assert n.offsets.is_identity
    # Off by default.
    assert normalize("高血壓").text == "高血壓"
    # 髙 is a variant form, not a Traditional char: OpenCC's TSCharacters does not map it.
    assert normalize("髙血壓", traditional_to_simplified=True).text == "髙血压"


def test_t2s_table_is_closed() -> None:
    chars = load_json("rules", "t2s_chars.json")["chars"]
    assert len(chars) > 4000
    assert all(len(k) == 1 and len(v) == 1 and v not in chars for k, v in chars.items())


def test_unit_expansion_offsets() -> None:
    n = normalize("阿司匹林100㎎qd")
    assert n.text == "阿司匹林100mgqd"
    assert n.offsets.index == [0, 1, 2, 3, 4, 5, 6, 7, 7, 8, 9]
    assert n.to_original(7, 9) == (7, 8)
    assert n.to_original(7, 8) == (7, 8)
    assert n.to_original(8, 9) == (7, 8)
    assert n.to_original(4, 9) == (4, 8)
    assert n.to_original(4, 11) == (4, 10)
    assert n.offsets.starts_to_original([0, 7, 8, 9]) == [0, 7, 7, 8]
    assert n.offsets.ends_to_original([7, 8, 9, 11]) == [7, 8, 8, 10]
    assert normalize("胰岛素0.5㎍ ㏄ ㎡").text == "胰岛素0.5μg cc m2"
    assert normalize("100㎎", unify_punctuation=False).text == "100㎎"


def test_variant_punctuation() -> None:
    n = normalize("“冠心病”﹐血压﹙高﹚–稳定〜好转")
    assert n.text == '"冠心病",血压(高)-稳定~好转'
    assert n.offsets.is_identity
    assert normalize("血压｡心率､体温・呼吸〔正常〕").text == "血压。心率、体温·呼吸[正常]"
    assert normalize("“冠心病”", unify_punctuation=False).text == "“冠心病”"


def test_meaningful_symbols_are_kept() -> None:
    kept = "。、【】《》「」…×℃μ±≥≤①Ⅱ℉"
    n = normalize(kept)
    assert n.text == kept and n.offsets.is_identity


def test_fullwidth_off_and_lowercase() -> None:
    assert normalize("ＢＰ１５０", fullwidth=False).text == "ＢＰ１５０"
    assert normalize("ＢＰ 150/90 mmHg", lowercase=True).text == "bp 150/90 mmhg"
    assert normalize("ＢＰ", fullwidth=False, lowercase=True).text == "ｂｐ"


def test_surrogates_astral_and_combining_chars_pass_through() -> None:
    s = "\ud800x😀\udfff𠀀e\u0301\ud83d\ude00"
    for text in (s, s * 20):  # short: str.translate; long: the numpy table
        n = normalize(text)
        assert n.text == text and n.offsets.is_identity


def test_numpy_and_pure_python_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    unit = "ＢＰ　１５０／９０ｍｍＨｇ，高血壓\u200b\r\n\ud800㎎“ＡＢＣ”\u3000\u3000"
    text = (unit * 150).strip()
    cfg = NormalizerConfig(traditional_to_simplified=True, lowercase=True)
    assert len(text) > normalize_module._NUMPY_INDEX_MIN
    fast = normalize(text, cfg)
    fast_ends = fast.offsets.ends_to_original(list(range(len(fast.text) + 1)))
    monkeypatch.setattr(normalize_module, "_numpy", False)
    slow = normalize(text, cfg)
    assert fast == slow
    assert fast.offsets.index == slow.offsets.index
    assert fast_ends == slow.offsets.ends_to_original(list(range(len(slow.text) + 1)))
    assert fast.text.startswith("bp 150/90mmhg,高血压\n")
    assert fast.to_original(14, 18) == (14, 19)  # 高血壓 and the "\u200b\r" before the newline
    assert fast.offsets.index[17] == 18  # the gap maps to its '\r'


def test_config_overrides_and_instances() -> None:
    cfg = NormalizerConfig(strip=False)
    assert normalize(" a ", cfg).text == " a "
    assert normalize(" a ", cfg, strip=True).text == "a"
    assert normalize(" a ", strip=False) == normalize(" a ", cfg)
    with pytest.raises(TypeError, match="strip"):
        NormalizerConfig(strip="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="NormalizerConfig"):
        normalize("a", {"strip": False})  # type: ignore[arg-type]


def test_config_dict_round_trip() -> None:
    cfg = NormalizerConfig(traditional_to_simplified=True, keep_newlines=False)
    d = cfg.to_dict()
    assert d == {
        "fullwidth": True,
        "unify_punctuation": True,
        "collapse_whitespace": True,
        "keep_newlines": False,
        "strip": True,
        "traditional_to_simplified": True,
        "lowercase": False,
    }
    assert NormalizerConfig.from_dict(json.loads(json.dumps(d))) == cfg
    assert NormalizerConfig.from_dict({}) == NormalizerConfig()
    with pytest.raises(InputError, match="future_option"):
        NormalizerConfig.from_dict({"future_option": True})
    with pytest.raises(InputError, match="lowercase"):
        NormalizerConfig.from_dict({"lowercase": 1})
    with pytest.raises(InputError, match="mapping"):
        NormalizerConfig.from_dict(["strip"])  # type: ignore[arg-type]


class SecretNote:
    def __str__(self) -> str:
        return "患者张三 secret"

    __repr__ = __str__


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (b"\xe6\x82\xa3\xe8\x80\x85 secret", "bytes"),
        (None, "NoneType"),
        (12345, "int"),
        (["患者张三 secret"], "list"),
        (SecretNote(), "SecretNote"),
    ],
)
def test_type_error_names_type_never_value(value: object, type_name: str) -> None:
    with pytest.raises(TypeError) as info:
        normalize(value)  # type: ignore[arg-type]
    message = str(info.value)
    assert type_name in message
    assert "secret" not in message and "张三" not in message and "12345" not in message


def test_repr_shows_no_text() -> None:
    n = normalize("患者张三发热")
    assert "张三" not in repr(n)
    assert "OffsetMap" in repr(n)


def test_offset_map_api() -> None:
    ident = normalize("发热3天").offsets
    starts = [0, 2, 4]
    assert ident.starts_to_original(starts) is starts
    assert ident.ends_to_original(starts) is starts
    assert ident.to_original(1, 3) == (1, 3)
    assert ident.index is None and ident.original_length == 4
    om = normalize(" 发\u200b热 3天 ").offsets
    assert om.index == [1, 3, 4, 5, 6]
    assert om.to_original(5, 5) == (8, 8)
    assert om.starts_to_original([0, 1, 5]) == [1, 3, 8]
    assert om.ends_to_original([0, 1, 2, 5]) == [1, 2, 4, 7]
    for bad in ((-1, 2), (2, 1), (0, 6)):
        with pytest.raises(IndexError):
            om.to_original(*bad)
    with pytest.raises(IndexError):
        om.starts_to_original([0, 6])
    with pytest.raises(IndexError):
        om.ends_to_original([-1])


def test_offset_map_dict_round_trip() -> None:
    for text in ("发热", "阿司匹林100㎎\u200b  qd\r\n", " a  b ", "   "):
        om = normalize(text).offsets
        d = json.loads(json.dumps(om.to_dict()))
        back = OffsetMap.from_dict(d)
        assert back == om
        assert back.index == om.index and len(back) == len(om)
    assert normalize("a㎎").offsets.to_dict() == {
        "original_length": 2,
        "length": 3,
        "runs": [[0, 0], [2, 1]],
    }
    with pytest.raises(InputError):
        OffsetMap.from_dict({"original_length": 2, "length": 3, "runs": [[1, 0]]})
    with pytest.raises(InputError):
        OffsetMap.from_dict({"length": 3})


def test_one_megabyte_note() -> None:
    unit = "患者ＢＰ　１５０／９０ｍｍＨｇ，\u200b口服阿司匹林100㎎  qd。"
    k = 1_000_000 // len(unit.encode()) + 1
    big = "\r\n".join([unit] * k)
    assert len(big.encode()) > 1_000_000
    n = normalize(big)
    one = normalize(unit).text
    assert one == "患者BP 150/90mmHg,口服阿司匹林100mg qd。"
    assert n.text == "\n".join([one] * k)
    index = n.offsets.index
    assert index is not None and len(index) == len(n.text)
    last = n.text.rindex("100mg")
    assert big[slice(*n.to_original(last, last + 5))] == "100㎎"
    assert n.offsets.starts_to_original([0, len(n.text)]) == [0, len(big)]


def test_normalized_is_frozen() -> None:
    n = normalize("a")
    assert isinstance(n, Normalized)
    with pytest.raises(AttributeError):
        n.text = "b"  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Properties

_INTERESTING = list(
    "ＢＰ１５０／：，（）～ｍＨ　\u00a0\u2002\u202f\u205f\u1680\t\v\f\r\n\r\n  \u2028\u2029"
    "\u200b\u200c\u200d\u2060\ufeff\u00ad\x00\x01\x1f\x7f\x85\x9f"
    "㎎㎍㏄㎡㎉﹐﹙–—“”〜・。、【】《》…×℃μµ±≥≤壓髮體İΣΑa1\u0301"
) + ["\ud800", "\udbff", "\udc00", "\udfff", "😀", "𠀀", "𫝈"]

_chars = st.one_of(
    st.sampled_from(_INTERESTING),
    st.characters(min_codepoint=0x4E00, max_codepoint=0x4FFF),
    st.characters(),
)
_texts = st.text(_chars, max_size=120)
_configs = st.builds(
    NormalizerConfig,
    fullwidth=st.booleans(),
    unify_punctuation=st.booleans(),
    collapse_whitespace=st.booleans(),
    keep_newlines=st.booleans(),
    strip=st.booleans(),
    traditional_to_simplified=st.booleans(),
    lowercase=st.booleans(),
)
_settings = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_settings
@given(_texts, _configs)
def test_property_idempotent_and_map_well_formed(text: str, cfg: NormalizerConfig) -> None:
    n = normalize(text, cfg)
    assert normalize(n.text, cfg).text == n.text
    assert len(n.offsets) == len(n.text)
    assert n.offsets.original_length == len(text)
    index = n.offsets.index
    if index is None:
        assert len(n.text) == len(text)
    else:
        assert all(0 <= p < len(text) for p in index)
        assert index == sorted(index)
    if n.text == text:
        assert n.offsets.is_identity
    # Only ' ' and '\n' remain as whitespace, and '\n' only when kept.
    assert all(c in " \n" for c in n.text if c.isspace())
    if not cfg.keep_newlines:
        assert "\n" not in n.text
    if cfg.strip:
        assert n.text == n.text.strip(" \n")
    n_exp = sum(c in EXPANSION_KEYS for c in text)
    assert len(n.text) <= len(text) + n_exp * MAX_EXTRA


@_settings
@given(_texts, _configs, st.data())
def test_property_round_trip_of_spans(
    text: str, cfg: NormalizerConfig, data: st.DataObject
) -> None:
    n = normalize(text, cfg)
    norm = n.text
    index = n.offsets.index or list(range(len(norm)))

    def boundary(i: int) -> bool:  # not inside an expansion
        return i in (0, len(norm)) or index[i - 1] != index[i]

    starts = [i for i, c in enumerate(norm) if not c.isspace() and boundary(i)]
    ends = [i + 1 for i, c in enumerate(norm) if not c.isspace() and boundary(i + 1)]
    assume(starts and ends and starts[0] < ends[-1])
    a = data.draw(st.sampled_from(starts))
    b = data.draw(st.sampled_from([e for e in ends if e > a] or [ends[-1]]))
    assume(b > a)
    o_s, o_e = n.to_original(a, b)
    assert 0 <= o_s < o_e <= len(text)
    assert normalize(text[o_s:o_e], cfg).text == norm[a:b]


@settings(max_examples=60, deadline=None)
@given(st.text(_chars, min_size=64, max_size=400))
def test_property_long_texts_match_short_path(text: str) -> None:
    # Long texts go through the numpy table; pieces below the threshold through str.translate.
    plan = normalize_module._plan(NormalizerConfig(traditional_to_simplified=True))
    assert plan.translate(text) == text.translate(plan.table)
