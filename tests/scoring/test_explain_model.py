"""``RiskModel.explain``: attention and integrated gradients of a real (small) BiGRU, mapped to
character offsets in the original note, and ``render_explanation`` drawing the result."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ehrtext
from ehrtext.errors import InputError
from ehrtext.predict import Explanation, RiskModel
from ehrtext.scoring import quantize_scorer
from ehrtext.text import normalize
from tests.scoring.conftest import sample_notes

# full-width letters, digits and punctuation: normalization rewrites them, offsets must not move
ODD = "主诉：胸闷３天，ＢＰ １５０/９０mmHg。\n否认糖尿病史。  咳嗽（+）"


@pytest.fixture(scope="module")
def model(sample_model) -> RiskModel:
    return RiskModel.load(sample_model)


@pytest.mark.parametrize("method", ["attention", "ig"])
def test_offsets_point_into_the_original_note(model, method):
    for text in (ODD, sample_notes()[3]["text"]):
        ex = model.explain(text, method=method)
        assert ex.text == text and ex.method == method
        assert len(ex.tokens) == len(ex.offsets) == len(ex.weights) > 0
        assert ex.tokens == model.scorer.encoder.tokens([text])[0]  # what the model reads
        for tok, (s, e) in zip(ex.tokens, ex.offsets):
            assert 0 <= s < e <= len(text)
            assert normalize(text[s:e]).text == tok  # the original characters of the token
    ex = model.explain(ODD)
    where = dict(zip(ex.tokens, ex.offsets))
    assert ODD[slice(*where["BP"])] == "ＢＰ"


def test_probabilities_are_those_of_predict(model):
    notes = [n["text"] for n in sample_notes()[:6]] + [ODD]
    df = model.predict(notes)
    for i, text in enumerate(notes):
        ex = model.explain(text)
        got = [ex.probabilities[lab] for lab in model.labels]
        want = df.loc[i, [f"p_{lab}" for lab in model.labels]].to_numpy(dtype=float)
        assert np.allclose(got, want, atol=1e-6)
        assert ex.label == df.loc[i, "label"]  # the predicted label by default


def test_attention_weights_are_a_distribution(model):
    ex = model.explain(sample_notes()[0]["text"], method="attention")
    w = np.array(ex.weights)
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0, abs=1e-5)
    # attention does not depend on the label asked for
    other = [lab for lab in model.labels if lab != ex.label][0]
    assert model.explain(sample_notes()[0]["text"], label=other).weights == ex.weights


def _baseline_probability(model: RiskModel, n_tokens: int, target: int) -> float:
    import torch

    net = model.scorer.model
    with torch.no_grad():
        states, _ = net.rnn(torch.zeros(1, n_tokens, net.embedding.embedding_dim))
        pooled, _ = net.pool(states, torch.ones(1, n_tokens, dtype=torch.bool))
        z = net.head(pooled) / model.temperature
        return float(torch.softmax(z, dim=-1)[0, target])


def test_integrated_gradients_add_up_to_the_probability_change(model):
    text = sample_notes()[7]["text"]
    for label in model.labels[:2]:
        ex = model.explain(text, method="ig", label=label, steps=128)
        assert ex.label == label
        j = model.labels.index(label)
        change = ex.probabilities[label] - _baseline_probability(model, len(ex.tokens), j)
        assert sum(ex.weights) == pytest.approx(change, abs=2e-3 + 0.02 * abs(change))
    a = model.explain(text, method="ig", label=model.labels[0]).weights
    b = model.explain(text, method="ig", label=model.labels[1]).weights
    assert not np.allclose(a, b)  # a different label has different reasons


def test_records_and_bad_input(model):
    text = sample_notes()[0]["text"]
    ex = model.explain({"id": "x", "text": text})
    assert ex.text == text
    assert ex.weights == model.explain(text).weights
    for bad, match in ((None, "missing"), ("  ", "empty"), (3, "not text")):
        with pytest.raises(InputError, match=match):
            model.explain(bad)
    with pytest.raises(InputError, match="unknown label"):
        model.explain(text, label="no such label")
    with pytest.raises(InputError, match="method"):
        model.explain(text, method="lime")


def test_quantized_model_explains_with_attention_not_gradients(sample_model):
    q = RiskModel.load(sample_model)
    assert quantize_scorer(q)
    text = sample_notes()[0]["text"]
    ex = q.explain(text)
    assert sum(ex.weights) == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(InputError, match="quantized"):
        q.explain(text, method="ig")


def test_to_dict_top_and_render(model):
    text = sample_notes()[2]["text"]
    ex = model.explain(text, method="ig")
    d = json.loads(json.dumps(ex.to_dict(), ensure_ascii=False))
    assert text not in json.dumps(d, ensure_ascii=False)
    assert d["offsets"] == [list(o) for o in ex.offsets] and d["label"] == ex.label
    top = ex.top(3)
    assert len(top) == 3
    assert abs(top[0][3]) >= abs(top[1][3]) >= abs(top[2][3])
    for piece, s, e, _ in top:
        assert text[s:e] == piece

    page = ehrtext.render_explanation(ex)
    assert f"Why {ex.label}? (ig)" in page
    marks = page.count('class="ehr-hl"')
    assert marks >= len(ex.spans()) // 2 > 0
    for s, _e, _ in ex.spans(top_k=5):
        assert f'data-start="{s}"' in page
    assert ehrtext.render_explanation(ex, ex.spans(top_k=2)).count('class="ehr-hl"') <= 2
    assert isinstance(ex, Explanation)
