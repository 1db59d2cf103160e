"""ehrtext.explain_html: the note highlighted, escaped, and given back character for character."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from ehrtext.errors import InputError
from ehrtext.explain_html import highlight_color, render_explanation

NOTE = "主诉：胸痛3天。\n现病史：<script>alert('x')</script> 患者于3天前出现胸痛，伴大汗 & 气促。\n否认糖尿病史。"


class _NoteText(HTMLParser):
    """Collects the text inside the .ehr-note div and the attributes of every highlight."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.text = []
        self.marks = []
        self._mark = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div" and "ehr-note" in (attrs.get("class") or "").split():
            self.depth = 1
        elif self.depth:
            if tag == "div":
                self.depth += 1
            if tag == "mark":
                self._mark = {**attrs, "text": ""}

    def handle_endtag(self, tag):
        if self.depth and tag == "div":
            self.depth -= 1
        if tag == "mark" and self._mark is not None:
            self.marks.append(self._mark)
            self._mark = None

    def handle_data(self, data):
        if self.depth:
            self.text.append(data)
            if self._mark is not None:
                self._mark["text"] += data


def _parse(page):
    p = _NoteText()
    p.feed(page)
    return "".join(p.text), p.marks


def test_note_comes_back_exactly_with_highlights():
    start = NOTE.index("胸痛")
    spans = [(start, start + 2, 0.9), (NOTE.index("大汗"), NOTE.index("大汗") + 2, 0.3)]
    page = render_explanation(NOTE, spans, title="Patient 7")
    text, marks = _parse(page)
    assert text == NOTE  # every character, newlines included, in order
    assert [m["text"] for m in marks] == ["胸痛", "大汗"]
    assert "white-space: pre-wrap" in page


def test_script_in_note_is_escaped():
    page = render_explanation(NOTE, [(0, 2, 1.0)])
    assert "<script>" not in page and "alert('x')</script>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&amp; 气促" in page
    assert "<script" not in page.lower()


def test_intensity_grows_with_weight_and_title_carries_weight():
    page = render_explanation("甲乙丙丁", [(0, 1, 0.2), (1, 2, 0.5), (2, 3, 1.0)])
    _, marks = _parse(page)
    assert [float(m["data-weight"]) for m in marks] == [0.2, 0.5, 1.0]
    assert [m["title"] for m in marks] == ["weight 0.2", "weight 0.5", "weight 1"]
    greens = [int(re.search(r"rgb\((\d+), (\d+), (\d+)\)", m["style"]).group(2)) for m in marks]
    assert greens[0] > greens[1] > greens[2]  # redder as the weight grows
    assert f"rgb{highlight_color(1.0)}" in marks[2]["style"]
    assert "丁" not in "".join(m["text"] for m in marks)


def test_overlapping_spans_add_up_and_negative_weights_are_blue():
    page = render_explanation("abcdef", [(0, 4, 1.0), (2, 6, 1.0), (5, 6, -3.0)])
    _, marks = _parse(page)
    assert [(m["text"], float(m["data-weight"])) for m in marks] == [
        ("ab", 1.0),
        ("cd", 2.0),
        ("e", 1.0),
        ("f", -2.0),
    ]
    r, g, b = map(int, re.search(r"rgb\((\d+), (\d+), (\d+)\)", marks[3]["style"]).groups())
    assert b > r  # blue
    assert "negative ← weight → positive" in page


def test_highlight_color_endpoints():
    assert highlight_color(0.0) == (255, 255, 255)
    assert highlight_color(1.0) == (214, 39, 40)
    assert highlight_color(1.0, negative=True) == (31, 119, 180)
    assert highlight_color(5.0) == highlight_color(1.0)


def test_probabilities_table_sorted_and_escaped():
    page = render_explanation("胸痛", [], probabilities={"<b>心衰</b>": 0.2, "冠心病": 0.7})
    assert page.index("冠心病") < page.index("&lt;b&gt;心衰&lt;/b&gt;")
    assert "0.700" in page and "0.200" in page
    pairs = render_explanation("胸痛", [], probabilities=[("A", 0.1), ("B", 0.9)])
    assert pairs.index(">B<") < pairs.index(">A<")


def test_no_spans_and_fragment():
    page = render_explanation("无异常", [])
    assert _parse(page) == ("无异常", [])
    frag = render_explanation("无异常", [(0, 1, 1.0)], full_page=False)
    assert frag.startswith('<div class="ehr-explanation">') and "<html" not in frag
    assert "body {" not in frag  # the fragment does not restyle its host page


@pytest.mark.parametrize(
    "spans, match",
    [
        ([(0, 999, 1.0)], "outside the note"),
        ([(-1, 2, 1.0)], "outside the note"),
        ([(3, 2, 1.0)], "outside the note"),
        ([(0, 2, float("nan"))], "not finite"),
        ([(0, 2, "heavy")], "weight a number"),
        ([(0, 2)], "expected"),
        ([(0.5, 2, 1.0)], "integers"),
    ],
)
def test_bad_spans_raise_without_quoting_the_note(spans, match):
    with pytest.raises(InputError, match=match) as info:
        render_explanation("患者胸痛三天", spans)
    assert "胸痛" not in str(info.value)


def test_non_str_text():
    with pytest.raises(InputError, match="must be a str"):
        render_explanation(b"bytes", [])
