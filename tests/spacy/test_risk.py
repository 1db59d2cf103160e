"""spaCy ``ehr_risk``: doc.cats and doc._.risk_explanation from a real (small) BiGRU, batching,
to_disk / spacy.load (model copied into the pipeline), n_process=2, composition with the
clinical components — and THE THREE FACES: RiskModel.predict, ehr_risk and ``ehrtext score``
give the same probabilities for the same notes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import spacy
from spacy.tokens import Doc, DocBin
from typer.testing import CliRunner

import ehrtext
import ehrtext.spacy.risk  # noqa: F401 - registers ehr_risk (the entry point does too)
from ehrtext.cli import app
from ehrtext.errors import InputError
from ehrtext.predict import RiskModel
from tests.scoring import conftest as scoring_conftest
from tests.scoring.conftest import read_jsonl, sample_notes, write_jsonl

#: the session fixture of a small BiGRU trained on the shipped samples (tests/scoring)
sample_model = scoring_conftest.sample_model

ODD = "主诉：胸闷３天，ＢＰ １５０/９０mmHg。\n既往史：否认糖尿病史。"


@pytest.fixture(scope="module")
def notes() -> list[dict]:
    return sample_notes() + [{"id": "X1", "text": ODD}]


@pytest.fixture(scope="module")
def risk_nlp(sample_model):
    nlp = ehrtext.load_pipeline(deid=False)
    nlp.add_pipe("ehr_risk", config={"model": str(sample_model), "batch_size": 8})
    return nlp


def _probs(cats: dict, labels: list[str]) -> list[float]:
    return [cats[lab] for lab in labels]


def test_three_faces_give_the_same_probabilities(tmp_path, sample_model, risk_nlp, notes):
    model = RiskModel.load(sample_model)
    labels = model.labels
    texts = [n["text"] for n in notes]
    ids = [n["id"] for n in notes]

    api = model.predict(texts, ids=ids)[[f"p_{lab}" for lab in labels]].to_numpy()

    docs = list(risk_nlp.pipe(texts, batch_size=8))
    spacy_p = np.array([_probs(d.cats, labels) for d in docs])

    src = write_jsonl(tmp_path / "notes.jsonl", notes)
    res = CliRunner().invoke(
        app,
        ["score", "--model", str(sample_model), "--input", str(src), "--output",
         str(tmp_path / "scores.jsonl"), "--chunk-size", "8", "--no-progress"],
    )
    assert res.exit_code == 0, res.output
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "scores.jsonl")}
    cli_p = np.array([[rows[i][f"p_{lab}"] for lab in labels] for i in ids])

    assert api.shape == spacy_p.shape == cli_p.shape == (31, len(labels))
    assert np.allclose(spacy_p, api, atol=1e-6, rtol=0)
    assert np.allclose(cli_p, api, atol=1e-6, rtol=0)
    assert np.allclose(api.sum(axis=1), 1.0)
    assert len({tuple(np.round(r, 4)) for r in api}) > 5  # the notes get different scores


def test_explanation_offsets_and_composition(risk_nlp, sample_model, notes):
    model = RiskModel.load(sample_model)
    doc = risk_nlp(ODD)
    ex = doc._.risk_explanation
    want = model.explain(ODD).to_dict()
    assert ex["label"] == want["label"] == max(doc.cats, key=doc.cats.get)
    assert ex["offsets"] == want["offsets"] and np.allclose(ex["weights"], want["weights"])
    assert ODD not in json.dumps(ex, ensure_ascii=False)
    where = dict(zip(ex["tokens"], ex["offsets"]))
    assert doc.text[slice(*where["BP"])] == "ＢＰ"
    # the clinical components ran on the same doc
    assert [s["name"] for s in doc._.ehr_sections] == ["chief_complaint", "past_history"]
    assert [(c["norm"], c["negated"]) for c in doc._.ehr_concepts] == [
        ("胸闷", False),
        ("糖尿病", True),
    ]
    # msgpack: Doc.to_bytes and DocBin keep the explanation
    back = Doc(risk_nlp.vocab).from_bytes(doc.to_bytes())
    assert back._.risk_explanation["offsets"] == [list(o) for o in ex["offsets"]]
    assert back.cats == doc.cats
    docs = list(DocBin(store_user_data=True, docs=[doc]).get_docs(risk_nlp.vocab))
    assert list(docs[0]._.risk_explanation["weights"]) == ex["weights"]


def test_pipe_batches_and_equals_call(risk_nlp, notes, monkeypatch):
    comp = risk_nlp.get_pipe("ehr_risk")
    calls = []
    real = comp.risk_model.predict

    def counting(texts, **kw):
        calls.append(len(texts))
        return real(texts, **kw)

    monkeypatch.setattr(comp.risk_model, "predict", counting)
    texts = [n["text"] for n in notes]
    piped = [d.cats for d in risk_nlp.pipe(texts, batch_size=8)]
    assert calls == [8, 8, 8, 7]
    one = [risk_nlp(t).cats for t in texts[:3]]
    for a, b in zip(piped, one):
        assert np.allclose(list(a.values()), list(b.values()), atol=1e-6)


def test_blank_doc_and_bad_config(sample_model):
    nlp = spacy.blank("zh")
    nlp.add_pipe("ehr_risk", config={"model": str(sample_model), "explain": ""})
    assert nlp("   ").cats == {}
    doc = nlp("主诉：咳嗽3天。")
    assert len(doc.cats) == 5 and doc._.risk_explanation is None
    with pytest.raises(InputError, match="explain"):
        spacy.blank("zh").add_pipe("ehr_risk", config={"model": "m", "explain": "lime"})
    bare = spacy.blank("zh")
    bare.add_pipe("ehr_risk")
    with pytest.raises(InputError, match="model directory"):
        bare("胸痛")


def test_to_disk_copies_the_model_and_loads_in_a_fresh_process(tmp_path, sample_model):
    own = tmp_path / "model_copy"
    shutil.copytree(sample_model, own)
    nlp = ehrtext.load_pipeline(deid=False)
    nlp.add_pipe("ehr_risk", config={"model": str(own), "explain": "ig"})
    want = nlp(ODD)
    nlp.to_disk(tmp_path / "pipe")
    assert (tmp_path / "pipe" / "ehr_risk" / "model" / "ehrtext.json").is_file()
    shutil.rmtree(own)  # the saved pipeline must not need the original folder

    again = spacy.load(tmp_path / "pipe")
    got = again(ODD)
    assert got.cats == pytest.approx(want.cats, abs=1e-7)
    assert got._.risk_explanation["offsets"] == want._.risk_explanation["offsets"]
    assert again.get_pipe("ehr_risk").explain == "ig"

    script = textwrap.dedent(
        """
        import json, sys
        import spacy
        assert "ehrtext" not in sys.modules
        nlp = spacy.load(sys.argv[1])
        doc = nlp(sys.argv[2])
        print(json.dumps({"cats": doc.cats, "ex": doc._.risk_explanation}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "pipe"), ODD],
        capture_output=True, text=True, timeout=180,
        env={**os.environ, "PYTHONIOENCODING": "utf-8", "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    fresh = json.loads(out.stdout)
    assert fresh["cats"] == pytest.approx(want.cats, abs=1e-6)
    assert fresh["ex"]["offsets"] == [list(o) for o in want._.risk_explanation["offsets"]]

    # nlp.to_bytes / from_bytes carry the model too
    third = ehrtext.load_pipeline(deid=False)
    third.add_pipe("ehr_risk", config={"explain": "ig"})
    third.from_bytes(again.to_bytes())
    assert third(ODD).cats == pytest.approx(want.cats, abs=1e-7)


def test_n_process_2_gives_the_same_cats(risk_nlp, notes):
    texts = [n["text"] for n in notes][:16]
    one = [(d.cats, d._.risk_explanation) for d in risk_nlp.pipe(texts, batch_size=4)]
    two = [(d.cats, d._.risk_explanation) for d in risk_nlp.pipe(texts, batch_size=4,
                                                                    n_process=2)]
    assert len(two) == len(one) == 16
    for (c1, e1), (c2, e2) in zip(one, two):
        assert c2 == pytest.approx(c1, abs=1e-6)
        assert [list(o) for o in e2["offsets"]] == [list(o) for o in e1["offsets"]]
