"""Kill -9 in the middle of a run, resume, and get exactly the uninterrupted result; and no
note text in any log, message or side file.

The run is slowed down with the engine's documented test hook
(``EHRTEXT_SCORE_TEST_CHUNK_DELAY``: a sleep inside each chunk's commit, after its rows are
written and before they are committed), and killed with SIGKILL once a few chunks are
committed, so the kill lands deterministically in the middle of the run, most likely with an
uncommitted chunk half-way to disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ehrtext.scoring import TEST_DELAY_ENV, ModelDirectory, score
from tests.scoring.conftest import REPO, pg_uri, read_jsonl, sample_notes, write_jsonl
from tests.scoring.fake_scorer import FAIL_MARKER

SCRIPT = REPO / "scripts" / "score_batch.py"
FAKE = "tests.scoring.fake_scorer:FakeFactory"


def _env(delay: float | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env.pop(TEST_DELAY_ENV, None)
    if delay is not None:
        env[TEST_DELAY_ENV] = str(delay)
    return env


def _cmd(src, out, *extra: str) -> list[str]:
    return [sys.executable, str(SCRIPT), "--scorer", FAKE, "--input", str(src), "--output",
            str(out), "--chunk-size", "3", "--max-chars", "2000", "--no-progress", *extra]


def _run(cmd, delay=None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO, env=_env(delay), capture_output=True, text=True,
                          timeout=300)


def _input(tmp_path: Path) -> Path:
    rows: list = [{"id": n["id"], "text": n["text"]} for n in sample_notes()]
    rows[5:5] = [{"id": "B1", "text": None}, {"id": "S002", "text": "重复"},
                 {"id": "B2", "text": "长" * 3000}]
    return write_jsonl(tmp_path / "notes.jsonl", rows)


def _kill_when(proc: subprocess.Popen, ready, what: str) -> None:
    deadline = time.monotonic() + 120
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended before {what} (rc {proc.returncode}): {err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _journal(journal: Path) -> list[dict]:
    """Complete journal lines after the header (one per committed chunk)."""
    if not journal.exists():
        return []
    lines = journal.read_bytes().split(b"\n")[:-1]  # the last piece is unterminated or empty
    return [json.loads(x) for x in lines][1:]


def _cli(model: Path, src, out, *extra: str) -> list[str]:
    """``ehrtext score`` with a real model, as a user runs it."""
    return [sys.executable, "-m", "ehrtext.cli", "score", "--model", str(model), "--input",
            str(src), "--output", str(out), "--chunk-size", "3", "--max-chars", "2000",
            "--no-progress", *extra]


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_jsonl(tmp_path, sample_model):
    src = _input(tmp_path)
    ref = tmp_path / "ref.jsonl"
    s = score(src, ref, ModelDirectory(str(sample_model)), chunk_size=3, max_chars=2000,
              errors_path=tmp_path / "ref.errors.jsonl")
    assert (s.read, s.scored, s.errors) == (33, 30, 3)

    out = tmp_path / "scores.jsonl"
    journal = tmp_path / "scores.jsonl.journal"
    proc = subprocess.Popen(_cli(sample_model, src, out), cwd=REPO, env=_env(delay=0.25),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _kill_when(proc, lambda: len(_journal(journal)) >= 3, "3 committed chunks")
    committed_rows = sum(entry["rows"] for entry in _journal(journal))
    assert not out.exists()
    part_rows = (tmp_path / "scores.jsonl.part").read_bytes().count(b"\n")
    assert 8 <= committed_rows <= part_rows < 30  # killed midway

    again = _run(_cli(sample_model, src, out))  # without --resume: refuses to lose the work
    assert again.returncode == 2 and "--resume" in again.stderr

    resumed = _run(_cli(sample_model, src, out, "--resume"))
    assert resumed.returncode == 0, resumed.stderr
    assert f"{committed_rows} skipped" in resumed.stderr
    assert "read 33 rows" in resumed.stderr
    rows = read_jsonl(out)
    assert len(rows) == len({r["id"] for r in rows}) == 30
    assert out.read_bytes() == ref.read_bytes()  # same rows, same order, same floats
    assert sorted((tmp_path / "scores.errors.jsonl").read_text().splitlines()) == sorted(
        (tmp_path / "ref.errors.jsonl").read_text().splitlines())
    assert not (tmp_path / "scores.jsonl.part").exists() and not journal.exists()


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_uninterrupted_postgres_table(tmp_path, postgres_url,
                                                                    pg_table, sample_model):
    import psycopg

    src = _input(tmp_path)
    ref, dst = pg_table("ref"), pg_table("scores")
    errs = ["--errors", str(tmp_path / "e.jsonl")]
    score(src, pg_uri(postgres_url, ref), ModelDirectory(str(sample_model)), chunk_size=3,
          max_chars=2000, errors_path=tmp_path / "ref.errors.jsonl")

    def count() -> int:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            if conn.execute("SELECT to_regclass(%s)", (f'"{dst}"',)).fetchone()[0] is None:
                return 0
            return conn.execute(f'SELECT COUNT(*) FROM "{dst}"').fetchone()[0]

    proc = subprocess.Popen(_cli(sample_model, src, pg_uri(postgres_url, dst), *errs), cwd=REPO,
                            env=_env(delay=0.25), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _kill_when(proc, lambda: count() >= 8, "3 committed chunks")
    before = count()
    assert 8 <= before < 30  # whole chunks only: the open one was rolled back

    resumed = _run(_cli(sample_model, src, pg_uri(postgres_url, dst), "--resume", *errs))
    assert resumed.returncode == 0, resumed.stderr
    assert f"{before} skipped" in resumed.stderr
    with psycopg.connect(postgres_url) as conn:
        got = conn.execute(f'SELECT * FROM "{dst}" ORDER BY id').fetchall()
        want = conn.execute(f'SELECT * FROM "{ref}" ORDER BY id').fetchall()
    assert len(got) == len({r[0] for r in got}) == 30
    assert got == want  # identical floats
    assert sorted((tmp_path / "e.jsonl").read_text().splitlines()) == sorted(
        (tmp_path / "ref.errors.jsonl").read_text().splitlines())


MARKER = "ZQX-PRIVATE-7f3a9c"


def test_no_note_text_in_logs_messages_or_side_files(tmp_path):
    """Every note carries a unique marker; it must appear nowhere but in the input."""
    notes = sample_notes()[:8]
    rows: list = [{"id": n["id"], "text": n["text"] + MARKER} for n in notes]
    rows += [
        {"id": "B1", "text": MARKER * 200},  # too long
        {"id": "B2", "text": f"{MARKER}{FAIL_MARKER}"},  # the scorer raises, quoting the note
        {"id": "S001", "text": f"重复{MARKER}"},  # duplicate id
        {"text": MARKER},  # no id
        {"id": "B3", "text": [MARKER]},  # not text
        '{"id": "B4", "text": "' + MARKER + '"',  # broken JSON with the marker in the line
    ]
    (tmp_path / "in").mkdir()
    src = write_jsonl(tmp_path / "in" / "notes.jsonl", rows)
    outdir = tmp_path / "out"
    outdir.mkdir()
    logs = []
    for extra in ([], ["--workers", "2"]):
        res = _run(_cmd(src, outdir / "scores.jsonl", "--overwrite", *extra))
        assert res.returncode == 0, res.stderr
        logs += [res.stdout, res.stderr]
        assert "read 14 rows: 8 scored, 6 errors" in res.stderr
    errors = read_jsonl(outdir / "scores.errors.jsonl")
    # a wrong text field: every row is an error, each named by id and reason only
    res = _run(_cmd(src, tmp_path / "other" / "s.jsonl", "--text-field", "body"))
    assert res.returncode == 0 and "read 14 rows: 0 scored, 14 errors" in res.stderr
    logs += [res.stdout, res.stderr, (tmp_path / "other" / "s.errors.jsonl").read_text()]
    assert {e["code"] for e in errors} == {"too_long", "failed", "duplicate_id", "bad_id",
                                           "wrong_type", "invalid_json"}
    for text in logs:
        assert MARKER not in text
    for path in outdir.rglob("*"):
        if path.is_file():
            assert MARKER.encode() not in path.read_bytes(), path.name
    assert json.dumps(errors).count("B2") == 1
