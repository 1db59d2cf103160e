"""ehrtext.explain.token_spans: token weights over original offsets → highlight spans."""

from __future__ import annotations

import numpy as np
import pytest

from ehrtext.errors import InputError
from ehrtext.explain import token_spans
from ehrtext.explain_html import render_explanation


def test_max_normalisation_and_order():
    spans = token_spans([(5, 7), (0, 2), (2, 4)], [0.3, 0.1, 0.6])
    assert spans == [(0, 2, pytest.approx(1 / 6)), (2, 4, 1.0), (5, 7, 0.5)]


def test_sum_and_none_normalisation():
    assert [w for _, _, w in token_spans([(0, 1), (1, 2)], [1.0, 3.0], normalize="sum")] == [
        0.25,
        0.75,
    ]
    assert [w for _, _, w in token_spans([(0, 1), (1, 2)], [1.0, 3.0], normalize="none")] == [
        1.0,
        3.0,
    ]


def test_duplicate_offsets_add_up_and_empty_tokens_drop():
    spans = token_spans([(0, 2), (0, 2), (2, 2), (3, 4)], [0.2, 0.3, 0.9, 0.25])
    assert spans == [(0, 2, 1.0), (3, 4, 0.5)]


def test_padding_weights_are_cut_only_when_zero():
    assert token_spans([(0, 1), (1, 2)], [0.5, 1.0, 0.0, 0.0]) == [(0, 1, 0.5), (1, 2, 1.0)]
    with pytest.raises(InputError, match="padding"):
        token_spans([(0, 1), (1, 2)], [0.5, 1.0, 0.1])
    with pytest.raises(InputError, match="3 weights for 4 tokens"):
        token_spans([(0, 1), (1, 2), (2, 3), (3, 4)], [1, 1, 1])


def test_min_weight_top_k_and_merge():
    offsets = [(0, 2), (2, 4), (4, 5), (7, 9), (9, 10)]
    weights = [0.9, 1.0, 0.05, 0.4, -0.6]
    assert token_spans(offsets, weights, min_weight=0.1) == [
        (0, 2, 0.9),
        (2, 4, 1.0),
        (7, 9, 0.4),
        (9, 10, -0.6),
    ]
    assert token_spans(offsets, weights, top_k=2) == [(0, 2, 0.9), (2, 4, 1.0)]
    # adjacent runs of one sign merge (weight = the strongest); the sign change splits
    assert token_spans(offsets, weights, min_weight=0.1, merge_adjacent=True) == [
        (0, 4, 1.0),
        (7, 9, 0.4),
        (9, 10, -0.6),
    ]
    # a gap of two characters merges only with max_gap >= 2
    merged = token_spans(offsets, weights, min_weight=0.3, merge_adjacent=True, max_gap=2)
    assert merged == [(0, 4, 1.0), (7, 9, 0.4), (9, 10, -0.6)]
    merged = token_spans([(0, 2), (4, 6)], [1.0, 0.5], merge_adjacent=True, max_gap=2)
    assert merged == [(0, 6, 1.0)]


def test_all_zero_weights_give_no_span():
    assert token_spans([(0, 1), (1, 2)], [0.0, 0.0]) == []
    assert token_spans([], []) == []


@pytest.mark.parametrize(
    "offsets, weights, kwargs, match",
    [
        ([(0, 5)], [1.0], {"text_length": 3}, "past the note"),
        ([(-1, 2)], [1.0], {}, "invalid"),
        ([(3, 2)], [1.0], {}, "invalid"),
        ([(0, 1)], [float("inf")], {}, "not finite"),
        ([(0, 1)], [1.0], {"normalize": "softmax"}, "normalize"),
        ([(0, 1, 2)], [1.0], {}, "shape"),
        ([(0, 1)], [1.0], {"top_k": -1}, "top_k"),
    ],
)
def test_bad_input(offsets, weights, kwargs, match):
    with pytest.raises(InputError, match=match):
        token_spans(offsets, weights, **kwargs)


def test_with_the_real_tokenizer_and_renderer():
    """Tokenizer offsets point into the original note (full-width characters included), so
    the highlighted text is exactly the tokens' text."""
    from ehrtext.text import Tokenizer

    note = "主诉：胸痛３天，伴大汗。\n既往２型糖尿病史。"
    tokens = list(Tokenizer().tokenize(note))
    weights = np.zeros(len(tokens))
    chosen = {"胸痛": 1.0, "大汗": 0.5}
    for i, t in enumerate(tokens):
        weights[i] = chosen.get(t.text, 0.0)
    spans = token_spans([(t.start, t.end) for t in tokens], weights, text_length=len(note))
    assert [note[s:e] for s, e, _ in spans] == ["胸痛", "大汗"]
    page = render_explanation(note, spans)
    assert page.count('class="ehr-hl"') == 2
    assert ">胸痛</mark>" in page and ">大汗</mark>" in page
