"""RiskModel: same probabilities as training (fresh process, exact), input kinds, order,
bad rows, output columns per task, tokenizer check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ehrtext.bundle import save_bundle  # noqa: E402
from ehrtext.errors import InputError, ModelFileError  # noqa: E402
from ehrtext.predict import RiskModel  # noqa: E402
from ehrtext.resources import corpus_path  # noqa: E402
from ehrtext.train_cli import TrainOptions, train_model  # noqa: E402

SAMPLE = corpus_path("samples", "notes.jsonl")


def _sample_records():
    return [json.loads(line) for line in Path(SAMPLE).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("predict") / "model"
    outcome = train_model(
        TrainOptions(
            data=str(SAMPLE),
            id_field="id",
            patient_field="patient_id",
            val_fraction=0.3,
            epochs=2,
            embedding_dim=16,
            hidden_size=8,
            batch_size=8,
            eval_batch_size=4,
            output=str(out),
            progress=False,
            n_bootstrap=0,
            num_threads=1,
            max_len=200,
        )
    )
    return outcome


def test_fresh_process_gives_the_training_probabilities_exactly(trained, tmp_path):
    val = trained.prepared.validation
    records = [{"id": r["id"], "text": r["text"]} for r in val.select_columns(["id", "text"])]
    (tmp_path / "val.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    code = (
        "import json, sys, numpy as np, torch; torch.set_num_threads(1)\n"
        "from ehrtext.predict import RiskModel\n"
        "m = RiskModel.load(sys.argv[1])\n"
        "recs = json.load(open(sys.argv[2], encoding='utf-8'))\n"
        "np.save(sys.argv[3], m.predict_proba(recs, batch_size=4))\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(trained.output),
            str(tmp_path / "val.json"),
            str(tmp_path / "p.npy"),
        ],
        check=True,
        timeout=300,
    )
    fresh = np.load(tmp_path / "p.npy")
    assert fresh.shape == (len(records), 5)
    np.testing.assert_array_equal(fresh, trained.val_probs)  # bit for bit
    # other batch sizes: same up to float rounding (padding is never read)
    model = RiskModel.load(trained.output)
    np.testing.assert_allclose(
        model.predict_proba(records, batch_size=1), trained.val_probs, rtol=0, atol=1e-6
    )


def test_model_directory_contents(trained):
    model = RiskModel.load(trained.output)
    assert model.kind == "bigru" and model.task == "multiclass"
    assert model.labels == sorted({r["label"] for r in _sample_records()})
    assert model.thresholds is None and model.temperature > 0
    assert model.spec.text_fields == ["text"] and model.spec.id_field == "id"
    cfg = model.config
    assert cfg["dictionary_hash"] and cfg["tokenizer"]["backend"] == "rjieba"
    assert cfg["data"]["train_rows"] + cfg["data"]["validation_rows"] == 30
    assert "optimistic" in model.metrics["split"]
    card = (Path(trained.output) / "README.md").read_text(encoding="utf-8")
    assert "bigru" in card and "脑梗死" in card


def test_input_kinds_agree_and_order_is_restored(trained):
    import datasets
    import pandas as pd

    model = RiskModel.load(trained.output)
    recs = _sample_records()
    texts = [r["text"] for r in recs]
    p_texts = model.predict_proba(texts)
    df = model.predict(pd.DataFrame(recs))
    assert df["id"].tolist() == [r["id"] for r in recs]  # ids from the spec's id field
    np.testing.assert_allclose(
        df[[f"p_{lab}" for lab in model.labels]].to_numpy(), p_texts, atol=1e-6
    )
    ds = datasets.Dataset.from_list(recs)
    np.testing.assert_allclose(model.predict_proba(ds), p_texts, atol=1e-6)
    perm = np.random.default_rng(0).permutation(len(texts))
    shuffled = model.predict([texts[i] for i in perm], ids=[recs[i]["id"] for i in perm])
    assert shuffled["id"].tolist() == [recs[i]["id"] for i in perm]
    np.testing.assert_allclose(
        shuffled[[f"p_{lab}" for lab in model.labels]].to_numpy(), p_texts[perm], atol=1e-6
    )
    assert (df["label"] == [model.labels[i] for i in p_texts.argmax(1)]).all()
    plain = model.predict(texts[:3])
    assert plain["id"].tolist() == [0, 1, 2]
    assert plain.columns.tolist() == ["id"] + [f"p_{lab}" for lab in model.labels] + ["label"]


def test_bad_rows_raise_naming_the_row_or_are_marked(trained):
    model = RiskModel.load(trained.output)
    notes = ["主诉：胸痛3天。", None, 42, "   ", "主诉：咳嗽发热2天。"]
    with pytest.raises(InputError, match=r"^row 1: the note is missing \(None\) \(and 2 more"):
        model.predict(notes)
    with pytest.raises(InputError, match="row 2: got int, not text"):
        model.predict_proba(["ok", "胸痛", 42])
    problems = model.validate(notes)
    assert [(p.row, p.reason.split(": ", 1)[1]) for p in problems] == [
        (1, "the note is missing (None)"),
        (2, "got int, not text"),
        (3, "the note is empty"),
    ]
    df = model.predict(notes, on_error="mark")
    assert df["error"].isna().tolist() == [True, False, False, False, True]
    assert df.loc[1:3, "label"].isna().all() and df.iloc[1, 1:6].isna().all()
    good = model.predict_proba([notes[0], notes[4]])
    np.testing.assert_allclose(df.iloc[[0, 4], 1:6].to_numpy(dtype=float), good, atol=1e-6)
    # records: the row and id are named, never the text
    recs = [{"id": "A1", "text": "胸痛"}, {"id": "A2", "text": ""}]
    with pytest.raises(InputError) as err:
        model.predict(recs)
    assert "row 1 (id 'A2')" in str(err.value) and "empty" in str(err.value)
    with pytest.raises(InputError, match="not one string"):
        model.predict("主诉：胸痛")
    with pytest.raises(InputError, match="on_error"):
        model.predict(["x"], on_error="skip")


def test_changed_tokenizer_dictionary_is_refused(trained, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(trained.output, copy)
    cfg = json.loads((copy / "ehrtext.json").read_text(encoding="utf-8"))
    cfg["dictionary_hash"] = "0" * 64
    (copy / "ehrtext.json").write_text(json.dumps(cfg, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ModelFileError, match="dictionar"):
        RiskModel.load(copy)
    model = RiskModel.load(copy, allow_tokenizer_mismatch=True)
    assert model.predict_proba(["胸痛"]).shape == (1, 5)


def _random_bundle(tmp_path, task, labels, thresholds):
    from ehrtext.models.rnn import RNNClassifier
    from ehrtext.text import Tokenizer

    torch.manual_seed(0)
    vocab = ["<pad>", "<unk>", "胸痛", "咳嗽", "发热", "糖尿病"]
    m = RNNClassifier(len(vocab), len(labels), task, embedding_dim=8, hidden_size=4)
    tok = Tokenizer()
    spec = {"text_fields": ["text"], "task": task, "label_field": "y", "labels": labels}
    return save_bundle(
        tmp_path / task,
        config={
            "kind": "bigru",
            "task": task,
            "labels": labels,
            "spec": spec,
            "model": m.hparams,
            "tokenizer": tok.config,
            "dictionary_hash": tok.dictionary_hash,
            "max_len": 50,
            "thresholds": thresholds,
            "temperature": 2.0,
        },
        tensors=m.state_dict(),
        vocab=vocab,
    )


def test_binary_and_multilabel_columns(tmp_path):
    notes = ["胸痛3天", "咳嗽发热", "糖尿病史10年", "胸痛伴咳嗽"]
    binary = RiskModel.load(_random_bundle(tmp_path, "binary", ["无", "有"], [0.5]))
    p = binary.predict_proba(notes)
    assert p.shape == (4,)
    df = binary.predict(notes)
    assert df.columns.tolist() == ["id", "p_无", "p_有", "label"]
    np.testing.assert_allclose(df["p_有"], p, atol=1e-7)
    np.testing.assert_allclose(df["p_无"] + df["p_有"], 1.0)
    assert df["label"].tolist() == ["有" if x >= 0.5 else "无" for x in p]
    # the temperature is applied: logits / 2
    raw = binary.scorer.logits(notes).reshape(-1)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-raw / 2.0)), rtol=1e-6)

    labels = ["I10", "E11", "J18"]
    ml = RiskModel.load(_random_bundle(tmp_path, "multilabel", labels, [0.0, 1.01, 0.5]))
    df = ml.predict(notes)
    assert df.columns.tolist() == ["id", "p_I10", "p_E11", "p_J18", "labels"]
    for row in df.itertuples():
        assert "I10" in row.labels and "E11" not in row.labels  # thresholds 0 and > 1
        assert ("J18" in row.labels) == (row.p_J18 >= 0.5)


def test_linear_model_directory_gives_the_training_probabilities(tmp_path):
    outcome = train_model(
        TrainOptions(
            data=str(SAMPLE),
            id_field="id",
            val_fraction=0.3,
            model="linear",
            linear={"min_df": 1},
            output=str(tmp_path / "lin"),
            progress=False,
            n_bootstrap=0,
        )
    )
    model = RiskModel.load(outcome.output)
    assert model.kind == "linear" and model.config["linear"]
    val = outcome.prepared.validation
    records = list(val.select_columns(["id", "text"]))
    np.testing.assert_allclose(model.predict_proba(records), outcome.val_probs, rtol=0, atol=1e-12)
    assert model.predict(records)["id"].tolist() == [r["id"] for r in records]
