"""Streaming readers/writers: every format, every kind of bad row, nothing lost, no text leaked."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ehrtext.errors import InputError
from ehrtext.textio import (
    DEFAULT_MAX_CHARS,
    ErrorSink,
    JsonlWriter,
    LinesWriter,
    Record,
    detect_format,
    join_sections,
    open_writer,
    read_records,
)

# A marker that must never appear in an errors file or message (they name rows, not text).
SECRET = "机密病历内容"


def rows_of(reader) -> list[tuple[int, str, str]]:
    return [(r.row, r.id, r.text) for r in reader]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_csv(path: Path, rows: list[list[str]], delimiter: str = ",") -> None:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, delimiter=delimiter).writerows(rows)


# --------------------------------------------------------------------------------------------
# TXT


def test_txt_one_note_per_line_blank_lines_skipped_crlf_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes("\ufeff胸痛2天\r\n\n  \n无发热\n否认糖尿病史".encode())
    reader = read_records(path)
    assert rows_of(reader) == [(1, "1", "胸痛2天"), (4, "4", "无发热"), (5, "5", "否认糖尿病史")]
    assert (reader.rows, reader.records, reader.rejected, reader.blank) == (3, 3, 0, 2)


def test_txt_invalid_utf8_line_reported_by_line_number_rest_processed(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(
        "第一条\n".encode() + b"\xe8\x83" + SECRET.encode() + b"\xff\n" + "第三条\n".encode()
    )
    sink = ErrorSink(tmp_path / "errors.jsonl")
    reader = read_records(path, errors=sink)
    assert rows_of(reader) == [(1, "1", "第一条"), (3, "3", "第三条")]
    sink.close()
    entries = read_jsonl(tmp_path / "errors.jsonl")
    assert entries == [
        {
            "row": 2,
            "id": "2",
            "code": "invalid_utf8",
            "reason": "invalid UTF-8 at byte 0 of the line",
        }
    ]
    assert reader.rows == reader.records + sink.count == 3


def test_txt_rejects_fields(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("a\n", encoding="utf-8")
    with pytest.raises(InputError, match="no fields"):
        read_records(path, id_field="id")
    with pytest.raises(InputError, match="no fields"):
        read_records(path, text_fields=("主诉", "现病史"))


# --------------------------------------------------------------------------------------------
# JSONL


def test_jsonl_every_bad_row_kind_goes_to_errors_and_nothing_is_lost(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "a", "text": "胸痛"}, ensure_ascii=False),
        '{"id": "b", "text": "' + SECRET,  # truncated JSON
        json.dumps({"id": "c", "text": None}),
        json.dumps({"id": "d", "text": 12.5}),
        json.dumps({"id": "e", "text": [SECRET]}, ensure_ascii=False),
        json.dumps({"id": "f", "note": SECRET}, ensure_ascii=False),
        json.dumps([SECRET], ensure_ascii=False),
        json.dumps({"id": None, "text": SECRET}, ensure_ascii=False),
        '{"id": "g", "text": "\\ud800' + SECRET + '"}',  # lone surrogate escape
        "",
        json.dumps({"id": 7, "text": "无发热"}, ensure_ascii=False),
    ]
    path = tmp_path / "notes.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    errors_path = tmp_path / "errors.jsonl"
    with ErrorSink(errors_path) as sink:
        reader = read_records(path, id_field="id", errors=sink)
        assert rows_of(reader) == [(1, "a", "胸痛"), (11, "7", "无发热")]
    entries = read_jsonl(errors_path)
    assert [(e["row"], e["id"], e["code"]) for e in entries] == [
        (2, None, "invalid_json"),
        (3, "c", "wrong_type"),
        (4, "d", "wrong_type"),
        (5, "e", "wrong_type"),
        (6, "f", "missing_field"),
        (7, None, "not_an_object"),
        (8, None, "bad_id"),
        (9, "g", "invalid_unicode"),
    ]
    assert [e["reason"] for e in entries[1:6]] == [
        "field 'text' is null",
        "field 'text' is float, expected a string",
        "field 'text' is list, expected a string",
        "field 'text' is missing",
        "line is a JSON array, expected an object",
    ]
    assert entries[6]["reason"] == "id field 'id' is null, expected a string or integer"
    # nothing lost: 10 rows (the blank line is not a row) = 2 records + 8 errors
    assert (reader.rows, reader.records, reader.rejected, reader.blank) == (10, 2, 8, 1)
    assert SECRET not in errors_path.read_text(encoding="utf-8")


def test_jsonl_invalid_utf8_line_reported_rest_processed(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    good = [json.dumps({"text": f"第{i}条"}, ensure_ascii=False).encode() for i in (1, 3)]
    path.write_bytes(good[0] + b'\n{"text": "\xc3\x28"}\n' + good[1] + b"\n")
    sink = ErrorSink()
    assert rows_of(read_records(path, errors=sink)) == [(1, "1", "第1条"), (3, "3", "第3条")]
    assert sink.entries == [
        {
            "row": 2,
            "id": "2",
            "code": "invalid_utf8",
            "reason": "invalid UTF-8 at byte 10 of the line",
        }
    ]


def test_json_extension_is_json_lines_but_a_json_array_is_refused(tmp_path: Path) -> None:
    lines = tmp_path / "notes.json"
    lines.write_text('{"text": "胸痛"}\n', encoding="utf-8")
    assert rows_of(read_records(lines)) == [(1, "1", "胸痛")]
    array = tmp_path / "array.json"
    array.write_text('[{"text": "胸痛"}]\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"array\.json: looks like a JSON array"):
        read_records(array)


def test_keep_fields_are_passed_through(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_text(
        '{"id": "S1", "text": "胸痛", "label": "冠心病"}\n{"id": "S2", "text": "咳嗽"}\n',
        encoding="utf-8",
    )
    recs = list(read_records(path, id_field="id", keep_fields=["label"]))
    assert [r.meta for r in recs] == [{"label": "冠心病"}, {"label": None}]


# --------------------------------------------------------------------------------------------
# gzip


@pytest.mark.parametrize("name", ["notes.txt.gz", "notes.jsonl.gz", "notes.csv.gz"])
def test_gzip_inputs(tmp_path: Path, name: str) -> None:
    content = {
        "notes.txt.gz": "胸痛2天\n无发热\n",
        "notes.jsonl.gz": '{"text": "胸痛2天"}\n{"text": "无发热"}\n',
        "notes.csv.gz": "text\n胸痛2天\n无发热\n",
    }[name]
    path = tmp_path / name
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(content)
    assert rows_of(read_records(path)) == [(1, "1", "胸痛2天"), (2, "2", "无发热")]


def test_truncated_gzip_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt.gz"
    data = gzip.compress(("胸痛2天\n" * 5000).encode())
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"notes\.txt\.gz: input file became unreadable"):
        list(read_records(path))


# --------------------------------------------------------------------------------------------
# CSV / TSV


def test_csv_several_text_fields_joined_with_section_headers(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    write_csv(
        path,
        [["id", "主诉", "现病史", "label"], ["P1", "胸痛2天", "无发热,\n无咳嗽", "冠心病"]],
    )
    (rec,) = read_records(path, ["主诉", "现病史"], "id")
    assert rec.text == "【主诉】胸痛2天\n【现病史】无发热,\n无咳嗽"
    assert rec.sections == (("主诉", 4, 8), ("现病史", 14, 22))
    assert (rec.row, rec.id, rec.field("主诉"), rec.field("现病史")) == (
        1,
        "P1",
        "胸痛2天",
        "无发热,\n无咳嗽",
    )


def test_tsv_and_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "notes.tsv"
    write_csv(
        path,
        [
            ["id", "text"],
            ["1", "胸痛"],
            ["2"],
            ["", SECRET],
            ["4", "无发热", "extra"],
            ["5", "咳嗽"],
        ],
        delimiter="\t",
    )
    sink = ErrorSink()
    assert rows_of(read_records(path, id_field="id", errors=sink)) == [
        (1, "1", "胸痛"),
        (5, "5", "咳嗽"),
    ]
    assert sink.entries == [
        {
            "row": 2,
            "id": None,
            "code": "malformed_csv",
            "reason": "row has 1 fields, the header has 2",
        },
        {"row": 3, "id": None, "code": "bad_id", "reason": "id field 'id' is empty"},
        {
            "row": 4,
            "id": None,
            "code": "malformed_csv",
            "reason": "row has 3 fields, the header has 2",
        },
    ]


def test_csv_invalid_utf8_field_reported_rest_processed(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_bytes(b"id,text\n1,\xe8\x83\xb8\n2,\xff\xfe\n3,\xe7\x97\x9b\n")
    sink = ErrorSink()
    assert rows_of(read_records(path, id_field="id", errors=sink)) == [
        (1, "1", "胸"),
        (3, "3", "痛"),
    ]
    assert sink.entries == [
        {"row": 2, "id": "2", "code": "invalid_utf8", "reason": "field 'text' is not valid UTF-8"}
    ]


def test_csv_missing_column_names_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    write_csv(path, [["id", "主诉"], ["1", "胸痛"]])
    with pytest.raises(InputError) as exc:
        read_records(path, ["主诉", "现病史"], "id")
    assert str(exc.value) == (
        f"{path}: text column '现病史' is not in the CSV header (columns: 'id', '主诉')"
    )
    with pytest.raises(InputError, match="id column 'note_id' is not in the CSV header"):
        read_records(path, ["主诉"], "note_id")


def test_csv_one_megabyte_field_passes(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    big = "胸" * DEFAULT_MAX_CHARS  # 1,000,000 characters, 3 MB of UTF-8
    write_csv(path, [["text"], [big], ["短"]])
    texts = [r.text for r in read_records(path)]
    assert [len(t) for t in texts] == [DEFAULT_MAX_CHARS, 1]
    assert texts[0] == big


# --------------------------------------------------------------------------------------------
# Parquet


def test_parquet_streams_in_batches_and_reports_null_and_number(tmp_path: Path) -> None:
    path = tmp_path / "notes.parquet"
    table = pa.table(
        {
            "note_id": [101, 102, 103, 104, 105],
            "text": ["胸痛", None, "无发热", None, "咳嗽"],
            "label": ["冠心病", "肺炎", "肺炎", "脑梗死", "肺炎"],
        }
    )
    pq.write_table(table, path, row_group_size=2)
    sink = ErrorSink()
    reader = read_records(
        path, id_field="note_id", errors=sink, chunk_size=2, keep_fields=["label"]
    )
    recs = list(reader)
    assert [(r.row, r.id, r.text, r.meta["label"]) for r in recs] == [
        (1, "101", "胸痛", "冠心病"),
        (3, "103", "无发热", "肺炎"),
        (5, "105", "咳嗽", "肺炎"),
    ]
    assert [(e["row"], e["id"], e["reason"]) for e in sink.entries] == [
        (2, "102", "field 'text' is null"),
        (4, "104", "field 'text' is null"),
    ]
    num = tmp_path / "numbers.parquet"
    pq.write_table(pa.table({"text": [1.5, 2.0]}), num)
    sink = ErrorSink()
    assert list(read_records(num, errors=sink)) == []
    assert [e["reason"] for e in sink.entries] == ["field 'text' is float, expected a string"] * 2


def test_parquet_missing_column_and_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "notes.parquet"
    pq.write_table(pa.table({"id": ["1"], "text": ["胸痛"]}), path)
    with pytest.raises(InputError) as exc:
        read_records(path, ["note"])
    assert str(exc.value) == (
        f"{path}: text column 'note' is not in the Parquet schema (columns: 'id', 'text')"
    )
    bogus = tmp_path / "bogus.parquet"
    bogus.write_text("not parquet", encoding="utf-8")
    with pytest.raises(InputError, match=r"bogus\.parquet: not a readable Parquet file"):
        read_records(bogus)


# --------------------------------------------------------------------------------------------
# Limits, files, formats


def test_max_chars_boundary_and_default_one_million(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    rows = [{"text": "胸" * DEFAULT_MAX_CHARS}, {"text": "痛" * (DEFAULT_MAX_CHARS + 1)}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    sink = ErrorSink()
    assert [(r.row, len(r.text)) for r in read_records(path, errors=sink)] == [
        (1, DEFAULT_MAX_CHARS)
    ]
    assert sink.entries == [
        {
            "row": 2,
            "id": "2",
            "code": "too_long",
            "reason": "note is too long (1000001 characters > max_chars=1000000)",
        }
    ]
    txt = tmp_path / "notes.txt"
    txt.write_text("abcd\nabcde\n" + "x" * 100 + "\nab\n", encoding="utf-8")
    sink = ErrorSink()
    assert rows_of(read_records(txt, errors=sink, max_chars=4)) == [
        (1, "1", "abcd"),
        (4, "4", "ab"),
    ]
    assert [(e["row"], e["code"]) for e in sink.entries] == [(2, "too_long"), (3, "too_long")]


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        read_records(tmp_path / "nope.jsonl")
    assert str(exc.value) == f"{tmp_path / 'nope.jsonl'}: input file not found"
    odd = tmp_path / "notes.xlsx"
    odd.write_text("x", encoding="utf-8")
    with pytest.raises(InputError, match=r"notes\.xlsx: cannot tell the format"):
        read_records(odd)
    assert rows_of(read_records(odd, fmt="txt")) == [(1, "1", "x")]
    with pytest.raises(InputError, match="unknown input format 'xls'"):
        read_records(odd, fmt="xls")


def test_detect_format() -> None:
    assert [
        detect_format(p)
        for p in ["a.txt", "a.JSONL", "a.json", "a.csv.gz", "a.tsv", "a.parquet", "a.jsonl.gz"]
    ] == ["txt", "jsonl", "jsonl", "csv", "tsv", "parquet", "jsonl"]


def test_chunks_by_count_and_chars(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("\n".join(["ab"] * 7) + "\n", encoding="utf-8")
    assert [len(c) for c in read_records(path).chunks(3)] == [3, 3, 1]
    assert [len(c) for c in read_records(path).chunks(10, max_chars=4)] == [2, 2, 2, 1]


def test_join_sections_and_record_field() -> None:
    assert join_sections([("text", "胸痛")]) == ("胸痛", (("text", 0, 2),))
    text, sections = join_sections([("主诉", "胸痛"), ("诊断", "")])
    assert text == "【主诉】胸痛\n【诊断】"
    rec = Record(row=1, id="1", text=text, sections=sections)
    assert (rec.field("主诉"), rec.field("诊断")) == ("胸痛", "")
    with pytest.raises(KeyError):
        rec.field("家族史")


# --------------------------------------------------------------------------------------------
# Writers


def test_jsonl_writer_is_atomic(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "out.jsonl"
    with JsonlWriter(out) as w:
        w.write({"id": "1", "text": "胸痛"})
        assert not out.exists() and (tmp_path / "sub" / "out.jsonl.tmp").exists()
    assert out.read_text(encoding="utf-8") == '{"id": "1", "text": "胸痛"}\n'
    assert not (tmp_path / "sub" / "out.jsonl.tmp").exists()

    with pytest.raises(RuntimeError), JsonlWriter(out) as w:
        w.write({"id": "2"})
        raise RuntimeError("boom")
    assert out.read_text(encoding="utf-8") == '{"id": "1", "text": "胸痛"}\n'  # old file kept
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["out.jsonl"]


def test_lines_writer_gzip_and_newlines(tmp_path: Path) -> None:
    out = tmp_path / "corpus.txt.gz"
    with open_writer(out, "lines") as w:
        assert isinstance(w, LinesWriter)
        w.write_lines(["胸痛 2天", "无\n发热"])
    assert gzip.decompress(out.read_bytes()).decode("utf-8") == "胸痛 2天\n无 发热\n"
    with pytest.raises(InputError, match="unknown output format 'xml'"):
        open_writer(tmp_path / "x", "xml")


def test_error_sink_writes_an_empty_file_when_no_errors(tmp_path: Path) -> None:
    path = tmp_path / "errors.jsonl"
    path.write_text("stale\n", encoding="utf-8")
    with ErrorSink(path):
        pass
    assert path.read_text(encoding="utf-8") == ""


def test_record_mode_every_field_optional_and_absent_columns(tmp_path):
    """Record mode (image / multimodal models): fields may be missing per row or absent from
    the file; a text field must be text when present; a row with nothing is an error."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ehrtext.textio import ErrorSink, RecordReader

    rows = [
        {"id": "a", "note": "胸痛2天", "xray": "a.png", "other": 1},
        {"id": "b", "note": None, "xray": "b.png", "other": 2},
        {"id": "c", "note": 7, "xray": None, "other": 3},  # a number where a note should be
        {"id": "d", "note": None, "xray": None, "other": 4},  # nothing the model reads
    ]
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    parquet = tmp_path / "r.parquet"
    notes = [r["note"] if isinstance(r["note"], str) else None for r in rows]
    pq.write_table(pa.table({"id": [r["id"] for r in rows], "note": notes}), parquet)
    for path, absent in ((jsonl, []), (parquet, ["xray", "age"])):
        sink = ErrorSink()
        reader = RecordReader(path, text_fields=["note"], id_field="id", errors=sink,
                              record_fields=["note", "xray", "age"])
        got = {r.id: r.meta for r in reader}
        assert reader.absent_fields == absent
        codes = {e["id"]: e["code"] for e in sink.entries}
        if path is jsonl:
            assert got == {"a": {"note": "胸痛2天", "xray": "a.png", "age": None},
                           "b": {"note": None, "xray": "b.png", "age": None}}
            assert codes == {"c": "wrong_type", "d": "empty_record"}
        else:  # only id and note are in the file
            assert got == {"a": {"note": "胸痛2天", "xray": None, "age": None}}
            assert codes == {"b": "empty_record", "c": "empty_record", "d": "empty_record"}
        assert reader.rows == reader.records + reader.rejected
    with pytest.raises(InputError, match="none of the model's columns"):
        RecordReader(parquet, text_fields=[], id_field="id", record_fields=["xray", "age"])
