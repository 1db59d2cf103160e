"""Multimodal records on a CONSTRUCTED task where the label needs both modalities.

Each patient has a note and a 16×16 image. The note mentions either 咳嗽 (cough) or 头痛
(headache) among neutral filler; the image carries a bright square or not. The label is
positive when exactly one of the two holds (an exclusive or): each modality alone says
nothing about the label (AUC ≈ 0.5), both together decide it. Fusion must beat the text-only
and the image-only model clearly on fresh patients. A tabular column (age) is pure noise.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from ehrtext.multimodal import MultimodalConfig, MultimodalModel, TabularEncoder, train_multimodal
from tests.imaging.conftest import write_png

FILLER = ["患者", "自述", "近日", "乏力", "食欲", "尚可", "睡眠", "一般", "查体", "配合"]


def make_patient(rng: np.random.Generator, folder: Path, i: int) -> dict[str, object]:
    cough = bool(rng.integers(0, 2))
    square = bool(rng.integers(0, 2))
    words = list(rng.choice(FILLER, 6)) + ["咳嗽" if cough else "头痛"]
    rng.shuffle(words)
    img = rng.integers(0, 80, (16, 16)).astype(np.uint8)
    if square:
        r, c = (int(v) for v in rng.integers(1, 10, 2))
        img[r : r + 5, c : c + 5] = 250
    write_png(folder / f"{i}.png", img)
    return {
        "id": f"p{i}",
        "note": "，".join(words) + "。",
        "image": f"{i}.png",
        "age": str(int(rng.integers(20, 90))),
        "label": "yes" if cough != square else "no",
        "cough": cough,
        "square": square,
    }


def write_manifest(folder: Path, n: int, seed: int) -> tuple[Path, list[dict[str, object]]]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = [make_patient(rng, folder, i) for i in range(n)]
    path = folder / "manifest.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "note", "image", "age", "label"])
        w.writeheader()
        w.writerows([{k: r[k] for k in ("id", "note", "image", "age", "label")} for r in rows])
    return path, rows


BASE = dict(
    text_fields=["note"],
    image_field="image",
    tabular=["age"],
    embedding_dim=16,
    hidden_size=16,
    image_size=16,
    widths=[8, 16],
    fusion_dim=32,
    epochs=40,
    batch_size=16,
    learning_rate=5e-3,
    dropout=0.1,
    modality_dropout=0.0,
    augment=False,
    threads=1,
    tune_fraction=0.2,
)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("mm")
    train_path, _ = write_manifest(root / "train", 240, seed=0)
    test_path, test_rows = write_manifest(root / "test", 120, seed=1)
    fused = train_multimodal(
        train_path,
        root / "model",
        label_field="label",
        id_field="id",
        config=MultimodalConfig(**BASE),
    )
    return root, train_path, test_path, test_rows, fused


def _auc(model: MultimodalModel, test_path: Path, rows) -> float:
    import pandas as pd

    df = pd.read_csv(test_path, dtype=str)
    model.base = test_path.parent
    p = model.predict_proba(df)
    return float(roc_auc_score([r["label"] == "yes" for r in rows], p))


def test_fusion_beats_each_single_modality_on_a_task_needing_both(task) -> None:
    root, train_path, test_path, rows, fused = task
    single = {}
    for modality in ("text", "image"):
        cfg = MultimodalConfig(**{**BASE, "modalities": [modality]})
        m = train_multimodal(train_path, None, label_field="label", config=cfg)
        single[modality] = _auc(m, test_path, rows)
    auc_fused = _auc(fused, test_path, rows)
    attention = train_multimodal(
        train_path, None, label_field="label", config=MultimodalConfig(**BASE, fusion="attention")
    )
    auc_attention = _auc(attention, test_path, rows)
    # each modality alone is at chance by construction; fusion reads both
    assert single["text"] < 0.7 and single["image"] < 0.7, single
    assert auc_fused > 0.9 and auc_attention > 0.9, (auc_fused, auc_attention)
    assert min(auc_fused, auc_attention) - max(single.values()) > 0.2


def test_model_directory_riskmodel_and_missing_modalities(task) -> None:
    from ehrtext.predict import RiskModel

    root, _, test_path, rows, fused = task
    cfg = json.loads((root / "model" / "ehrtext.json").read_text())
    assert cfg["kind"] == "multimodal" and cfg["labels"] == ["no", "yes"]
    assert {"vocab.txt", "weights.safetensors", "metrics.json"} <= set(cfg["files"])
    risk = RiskModel.load(root / "model")
    records = [
        {
            "id": r["id"],
            "note": r["note"],
            "image": str(test_path.parent / str(r["image"])),
            "age": r["age"],
        }
        for r in rows[:20]
    ]
    df = risk.predict(records)
    assert list(df["id"]) == [r["id"] for r in records]
    np.testing.assert_allclose(
        df["p_yes"].to_numpy(), fused.predict(records)["p_yes"].to_numpy(), rtol=1e-5, atol=1e-6
    )
    assert df["p_yes"].between(0, 1).all() and set(df["label"]) <= {"no", "yes"}
    # a patient without an image (or with an unreadable one), without a note, or with nothing
    # but tabular values still gets a probability
    (root / "broken.png").write_text("not an image")
    partial = [
        {"id": "a", "note": records[0]["note"], "age": "50"},
        {"id": "b", "note": records[0]["note"], "image": str(root / "broken.png")},
        {"id": "c", "image": records[0]["image"]},
        {"id": "d", "age": "70"},
    ]
    out = risk.predict(partial)
    assert out["p_yes"].notna().all() and out["p_yes"].between(0, 1).all()
    # without the image the note alone cannot decide an exclusive-or: the model is unsure
    w = fused.modality_weights(partial[:1])
    assert w.shape == (1, 3) and w[0, 1] == 0 and w[0].sum() == pytest.approx(1.0)


def test_tabular_encoder_numbers_categories_and_missing() -> None:
    enc = TabularEncoder.fit(
        [{"age": "60", "sex": "M"}, {"age": 40, "sex": "F"}, {"age": None, "sex": "M"}],
        ["age", "sex"],
    )
    assert enc.numeric == {"age": [50.0, 10.0]} and enc.categories == {"sex": ["F", "M"]}
    x = enc.transform([{"age": 70, "sex": "F"}, {"sex": "X"}])
    assert x.tolist() == [[2.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 0.0]]
    assert enc.present([{"age": None}, {"sex": "M"}]).tolist() == [False, True]


def test_cli_train_evaluate_score_and_ehrtext_score(tmp_path: Path) -> None:
    import pandas as pd
    from typer.testing import CliRunner

    from ehrtext.cli import app

    train_path, _ = write_manifest(tmp_path / "train", 40, seed=2)
    test_path, rows = write_manifest(tmp_path / "test", 12, seed=3)
    with open(test_path, "a", encoding="utf-8") as fh:  # a record without note and image
        fh.write("lone,,,55,no\n")
    (test_path.parent / "3.png").write_text("broken")  # an unreadable image: still scored
    runner = CliRunner()
    model = tmp_path / "m"
    args = ["multimodal", "train", str(train_path), "-o", str(model), "-f", "note"]
    args += ["--tabular", "age", "--id-field", "id", "--size", "16", "--epochs", "2"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert json.loads((model / "ehrtext.json").read_text())["kind"] == "multimodal"
    res = runner.invoke(
        app,
        [
            "multimodal",
            "evaluate",
            str(test_path),
            "--model",
            str(model),
            "-o",
            str(tmp_path / "rep"),
            "--bootstrap",
            "10",
        ],
    )
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert metrics["n_samples"] == 13
    errors = [json.loads(x) for x in (tmp_path / "rep" / "errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["p3"]  # its broken image; the row is still scored
    res = runner.invoke(
        app,
        ["evaluate", "--model", str(model), "--data", str(test_path), "-o", str(tmp_path / "r2"),
         "--bootstrap", "10"],
    )
    assert res.exit_code == 0, res.output
    again = json.loads((tmp_path / "r2" / "metrics.json").read_text())
    assert again["macro"]["auroc"] == metrics["macro"]["auroc"]
    scores = tmp_path / "s.csv"
    res = runner.invoke(
        app, ["multimodal", "score", str(test_path), "--model", str(model), "-o", str(scores)]
    )
    assert res.exit_code == 0, res.output
    df = pd.read_csv(scores)
    assert list(df["id"]) == [r["id"] for r in rows] + ["lone"]
    assert df["p_yes"].between(0, 1).all()
    errors = [json.loads(x) for x in (tmp_path / "s.errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["p3"] and "3.png" in errors[0]["reason"]
    # the generic `ehrtext score` reads the model's text fields: the notes alone are scored
    notes = tmp_path / "notes.jsonl"
    notes.write_text(
        "".join(
            json.dumps({"id": r["id"], "note": r["note"]}, ensure_ascii=False) + "\n" for r in rows
        )
    )
    res = runner.invoke(
        app,
        [
            "score",
            "--model",
            str(model),
            "-i",
            str(notes),
            "-o",
            str(tmp_path / "n.csv"),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp_path / "n.csv")) == len(rows)
