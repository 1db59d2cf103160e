"""The fast paths of ehrtext.text.deid find exactly what the plain scans find.

Each speed-up has a plain reference that it must agree with, span for span:

* ``NumericDetector``: the digit-run prefilter (``_NUMERIC_PREFILTER``) against the combined
  regex run with ``finditer`` over the whole note (the prefilter switched off);
* the ``_CN_GATE`` and ``_LITERAL_GATES`` checks: every match of the gated pattern contains
  what its gate looks for;
* ``_FASTER_EQUIVALENT`` spellings against the shipped patterns;
* ``_alternation`` (a trie) against ``_flat_alternation`` (a longest-first list), in the
  contexts the detectors use them in;
* the whole ``Deidentifier`` against one built with every fast path switched off, on real
  notes (shared data) for the three strategies.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from ehrtext.text import deid as deid_module
from ehrtext.text.deid import Deidentifier, DeidRules, NumericDetector, PHISpan, WebDetector

RULES = DeidRules.default()


@pytest.fixture(scope="module")
def fast() -> NumericDetector:
    det = NumericDetector(RULES)
    assert det._candidates is not None, "the shipped numeric rules must get the prefilter"
    return det


@pytest.fixture(scope="module")
def plain() -> NumericDetector:
    det = NumericDetector(RULES)
    det._candidates = None  # the combined regex over the whole note, as finditer runs it
    return det


def _same(fast: NumericDetector, plain: NumericDetector, text: str) -> None:
    assert fast.find(text) == plain.find(text), ascii(text[:80])


# --------------------------------------------------------------------------------------------
# NumericDetector: prefilter vs the plain scan

_SEPARATORS = [
    "", "-", "--", "/", ".", " ", "  ", ")", ") ", "(", ":", "T", "X", "x", "+", "a", "，",
    "、", "\n", "年", " 年", "月", " 月", "日", "号", "号床", "床", "床位", "岁", " 岁", "周岁",
    "余岁", "多岁", "多周岁", "时", "点", "分", "Ab",
]  # fmt: skip


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def test_prefilter_is_only_for_the_shipped_numeric_rules():
    shipped = tuple(r["pattern"] for r in RULES.numeric)
    assert shipped == deid_module._SHIPPED_NUMERIC_PATTERNS
    data = dict(RULES.data)
    data["numeric"] = [dict(r) for r in RULES.numeric]
    data["numeric"][0]["pattern"] = r"\d{3}"  # other rules: no prefilter, plain scan
    assert NumericDetector(DeidRules.from_dict(data))._candidates is None


@pytest.mark.parametrize("length", range(1, 26))
def test_digit_runs_of_every_length_and_separator(fast, plain, length):
    rng = random.Random(length)
    # runs that start like the rules' numbers (86 138..., 0311, 2015, 192, 93) or at random
    starts = ["", "", "86", "8613", "13", "138", "0", "031", "0311", "19", "20", "192", "9", "1"]
    for sep in _SEPARATORS:
        for start in starts:
            run = (start + _digits(rng, length))[:length]
            for _ in range(2):
                k = rng.choice((0, 1, 2, 3, 4, 7, 8))
                tail = (rng.choice("2345678") + _digits(rng, k - 1)) if k else ""
                tail += rng.choice(("", sep, "-", "/", ".")) + _digits(rng, rng.randint(0, 4))
                for text in (run + sep + tail, "于" + run + sep + tail + "入院", run + sep):
                    _same(fast, plain, text)
        # a run that starts with each digit, and runs made of one digit
        for d in "0123456789":
            _same(fast, plain, "见" + d + _digits(rng, length - 1) + sep + "12")
            _same(fast, plain, d * length + sep + d * 2)


def test_known_shapes(fast, plain):
    texts = [
        "身份证11010519491231002X，", "11010519491231002x", "110105194912310021",  # bad check
        "110105194913310024", "370102850315123", "370102851315123", "1101051949123100211",
        "电话13812345678", "138-1234-5678", "138 1234 5678", "+8613812345678", "+86 138 1234 5678",
        "86-138-1234-5678", "8613812345678", "86138-1234-5678", "86138 1234 5678", "1381234 5678",
        "010-62345678", "(010)62345678", "(010) 62345678", "0311 2345678", "010-62345678-123",
        "0311-2345678", "(0311)2345678", "01062345678", "031123456789",
        "2015-03-12", "2015/3/2", "2015.3.2", "2015.03.12 10:30", "2015-3-2 8时30分", "2015-3-2T08:30",
        "2015年3月2日", "2015 年 3 月 2 日 10:30", "15年3月", "20150312", "20150312 10:30",
        "201503121030", "3/2/2015", "12/31/1999", "2015-03", "2015.3", "3月2日", "12 月 31 号",
        "192.168.1.1", "1.2.3.4", "255.255.255.255", "256.1.1.1", "10.0.0.1.5", "37.5℃",
        "93岁", "95 余岁", "90多岁", "101周岁", "150岁", "89岁", "12床", "3号床", "1234床",
        "12床位", "2015-03-12", "于2015-03-12", "末尾2015年3月", "末尾13812345678",
        "99岁", "140岁", "145岁", "93 岁", "95 多周岁", "2015 年3月", "15 年 3 月", "3 月 2 日",
        "(0311) 2345678", "0311)2345678", "86 13812345678", "12/31/99", "1.2.3", "2015/03/12",
    ]  # fmt: skip
    for t in texts:
        _same(fast, plain, t)
        _same(fast, plain, t + "。" + t)
        _same(fast, plain, "记录：" + t)
    # each shape must be found by both (the comparison above is not vacuous)
    assert [s.rule for s in fast.find("电话13812345678，于2015-03-12入院，93岁，12床")] == [
        "mobile",
        "date_ymd",
        "age90",
        "bed_suffix",
    ]


def test_random_strings(fast, plain):
    rng = random.Random(0)
    alphabet = "0123456789" * 4 + "-/. ()+:Xx年月日号床岁周余多时点分T患者，１٣"
    for _ in range(6000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        _same(fast, plain, text)


def test_long_runs(fast, plain):
    rng = random.Random(1)
    for text in (
        "1" * 100_000,
        _digits(rng, 100_000),
        "12-" * 20_000,
        "2015-03-12 " * 5_000,
        "1." * 30_000,
        "13812345678," * 5_000,
    ):
        _same(fast, plain, text)


# --------------------------------------------------------------------------------------------
# Gates and faster spellings


def _probe_texts() -> list[str]:
    rng = random.Random(2)
    alphabet = "〇零一二三四五六七八九十百年月日号岁周余多患者于入院http:/w.ftp的。，"
    out = [
        "二〇一五年三月二日", "二零一五年十二月三十一号", "一五年十月", "九十三岁", "九十余岁",
        "九十多周岁", "一百零二岁", "一百一十岁", "一百岁", "九十周岁", "见 https://x.org/a",
        "ftp://a.b/c", "www.abc.com", "http://", "HTTP://X.ORG", "wwwxcom",
    ]  # fmt: skip
    out += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))) for _ in range(5000)]
    return out


def test_cn_gates_find_what_every_match_contains():
    det = NumericDetector(RULES)
    gated = [(rx, gate) for rx, _typ, _rule, gate in det._cn]
    assert len(gated) == len(RULES.chinese_numeric) and all(g is not None for _, g in gated)
    found = 0
    for text in _probe_texts():
        for rx, gate in gated:
            for m in rx.finditer(text):
                found += 1
                assert gate.search(m.group()) is not None, ascii(m.group())
    assert found >= 10


def test_literal_gates_and_faster_spellings():
    web = WebDetector(RULES)  # the shipped URL pattern gets both
    assert web._url_gate is not None
    assert web._url.pattern == deid_module._FASTER_EQUIVALENT[RULES.web["url"]]
    for pattern, literals in deid_module._LITERAL_GATES.items():
        rx = re.compile(pattern)
        for text in _probe_texts():
            for m in rx.finditer(text):
                assert any(lit in m.group() for lit in literals), ascii(m.group())
    for pattern, faster in deid_module._FASTER_EQUIVALENT.items():
        a, b = re.compile(pattern), re.compile(faster)
        for text in _probe_texts():
            assert [m.span() for m in a.finditer(text)] == [m.span() for m in b.finditer(text)]


# --------------------------------------------------------------------------------------------
# Trie alternation vs the flat list


def _alternation_contexts(alt: str) -> list[tuple[str, str]]:
    """(how, pattern): the ways the detectors use an alternation."""
    return [
        ("finditer", f"(?:{alt})"),
        ("finditer", f"(?:{alt})(?:b|ab)?"),  # an optional suffix after it (place names)
        ("finditer", f"(?:{alt})(?![ab])"),  # a lookahead after it (TLDs)
        ("finditer", f"(?:{alt})c"),  # it must be followed by something
        ("search", f"(?:{alt})$"),  # the org suffix of the surrogates
        ("match", f"(?:{alt})"),  # terminator words, matched at each position
    ]


def _compare(words: list[str], texts: list[str]) -> None:
    flat = deid_module._flat_alternation(words)
    trie = deid_module._alternation(words)
    for (how, a), (_, b) in zip(
        _alternation_contexts(flat), _alternation_contexts(trie), strict=True
    ):
        ra, rb = re.compile(a), re.compile(b)
        for text in texts:
            if how == "finditer":
                got_a = [m.span() for m in ra.finditer(text)]
                got_b = [m.span() for m in rb.finditer(text)]
            elif how == "search":
                got_a = [
                    (m.span() if (m := ra.search(text, i)) else None) for i in range(len(text))
                ]
                got_b = [
                    (m.span() if (m := rb.search(text, i)) else None) for i in range(len(text))
                ]
            else:
                got_a = [(m.end() if (m := ra.match(text, i)) else None) for i in range(len(text))]
                got_b = [(m.end() if (m := rb.match(text, i)) else None) for i in range(len(text))]
            assert got_a == got_b, (words, text, how)


def test_trie_alternation_random_words():
    rng = random.Random(3)
    for _ in range(300):
        words = ["".join(rng.choice("abc.") for _ in range(rng.randint(1, 4))) for _ in range(8)]
        texts = ["".join(rng.choice("abc.x") for _ in range(rng.randint(0, 20))) for _ in range(10)]
        _compare(words, texts)


def test_trie_alternation_shipped_word_lists():
    n, a, o, c = RULES.names, RULES.address, RULES.org, RULES.cues
    lists = [
        [w for kind in ("mrn", "phone", "id_number", "age") for w in c[kind]["words"]],
        list(n["terminator_words"]),
        list(n["strong_before"]) + list(n["weak_before"]) + list(n["titles"]),
        list(n["honorific_titles"]),
        list(a["cues"]),
        list(RULES.provinces) + list(RULES.cities),
        list(o["suffixes"]),
        list(RULES.web["bare_domain_tlds"]),
    ]
    rng = random.Random(4)
    for words in lists:
        pieces = words + [w[:-1] for w in words if len(w) > 1] + ["，", "患者", "a", "市", "1"]
        texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))) for _ in range(40)]
        _compare(words, texts)


def test_trie_alternation_degenerate_lists():
    _compare(["a"], ["aaa", ""])
    _compare(["ab", "a", "abc"], ["abcab", "aab"])
    _compare(["", "a"], ["ab"])  # an empty word: the flat list is used as is
    assert deid_module._alternation(["a", ""]) == deid_module._flat_alternation(["a", ""])


# --------------------------------------------------------------------------------------------
# Word lists


def test_read_list_matches_a_line_by_line_read(tmp_path: Path):
    def reference(path: Path) -> list[str]:
        out = []
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line and not line.startswith("#"):
                    out.append(line)
        return out

    p = tmp_path / "words.txt"
    p.write_bytes("a\r\n#b\r  c d \x0b e\u2028f\n\n  #x\r\n\x85y\u3000\n王 12 nr\nlast".encode())
    assert deid_module._read_list(p) == reference(p)
    for shipped in sorted((Path(deid_module.corpora_root()) / "dict").glob("deid_*.txt")):
        assert deid_module._read_list(shipped) == reference(shipped)


# --------------------------------------------------------------------------------------------
# The whole de-identifier on real notes: fast paths on vs off


@pytest.fixture(scope="module")
def plain_deidentifiers():
    """Deidentifiers built with every fast path switched off."""
    patch = pytest.MonkeyPatch()
    patch.setattr(deid_module, "_alternation", deid_module._flat_alternation)
    patch.setattr(deid_module, "_SHIPPED_NUMERIC_PATTERNS", ())
    patch.setattr(deid_module, "_CN_GATE", {})
    patch.setattr(deid_module, "_LITERAL_GATES", {})
    patch.setattr(deid_module, "_FASTER_EQUIVALENT", {})
    try:
        built = {
            "tag": Deidentifier(),
            "mask": Deidentifier(strategy="mask"),
            "surrogate": Deidentifier(strategy="surrogate", secret="test-secret"),
        }
    finally:
        patch.undo()
    numeric = built["tag"]._detectors[0]
    assert isinstance(numeric, NumericDetector) and numeric._candidates is None
    return built


@pytest.mark.shared_data
def test_fast_and_plain_agree_on_real_notes(shared_data, plain_deidentifiers):
    from .deid_generator import generate, real_notes

    notes = [text for _source, text in real_notes(shared_data)]
    notes += [ex.text for ex in generate(shared_data, n_notes=400, per_note=3, seed=1)]
    assert len(notes) > 3000
    total = 0
    for strategy, plain in plain_deidentifiers.items():
        fast = Deidentifier(
            strategy=strategy, secret="test-secret" if strategy == "surrogate" else None
        )
        for i, text in enumerate(notes):
            spans = fast.find(text)
            assert spans == plain.find(text), f"{strategy}: note {i} differs"
            pid = str(i % 50)
            a, b = fast.apply(text, spans, pid), plain.deidentify(text, pid)
            assert (a.text, a.replacements, a.counts) == (b.text, b.replacements, b.counts)
            total += len(spans)
    assert total > 10_000  # many spans of every kind were compared, not an empty run
    assert all(isinstance(s, PHISpan) for s in fast.find(notes[-1]))
