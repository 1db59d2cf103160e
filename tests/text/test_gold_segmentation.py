"""The tokenizer against gold segmentations of tricky EMR sentences.

Two lists: sentences written for ehrtext in the style of Chinese EMRs (always run), and
fragments of real EMR text in ../shared/data referenced by location (``shared_data``).
Segmentation conventions are judgement calls, so the sentence-level lists are held to a
token-boundary F1 floor (the figures are in BENCHMARKS.md); medical terms, measurements and
protected patterns must come out exactly.
"""

from __future__ import annotations

import pytest

from ehrtext.text import Tokenizer

from .gold import load_authored, load_real


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


def _spans(tokens: list[str], sentence: str) -> set[tuple[int, int]]:
    spans, pos = set(), 0
    for t in tokens:
        start = sentence.index(t, pos)
        spans.add((start, start + len(t)))
        pos = start + len(t)
    return spans


def boundary_f1(pairs, tok) -> tuple[float, float]:
    """(token-level F1, share of sentences segmented exactly as the gold)."""
    tp = n_pred = n_gold = exact = 0
    for sentence, expected in pairs:
        toks = tok.tokenize(sentence)
        got = {(s, e) for s, e in zip(toks.starts, toks.ends)}
        gold = _spans(expected, sentence)
        tp += len(got & gold)
        n_pred += len(got)
        n_gold += len(gold)
        exact += got == gold
    p, r = tp / n_pred, tp / n_gold
    return 2 * p * r / (p + r), exact / len(pairs)


def test_authored_gold_list_is_large_and_well_formed():
    pairs = load_authored()
    assert len(pairs) >= 50
    for sentence, tokens in pairs:
        assert "".join("".join(tokens).split()) == "".join(sentence.split())


def test_authored_gold_f1(tok):
    f1, exact = boundary_f1(load_authored(), tok)
    assert f1 >= 0.92, f"token F1 {f1:.3f} on the authored gold list"
    assert exact >= 0.80, f"exact sentences {exact:.3f}"


@pytest.mark.parametrize(
    "term",
    ["2型糖尿病", "冠状动脉粥样硬化性心脏病", "150/90mmHg", "12.5×10^9/L", "0.5g bid", "HbA1c",
     "NT-proBNP", "2015-11-12", "2015年11月12日", "D-二聚体", "干湿性啰音", "反跳痛"],
)
def test_gold_terms_are_single_tokens_wherever_they_occur(tok, term):
    found = 0
    for sentence, expected in load_authored():
        if term in expected:
            found += 1
            assert term in tok.tokenize(sentence).texts, sentence
    assert found, f"{term} is not in the authored gold list"


@pytest.mark.shared_data
def test_real_gold_fragments(shared_data, tok):
    pairs = load_real(shared_data)  # verifies each fragment's sha1 against the data
    assert len(pairs) >= 50
    f1, exact = boundary_f1(pairs, tok)
    assert f1 >= 0.82, f"token F1 {f1:.3f} on real EMR fragments"
