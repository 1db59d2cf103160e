"""Fixtures of the spaCy-layer tests: one full pipeline per session and real notes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("spacy", reason="the spaCy layer needs the 'spacy' extra")

#: Invented notes (no real person): sections, lists under one cue, family history, PHI.
NOTES = [
    "主诉：胸痛2小时。\n现病史：患者2小时前无明显诱因出现胸痛，伴大汗，无发热、咳嗽。"
    "\n既往史：否认高血压、糖尿病史。\n家族史：母亲有冠心病。",
    "【主诉】反复咳嗽3年，加重1周\n【现病史】考虑肺炎可能，予头孢曲松抗感染。",
    "患者张伟，男，93岁，电话13812345678，于2015年11月12日入院。查体：双肺呼吸音清，未闻及干湿性啰音。",
    "  ＢＰ　150/90mmHg，\u200b心率 80次/分\n\n  诊断：2型糖尿病  ",
    "",
]


@pytest.fixture(scope="session")
def nlp():
    import ehrtext

    return ehrtext.load_pipeline()


@pytest.fixture(scope="session")
def real_notes(shared_data: Path) -> list[str]:
    """150 real EMR texts (CCKS 2019 Yidu), in file order."""
    path = shared_data / "corpus" / "ccks2019_yidu_emr" / "subtask1_training_afterrevise.txt"
    notes = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                notes.append(json.loads(line)["originalText"])
            if len(notes) >= 150:
                break
    return notes


def doc_key(doc) -> tuple:
    """Everything the ehrtext components put on a doc, in plain JSON types (msgpack turns
    lists into tuples; this compares values, not container types)."""

    def plain(x):
        return json.loads(json.dumps(x, ensure_ascii=False))

    return (
        doc.text,
        [(t.text, t.norm_, t.whitespace_) for t in doc],
        plain(doc._.ehr_sections),
        plain(doc._.ehr_concepts),
        plain(doc._.ehr_phi),
        plain(doc._.ehr_deid),
        {k: [(s.start, s.end, s.label_) for s in g] for k, g in sorted(doc.spans.items())},
    )
