"""``ehrtext embed train | neighbors | evaluate | export``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from ehrtext.cli import app

from .conftest import SECRET

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["embed", *[str(a) for a in args]], catch_exceptions=False)


def test_train_from_a_folder(tmp_path: Path, notes) -> None:
    folder = tmp_path / "notes"
    folder.mkdir()
    with open(folder / "a.jsonl", "w", encoding="utf-8") as fh:
        for i, n in enumerate(notes):
            fh.write(json.dumps({"id": f"n{i}", "text": n}, ensure_ascii=False) + "\n")
        fh.write('{"id": "bad", "text": 5}\n')
        fh.write('{"id": "x", "text": "' + SECRET + "\n")  # invalid JSON
    out = tmp_path / "vectors"
    result = invoke(
        "train", folder, "-o", out, "--id-field", "id", "--dim", "16", "--epochs", "2",
        "--min-count", "2", "-j", "1", "--prep-workers", "1", "--no-kv", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"read {len(notes) + 2} rows: {len(notes)} notes used, 2 errors" in result.stderr
    assert SECRET not in result.output
    info = json.loads((out / "embeddings.json").read_text(encoding="utf-8"))
    assert info["params"]["vector_size"] == 16 and "vectors.kv" not in info["files"]
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert [(e["id"], e["code"]) for e in errors] == [("bad", "wrong_type"), (None, "invalid_json")]
    assert SECRET not in (out / "errors.jsonl").read_text(encoding="utf-8")


def test_train_bad_input_exits_2(tmp_path: Path) -> None:
    src = tmp_path / "n.txt"
    src.write_text("胸痛\n", encoding="utf-8")
    result = invoke("train", src, "-o", tmp_path / "v", "--no-progress")
    assert result.exit_code == 2
    assert result.stderr.startswith("ehrtext: error: no word occurs min_count=5 times")
    assert "Traceback" not in result.output
    result = invoke("train", tmp_path / "missing.csv", "-o", tmp_path / "v", "--no-progress")
    assert result.exit_code == 2 and "input file not found" in result.stderr


def test_neighbors(trained) -> None:
    result = invoke("neighbors", trained.path, "阿司匹林", "发热", "--topn", "3")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "阿司匹林:" and lines[4] == "发热:" and len(lines) == 8
    result = invoke("neighbors", trained.path, "阿司匹林", "ZZZ未知", "--json", "-n", "2")
    rows = [json.loads(x) for x in result.stdout.splitlines()]
    assert [r["query"] for r in rows] == ["阿司匹林", "ZZZ未知"]
    assert len(rows[0]["neighbors"]) == 2 and rows[1]["neighbors"] is None
    result = invoke("neighbors", trained.path, "ZZZ")
    assert result.exit_code == 1 and "ZZZ: not in the vocabulary" in result.stdout
    result = invoke("neighbors", trained.path.parent / "nothing", "发热")
    assert result.exit_code == 1 and "not a directory" in result.stderr


def test_evaluate(tmp_path: Path, trained) -> None:
    pairs = tmp_path / "hand.tsv"
    pairs.write_text("阿司匹林\t氯吡格雷\n头痛\t头晕\n胸痛发热\t发热\n", encoding="utf-8")
    report = tmp_path / "report.json"
    result = invoke("evaluate", trained.path, "--pairs", pairs, "--k", "5", "-o", report)
    assert result.exit_code == 0, result.output
    assert "synonyms hand: MRR" in result.stdout
    assert "over 2 pairs (2 single-token of 3)" in result.stdout
    assert "coherence disease: precision@5" in result.stdout
    rep = json.loads(report.read_text(encoding="utf-8"))
    assert rep["synonyms"]["hand"]["pairs_evaluated"] == 2
    assert 0 < rep["synonyms"]["hand"]["mrr"] <= 1
    assert set(rep["coherence"]) == {"drug", "symptom", "disease", "macro_precision"}


def test_export(tmp_path: Path, trained) -> None:
    kv = trained.vectors
    out = tmp_path / "v.txt"
    assert invoke("export", trained.path, "-o", out, "--limit", "5").exit_code == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "5 16" and lines[1].split()[0] == kv.index_to_key[0]
    out = tmp_path / "proj.tsv"
    assert invoke("export", trained.path, "-o", out).exit_code == 0
    assert len(out.read_text().splitlines()) == len(kv)
    meta = (tmp_path / "proj.metadata.tsv").read_text(encoding="utf-8").splitlines()
    assert meta == kv.index_to_key
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("<pad>\n<unk>\n发热\n未知词\n", encoding="utf-8")
    out = tmp_path / "m.npy"
    result = invoke("export", trained.path, "-o", out, "--vocab", vocab)
    assert result.exit_code == 0, result.output
    m = np.load(out)
    assert m.shape == (4, 16) and not m[0].any() and np.array_equal(m[2], kv["发热"])
    cov = json.loads((tmp_path / "m.coverage.json").read_text())
    assert (cov["in_vocab"], cov["padding"], cov["special"]) == (1, 1, 1)
    result = invoke("export", trained.path, "-o", tmp_path / "x.npy")
    assert result.exit_code == 2 and "--vocab" in result.stderr
    result = invoke("export", trained.path, "-o", tmp_path / "x.zip")
    assert result.exit_code == 2 and "--format" in result.stderr
