"""Synonym retrieval and category coherence on hand-made vectors with known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ehrtext.embeddings.evaluate import (
    category_coherence,
    evaluate_vectors,
    load_categories,
    load_cdn_pairs,
    load_icd_alias_pairs,
    read_pairs,
    synonym_retrieval,
)
from ehrtext.errors import InputError

# five unit vectors at these angles (degrees): cosine order = angle order
ANGLES = {"a": 0, "b": 10, "c": 25, "d": 90, "e": 200}


@pytest.fixture(scope="module")
def kv():
    from gensim.models import KeyedVectors

    kv = KeyedVectors(2)
    words = list(ANGLES)
    vecs = [[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in ANGLES.values()]
    kv.add_vectors(words, np.array(vecs, dtype=np.float32) * 3.0)  # length does not matter
    return kv


def test_synonym_ranks_mrr_and_hit_at_k(kv) -> None:
    pairs = [("a", "b"), ("a", "c"), ("d", "e"), ("a", "zz"), ("a", "a"), ("a", "b")]
    # neighbours of a: b c d e -> b rank 1, c rank 2; of d: c b a e -> e rank 4
    rep = synonym_retrieval(kv, pairs, k=2)
    assert (rep.pairs_total, rep.pairs_single_token, rep.pairs_evaluated) == (5, 5, 3)
    assert rep.mrr == pytest.approx((1 + 1 / 2 + 1 / 4) / 3)
    assert rep.hit_at_k == pytest.approx(2 / 3)
    assert rep.median_rank == 2.0
    assert synonym_retrieval(kv, pairs, k=1).hit_at_k == pytest.approx(1 / 3)


def test_synonym_pairs_must_be_single_tokens_with_a_tokenizer(kv) -> None:
    class Split:
        def cut(self, s: str) -> list[str]:
            return s.split("+")

    rep = synonym_retrieval(kv, [("a", "b"), ("a+c", "b"), ("d", "e")], tokenizer=Split())
    assert (rep.pairs_total, rep.pairs_single_token, rep.pairs_evaluated) == (3, 2, 2)
    assert rep.mrr == pytest.approx((1 + 1 / 4) / 2)
    empty = synonym_retrieval(kv, [("x", "y")])
    assert (empty.pairs_evaluated, empty.mrr) == (0, 0.0)
    with pytest.raises(InputError):
        synonym_retrieval(kv, [("a", "b")], k=0)


def test_category_coherence(kv) -> None:
    cats = {"a": "drug", "b": "drug", "c": "symptom", "d": "symptom", "e": "disease"}
    at1 = category_coherence(kv, cats, k=1)
    # a -> b (drug), b -> a (drug); c -> b (miss), d -> c (hit); e -> d (miss)
    assert {k: (r.queries, r.precision) for k, r in at1.items()} == {
        "drug": (2, 1.0),
        "symptom": (2, 0.5),
        "disease": (1, 0.0),
    }
    assert at1["drug"].chance == pytest.approx(2 / 5)
    assert at1["drug"].lift == 2.5
    at2 = category_coherence(kv, cats, k=2, labels=["drug"], max_queries=1)
    assert (at2["drug"].queries, at2["drug"].precision) == (1, 0.5)  # a -> b, c
    assert category_coherence(kv, {}, labels=["drug"])["drug"].queries == 0


def test_evaluate_vectors_report_is_json(kv) -> None:
    rep = evaluate_vectors(
        kv, pairs={"hand": [("a", "b")]}, categories={"a": "drug", "b": "drug"}, k=1
    ).to_dict()
    json.dumps(rep)
    assert rep["synonyms"]["hand"]["mrr"] == 1.0
    assert rep["coherence"]["drug"]["precision"] == 1.0
    assert rep["coherence"]["macro_precision"] == pytest.approx(1 / 3)  # symptom, disease: 0


def test_readers(tmp_path: Path) -> None:
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("# raw\tstandard\n心梗\t心肌梗死\n\n高血压病\t高血压\n", encoding="utf-8")
    assert read_pairs(tsv) == [("心梗", "心肌梗死"), ("高血压病", "高血压")]
    tsv.write_text("a\tb\tc\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 1"):
        read_pairs(tsv)

    cdn = tmp_path / "CHIP-CDN"
    cdn.mkdir()
    rows = [
        {"text": "心梗", "normalized_result": "急性心肌梗死"},
        {"text": "高血压 糖尿病", "normalized_result": "高血压##糖尿病"},
        {"text": "右腿擦伤", "normalized_result": '"下肢未特指的损伤,水平未特指"'},
    ]
    (cdn / "CHIP-CDN_train.json").write_text(json.dumps(rows, ensure_ascii=False), "utf-8")
    assert load_cdn_pairs(cdn) == [
        ("心梗", "急性心肌梗死"),
        ("右腿擦伤", "下肢未特指的损伤,水平未特指"),
    ]
    with pytest.raises(InputError):
        load_cdn_pairs(tmp_path)

    lex = tmp_path / "lexicons"
    (lex / "cmekg_pycmekg").mkdir(parents=True)
    (lex / "icd10_beijing_clinical_v601_cblue").mkdir()
    (lex / "cmekg_pycmekg" / "disease_icd10.tsv").write_text(
        "心衰\tI50.9\n充血性心力衰竭\tI50.0\n", encoding="utf-8"
    )
    (lex / "icd10_beijing_clinical_v601_cblue" / "icd10_beijing_v601.tsv").write_text(
        "I50.0\t充血性心力衰竭\t\t\nI50.9\t未特指的心力衰竭\t\t\n", encoding="utf-8"
    )
    assert load_icd_alias_pairs(lex) == [("心衰", "未特指的心力衰竭")]

    cats = load_categories()
    assert (cats["美托洛尔"], cats["高血压"], cats["乏力"]) == ("drug", "disease", "symptom")
    assert "阿司匹林" not in cats  # tagged "medical" (THUOCL), not "drug"
    assert set(cats.values()) == {"drug", "symptom", "disease"}
