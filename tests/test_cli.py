"""The ``ehrtext`` command line: normalize, tokenize, demo, errors and workers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ehrtext._version import __version__
from ehrtext.cli import app, default_errors_path
from ehrtext.text import OffsetMap, Tokenizer, normalize

SECRET = "机密病历内容"
runner = CliRunner()


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, rows: list[object]) -> None:
    path.write_text(
        "".join(
            (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows
        ),
        encoding="utf-8",
    )


NOTES = [
    {
        "id": "A1",
        "text": "主诉：胸痛2天。\nＢＰ　150/90mmHg，否认高血压、糖尿病史。",
        "label": "冠心病",
    },
    {"id": "A2", "text": "既往2型糖尿病史，WBC 12.5×10^9/L。", "label": "2型糖尿病"},
    {"id": "A3", "text": "患者無發熱，未闻及干湿性啰音。", "label": "肺炎"},
]


# --------------------------------------------------------------------------------------------


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout == f"ehrtext {__version__}\n"


def test_console_entry_point_runs_as_a_module() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ehrtext.cli", "--version"], capture_output=True, text=True
    )
    assert (proc.returncode, proc.stdout) == (0, f"ehrtext {__version__}\n")


def test_normalize_jsonl_with_offsets_and_keep_field(tmp_path: Path) -> None:
    src = tmp_path / "notes.jsonl"
    write_jsonl(src, NOTES)
    out = tmp_path / "clean.jsonl"
    result = invoke(
        "normalize", src, "-o", out, "--id-field", "id", "--keep-field", "label",
        "--with-offsets", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = read_jsonl(out)
    assert [list(r) for r in rows] == [["id", "label", "text", "offsets"]] * 3
    assert [r["id"] for r in rows] == ["A1", "A2", "A3"]
    assert [r["label"] for r in rows] == ["冠心病", "2型糖尿病", "肺炎"]
    assert rows[0]["text"] == "主诉:胸痛2天。\nBP 150/90mmHg,否认高血压、糖尿病史。"
    for row, note in zip(rows, NOTES, strict=True):
        n = normalize(note["text"])
        assert row["text"] == n.text
        assert OffsetMap.from_dict(row["offsets"]) == n.offsets
    # "BP" in the output maps back to the full-width "ＢＰ" of the note as given
    om = OffsetMap.from_dict(rows[0]["offsets"])
    start = rows[0]["text"].index("BP")
    s, e = om.to_original(start, start + 2)
    assert NOTES[0]["text"][s:e] == "ＢＰ"
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]  # one summary line
    assert result.stderr.startswith("ehrtext normalize: read 3 rows: 3 written, 0 errors;")
    assert read_jsonl(tmp_path / "clean.errors.jsonl") == []


def test_normalize_t2s_and_no_offsets_by_default(tmp_path: Path) -> None:
    src = tmp_path / "notes.txt"
    src.write_text("患者無發熱\n高血壓病史\n", encoding="utf-8")
    out = tmp_path / "clean.jsonl"
    assert invoke("normalize", src, "-o", out, "--t2s").exit_code == 0
    assert read_jsonl(out) == [{"id": "1", "text": "患者无发热"}, {"id": "2", "text": "高血压病史"}]


def test_tokenize_jsonl_tokens_with_offsets_into_original(tmp_path: Path, tok: Tokenizer) -> None:
    src = tmp_path / "notes.jsonl"
    write_jsonl(src, NOTES)
    out = tmp_path / "tokens.jsonl"
    result = invoke("tokenize", src, "-o", out, "--id-field", "id")
    assert result.exit_code == 0, result.output
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["A1", "A2", "A3"]
    for row, note in zip(rows, NOTES, strict=True):
        assert row["tokens"] == tok.tokenize(note["text"]).to_list()
        for norm, start, end in row["tokens"]:  # offsets point into the note as given
            assert normalize(note["text"][start:end]).text == norm
    a2 = {norm: (s, e) for norm, s, e in rows[1]["tokens"]}
    assert a2["2型糖尿病"] == (2, 7)
    assert a2["12.5×10^9/L"] == (13, 24)
    bp = [t for t in rows[0]["tokens"] if t[0] == "BP"]
    assert bp == [["BP", 9, 11]] and NOTES[0]["text"][9:11] == "ＢＰ"


def test_tokenize_lines_format_for_word2vec(tmp_path: Path, tok: Tokenizer) -> None:
    src = tmp_path / "notes.jsonl"
    write_jsonl(src, NOTES)
    out = tmp_path / "corpus.txt"
    assert invoke("tokenize", src, "-o", out, "--format", "lines").exit_code == 0
    expected = [line for note in NOTES for line in tok.lines(note["text"])]
    assert out.read_text(encoding="utf-8").splitlines() == expected
    assert all(line and "\n" not in line for line in expected)


def test_bad_rows_go_to_errors_file_and_everything_adds_up(tmp_path: Path) -> None:
    src = tmp_path / "notes.jsonl"
    write_jsonl(
        src,
        [
            {"id": "1", "text": "胸痛"},
            {"id": "2", "text": None},
            '{"id": "3", "text": "' + SECRET,
            {"id": "4", "text": 42},
            {"id": "5", "body": SECRET},
            {"id": "6", "text": "无发热"},
        ],
    )
    with open(src, "ab") as fh:  # line 7: invalid UTF-8
        fh.write(b'{"id": "7", "text": "\xff' + SECRET.encode() + b'"}\n')
    out = tmp_path / "tokens.jsonl"
    errors = tmp_path / "bad.jsonl"
    result = invoke("tokenize", src, "-o", out, "--id-field", "id", "--errors", errors)
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in read_jsonl(out)] == ["1", "6"]
    entries = read_jsonl(errors)
    assert [(e["row"], e["id"], e["code"]) for e in entries] == [
        (2, "2", "wrong_type"),
        (3, None, "invalid_json"),
        (4, "4", "wrong_type"),
        (5, "5", "missing_field"),
        (7, None, "invalid_utf8"),
    ]
    assert len(read_jsonl(out)) + len(entries) == 7  # every input row is somewhere
    assert result.stderr.splitlines()[0].startswith(
        f"ehrtext tokenize: read 7 rows: 2 written, 5 errors -> {errors};"
    )
    assert result.stderr.splitlines()[1] == (
        "  errors by kind: wrong_type 2, invalid_json 1, missing_field 1, invalid_utf8 1"
    )
    for text in (errors.read_text(encoding="utf-8"), result.output):
        assert SECRET not in text


def test_missing_column_is_a_clean_error_with_exit_code_2(tmp_path: Path) -> None:
    src = tmp_path / "notes.csv"
    src.write_text("id,主诉\n1,胸痛\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = invoke("normalize", src, "-o", out, "-f", "主诉", "-f", "现病史", "--id-field", "id")
    assert result.exit_code == 2
    assert result.stderr == (
        f"ehrtext: error: {src}: text column '现病史' is not in the CSV header "
        "(columns: 'id', '主诉')\n"
    )
    assert "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.csv"]  # nothing written


def test_missing_input_file_exit_code_2(tmp_path: Path) -> None:
    result = invoke("tokenize", tmp_path / "nope.jsonl", "-o", tmp_path / "out.jsonl")
    assert result.exit_code == 2
    assert result.stderr == f"ehrtext: error: {tmp_path / 'nope.jsonl'}: input file not found\n"


def test_output_must_not_overwrite_input(tmp_path: Path) -> None:
    src = tmp_path / "notes.txt"
    src.write_text("胸痛\n", encoding="utf-8")
    result = invoke("normalize", src, "-o", src)
    assert result.exit_code == 2
    assert "would overwrite the input" in result.stderr
    assert src.read_text(encoding="utf-8") == "胸痛\n"


def test_workers_2_output_identical_to_workers_1(tmp_path: Path) -> None:
    sample = [json.loads(line) for line in Path(_samples()).read_text("utf-8").splitlines()]
    rows: list[object] = []
    for i in range(300):  # several 64-record chunks, with bad rows spread through
        note = sample[i % len(sample)]
        if i % 37 == 5:
            rows.append({"id": f"n{i}", "text": None})
        else:
            rows.append({"id": f"n{i}", "text": note["text"][: 80 + i % 50]})
    src = tmp_path / "notes.jsonl"
    write_jsonl(src, rows)
    outputs = {}
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}.jsonl"
        err = tmp_path / f"w{workers}.errors.jsonl"
        args = ["tokenize", src, "-o", out, "--workers", workers, "--errors", err]
        result = invoke(*args, "--id-field", "id", "--no-progress")
        assert result.exit_code == 0, result.output
        assert result.stderr.startswith("ehrtext tokenize: read 300 rows: 292 written, 8 errors")
        outputs[workers] = (out.read_bytes(), err.read_bytes())
    assert outputs["1"] == outputs["2"]
    assert outputs["1"][0].count(b"\n") == 292
    assert [e["row"] for e in map(json.loads, outputs["1"][1].splitlines())] == [
        6,
        43,
        80,
        117,
        154,
        191,
        228,
        265,
    ]
    normalize_out = {}
    for workers in ("1", "2"):
        out = tmp_path / f"norm{workers}.jsonl"
        assert invoke("normalize", src, "-o", out, "-j", workers, "--with-offsets").exit_code == 0
        normalize_out[workers] = out.read_bytes()
    assert normalize_out["1"] == normalize_out["2"]


def _samples() -> Path:
    from ehrtext.resources import corpus_path

    return corpus_path("samples", "notes.jsonl")


def test_demo_prints_tokens_with_offsets_and_summary(tok: Tokenizer) -> None:
    result = invoke("demo", "--limit", "2")
    assert result.exit_code == 0, result.output
    out = result.stdout
    first = json.loads(_samples().read_text("utf-8").splitlines()[0])
    toks = tok.tokenize(first["text"])
    assert f"[S001] label {first['label']}: {len(first['text'])} chars, {len(toks)} tokens" in out
    t0, t1 = toks[0], toks[1]
    assert f"    {t0.text}[{t0.start}:{t0.end}]  {t1.text}[{t1.start}:{t1.end}]" in out
    assert "[S002]" in out and "[S003]" not in out
    assert "Summary: 30 notes, " in out
    assert "Offsets: every token's [start:end] slices its text out of the original note" in out


def test_default_errors_path() -> None:
    assert default_errors_path(Path("out/tokens.jsonl")) == Path("out/tokens.errors.jsonl")
    assert default_errors_path(Path("corpus.txt.gz")) == Path("corpus.errors.jsonl")


def test_sample_notes_are_well_formed() -> None:
    rows = [json.loads(line) for line in _samples().read_text("utf-8").splitlines()]
    assert len(rows) == 30
    assert {r["label"] for r in rows} == {"冠心病", "心力衰竭", "2型糖尿病", "肺炎", "脑梗死"}
    assert len({r["id"] for r in rows}) == 30
    for r in rows:
        assert set(r) == {"id", "patient_id", "text", "label"}
        assert 300 <= len(r["text"]) <= 1500
        for header in ("主诉：", "现病史：", "既往史：", "家族史：", "体格检查：", "初步诊断："):
            assert header in r["text"]


def test_parquet_with_several_text_fields_offsets_into_the_joined_note(
    tmp_path: Path, tok: Tokenizer
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "notes.parquet"
    pq.write_table(
        pa.table({"id": ["P1"], "主诉": ["胸痛2天"], "现病史": ["否认高血压、糖尿病史"]}), src
    )
    out = tmp_path / "tokens.jsonl"
    result = invoke("tokenize", src, "-o", out, "-f", "主诉", "-f", "现病史", "--id-field", "id")
    assert result.exit_code == 0, result.output
    (row,) = read_jsonl(out)
    joined = "【主诉】胸痛2天\n【现病史】否认高血压、糖尿病史"
    assert row["tokens"] == tok.tokenize(joined).to_list()
    assert [joined[s:e] for _, s, e in row["tokens"]][:3] == ["【", "主诉", "】"]


def test_a_note_that_fails_processing_is_an_error_row_without_its_text() -> None:
    from ehrtext.cli import _process
    from ehrtext.errors import ResourceError
    from ehrtext.textio import Record

    def boom(rec: Record) -> list[str]:
        if rec.id == "2":
            raise ValueError(f"cannot handle {rec.text}")
        return [rec.text]

    recs = [Record(row=i, id=str(i), text=f"{SECRET}{i}") for i in (1, 2, 3)]
    results = _process(boom, recs, "tokenize")
    assert results == [
        ("ok", [f"{SECRET}1"]),
        ("err", 2, "2", "failed", "tokenize failed (ValueError)"),
        ("ok", [f"{SECRET}3"]),
    ]

    def broken(rec: Record) -> list[str]:
        raise ResourceError("shipped resource corpora/dict/x.txt is missing")

    with pytest.raises(ResourceError):  # a broken installation stops the run
        _process(broken, recs, "tokenize")
