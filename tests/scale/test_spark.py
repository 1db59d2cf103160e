"""Spark scoring (``ehrtext.spark``, ``scripts/score_spark.py``) in local[2] mode: the result
equals ``ehrtext score`` row for row, and bad rows become null scores with an error."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from ehrtext.cli import app
from tests.scale.conftest import REPO, SAMPLES

MARKER = "ZQX-SPARK-PRIVATE-7c1e"
MAX_CHARS = 3000


def _notes() -> list[dict]:
    """The 30 sample notes, each also cut short (so 90 distinct notes), then bad rows."""
    base = [json.loads(line) for line in SAMPLES.read_text(encoding="utf-8").splitlines()]
    rows = []
    for n in base:
        rows.append({"id": n["id"], "text": n["text"] + MARKER})
        rows.append({"id": n["id"] + "-a", "text": n["text"][: len(n["text"]) // 2]})
        rows.append({"id": n["id"] + "-b", "text": n["text"][:40]})
    rows += [
        {"id": "BAD-null", "text": None},  # wrong_type
        {"id": "BAD-blank", "text": "   "},  # the model refuses it: invalid_note
        {"id": "BAD-long", "text": MARKER * 200},  # too_long
    ]
    return rows


def _write_parquet(path, rows):
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(
        [("id", pa.string()), ("text", pa.string())])), path)
    return path


def _ehrtext_score(model, src, out):
    res = CliRunner().invoke(app, [
        "score", "--model", str(model), "--input", str(src), "--output", str(out),
        "--max-chars", str(MAX_CHARS), "--chunk-size", "32", "--no-progress"])
    assert res.exit_code == 0, res.output
    scores = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    errors_file = out.with_name(out.name.rsplit(".", 1)[0] + ".errors.jsonl")
    errors = [json.loads(x) for x in errors_file.read_text(encoding="utf-8").splitlines()]
    return scores, errors


def test_spark_equals_ehrtext_score_row_for_row(tmp_path, spark, scale_model):
    from ehrtext.spark import score_dataframe

    rows = _notes()
    src = _write_parquet(tmp_path / "notes.parquet", rows)
    want, want_errors = _ehrtext_score(scale_model, src, tmp_path / "s.jsonl")
    assert len(want) == 90 and len(want_errors) == 3

    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "16")  # several batches
    notes = spark.read.parquet(str(src)).repartition(3)  # and partitions in another order
    df = score_dataframe(notes, str(scale_model), "text", "id", max_chars=MAX_CHARS,
                         chunk_size=5, batch_size=4)
    prob_cols = [c for c in df.columns if c.startswith("p_")]
    assert df.columns == ["id", *prob_cols, "label", "error"]
    assert prob_cols == [c for c in want[0] if c.startswith("p_")]
    # bad rows: probabilities are SQL NULL (not NaN), label NULL, error set
    bad = df.where(df.error.isNotNull())
    assert bad.count() == 3
    assert bad.where(" AND ".join(f"`{c}` IS NULL" for c in [*prob_cols, "label"])).count() == 3
    got = {r["id"]: r.asDict() for r in df.collect()}

    assert set(got) == {r["id"] for r in rows}
    for w in want:  # same ids, probabilities equal to 1e-6, same labels
        g = got[w["id"]]
        assert g["error"] is None
        assert np.allclose([g[c] for c in prob_cols], [w[c] for c in prob_cols], atol=1e-6, rtol=0)
        assert g["label"] == w["label"]
    spark_codes = {i: got[i]["error"].split(":")[0] for i in got if got[i]["error"]}
    assert spark_codes == {e["id"]: e["code"] for e in want_errors}
    assert spark_codes == {"BAD-null": "wrong_type", "BAD-blank": "invalid_note",
                           "BAD-long": "too_long"}
    assert MARKER not in json.dumps(got, ensure_ascii=False).replace(MARKER * 0, "")


def test_score_udf_struct_matches_score_dataframe(spark, scale_model):
    from pyspark.sql import functions as F

    from ehrtext.spark import score_dataframe, score_udf

    rows = _notes()[:30] + [{"id": "BAD-null", "text": None}]
    notes = spark.createDataFrame(rows, "id string, text string").repartition(2)
    udf = score_udf(str(scale_model), batch_size=8)
    a = notes.select("id", udf(F.col("text")).alias("s")).select("id", "s.*")
    b = score_dataframe(notes, str(scale_model), "text", "id")
    assert a.columns == b.columns
    ga = {r["id"]: r for r in a.collect()}
    gb = {r["id"]: r for r in b.collect()}
    assert set(ga) == set(gb) == {r["id"] for r in rows}
    for i in ga:
        va = [ga[i][c] for c in a.columns[1:-2]]
        vb = [gb[i][c] for c in a.columns[1:-2]]
        if i == "BAD-null":
            assert va == vb == [None] * len(va)
            assert ga[i]["error"] == "wrong_type: field 'text' is null"
        else:
            assert np.allclose(va, vb, atol=1e-6, rtol=0) and ga[i]["label"] == gb[i]["label"]

    # the Python workers that scored (6 tasks on 2 reused workers) loaded the model once each
    def loads(batches):
        import os

        import pandas as pd

        from ehrtext import spark as worker_module

        for _ in batches:
            yield pd.DataFrame({"pid": [os.getpid()], "loads": [worker_module._LOADS]})

    scored = score_dataframe(notes.repartition(6), str(scale_model), "text", "id")
    assert scored.count() == len(rows)
    per_worker = spark.range(12).repartition(12).mapInPandas(loads, "pid long, loads long")
    seen = {(r["pid"], r["loads"]) for r in per_worker.collect()}
    assert {n for _, n in seen} <= {0, 1} and 1 in {n for _, n in seen}, seen


def _script():
    spec = importlib.util.spec_from_file_location("score_spark", REPO / "scripts" / "score_spark.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_script_parquet_and_jdbc_to_parquet(tmp_path, spark, scale_model):
    rows = [r for r in _notes() if r["id"].endswith("-b")] + [{"id": "BAD-null", "text": None}]
    src = _write_parquet(tmp_path / "notes.parquet", rows)
    want, _ = _ehrtext_score(scale_model, src, tmp_path / "s.jsonl")
    script = _script()

    out = tmp_path / "scores_pq"
    assert script.main(["--model", str(scale_model), "--input", str(src),
                        "--output", str(out)]) == 0
    got = pq.read_table(out).to_pylist()
    assert len(got) == len(rows)

    # JDBC: an in-memory Derby database (its driver ships with Spark)
    url = "jdbc:derby:memory:ehrtext_notes;create=true"
    spark.read.parquet(str(src)).write.jdbc(url, "NOTES", mode="overwrite")
    out2 = tmp_path / "scores_jdbc"
    assert script.main(["--model", str(scale_model), "--jdbc-url", url, "--table", "NOTES",
                        "--output", str(out2)]) == 0
    got2 = pq.read_table(out2).to_pylist()

    for table in (got, got2):
        by_id = {r["id"]: r for r in table}
        assert set(by_id) == {r["id"] for r in rows}
        assert by_id["BAD-null"]["error"].startswith("wrong_type")
        assert all(v is None for k, v in by_id["BAD-null"].items() if k.startswith("p_"))
        for w in want:
            g = by_id[w["id"]]
            probs = [k for k in w if k.startswith("p_")]
            assert np.allclose([g[k] for k in probs], [w[k] for k in probs], atol=1e-6, rtol=0)
            assert g["label"] == w["label"] and g["error"] is None

    # a missing model directory is a one-line input error (exit 2), before Spark reads anything
    assert script.main(["--model", str(tmp_path / "nope"), "--input", str(src),
                        "--output", str(tmp_path / "x")]) == 2


def test_model_loaded_once_per_process_and_bad_rows_never_raise(scale_model, monkeypatch):
    import pandas as pd

    from ehrtext import spark as ehr_spark
    from ehrtext.predict import RiskModel

    loads = []
    real = RiskModel.load.__func__

    def counting(cls, *a, **k):
        loads.append(a)
        return real(cls, *a, **k)

    monkeypatch.setattr(RiskModel, "load", classmethod(counting))
    monkeypatch.setattr(ehr_spark, "_CACHE", {})
    settings = ehr_spark.ScoreSettings(str(scale_model), ("text",), max_chars=MAX_CHARS)
    frame = pd.DataFrame({"text": ["主诉：胸痛3天。", None, 12, "\ud800胸痛", "  ", "咳嗽"]})
    for _ in range(3):
        out = ehr_spark.score_pandas(frame, settings, ids=["a", "b", "c", "d", "e", ""])
    assert len(loads) == 1
    assert out["error"].tolist() == [
        None, "wrong_type: field 'text' is null",
        "wrong_type: field 'text' is int, expected a string",
        "invalid_unicode: field 'text' contains an unpaired surrogate",
        "invalid_note: the note is empty", "bad_id: the id is empty"]
    probs = out[[c for c in out.columns if c.startswith("p_")]].to_numpy()
    assert np.isfinite(probs[0]).all() and math.isclose(probs[0].sum(), 1.0, rel_tol=1e-6)
    assert np.isnan(probs[1:]).all()
    assert out["label"].tolist()[1:] == [None] * 5


def test_multilabel_model_gives_a_labels_list(tmp_path):
    """Multi-label models: a ``labels`` list per row (Spark: array<string>), as predict()."""
    import pandas as pd
    import torch

    from ehrtext import spark as ehr_spark
    from ehrtext.predict import RiskModel
    from ehrtext.train_cli import TrainOptions, train_model

    torch.set_num_threads(1)
    rows = [json.loads(x) for x in SAMPLES.read_text(encoding="utf-8").splitlines()]
    for i, r in enumerate(rows):
        r["labels"] = r["label"] + (";随访" if i % 3 == 0 else "")
    data = tmp_path / "ml.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), "utf-8")
    model_dir = tmp_path / "ml"
    train_model(TrainOptions(data=str(data), label_field="labels", label_sep=";",
                             task="multilabel", epochs=1, embedding_dim=8, hidden_size=8,
                             max_len=64, n_bootstrap=0, progress=False, output=str(model_dir)))
    texts = [r["text"] for r in rows[:8]]
    out = ehr_spark.score_pandas(pd.DataFrame({"text": [*texts, None]}),
                                 ehr_spark.ScoreSettings(str(model_dir), ("text",)))
    want = RiskModel.load(model_dir).predict(texts)
    assert list(out.columns) == [*[c for c in want.columns if c.startswith("p_")], "labels",
                                 "error"]
    assert out["labels"].tolist() == [*want["labels"].tolist(), None]
    np.testing.assert_allclose(out.iloc[:8, :-2].to_numpy(dtype=float),
                               want.iloc[:, 1:-1].to_numpy(dtype=float), atol=1e-6)
    schema = ehr_spark.result_schema(str(model_dir))
    assert schema["labels"].dataType.simpleString() == "array<string>"
