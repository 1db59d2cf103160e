"""End to end on a small constructed image task: manifest (with broken rows and files) →
training → model directory → RiskModel / ImageModel / CLI scoring → Grad-CAM overlays.

The task: 20×20 noise images; the positive class carries a bright 5×5 square at a random
place. A model that learned it separates fresh images; Grad-CAM must point at the square."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ehrtext.errors import InputError, ModelFileError
from ehrtext.imaging.manifest import load_manifest_images, read_manifest
from ehrtext.imaging.model import ImageModel, choose_thresholds, train_image_model
from ehrtext.imaging.train import ImageTrainConfig
from ehrtext.textio import ErrorSink
from tests.imaging.conftest import write_dicom, write_png

SIDE = 20
CONFIG = ImageTrainConfig(
    widths=(8, 16), image_size=16, epochs=12, batch_size=16, learning_rate=1e-2, seed=0,
    rotate_degrees=0, zoom=0, shift=0.05, tta_shifts=0,
)


def make_image(rng: np.random.Generator, positive: bool) -> tuple[np.ndarray, tuple[int, int]]:
    img = rng.integers(0, 90, (SIDE, SIDE)).astype(np.uint8)
    r, c = (int(v) for v in rng.integers(1, SIDE - 6, 2))
    if positive:
        img[r : r + 5, c : c + 5] = 250
    return img, (r, c)


def build_manifest(folder: Path, n: int = 60, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        positive = i % 2 == 1
        img, _ = make_image(rng, positive)
        write_png(folder / "img" / f"{i}.png", img)
        rows.append({"id": f"s{i}", "image": f"img/{i}.png", "label": "mass" if positive else "clear", "patient_id": f"p{i // 2}"})
    # two DICOM rows (a multi-image row: PNG + DICOM), and broken ones
    write_dicom(folder / "img" / "d.dcm", make_image(rng, True)[0].astype(np.int16), signed=False)
    rows.append({"id": "dcm", "image": "img/d.dcm;img/1.png", "label": "mass", "patient_id": "px"})
    (folder / "img" / "notes.png").write_text("not an image")
    rows.append({"id": "txt", "image": "img/notes.png", "label": "clear", "patient_id": "py"})
    rows.append({"id": "gone", "image": "img/missing.png", "label": "clear", "patient_id": "pz"})
    rows.append({"id": "noimg", "image": "", "label": "clear", "patient_id": "pw"})
    rows.append({"id": "nolabel", "image": "img/0.png", "label": "", "patient_id": "pv"})
    path = folder / "manifest.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "image", "label", "patient_id"])
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, ImageModel, ErrorSink]:
    folder = tmp_path_factory.mktemp("imgtask")
    manifest = build_manifest(folder)
    sink = ErrorSink()
    model = train_image_model(
        manifest, folder / "model", id_field="id", patient_field="patient_id", config=CONFIG,
        threshold_rule="accuracy", errors=sink,
    )
    return folder, manifest, model, sink


def test_manifest_rows_and_errors(tmp_path: Path) -> None:
    manifest = build_manifest(tmp_path, n=6)
    m = read_manifest(manifest, id_field="id", patient_field="patient_id")
    assert m.spec is None  # no label field: a scoring manifest
    m = read_manifest(manifest, label_field="label", id_field="id", patient_field="patient_id")
    assert m.spec.task == "binary" and m.spec.labels == ["clear", "mass"]
    assert [e["id"] for e in m.errors.entries] == ["noimg", "nolabel"]
    assert {e["code"] for e in m.errors.entries} == {"missing_field", "bad_label"}
    dcm_row = next(r for r in m.rows if r.id == "dcm")
    assert [p.name for p in dcm_row.images] == ["d.dcm", "1.png"]
    assert dcm_row.images[0].is_absolute() or dcm_row.images[0].parent.name == "img"
    batch = load_manifest_images(m, size=16)
    # 6 + 2 (the two-image row) images decode; notes.png and missing.png are errors, not crashes
    assert batch.images.shape == (8, 1, 16, 16)
    bad = {e["id"]: e for e in m.errors.entries if e["code"] == "bad_image"}
    assert set(bad) == {"txt", "gone"}
    assert "notes.png" in bad["txt"]["reason"] and "missing.png" in bad["gone"]["reason"]
    assert all(e["row"] >= 1 for e in m.errors.entries)
    assert len(batch.targets) == 8 and set(batch.targets) == {0, 1}


def test_manifest_jsonl_lists_and_missing_column(tmp_path: Path) -> None:
    write_png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"images": ["a.png", "a.png"], "codes": "x;y"}) + "\n"
        + json.dumps({"images": ["a.png"], "codes": "y"}) + "\n"
    )
    m = read_manifest(tmp_path / "m.jsonl", image_field="images", label_field="codes", label_sep=";")
    assert m.spec.task == "multilabel" and m.spec.labels == ["x", "y"]
    assert [r.fields["__target__"] for r in m.rows] == [[1, 1], [0, 1]]
    assert len(m.rows[0].images) == 2
    with pytest.raises(InputError, match="no column 'path'"):
        read_manifest(tmp_path / "m.jsonl", image_field="path")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(InputError, match="bad.jsonl line 1: invalid JSON"):
        read_manifest(tmp_path / "bad.jsonl")


def test_training_skips_bad_files_and_saves_a_verified_directory(trained) -> None:
    folder, _, model, sink = trained
    codes = {e["id"]: e["code"] for e in sink.entries}
    assert codes == {"noimg": "missing_field", "nolabel": "bad_label", "txt": "bad_image", "gone": "bad_image"}
    files = {p.name for p in (folder / "model").iterdir()}
    assert {"ehrtext.json", "weights.safetensors", "metrics.json", "README.md"} <= files
    cfg = json.loads((folder / "model" / "ehrtext.json").read_text())
    assert cfg["kind"] == "image" and cfg["labels"] == ["clear", "mass"]
    assert cfg["image"]["size"] == 16 and len(cfg["thresholds"]) == 1
    metrics = json.loads((folder / "model" / "metrics.json").read_text())
    assert "tuning split" in metrics["split"] and metrics["tune_images"] > 0


def test_model_separates_fresh_images_and_reloads_identically(trained, tmp_path: Path) -> None:
    folder, _, model, _ = trained
    rng = np.random.default_rng(123)
    paths, ys = [], []
    for i in range(40):
        img, _ = make_image(rng, i % 2 == 1)
        paths.append(write_png(tmp_path / f"t{i}.png", img))
        ys.append(i % 2)
    p = model.predict_proba(paths)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(ys, p) > 0.9
    again = ImageModel.load(folder / "model").predict_proba(paths)
    np.testing.assert_allclose(again, p, rtol=1e-5, atol=1e-6)

    import ehrtext.imaging  # noqa: F401 - registers the "image" kind
    from ehrtext.predict import RiskModel

    risk = RiskModel.load(folder / "model")
    np.testing.assert_allclose(risk.predict_proba([str(x) for x in paths]), p, rtol=1e-5, atol=1e-6)
    df = risk.predict([str(x) for x in paths])
    assert list(df.columns[:3]) == ["id", "p_clear", "p_mass"]
    acc = np.mean((df["label"] == "mass").to_numpy() == np.array(ys, bool))
    assert acc > 0.8


def test_predict_marks_bad_files_and_scores_the_rest(trained, tmp_path: Path) -> None:
    _, _, model, _ = trained
    good = write_png(tmp_path / "g.png", make_image(np.random.default_rng(1), True)[0])
    bad = tmp_path / "bad.png"
    bad.write_text("hello")
    df = model.predict([good, bad, tmp_path / "none.dcm"], ids=["a", "b", "c"])
    assert df["error"].isna().tolist() == [True, False, False]
    assert "bad.png" in df.loc[1, "error"] and "none.dcm" in df.loc[2, "error"]
    assert np.isnan(df.loc[1, "p_mass"]) and 0 <= df.loc[0, "p_mass"] <= 1
    assert df.loc[0, "p_clear"] == pytest.approx(1 - df.loc[0, "p_mass"])
    with pytest.raises(InputError, match="bad.png"):
        model.predict_proba([bad])


def test_tampered_weights_are_refused(trained, tmp_path: Path) -> None:
    import shutil

    folder, _, _, _ = trained
    copy = tmp_path / "m"
    shutil.copytree(folder / "model", copy)
    data = bytearray((copy / "weights.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="SHA-256"):
        ImageModel.load(copy)


def test_gradcam_has_the_image_size_and_points_at_the_square(trained, tmp_path: Path) -> None:
    from ehrtext.imaging.gradcam import explain_image, overlay

    _, _, model, _ = trained
    rng = np.random.default_rng(7)
    hits = 0
    for i in range(5):
        img, (r, c) = make_image(rng, True)
        path = write_png(tmp_path / f"x{i}.png", img)
        e = explain_image(model, path, label="mass")
        assert e.heatmap.shape == (SIDE, SIDE) == e.image.shape  # the image's own size (not 16)
        assert float(e.heatmap.std()) > 0.01  # not constant
        assert 0 <= e.heatmap.min() and e.heatmap.max() <= 1
        inside = e.heatmap[max(r - 1, 0) : r + 6, max(c - 1, 0) : c + 6].mean()
        hits += inside > e.heatmap.mean()
        assert overlay(e).shape == (SIDE, SIDE, 3)
    assert hits >= 4  # the evidence lies on the square


def test_cli_explain_image_and_score(trained, tmp_path: Path) -> None:
    from PIL import Image

    from ehrtext.cli import app

    folder, manifest, _, _ = trained
    runner = CliRunner()
    dcm = folder / "img" / "d.dcm"
    out = tmp_path / "cam.png"
    res = runner.invoke(app, ["explain-image", "--model", str(folder / "model"), str(dcm), "-o", str(out)])
    assert res.exit_code == 0, res.output
    with Image.open(out) as im:
        assert im.size == (SIDE, SIDE) and im.mode == "RGB"
        assert np.asarray(im).std() > 0
    res = runner.invoke(app, ["explain-image", "--model", str(folder / "model"), str(folder / "img" / "notes.png"), "-o", str(tmp_path / "x.png")])
    assert res.exit_code == 2 and "notes.png" in res.output
    scores = tmp_path / "scores.csv"
    res = runner.invoke(app, ["image", "score", str(manifest), "--model", str(folder / "model"), "-o", str(scores), "--id-field", "id"])
    assert res.exit_code == 0, res.output
    import pandas as pd

    df = pd.read_csv(scores)
    assert len(df) == 63 and {"id", "path", "p_mass", "label"} <= set(df.columns)
    errors = [json.loads(x) for x in (tmp_path / "scores.errors.jsonl").read_text().splitlines()]
    assert sorted(e["id"] for e in errors) == ["gone", "noimg", "txt"]


def test_cli_image_train(tmp_path: Path) -> None:
    from ehrtext.cli import app

    manifest = build_manifest(tmp_path, n=12)
    res = CliRunner().invoke(app, ["image", "train", str(manifest), "-o", str(tmp_path / "m"), "--size", "16", "--epochs", "1", "--batch-size", "8", "--id-field", "id"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m" / "weights.safetensors").is_file()
    errors = (tmp_path / "m.errors.jsonl").read_text().splitlines()
    assert len(errors) == 4


def test_threshold_rules() -> None:
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.7, 0.8, 0.9])
    assert choose_thresholds(y, p, "binary", "accuracy") == [pytest.approx(0.75)]
    assert choose_thresholds(y, p, "binary", "0.5") == [0.5]
    assert choose_thresholds(y, np.eye(5)[:, :3], "multiclass", "f1") is None
    with pytest.raises(InputError):
        choose_thresholds(y, p, "binary", "youden")


def test_cli_image_evaluate_and_generic_evaluate(trained, tmp_path: Path) -> None:
    from ehrtext.cli import app

    folder, _, _, _ = trained
    test = build_manifest(tmp_path / "fresh", n=30, seed=5)
    runner = CliRunner()
    res = runner.invoke(app, ["image", "evaluate", str(test), "--model", str(folder / "model"), "-o", str(tmp_path / "rep"), "--bootstrap", "20"])
    assert res.exit_code == 0, res.output
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    # 30 rows + the DICOM row's two images; the text file and the missing file are errors
    assert metrics["n_samples"] == 32 and metrics["macro"]["auroc"] > 0.9
    errors = [json.loads(x) for x in (tmp_path / "rep" / "errors.jsonl").read_text().splitlines()]
    assert {e["id"] for e in errors} == {"txt", "gone", "noimg", "nolabel"}
    res = runner.invoke(app, ["evaluate", "--model", str(folder / "model"), "--data", str(test), "-o", str(tmp_path / "rep2"), "--bootstrap", "20"])
    assert res.exit_code == 0, res.output
    again = json.loads((tmp_path / "rep2" / "metrics.json").read_text())
    assert again["macro"]["auroc"] == metrics["macro"]["auroc"]
