"""The generic commands on image and multimodal manifests: ``ehrtext train --model
image|multimodal`` (flags and a TOML config), ``ehrtext evaluate`` and ``ehrtext score``
(files and SQLite tables, one and two workers) — the batch scorer carries image paths and
tabular columns to the model, not only the text.

The data are the constructed tasks of ``test_model.py`` (a bright square in noise images) and
``test_multimodal.py`` (a label that needs the note and the image)."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ehrtext.cli import app
from ehrtext.multimodal import MultimodalModel
from tests.imaging.test_model import build_manifest
from tests.imaging.test_multimodal import write_manifest

runner = CliRunner()


def _invoke(args: list[str]) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.output


def _errors(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def multimodal(tmp_path_factory):
    """A multimodal model trained by ``ehrtext train --config`` and a test manifest with a
    broken image, a row without note nor image (age only) and a row with nothing."""
    root = tmp_path_factory.mktemp("generic_mm")
    train_path, _ = write_manifest(root / "train", 200, seed=0)
    test_path, rows = write_manifest(root / "test", 24, seed=1)
    (test_path.parent / "5.png").write_text("broken")  # row p5: scored without its image
    with open(test_path, "a", encoding="utf-8", newline="") as fh:
        fh.write("ageonly,,,63,no\n")  # scored from the age alone
        fh.write("nothing,,,,no\n")  # no field of the model: an error row
    config = root / "train.toml"
    config.write_text(
        "\n".join(
            [
                "[train]",
                'model = "multimodal"',
                f'data = "{train_path.as_posix()}"',
                'text_fields = ["note"]',
                'image_field = "image"',
                'tabular = ["age"]',
                'label_field = "label"',
                'id_field = "id"',
                "image_size = 16",
                "widths = [8, 16]",
                "embedding_dim = 16",
                "hidden_size = 16",
                "fusion_dim = 32",
                "epochs = 40",
                "batch_size = 16",
                "lr = 0.005",
                "dropout = 0.1",
                "modality_dropout = 0.0",
                "augment = false",
                "num_threads = 1",
                'fusion = "gated"',
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    model = root / "model"
    _invoke(["train", "--config", config, "--output", model])
    return root, model, test_path, rows


def test_train_config_gives_a_multimodal_directory_that_uses_both_modalities(multimodal):
    root, model, test_path, rows = multimodal
    cfg = json.loads((model / "ehrtext.json").read_text(encoding="utf-8"))
    assert cfg["kind"] == "multimodal"
    assert cfg["multimodal"]["tabular"] == ["age"] and cfg["multimodal"]["epochs"] == 40
    # the constructed label needs note and image: a model that read both separates it
    mm = MultimodalModel.load(model)
    mm.base = test_path.parent
    good = [r for r in rows if r["id"] != "p5"]
    p = mm.predict_proba([{k: r[k] for k in ("note", "image", "age")} for r in good])
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score([r["label"] == "yes" for r in good], p) > 0.85


def test_generic_evaluate_on_the_manifest(multimodal, tmp_path: Path):
    _, model, test_path, rows = multimodal
    _invoke(["evaluate", "--model", model, "--data", test_path, "-o", tmp_path / "rep",
             "--bootstrap", "10"])
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["n_samples"] == len(rows) + 2  # every labelled record, the empty one too
    assert (tmp_path / "rep" / "report.html").stat().st_size > 1000


def test_score_reads_images_and_tabular_and_matches_the_python_api(multimodal, tmp_path):
    _, model, test_path, rows = multimodal
    out = tmp_path / "scores.csv"
    log = _invoke(["score", "--model", model, "-i", test_path, "-o", out, "--id-field", "id",
                   "--no-progress", "--chunk-size", "7"])
    scores = pd.read_csv(out)
    assert list(scores["id"]) == [r["id"] for r in rows] + ["ageonly"]
    errors = _errors(tmp_path / "scores.errors.jsonl")
    by_id = {e["id"]: e for e in errors}
    assert by_id["nothing"]["code"] == "empty_record" and "level" not in by_id["nothing"]
    assert by_id["p5"]["level"] == "warning" and "5.png" in by_id["p5"]["reason"]
    assert "read 26 rows: 25 scored, 1 errors" in log and "1 rows scored without" in log
    # the same probabilities as the Python API on the same records
    mm = MultimodalModel.load(model)
    mm.base = test_path.parent
    table = pd.read_csv(test_path, dtype=str, keep_default_na=False)
    table = table[table["id"] != "nothing"].replace({"": None})
    api = mm.predict(table[["note", "image", "age"]].to_dict("records"))
    np.testing.assert_allclose(scores["p_yes"], api["p_yes"], rtol=1e-5, atol=1e-6)
    # and the images really count: the notes alone give other probabilities
    notes_only = mm.predict([{"note": r["note"]} for r in rows])
    gap = np.abs(scores["p_yes"].to_numpy()[: len(rows)] - notes_only["p_yes"].to_numpy())
    assert gap.max() > 0.2


def test_score_two_workers_and_a_sqlite_table_give_the_same_scores(multimodal, tmp_path):
    _, model, test_path, rows = multimodal
    one = tmp_path / "one.jsonl"
    _invoke(["score", "--model", model, "-i", test_path, "-o", one, "--id-field", "id",
             "--no-progress"])
    two = tmp_path / "two.jsonl"
    _invoke(["score", "--model", model, "-i", test_path, "-o", two, "--id-field", "id",
             "--no-progress", "--workers", "2", "--chunk-size", "8"])
    a, b = pd.read_json(one, lines=True), pd.read_json(two, lines=True)
    assert list(a["id"]) == list(b["id"])
    np.testing.assert_allclose(a["p_yes"], b["p_yes"], rtol=1e-6, atol=1e-7)
    # a SQLite table: age as INTEGER, NULL for missing values, images relative to --image-root
    db = tmp_path / "ehr.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE records (id TEXT, note TEXT, image TEXT, age INTEGER, x TEXT)")
    with open(test_path, encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            con.execute(
                "INSERT INTO records VALUES (?, ?, ?, ?, 'unused')",
                (r["id"], r["note"] or None, r["image"] or None,
                 int(r["age"]) if r["age"] else None),
            )
    con.commit()
    con.close()
    out = f"sqlite:///{tmp_path / 'out.db'}?table=scores"
    _invoke(["score", "--model", model, "-i", f"sqlite:///{db}?table=records", "-o", out,
             "--id-field", "id", "--no-progress", "--image-root", test_path.parent])
    con = sqlite3.connect(tmp_path / "out.db")
    got = dict(con.execute("SELECT id, p_yes FROM scores").fetchall())
    con.close()
    assert sorted(got) == sorted(a["id"])
    np.testing.assert_allclose([got[i] for i in a["id"]], a["p_yes"], rtol=1e-5, atol=1e-6)


def test_score_notes_without_image_or_tabular_columns(multimodal, tmp_path):
    _, model, _, rows = multimodal
    notes = tmp_path / "notes.csv"
    pd.DataFrame([{"id": r["id"], "note": r["note"]} for r in rows]).to_csv(notes, index=False)
    log = _invoke(["score", "--model", model, "-i", notes, "-o", tmp_path / "n.jsonl",
                   "--id-field", "id", "--no-progress"])
    assert "column 'image' is not in the input" in log and "column 'age'" in log
    assert len(pd.read_json(tmp_path / "n.jsonl", lines=True)) == len(rows)
    res = runner.invoke(app, ["score", "--model", str(model), "-i", str(notes), "-o",
                              str(tmp_path / "t.jsonl"), "--text-field", "note"])
    assert res.exit_code == 2 and "reads records with the columns" in res.output
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,text\n1,胸痛\n", encoding="utf-8")
    res = runner.invoke(app, ["score", "--model", str(model), "-i", str(wrong), "-o",
                              str(tmp_path / "w.jsonl"), "--id-field", "id"])
    assert res.exit_code == 2 and "none of the model's columns" in res.output


def test_image_model_train_evaluate_score(tmp_path: Path):
    manifest = build_manifest(tmp_path / "data", n=60, seed=0)
    model = tmp_path / "img_model"
    _invoke(["train", "--model", "image", "--data", manifest, "--image-field", "image",
             "--label-field", "label", "--id-field", "id", "--patient-field", "patient_id",
             "--epochs", "12", "--seed", "0", "--threads", "1", "--output", model,
             "--set", "image_size=16", "--set", "widths=[8, 16]", "--set", "lr=0.01",
             "--set", "tta_shifts=0", "--set", "rotate_degrees=0", "--set", "zoom=0"])
    cfg = json.loads((model / "ehrtext.json").read_text(encoding="utf-8"))
    assert cfg["kind"] == "image" and cfg["model"]["image_size"] == 16
    test = build_manifest(tmp_path / "test", n=30, seed=5)
    _invoke(["evaluate", "--model", model, "--data", test, "-o", tmp_path / "rep",
             "--bootstrap", "10"])
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["macro"]["auroc"] > 0.9
    out = tmp_path / "s.csv"
    _invoke(["score", "--model", model, "-i", test, "-o", out, "--id-field", "id",
             "--no-progress"])
    scores = pd.read_csv(out)
    errors = {e["id"]: e for e in _errors(tmp_path / "s.errors.jsonl")}
    assert errors["txt"]["code"] == "bad_image" and "notes.png" in errors["txt"]["reason"]
    assert errors["gone"]["code"] == "bad_image" and "missing.png" in errors["gone"]["reason"]
    assert errors["noimg"]["code"] == "empty_record"  # a row with no image path at all
    ids = list(scores["id"])
    assert ids[:30] == [f"s{i}" for i in range(30)] and "dcm" in ids and "nolabel" in ids
    assert len(ids) + len(errors) == 35  # every row scored or in the errors file
    from ehrtext.imaging.model import ImageModel

    im = ImageModel.load(model)
    api = im.predict([str(test.parent / "img" / f"{i}.png") for i in range(30)])
    np.testing.assert_allclose(scores["p_mass"][:30], api["p_mass"], rtol=1e-5, atol=1e-6)


def test_train_refuses_options_that_do_not_apply(tmp_path: Path):
    manifest = build_manifest(tmp_path / "data", n=8, seed=0)
    res = runner.invoke(app, ["train", "--model", "image", "--data", str(manifest), "--output",
                              str(tmp_path / "m"), "--set", "fusion=gated"])
    assert res.exit_code == 2 and "fusion" in res.output and "do not apply" in res.output
    res = runner.invoke(app, ["train", "--model", "bigru", "--data", str(manifest), "--output",
                              str(tmp_path / "m2"), "--tabular", "age"])
    assert res.exit_code == 2 and "image / multimodal only" in res.output
