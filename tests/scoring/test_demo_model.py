"""The shipped demo model (corpora/models/toyhom_im_departments) and ``ehrtext demo``'s scoring
part: README command 1 ends by scoring the sample notes with it and explaining one."""

from __future__ import annotations

import re

import numpy as np
from typer.testing import CliRunner

from ehrtext.cli import DEMO_MODEL, app
from ehrtext.predict import RiskModel
from ehrtext.resources import corpus_path
from tests.scoring.conftest import REPO, sample_notes

DEPARTMENTS = ["内分泌科", "呼吸科", "心血管科", "消化科", "神经科", "肝病科"]


def test_shipped_model_is_small_documented_and_verified():
    folder = corpus_path("models", DEMO_MODEL)
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < 3_000_000
    model = RiskModel.load(folder)  # sizes, SHA-256, tokenizer dictionary hash checked
    assert model.labels == DEPARTMENTS and model.kind == "bigru"
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "Toyhom" in card and "MIT" in card and "held-out test" in card
    lic = REPO / "corpora" / "licenses" / "Toyhom-Chinese-medical-dialogue-data-MIT.txt"
    assert "Copyright (c) 2019 Toyhom" in lic.read_text(encoding="utf-8")
    # it learned its task: clear patient questions go to the right department
    df = model.predict(["糖尿病患者血糖控制不好，胰岛素怎么调整？", "乙肝小三阳，转氨酶升高怎么办？"])
    assert df["label"].tolist() == ["内分泌科", "肝病科"]


def test_demo_prints_the_probabilities_and_one_explanation():
    res = CliRunner().invoke(app, ["demo", "--limit", "1"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "Scoring: the 30 notes" in out
    notes = sample_notes()
    model = RiskModel.load(corpus_path("models", DEMO_MODEL))
    want = model.predict([n["text"] for n in notes], ids=[n["id"] for n in notes])
    rows = re.findall(r"^  (S\d{3}) +\S+ +((?:[\d.]+ +){6})-> (\S+)$", out, flags=re.M)
    assert [r[0] for r in rows] == [n["id"] for n in notes]
    got = np.array([[float(x) for x in r[1].split()] for r in rows])
    assert np.allclose(got, want[[f"p_{d}" for d in DEPARTMENTS]].to_numpy(), atol=6e-4)
    assert [r[2] for r in rows] == want["label"].tolist()
    # the explanation: top tokens with offsets that slice the original note
    assert f"Explanation of [{notes[0]['id']}]" in out
    tokens = re.findall(r"^  (\S+)\[(\d+):(\d+)\]  ([\d.]+)$", out, flags=re.M)
    assert len(tokens) == 8
    for piece, start, end, _ in tokens:
        assert notes[0]["text"][int(start) : int(end)] == piece
