"""`ehrtext train` / `ehrtext evaluate` end to end on the shipped sample notes (CliRunner)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from ehrtext.cli import app  # noqa: E402
from ehrtext.errors import InputError  # noqa: E402
from ehrtext.resources import corpus_path  # noqa: E402
from ehrtext.train_cli import TrainOptions, load_options  # noqa: E402

SAMPLE = str(corpus_path("samples", "notes.jsonl"))
TINY = [
    "--set",
    "embedding_dim=16",
    "--set",
    "hidden_size=8",
    "--set",
    "n_bootstrap=0",
    "--threads",
    "1",
    "--no-progress",
]


def _run(args):
    result = CliRunner().invoke(app, args)
    return result, result.output


def test_train_then_evaluate_bigru(tmp_path):
    model = tmp_path / "model"
    res, out = _run(
        [
            "train",
            "--data",
            SAMPLE,
            "--text-field",
            "text",
            "--label-field",
            "label",
            "--task",
            "multiclass",
            "--model",
            "bigru",
            "--val-fraction",
            "0.3",
            "--epochs",
            "2",
            "--seed",
            "1",
            "--output",
            str(model),
            "--id-field",
            "id",
            "--patient-field",
            "patient_id",
            *TINY,
        ]
    )
    assert res.exit_code == 0, out
    assert "bigru model saved" in out and "validation macro F1" in out
    cfg = json.loads((model / "ehrtext.json").read_text(encoding="utf-8"))
    assert cfg["kind"] == "bigru" and cfg["seed"] == 1 and cfg["model"]["hidden_size"] == 8
    assert cfg["options"]["epochs"] == 2 and len(cfg["train"]["history"]) == 2
    # evaluate (on the sample itself: a smoke test of the command, not a figure to report)
    report = tmp_path / "report"
    res, out = _run(
        [
            "evaluate",
            "--model",
            str(model),
            "--data",
            SAMPLE,
            "--output",
            str(report),
            "--bootstrap",
            "20",
        ]
    )
    assert res.exit_code == 0, out
    assert "30 rows" in out
    metrics = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["n_samples"] == 30 and metrics["task"] == "multiclass"
    html = (report / "report.html").read_text(encoding="utf-8")
    assert "<html" in html.lower() and "冠心病" in html


def test_train_linear_from_a_toml_config_and_predict(tmp_path):
    from ehrtext.predict import RiskModel

    toml = tmp_path / "train.toml"
    toml.write_text(
        f'data = "{SAMPLE}"\noutput = "{tmp_path / "lin"}"\nmodel = "linear"\n'
        'val_fraction = 0.3\nid_field = "id"\n\n[linear]\nmin_df = 1\nclassifier = "logreg"\n',
        encoding="utf-8",
    )
    assert load_options(toml)["linear"] == {"min_df": 1, "classifier": "logreg"}
    res, out = _run(["train", "--config", str(toml), "--no-progress"])
    assert res.exit_code == 0, out
    model = RiskModel.load(tmp_path / "lin")
    assert model.kind == "linear"
    df = model.predict(["主诉：口干、多饮、多尿3月，空腹血糖13.6mmol/L。"])
    assert df.columns[1:6].tolist() == [f"p_{x}" for x in model.labels]
    assert df.iloc[0, 1:6].sum() == pytest.approx(1.0)
    # flags override the config file
    res, out = _run(
        [
            "train",
            "--config",
            str(toml),
            "--output",
            str(tmp_path / "lin2"),
            "--set",
            'linear={"min_df": 1, "C": 1.0}',
            "--no-progress",
        ]
    )
    assert res.exit_code == 0, out
    cfg = json.loads((tmp_path / "lin2" / "ehrtext.json").read_text(encoding="utf-8"))
    assert cfg["options"]["linear"] == {"min_df": 1, "C": 1.0}


def test_section_fields_json_config(tmp_path):
    """Several section fields joined with markers; the model reads records the same way."""
    from ehrtext.predict import RiskModel

    rows = []
    for line in Path(SAMPLE).read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        sections = dict(re.findall(r"^(主诉|现病史|既往史)：(.*)$", rec["text"], flags=re.M))
        rows.append({"id": rec["id"], "dx": rec["label"], **sections})
    data = tmp_path / "sections.jsonl"
    data.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    cfg = tmp_path / "train.json"
    cfg.write_text(
        json.dumps(
            {
                "data": str(data),
                "output": str(tmp_path / "m"),
                "text_fields": ["主诉", "现病史"],
                "label_field": "dx",
                "model": "bilstm",
                "epochs": 1,
                "val_fraction": 0.3,
                "embedding_dim": 16,
                "hidden_size": 8,
                "n_bootstrap": 0,
                "num_threads": 1,
                "progress": False,
                "pooling": "attention",
                "chunk_len": 4,  # the hierarchical encoder, saved and rebuilt
            },
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    res, out = _run(["train", "--config", str(cfg)])
    assert res.exit_code == 0, out
    model = RiskModel.load(tmp_path / "m")
    assert model.kind == "bilstm" and model.spec.text_fields == ["主诉", "现病史"]
    net = model.scorer.model
    assert net.chunk_len == 4 and net.hparams["chunk_len"] == 4
    # attention through both levels: one weight per token, summing to 1
    ex = model.explain(rows[0])
    assert len(ex.weights) == len(ex.tokens) > 4
    assert min(ex.weights) >= 0 and sum(ex.weights) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(InputError, match="hierarchical"):
        model.explain(rows[0], method="ig")
    joined = [f"【主诉】{r['主诉']}\n【现病史】{r['现病史']}" for r in rows[:4]]
    np.testing.assert_allclose(
        model.predict_proba(rows[:4]), model.predict_proba(joined), atol=1e-6
    )


def test_errors_are_one_line_messages(tmp_path):
    res, out = _run(
        [
            "train",
            "--data",
            str(tmp_path / "nope.jsonl"),
            "--output",
            str(tmp_path / "m"),
            "--no-progress",
        ]
    )
    assert res.exit_code == 2 and "no such file" in out and "Traceback" not in out
    res, out = _run(
        ["train", "--data", SAMPLE, "--output", str(tmp_path / "m"), "--set", "hiden_size=3"]
    )
    assert res.exit_code == 2 and "unknown training option(s): hiden_size" in out
    res, out = _run(["train", "--data", SAMPLE, "--output", str(tmp_path / "m"), "--model", "cnn"])
    assert res.exit_code == 2 and "model must be one of" in out
    res, out = _run(
        [
            "evaluate",
            "--model",
            str(tmp_path / "none"),
            "--data",
            SAMPLE,
            "--output",
            str(tmp_path / "r"),
        ]
    )
    assert res.exit_code == 1 and "no such model directory" in out
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = [", encoding="utf-8")
    with pytest.raises(InputError, match="not valid toml"):
        load_options(bad)
    with pytest.raises(InputError, match="unknown training option"):
        TrainOptions.from_dict({"epoch": 3})
