"""Tiny synthetic clinical corpora for the word2vec tests (fast: seconds, not minutes)."""

from __future__ import annotations

import random

import pytest

DRUGS = ["阿司匹林", "氯吡格雷", "二甲双胍", "硝苯地平", "阿托伐他汀", "美托洛尔"]
SYMPTOMS = ["头痛", "发热", "咳嗽", "胸痛", "头晕", "乏力"]
DISEASES = ["高血压", "糖尿病", "冠心病", "肺炎", "脑梗死", "心力衰竭"]

#: Text that must never appear in messages, logs or error files.
SECRET = "机密病历内容张三"


def make_notes(n: int = 120, seed: int = 0) -> list[str]:
    """``n`` invented notes: symptoms, drugs and diagnoses in fixed templates."""
    rng = random.Random(seed)
    notes = []
    for _ in range(n):
        s1, s2 = rng.sample(SYMPTOMS, 2)
        d1, d2 = rng.sample(DRUGS, 2)
        dx = rng.choice(DISEASES)
        days = rng.randint(1, 9)
        notes.append(
            f"患者{s1}{days}天，伴{s2}。既往{dx}病史，予{d1}、{d2}口服治疗。\n"
            f"诊断：{dx}。查体：{s1}明显，无{rng.choice(SYMPTOMS)}。"
        )
    return notes


@pytest.fixture(scope="session")
def notes() -> list[str]:
    return make_notes()


TINY = dict(vector_size=16, epochs=2, min_count=2, workers=1, prep_workers=1, progress=False)
"""Parameters of the tiny models: 16 dimensions, 2 epochs, reproducible (one worker)."""


@pytest.fixture(scope="session")
def trained(tmp_path_factory, notes):
    """One tiny model, shared by the tests that only read it."""
    from ehrtext.embeddings import train_word2vec

    out = tmp_path_factory.mktemp("w2v") / "vectors"
    return train_word2vec(notes, out, **TINY)
