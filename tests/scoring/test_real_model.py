"""``ehrtext score`` with a real RiskModel (a small BiGRU trained on the shipped samples)."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
from typer.testing import CliRunner

from ehrtext.cli import app
from ehrtext.predict import RiskModel
from ehrtext.scoring import ModelDirectory
from tests.scoring.conftest import read_jsonl, sample_notes, write_jsonl

MARKER = "ZQX-PRIVATE-REAL-51d0"


def _invoke(*args: str):
    return CliRunner().invoke(app, ["score", *args, "--no-progress"])


def test_cli_scores_are_riskmodel_predict(tmp_path, sample_model):
    notes = sample_notes()
    src = write_jsonl(tmp_path / "notes.jsonl", notes)
    model = RiskModel.load(sample_model)
    want = model.predict([n["text"] for n in notes], ids=[n["id"] for n in notes])
    res = _invoke("--model", str(sample_model), "--input", str(src), "--output",
                  str(tmp_path / "s.jsonl"), "--chunk-size", "64")
    assert res.exit_code == 0, res.output
    assert "read 30 rows: 30 scored, 0 errors, 0 skipped" in res.output
    rows = read_jsonl(tmp_path / "s.jsonl")
    assert list(rows[0]) == ["id", *[f"p_{lab}" for lab in model.labels], "label"]
    assert [r["id"] for r in rows] == want["id"].tolist()
    for lab in model.labels:  # one chunk = the same batches as predict(): exactly equal
        assert [r[f"p_{lab}"] for r in rows] == want[f"p_{lab}"].tolist()
    assert [r["label"] for r in rows] == want["label"].tolist()

    # small chunks and a SQLite table: the same numbers up to float rounding of other batches
    db = tmp_path / "s.db"
    res = _invoke("--model", str(sample_model), "--input", str(src), "--output",
                  f"sqlite:///{db}?table=scores", "--chunk-size", "4")
    assert res.exit_code == 0, res.output
    got = sqlite3.connect(db).execute("SELECT * FROM scores").fetchall()
    probs = np.array([r[1:-1] for r in got])
    assert np.allclose(probs, want[[f"p_{lab}" for lab in model.labels]].to_numpy(), atol=1e-6)
    assert [r[-1] for r in got] == want["label"].tolist()


def test_quantize_swaps_in_int8_layers_and_keeps_probabilities_close(tmp_path, sample_model):
    import torch

    q = ModelDirectory(str(sample_model), quantize=True).load()
    kinds = {type(m).__module__ for m in q.scorer.model.modules()}
    assert any("quantized" in k for k in kinds)  # GRU and Linear replaced
    assert isinstance(q.scorer.model.rnn, torch.nn.Module)
    notes = sample_notes()
    src = write_jsonl(tmp_path / "notes.jsonl", notes)
    for extra in ([], ["--quantize"]):
        out = tmp_path / f"s{len(extra)}.jsonl"
        res = _invoke("--model", str(sample_model), "--input", str(src), "--output", str(out),
                      *extra)
        assert res.exit_code == 0, res.output
    a = read_jsonl(tmp_path / "s0.jsonl")
    b = read_jsonl(tmp_path / "s1.jsonl")
    labels = [k for k in a[0] if k.startswith("p_")]
    pa = np.array([[r[k] for k in labels] for r in a])
    pb = np.array([[r[k] for k in labels] for r in b])
    assert not np.array_equal(pa, pb)  # really a different (quantized) network
    assert np.abs(pa - pb).max() < 0.05


def test_real_model_rows_and_messages_hold_no_note_text(tmp_path, sample_model):
    notes = sample_notes()[:6]
    rows: list = [{"id": n["id"], "text": n["text"] + MARKER} for n in notes]
    rows += [
        {"id": "E1", "text": ""},  # the model refuses an empty note: invalid_note
        {"id": "E2", "text": "   "},
        {"id": "E3", "text": MARKER * 300},  # too long
        {"id": "S001", "text": MARKER},  # duplicate
    ]
    src = write_jsonl(tmp_path / "notes.jsonl", rows)
    out = tmp_path / "out"
    res = _invoke("--model", str(sample_model), "--input", str(src), "--output",
                  str(out / "s.jsonl"), "--max-chars", "3000")
    assert res.exit_code == 0, res.output
    assert "read 10 rows: 6 scored, 4 errors, 0 skipped" in res.output
    errors = read_jsonl(out / "s.errors.jsonl")
    assert sorted((e["id"], e["code"]) for e in errors) == [
        ("E1", "invalid_note"), ("E2", "invalid_note"), ("E3", "too_long"),
        ("S001", "duplicate_id")]
    assert all(e["reason"] == "the note is empty" for e in errors if e["code"] == "invalid_note")
    assert MARKER not in res.output
    for path in out.iterdir():
        assert MARKER not in path.read_text(encoding="utf-8")
    assert json.dumps(errors, ensure_ascii=False).count(MARKER) == 0


def test_cli_input_errors_exit_2_before_loading_anything(tmp_path, sample_model):
    src = write_jsonl(tmp_path / "notes.jsonl", sample_notes()[:2])
    res = _invoke("--model", str(tmp_path / "nope"), "--input", str(src), "--output",
                  str(tmp_path / "s.jsonl"))
    assert res.exit_code == 2 and "model directory not found" in res.output
    res = _invoke("--model", str(sample_model), "--input", str(tmp_path / "absent.jsonl"),
                  "--output", str(tmp_path / "s.jsonl"))
    assert res.exit_code == 2 and "input file not found" in res.output
    (tmp_path / "s.jsonl.part").write_text("")
    res = _invoke("--model", str(sample_model), "--input", str(src), "--output",
                  str(tmp_path / "s.jsonl"))
    assert res.exit_code == 2 and "--resume" in res.output


def test_torch_threads_of_a_factory_apply_to_its_run_only(tmp_path, sample_model):
    import torch

    from ehrtext.scoring import score

    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    src = write_jsonl(tmp_path / "notes.jsonl", sample_notes()[:5])
    s = score(src, tmp_path / "s.jsonl", ModelDirectory(str(sample_model), torch_threads=wanted),
              progress=False)
    assert s.scored == 5
    assert torch.get_num_threads() == before  # restored, not left at `wanted`
