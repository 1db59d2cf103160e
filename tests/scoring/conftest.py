"""Fixtures for the scoring tests: note files with known bad rows, and PostgreSQL.

PostgreSQL tests use the server named by ``EHRTEXT_TEST_POSTGRES_URL`` (CI starts one with
``scripts/start_test_postgres.sh``). Without it they are skipped with the reason, except when
``CI=true``, where a missing server is a failure.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "corpora" / "samples" / "notes.jsonl"
POSTGRES_ENV = "EHRTEXT_TEST_POSTGRES_URL"


def sample_notes() -> list[dict]:
    return [json.loads(line) for line in SAMPLES.read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, rows: list) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        reason = (
            f"PostgreSQL tests need a server: set {POSTGRES_ENV} "
            '(export EHRTEXT_TEST_POSTGRES_URL="$(bash scripts/start_test_postgres.sh)")'
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {POSTGRES_ENV} is not set: {reason}")
        pytest.skip(reason)
    try:
        import psycopg
    except ImportError:
        pytest.fail("psycopg is not installed: pip install 'ehrtext[sql]'")
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        pytest.fail(f"{POSTGRES_ENV} is set but the server does not answer ({type(exc).__name__})")
    return url


@pytest.fixture
def pg_table(postgres_url):
    """A fresh table name (and a helper to drop it afterwards)."""
    import psycopg

    names: list[str] = []

    def make(prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        names.append(name)
        return name

    yield make
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP TABLE IF EXISTS "{name}"')


def pg_uri(url: str, table: str) -> str:
    return f"{url}?table={table}"


@pytest.fixture(scope="session")
def sample_model(tmp_path_factory) -> Path:
    """A real (small) BiGRU RiskModel trained on the shipped sample notes, once per session."""
    from ehrtext.train_cli import TrainOptions, train_model

    out = tmp_path_factory.mktemp("scoring-model") / "bigru"
    train_model(
        TrainOptions(
            data=str(SAMPLES),
            label_field="label",
            id_field="id",
            model="bigru",
            epochs=2,
            embedding_dim=16,
            hidden_size=16,
            max_len=128,
            val_fraction=0.2,
            n_bootstrap=0,
            progress=False,
            seed=0,
            output=str(out),
        )
    )
    return out
