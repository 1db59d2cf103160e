"""The scoring engine over SQL tables: SQLite (stdlib) and a real PostgreSQL server."""

from __future__ import annotations

import sqlite3

import pytest

from ehrtext.errors import InputError
from ehrtext.scoring import parse_location, score
from tests.scoring.conftest import pg_uri, read_jsonl, sample_notes, write_jsonl
from tests.scoring.fake_scorer import LABELS, FakeScorer

COLUMNS = ["id", *[f"p_{lab}" for lab in LABELS], "label"]


def table_rows(notes):
    """Sample notes as (id, text) plus problem rows; ids in a mixed order."""
    rows = [(n["id"], n["text"]) for n in reversed(notes)]
    rows += [
        (None, "编号为空的病历"),  # bad_id
        ("B2", None),  # wrong_type (NULL text)
        ("B4", "长" * 3000),  # too_long with max_chars=2000
        ("S003", "重复编号一"),  # duplicate of S003 (twice: spans page boundaries)
        ("S003", "重复编号二"),
        ("S004", "重复编号三"),
    ]
    return rows


EXPECTED_CODES = {"bad_id": 1, "wrong_type": 1, "too_long": 1, "duplicate_id": 3}


def check_sql_scores(rows, notes):
    scorer = FakeScorer()
    texts = {n["id"]: n["text"] for n in notes}
    ids = [r[0] for r in rows]
    assert sorted(ids) == sorted(texts) and len(ids) == len(set(ids))
    for r in rows:
        p = scorer.probabilities(texts[r[0]])
        assert list(r[1:-1]) == p
        assert r[-1] == LABELS[p.index(max(p))]


def make_sqlite(path, rows):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id TEXT, text TEXT)")  # no primary key: dups possible
    conn.executemany("INSERT INTO notes VALUES (?, ?)", rows)
    conn.commit()
    conn.close()


def test_location_parsing():
    loc = parse_location("sqlite:///data/ehr.db?table=notes")
    assert (loc.kind, loc.path, loc.table) == ("sqlite", "data/ehr.db", "notes")
    assert parse_location("sqlite:////abs/ehr.db?table=n").path == "/abs/ehr.db"
    pg = parse_location("postgresql://me:secret@127.0.0.1:5432/ehr?table=s.notes&sslmode=disable")
    assert (pg.kind, pg.table) == ("postgresql", "s.notes")
    assert pg.dsn == "postgresql://me:secret@127.0.0.1:5432/ehr?sslmode=disable"
    assert "secret" not in pg.display()
    assert parse_location("postgres://h/db?table=t").kind == "postgresql"
    assert parse_location("notes.parquet").kind == "file"
    for bad in ("sqlite:///ehr.db", "postgresql://h/db", "mysql://h/db?table=t",
                'sqlite:///x.db?table=a"b'):
        with pytest.raises(InputError):
            parse_location(bad)


@pytest.mark.parametrize("chunk_size", [3, 7, 100])
def test_sqlite_table_to_a_table_in_the_same_database(tmp_path, chunk_size):
    notes = sample_notes()
    db = tmp_path / "ehr.db"
    make_sqlite(db, table_rows(notes))
    s = score(f"sqlite:///{db}?table=notes", f"sqlite:///{db}?table=scores", FakeScorer(),
              chunk_size=chunk_size, max_chars=2000)
    assert (s.read, s.scored, s.errors, s.skipped) == (36, 30, 6, 0)
    assert s.error_codes == EXPECTED_CODES
    conn = sqlite3.connect(db)
    cols = [d[1] for d in conn.execute("PRAGMA table_info(scores)")]
    assert cols == COLUMNS
    pk = [d[1] for d in conn.execute("PRAGMA table_info(scores)") if d[5]]
    assert pk == ["id"]
    check_sql_scores(conn.execute("SELECT * FROM scores").fetchall(), notes)
    errors = read_jsonl(tmp_path / "scores.errors.jsonl")  # beside the database
    assert sorted(e["code"] for e in errors) == sorted(
        c for c, n in EXPECTED_CODES.items() for _ in range(n))
    # the first S003 in rowid order wins: its text is the sample note's (inserted first)
    assert {e["id"] for e in errors if e["code"] == "duplicate_id"} == {"S003", "S004"}


def test_sqlite_output_table_needs_resume_or_overwrite(tmp_path):
    notes = sample_notes()
    src = write_jsonl(tmp_path / "notes.jsonl", notes[:10])
    out = f"sqlite:///{tmp_path / 'scores.db'}?table=scores"
    score(src, out, FakeScorer())
    with pytest.raises(InputError, match="--resume"):
        score(src, out, FakeScorer())
    s = score(write_jsonl(tmp_path / "all.jsonl", notes), out, FakeScorer(), resume=True)
    assert (s.skipped, s.scored) == (10, 20)
    s = score(src, out, FakeScorer(), overwrite=True)
    assert s.scored == 10
    conn = sqlite3.connect(tmp_path / "scores.db")
    assert conn.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 10


def test_sqlite_integer_ids_and_missing_columns(tmp_path):
    db = tmp_path / "ehr.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE notes (nid INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO notes VALUES (?, ?)",
                     [(i, n["text"]) for i, n in enumerate(sample_notes(), start=1)])
    conn.commit()
    s = score(f"sqlite:///{db}?table=notes", tmp_path / "s.jsonl", FakeScorer(),
              text_fields=["body"], id_field="nid", chunk_size=4)
    assert s.scored == 30
    assert [r["id"] for r in read_jsonl(tmp_path / "s.jsonl")] == [str(i) for i in range(1, 31)]
    with pytest.raises(InputError, match="text column 'text' is not in the table"):
        score(f"sqlite:///{db}?table=notes", tmp_path / "t.jsonl", FakeScorer(), id_field="nid")
    with pytest.raises(InputError, match="does not exist"):
        score(f"sqlite:///{db}?table=absent", tmp_path / "t.jsonl", FakeScorer())


def test_postgres_table_to_table(postgres_url, pg_table, tmp_path, monkeypatch):
    import psycopg

    monkeypatch.chdir(tmp_path)  # a PostgreSQL output's default errors file lands in the cwd

    notes = sample_notes()
    src, dst = pg_table("notes"), pg_table("scores")
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{src}" (id TEXT, text TEXT)')
        with conn.cursor() as cur:
            cur.executemany(f'INSERT INTO "{src}" VALUES (%s, %s)', table_rows(notes))
    s = score(pg_uri(postgres_url, src), pg_uri(postgres_url, dst), FakeScorer(), chunk_size=4,
              max_chars=2000, errors_path=None)
    assert (s.read, s.scored, s.errors, s.skipped) == (36, 30, 6, 0)
    assert s.error_codes == EXPECTED_CODES
    default_errors = tmp_path / f"{dst}.errors.jsonl"
    assert len(default_errors.read_text(encoding="utf-8").splitlines()) == 6
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(f'SELECT * FROM "{dst}"').fetchall()
        cols = [c.name for c in conn.execute(f'SELECT * FROM "{dst}" LIMIT 0').description]
        pk = conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
            (f'"{dst}"',)).fetchall()
    assert cols == COLUMNS and pk == [("id",)]
    check_sql_scores(rows, notes)
    with pytest.raises(InputError, match="--resume"):
        score(pg_uri(postgres_url, src), pg_uri(postgres_url, dst), FakeScorer())
    s = score(pg_uri(postgres_url, src), pg_uri(postgres_url, dst), FakeScorer(), resume=True,
              max_chars=2000)
    assert (s.scored, s.skipped, s.errors) == (0, 30, 6)


def test_file_to_postgres_and_sqlite_to_postgres(tmp_path, postgres_url, pg_table):
    import psycopg

    notes = sample_notes()
    src = write_jsonl(tmp_path / "notes.jsonl", notes)
    dst = pg_table("scores")
    s = score(src, pg_uri(postgres_url, dst), FakeScorer(), chunk_size=8,
              errors_path=tmp_path / "e.jsonl")
    assert s.scored == 30
    db = tmp_path / "ehr.db"
    make_sqlite(db, [(n["id"], n["text"]) for n in notes])
    dst2 = pg_table("scores")
    score(f"sqlite:///{db}?table=notes", pg_uri(postgres_url, dst2), FakeScorer(), chunk_size=8,
          errors_path=tmp_path / "e2.jsonl")
    with psycopg.connect(postgres_url) as conn:
        a = conn.execute(f'SELECT * FROM "{dst}" ORDER BY id').fetchall()
        b = conn.execute(f'SELECT * FROM "{dst2}" ORDER BY id').fetchall()
    assert a == b
    check_sql_scores(a, notes)


def test_postgres_connection_errors_name_no_password():
    with pytest.raises(InputError) as info:
        score(__file__.replace(".py", ".none.jsonl"), "x.jsonl", FakeScorer())
    assert "not found" in str(info.value)
    with pytest.raises(InputError) as info:
        score(
            "postgresql://someone:TOPSECRET@127.0.0.1:1/nodb?table=notes",
            "scores.jsonl",
            FakeScorer(),
        )
    assert "cannot connect" in str(info.value) and "TOPSECRET" not in str(info.value)
