"""The scoring engine over note files, with the deterministic test scorer."""

from __future__ import annotations

import csv
import json
import os

import pytest

from ehrtext.errors import InputError
from ehrtext.scoring import OutputSchema, open_sink, score
from tests.scoring.conftest import read_jsonl, sample_notes, write_jsonl
from tests.scoring.fake_scorer import FAIL_MARKER, LABELS, FakeFactory, FakeScorer


def messy_input(tmp_path):
    """The 30 sample notes plus one row of each kind of problem; returns (path, expected)."""
    notes = sample_notes()
    rows: list = [{"id": n["id"], "text": n["text"]} for n in notes]
    bad = [
        {"text": "没有编号的病历"},  # id missing -> bad_id
        {"id": None, "text": "编号为空"},  # bad_id
        {"id": "B1"},  # text missing -> missing_field
        {"id": "B2", "text": 12345},  # wrong_type
        {"id": "B3", "text": None},  # wrong_type
        {"id": "B4", "text": "长" * 3000},  # too_long (max_chars=2000)
        {"id": "S005", "text": "重复编号的另一份病历"},  # duplicate_id
        '{"id": "B5", "text": "broken json',  # invalid_json
        {"id": "B6", "text": f"主诉：胸痛。{FAIL_MARKER}"},  # the scorer raises -> failed
        {"id": 77, "text": "整数编号的病历：咳嗽3天"},  # integer id: fine, scored as "77"
    ]
    # interleave the bad rows among the good ones
    mixed: list = []
    for i, row in enumerate(rows):
        mixed.append(row)
        if i % 3 == 1 and bad:
            mixed.append(bad.pop(0))
    mixed.extend(bad)
    path = write_jsonl(tmp_path / "notes.jsonl", mixed)
    expected_texts = {n["id"]: n["text"] for n in notes}
    expected_texts["77"] = "整数编号的病历：咳嗽3天"
    codes = {
        "bad_id": 2,
        "missing_field": 1,
        "wrong_type": 2,
        "too_long": 1,
        "duplicate_id": 1,
        "invalid_json": 1,
        "failed": 1,
    }
    return path, expected_texts, codes


def check_scores(rows: list[dict], expected_texts: dict[str, str], multilabel: bool = False):
    scorer = FakeScorer(multilabel)
    assert [r["id"] for r in rows] == list(dict.fromkeys(r["id"] for r in rows))  # unique
    assert {r["id"] for r in rows} == set(expected_texts)
    for r in rows:
        p = scorer.probabilities(expected_texts[r["id"]])
        assert [r[f"p_{lab}"] for lab in LABELS] == p  # exact, not approximate
        if multilabel:
            assert r["labels"] == [lab for lab, v in zip(LABELS, p) if v >= 0.5]
        else:
            assert r["label"] == LABELS[p.index(max(p))]


def test_jsonl_scores_are_the_scorers_and_the_summary_adds_up(tmp_path):
    path, expected, codes = messy_input(tmp_path)
    out = tmp_path / "scores.jsonl"
    s = score(path, out, FakeScorer(), id_field="id", chunk_size=4, max_chars=2000)
    rows = read_jsonl(out)
    check_scores(rows, expected)
    assert list(rows[0]) == ["id", *[f"p_{lab}" for lab in LABELS], "label"]
    assert s.read == 40 and s.scored == 31 and s.skipped == 0
    assert s.errors == 9 == sum(codes.values())
    assert s.error_codes == codes
    assert s.read == s.scored + s.errors + s.skipped
    errors = read_jsonl(tmp_path / "scores.errors.jsonl")
    assert len(errors) == 9
    assert {e["code"] for e in errors} == set(codes)
    dup = next(e for e in errors if e["code"] == "duplicate_id")
    assert dup["id"] == "S005" and dup["row"] > 0
    failed = next(e for e in errors if e["code"] == "failed")
    assert failed == {"row": failed["row"], "id": "B6", "code": "failed",
                      "reason": "scoring failed (ValueError)"}
    # no leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.jsonl", "scores.errors.jsonl", "scores.jsonl"]


def _read_any(path) -> list[dict]:
    path = str(path)
    if path.endswith(".jsonl"):
        return read_jsonl(path)
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    delim = "\t" if path.endswith(".tsv") else ","
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter=delim))
    for r in rows:
        for lab in LABELS:
            r[f"p_{lab}"] = float(r[f"p_{lab}"])
    return rows


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_every_file_format_holds_the_same_scores(tmp_path, suffix):
    path, expected, _ = messy_input(tmp_path)
    out = tmp_path / f"scores{suffix}"
    s = score(path, out, FakeScorer(), chunk_size=5, max_chars=2000)
    assert s.scored == 31 and s.adds_up
    check_scores(_read_any(out), expected)


def test_multilabel_and_section_fields_from_csv(tmp_path):
    notes = sample_notes()[:12]
    path = tmp_path / "notes.csv"
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["note_id", "主诉", "现病史"])
        for n in notes:
            head, _, rest = n["text"].partition("\n")
            w.writerow([n["id"], head, rest])
    out = tmp_path / "scores.parquet"
    factory = FakeFactory(multilabel=True, text_fields=("主诉", "现病史"))
    s = score(path, out, factory.load(), text_fields=["主诉", "现病史"], id_field="note_id",
              chunk_size=5)
    assert s.scored == 12 and s.errors == 0
    rows = _read_any(out)
    assert "labels" in rows[0]
    expected = {}
    for n in notes:
        head, _, rest = n["text"].partition("\n")
        expected[n["id"]] = f"【主诉】{head}\n【现病史】{rest}"
    for r in rows:
        r["labels"] = list(r["labels"])
    check_scores(rows, expected, multilabel=True)


@pytest.mark.slow
def test_two_workers_give_the_same_file_as_one(tmp_path):
    path, expected, _ = messy_input(tmp_path)
    one = score(path, tmp_path / "one.jsonl", FakeFactory(), chunk_size=3, max_chars=2000)
    two = score(path, tmp_path / "two.jsonl", FakeFactory(), chunk_size=3, max_chars=2000,
                workers=2)
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()
    assert (one.read, one.scored, one.errors) == (two.read, two.scored, two.errors)
    assert sorted(map(json.dumps, read_jsonl(tmp_path / "one.errors.jsonl"))) == sorted(
        map(json.dumps, read_jsonl(tmp_path / "two.errors.jsonl")))


def test_resume_on_a_finished_output_scores_only_new_ids(tmp_path):
    notes = sample_notes()
    first = write_jsonl(tmp_path / "first.jsonl", notes[:20])
    full = write_jsonl(tmp_path / "full.jsonl", notes)
    out = tmp_path / "scores.jsonl"
    score(first, out, FakeScorer(), chunk_size=6)
    s = score(full, out, FakeScorer(), chunk_size=6, resume=True)
    assert (s.read, s.scored, s.skipped, s.errors) == (30, 10, 20, 0)
    rows = read_jsonl(out)
    check_scores(rows, {n["id"]: n["text"] for n in notes})
    # the same again: nothing left to do
    s = score(full, out, FakeScorer(), chunk_size=6, resume=True)
    assert (s.scored, s.skipped) == (0, 30)
    assert read_jsonl(out) == rows


def _reference(tmp_path, path, name, **kw):
    out = tmp_path / name
    score(path, out, FakeScorer(), **kw)
    return out.read_bytes()


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_resume_drops_an_uncommitted_tail(tmp_path, suffix):
    """A run that died mid-chunk: rows written but not committed in the journal are dropped."""
    notes = sample_notes()
    path = write_jsonl(tmp_path / "notes.jsonl", notes)
    ref = _reference(tmp_path, path, f"ref{suffix}", chunk_size=4)
    out = tmp_path / f"scores{suffix}"
    # Commit two chunks by hand, as the engine does, then simulate the crash.
    scorer = FakeScorer()
    schema = OutputSchema(tuple(LABELS), False)
    sink = open_sink(str(out), schema)
    sink.open(resume=False, overwrite=False)
    from ehrtext.scoring.engine import frame_to_rows

    for chunk in (notes[:4], notes[4:8]):
        ids = [n["id"] for n in chunk]
        sink.write_chunk(frame_to_rows(scorer.predict([n["text"] for n in chunk], ids=ids),
                                       schema, ids))
    sink.release()
    part = tmp_path / f"scores{suffix}.part"
    journal = tmp_path / f"scores{suffix}.journal"
    with open(part, "ab") as fh:  # half a chunk that never got its journal line
        fh.write(b'{"id": "S009", "p_\xe5\x86')
    with open(journal, "ab") as fh:  # and a torn journal line
        fh.write(b'{"chunk": 3, "rows": 4, "by')
    with pytest.raises(InputError, match="--resume"):
        score(path, out, FakeScorer(), chunk_size=4)
    s = score(path, out, FakeScorer(), chunk_size=4, resume=True)
    assert (s.skipped, s.scored) == (8, 22)
    assert out.read_bytes() == ref
    assert not part.exists() and not journal.exists()


def test_overwrite_discards_a_partial_output(tmp_path):
    notes = sample_notes()
    path = write_jsonl(tmp_path / "notes.jsonl", notes)
    ref = _reference(tmp_path, path, "ref.jsonl", chunk_size=4)
    out = tmp_path / "scores.jsonl"
    (tmp_path / "scores.jsonl.part").write_text('{"id": "junk"}\n')
    s = score(path, out, FakeScorer(), chunk_size=4, overwrite=True)
    assert s.scored == 30 and out.read_bytes() == ref


def test_parquet_resume_ignores_a_half_written_part(tmp_path):
    notes = sample_notes()
    path = write_jsonl(tmp_path / "notes.jsonl", notes)
    out = tmp_path / "scores.parquet"
    score(write_jsonl(tmp_path / "head.jsonl", notes[:10]), out, FakeScorer(), chunk_size=5)
    os.replace(out, tmp_path / "first.parquet")
    parts = tmp_path / "scores.parquet.parts"
    parts.mkdir()
    os.replace(tmp_path / "first.parquet", parts / "part-000001.parquet")
    (parts / "part-000002.parquet.tmp").write_bytes(b"PAR1 half a file")
    s = score(path, out, FakeScorer(), chunk_size=5, resume=True)
    assert (s.skipped, s.scored) == (10, 20)
    check_scores(_read_any(out), {n["id"]: n["text"] for n in notes})
    assert not parts.exists()


def test_problems_with_the_input_stop_before_any_output(tmp_path):
    path = write_jsonl(tmp_path / "notes.jsonl", sample_notes()[:3])
    out = tmp_path / "scores.jsonl"
    with pytest.raises(InputError, match="'body' is not"):
        score(tmp_path / "notes.csv" if False else path, out, FakeScorer(), text_fields=["body"],
              input_format="csv")
    with pytest.raises(InputError, match="overwrite the input"):
        score(path, path, FakeScorer())
    with pytest.raises(InputError, match="input file not found"):
        score(tmp_path / "absent.jsonl", out, FakeScorer())
    with pytest.raises(InputError, match="output format"):
        score(path, tmp_path / "scores.xlsx", FakeScorer())
    with pytest.raises(InputError, match="table="):
        score(path, "sqlite:///x.db", FakeScorer())
    with pytest.raises(InputError, match="factory"):
        score(path, out, FakeScorer(), workers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.jsonl"]
