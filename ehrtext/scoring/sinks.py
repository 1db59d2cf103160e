"""Where scores are written, one atomic commit per chunk, so an interrupted run can resume.

Every sink writes the same columns (:class:`OutputSchema`): ``id``, one ``p_<label>``
probability per label, then ``label`` (single-label tasks: the predicted label) or ``labels``
(multi-label: the labels at or above their thresholds; a list in JSONL/Parquet, a JSON array
string in CSV and SQL).

How each sink commits a chunk, and what ``--resume`` reads back:

* **JSONL / CSV / TSV** (:class:`AppendFileSink`): rows are appended to ``OUT.part``; after
  each chunk the file is flushed and ``fsync``-ed, then a line ``{"chunk", "rows", "bytes"}``
  is appended (and fsync-ed) to the chunk journal ``OUT.journal``. The journal line is the
  commit: on resume, ``OUT.part`` is truncated to the last committed byte offset (dropping a
  chunk that was being written when the run died) and the ids in it are skipped. At the end
  ``OUT.part`` is renamed to ``OUT`` and the journal removed. ``--resume`` on a finished
  output continues it (new ids in the input are scored and appended).
* **Parquet** (:class:`ParquetPartsSink`): each chunk is a part file
  ``OUT.parts/part-NNNNNN.parquet`` written to a temporary name and renamed (atomic); at the
  end the parts are concatenated into ``OUT`` (streamed, one part at a time) and the folder
  removed.
* **SQL** (:class:`SqlSink`, SQLite or PostgreSQL): the table has ``id`` as its PRIMARY KEY;
  each chunk is one transaction. On resume the ids already in the table are skipped.

Without ``resume``, state left by an interrupted run (``OUT.part``, ``OUT.parts/``, an
existing table) stops the run with a message saying to pass ``--resume`` or ``--overwrite``,
so hours of scores are never thrown away by accident.

Test hook: when the environment variable ``EHRTEXT_SCORE_TEST_CHUNK_DELAY`` holds a number of
seconds, every sink sleeps that long after a chunk's rows are written and before they are
committed. The reliability tests use it to kill a run (SIGKILL) deterministically in the middle
of a chunk; it is not meant for anything else.

Example:
    >>> schema = OutputSchema(labels=("冠心病", "肺炎"), multilabel=False)
    >>> schema.columns
    ['id', 'p_冠心病', 'p_肺炎', 'label']
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ehrtext.errors import EhrtextError, InputError
from ehrtext.scoring.locations import Location, parse_location, quote_identifier, quote_table
from ehrtext.scoring.sql import SqlDatabase
from ehrtext.textio import EXTENSION_FORMATS

__all__ = [
    "AppendFileSink",
    "OutputSchema",
    "ParquetPartsSink",
    "ScoreRow",
    "ScoreSink",
    "SqlSink",
    "TEST_DELAY_ENV",
    "check_output",
    "open_sink",
    "output_format",
]

TEST_DELAY_ENV = "EHRTEXT_SCORE_TEST_CHUNK_DELAY"
"""Environment variable of the test hook (seconds to sleep inside each chunk's commit)."""

ScoreRow = tuple[Any, ...]
"""One output row: ``(id, p_1, ..., p_k, label-or-labels)``."""

_POSTGRES_MAX_IDENTIFIER = 63


def _test_hook_delay() -> None:
    value = os.environ.get(TEST_DELAY_ENV)
    if value:
        time.sleep(float(value))


@dataclass(frozen=True)
class OutputSchema:
    """The output columns for a model's labels.

    Example:
        >>> OutputSchema(labels=("a", "b"), multilabel=True).columns
        ['id', 'p_a', 'p_b', 'labels']
    """

    labels: tuple[str, ...]
    multilabel: bool

    @property
    def prob_columns(self) -> list[str]:
        """``p_<label>`` for each label, in label order."""
        return [f"p_{label}" for label in self.labels]

    @property
    def label_column(self) -> str:
        """``labels`` (multi-label) or ``label``."""
        return "labels" if self.multilabel else "label"

    @property
    def columns(self) -> list[str]:
        """All output columns, in order."""
        return ["id", *self.prob_columns, self.label_column]

    def as_dict(self, row: ScoreRow) -> dict[str, Any]:
        """One row as a ``{column: value}`` dict."""
        return dict(zip(self.columns, row))


class ScoreSink(Protocol):
    """What the engine needs from an output."""

    def open(self, *, resume: bool, overwrite: bool) -> set[str]:
        """Prepare the output; with ``resume``, return the ids already committed."""
        ...

    def write_chunk(self, rows: Sequence[ScoreRow]) -> None:
        """Write and commit one chunk of rows, atomically."""
        ...

    def close(self) -> None:
        """Finish the output after the last chunk."""
        ...

    def release(self) -> None:
        """Stop after a failure, keeping every committed chunk for ``--resume``."""
        ...


def open_sink(location: str | Location, schema: OutputSchema) -> ScoreSink:
    """The sink for a file path (by extension) or a SQL table URI.

    Example:
        >>> sink = open_sink("scores.jsonl", OutputSchema(("a",), False))  # doctest: +SKIP
    """
    loc = location if isinstance(location, Location) else parse_location(location)
    if loc.is_sql:
        return SqlSink(loc, schema)
    path = Path(loc.path or "")
    fmt = output_format(path)
    if fmt == "parquet":
        return ParquetPartsSink(path, schema)
    return AppendFileSink(path, schema, fmt)


def output_format(path: Path) -> str:
    """``jsonl``, ``csv``, ``tsv`` or ``parquet`` from the extension of a score file.

    Example:
        >>> output_format(Path("run/scores.TSV"))
        'tsv'
    """
    suffix = path.suffix.lower()
    if suffix == ".gz":
        raise InputError(f"{path}: compressed score files are not supported; drop the .gz")
    fmt = EXTENSION_FORMATS.get(suffix)  # the readers' table; plain text is input only
    if fmt in (None, "txt"):
        raise InputError(
            f"{path}: cannot tell the output format from the extension; use .jsonl, .csv, .tsv, "
            ".parquet, or a sqlite:///… / postgresql://… table URI"
        )
    return fmt


def check_output(location: str | Location, *, resume: bool, overwrite: bool) -> None:
    """Fail fast, before any model is loaded, on an unusable output or on the work of an
    earlier run that ``resume``/``overwrite`` does not account for.

    Example:
        >>> check_output("scores.jsonl", resume=False, overwrite=False)   # doctest: +SKIP
    """
    loc = location if isinstance(location, Location) else parse_location(location)
    if loc.is_sql:
        if resume or overwrite:
            return
        db = SqlDatabase(loc)
        try:
            exists = db.table_exists(loc.table or "")
        finally:
            db.close()
        if exists:
            raise _table_exists_error(loc)
        return
    path = Path(loc.path or "")
    output_format(path)
    if resume or overwrite:
        return
    for suffix in (".part", ".journal", ".parts"):
        leftover = path.with_name(path.name + suffix)
        if leftover.exists():
            raise _leftover_error(str(leftover))


def _table_exists_error(loc: Location) -> InputError:
    return InputError(
        f"{loc.display()}: the output table exists: pass --resume to continue it (ids already "
        "in it are skipped), or --overwrite to drop it"
    )


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _leftover_error(what: str) -> InputError:
    return InputError(
        f"{what} is left from an interrupted run: pass --resume to continue it, "
        "or --overwrite to discard it and start again"
    )


# --------------------------------------------------------------------------------------------
# JSONL / CSV: an append-only file plus a chunk journal
# --------------------------------------------------------------------------------------------


class AppendFileSink:
    """JSONL, CSV or TSV scores: ``OUT.part`` + ``OUT.journal``, renamed to ``OUT`` at the end.

    Example:
        >>> schema = OutputSchema(("a",), False)
        >>> sink = AppendFileSink(Path("scores.jsonl"), schema, "jsonl")     # doctest: +SKIP
        >>> done = sink.open(resume=False, overwrite=False)                  # doctest: +SKIP
        >>> sink.write_chunk([("n1", 0.25, "a")]); sink.close()              # doctest: +SKIP
    """

    def __init__(self, path: Path, schema: OutputSchema, fmt: str) -> None:
        self.path = Path(path)
        self.schema = schema
        self.fmt = fmt
        self.part = self.path.with_name(self.path.name + ".part")
        self.journal = self.path.with_name(self.path.name + ".journal")
        self._fh: io.BufferedWriter | None = None
        self._journal_fh: io.BufferedWriter | None = None
        self._chunks = 0
        self._offset = 0

    # -- opening ---------------------------------------------------------------------------

    def open(self, *, resume: bool, overwrite: bool) -> set[str]:
        leftover = self.part.exists() or self.journal.exists()
        if leftover and not resume:
            if not overwrite:
                raise _leftover_error(f"{self.part}")
            self.part.unlink(missing_ok=True)
            self.journal.unlink(missing_ok=True)
            leftover = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if resume and leftover:
                done = self._recover()
            elif resume and self.path.exists():
                os.replace(self.path, self.part)  # continue a finished output
                self._write_journal_header(self.part.stat().st_size)
                done = self._recover()
            else:
                self._start()
                done = set()
        except OSError as exc:
            raise InputError(f"{self.path}: cannot write the output ({exc.strerror})") from None
        return done

    def _header_bytes(self) -> bytes:
        if self.fmt == "jsonl":
            return b""
        return self._csv_line(self.schema.columns)

    def _start(self) -> None:
        with open(self.part, "wb") as fh:
            fh.write(self._header_bytes())
            fh.flush()
            os.fsync(fh.fileno())
        self._write_journal_header(len(self._header_bytes()))
        _fsync_dir(self.path.parent)
        self._open_handles()

    def _write_journal_header(self, offset: int) -> None:
        entry = {"chunk": 0, "rows": 0, "bytes": offset, "columns": self.schema.columns}
        with open(self.journal, "wb") as fh:
            fh.write(json.dumps(entry, ensure_ascii=False).encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._chunks = 0
        self._offset = offset

    def _recover(self) -> set[str]:
        """Truncate ``OUT.part`` to the last committed chunk and return its ids."""
        committed: dict[str, Any] | None = None
        columns: list[str] | None = None
        good_journal_bytes = 0
        if self.journal.exists():
            with open(self.journal, "rb") as fh:
                for raw in fh:
                    if not raw.endswith(b"\n"):
                        break  # a torn last line: that chunk was not committed
                    try:
                        entry = json.loads(raw)
                    except json.JSONDecodeError:
                        break
                    if columns is None:
                        columns = entry.get("columns")
                    committed = entry
                    good_journal_bytes += len(raw)
        if committed is None:
            # No journal at all: nothing was committed beyond the header.
            self._start()
            return set()
        if columns is not None and columns != self.schema.columns:
            raise InputError(
                f"{self.path}: the existing output has columns {columns}, this model writes "
                f"{self.schema.columns}; use another output or --overwrite"
            )
        offset = int(committed["bytes"])
        size = self.part.stat().st_size
        if size < offset:
            raise InputError(
                f"{self.part}: shorter ({size} bytes) than its journal says ({offset}); the file "
                "was changed outside ehrtext: use --overwrite"
            )
        with open(self.part, "r+b") as fh:
            fh.truncate(offset)
            fh.flush()
            os.fsync(fh.fileno())
        with open(self.journal, "r+b") as fh:
            fh.truncate(good_journal_bytes)
            fh.flush()
            os.fsync(fh.fileno())
        self._chunks = int(committed["chunk"])
        self._offset = offset
        done = self._read_ids()
        self._open_handles()
        return done

    def _read_ids(self) -> set[str]:
        done: set[str] = set()
        with open(self.part, "rb") as fh:
            if self.fmt == "jsonl":
                for raw in fh:
                    if raw.strip():
                        done.add(str(json.loads(raw)["id"]))
            else:
                text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
                reader = csv.reader(text, delimiter="\t" if self.fmt == "tsv" else ",")
                next(reader, None)  # header
                for fields in reader:
                    if fields:
                        done.add(fields[0])
        return done

    def _open_handles(self) -> None:
        self._fh = open(self.part, "ab")  # noqa: SIM115 - closed in close()/release()
        self._journal_fh = open(self.journal, "ab")  # noqa: SIM115

    # -- writing ---------------------------------------------------------------------------

    def _csv_line(self, values: Sequence[Any]) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, delimiter="\t" if self.fmt == "tsv" else ",", lineterminator="\n").writerow(
            values
        )
        return buf.getvalue().encode("utf-8")

    def _encode(self, row: ScoreRow) -> bytes:
        if self.fmt == "jsonl":
            return json.dumps(self.schema.as_dict(row), ensure_ascii=False).encode("utf-8") + b"\n"
        values = list(row)
        if self.schema.multilabel:
            values[-1] = json.dumps(list(values[-1]), ensure_ascii=False)
        values[1:-1] = [repr(float(v)) for v in values[1:-1]]
        return self._csv_line(values)

    def write_chunk(self, rows: Sequence[ScoreRow]) -> None:
        assert self._fh is not None and self._journal_fh is not None
        data = b"".join(self._encode(row) for row in rows)
        try:
            self._fh.write(data)
            self._fh.flush()
            _test_hook_delay()
            os.fsync(self._fh.fileno())
            self._offset += len(data)
            self._chunks += 1
            entry = {"chunk": self._chunks, "rows": len(rows), "bytes": self._offset}
            self._journal_fh.write(json.dumps(entry).encode() + b"\n")
            self._journal_fh.flush()
            os.fsync(self._journal_fh.fileno())
        except OSError as exc:
            raise EhrtextError(f"{self.part}: writing scores failed ({exc.strerror})") from None

    def close(self) -> None:
        for fh in (self._fh, self._journal_fh):
            if fh is not None:
                fh.flush()
                os.fsync(fh.fileno())
                fh.close()
        self._fh = self._journal_fh = None
        os.replace(self.part, self.path)
        self.journal.unlink(missing_ok=True)
        _fsync_dir(self.path.parent)

    def release(self) -> None:
        for fh in (self._fh, self._journal_fh):
            if fh is not None:
                try:
                    fh.close()
                except OSError:
                    pass
        self._fh = self._journal_fh = None


# --------------------------------------------------------------------------------------------
# Parquet: one part file per chunk, concatenated at the end
# --------------------------------------------------------------------------------------------


class ParquetPartsSink:
    """Parquet scores: ``OUT.parts/part-NNNNNN.parquet`` per chunk, joined into ``OUT`` at the end.

    Example:
        >>> schema = OutputSchema(("a",), False)
        >>> sink = ParquetPartsSink(Path("scores.parquet"), schema)          # doctest: +SKIP
    """

    def __init__(self, path: Path, schema: OutputSchema) -> None:
        import pyarrow as pa

        self.path = Path(path)
        self.schema = schema
        self.parts = self.path.with_name(self.path.name + ".parts")
        fields = [pa.field("id", pa.string())]
        fields += [pa.field(c, pa.float64()) for c in schema.prob_columns]
        label_type = pa.list_(pa.string()) if schema.multilabel else pa.string()
        fields.append(pa.field(schema.label_column, label_type))
        self.arrow_schema = pa.schema(fields)
        self._chunks = 0

    def open(self, *, resume: bool, overwrite: bool) -> set[str]:
        import pyarrow.parquet as pq

        if self.parts.exists() and not resume:
            if not overwrite:
                raise _leftover_error(f"{self.parts}/")
            shutil.rmtree(self.parts)
        try:
            if resume and not self.parts.exists() and self.path.exists():
                # Continue a finished output: it becomes the first part.
                self.parts.mkdir(parents=True)
                os.replace(self.path, self.parts / "part-000000.parquet")
            self.parts.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"{self.path}: cannot write the output ({exc.strerror})") from None
        done: set[str] = set()
        for tmp in self.parts.glob("*.tmp"):
            tmp.unlink()  # a part that was being written when the run died
        for part in sorted(self.parts.glob("part-*.parquet")):
            table = pq.read_table(part)
            if table.schema.names != self.arrow_schema.names:
                raise InputError(
                    f"{self.path}: the existing output has columns {table.schema.names}, this "
                    f"model writes {self.arrow_schema.names}; use another output or --overwrite"
                )
            done.update(str(v) for v in table.column("id").to_pylist())
            self._chunks = max(self._chunks, int(part.stem.split("-")[1]))
        return done

    def write_chunk(self, rows: Sequence[ScoreRow]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        columns: list[list[Any]] = [list(col) for col in zip(*rows)]
        if not columns:
            columns = [[] for _ in self.arrow_schema.names]
        columns[1:-1] = [[float(v) for v in col] for col in columns[1:-1]]
        arrays = [
            pa.array(col, type=self.arrow_schema.field(i).type) for i, col in enumerate(columns)
        ]
        table = pa.Table.from_arrays(arrays, schema=self.arrow_schema)
        self._chunks += 1
        final = self.parts / f"part-{self._chunks:06d}.parquet"
        tmp = final.with_name(final.name + ".tmp")
        try:
            pq.write_table(table, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            _test_hook_delay()
            os.replace(tmp, final)
            _fsync_dir(self.parts)
        except OSError as exc:
            raise EhrtextError(f"{final}: writing scores failed ({exc.strerror})") from None

    def close(self) -> None:
        import pyarrow.parquet as pq

        tmp = self.path.with_name(self.path.name + ".tmp")
        with pq.ParquetWriter(tmp, self.arrow_schema) as writer:
            for part in sorted(self.parts.glob("part-*.parquet")):
                writer.write_table(pq.read_table(part, schema=self.arrow_schema))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        shutil.rmtree(self.parts)
        _fsync_dir(self.path.parent)

    def release(self) -> None:
        pass


# --------------------------------------------------------------------------------------------
# SQL tables
# --------------------------------------------------------------------------------------------


class SqlSink:
    """Scores in a SQLite or PostgreSQL table (``id`` PRIMARY KEY, one transaction a chunk).

    Example:
        >>> sink = SqlSink(parse_location("sqlite:///ehr.db?table=scores"),
        ...                OutputSchema(("a",), False))                       # doctest: +SKIP
    """

    def __init__(self, location: Location, schema: OutputSchema) -> None:
        self.location = location
        self.schema = schema
        self.table = location.table or ""
        self.db: SqlDatabase | None = None
        if location.kind == "postgresql":
            for column in schema.columns:
                if len(column.encode("utf-8")) > _POSTGRES_MAX_IDENTIFIER:
                    raise InputError(
                        f"column {column!r} is longer than PostgreSQL's 63-byte identifier "
                        "limit; shorten the label names in the model"
                    )

    def _create_sql(self) -> str:
        real = "REAL" if self.location.kind == "sqlite" else "DOUBLE PRECISION"
        cols = ["id TEXT PRIMARY KEY"]
        cols += [f"{quote_identifier(c)} {real}" for c in self.schema.prob_columns]
        cols.append(f"{quote_identifier(self.schema.label_column)} TEXT")
        return f"CREATE TABLE {quote_table(self.table)} ({', '.join(cols)})"

    def open(self, *, resume: bool, overwrite: bool) -> set[str]:
        db = self.db = SqlDatabase(self.location)
        try:
            columns = db.columns(self.table)
            if columns is not None and not resume:
                if not overwrite:
                    db.close()
                    raise _table_exists_error(self.location)
                db.execute(f"DROP TABLE {quote_table(self.table)}").close()
                columns = None
            if columns is None:
                db.execute(self._create_sql()).close()
                return set()
            if columns != self.schema.columns:
                db.close()
                raise InputError(
                    f"{self.location.display()}: the existing table has columns {columns}, this "
                    f"model writes {self.schema.columns}; use another table or --overwrite"
                )
            cur = db.execute(f"SELECT id FROM {quote_table(self.table)}")
            done = {str(row[0]) for row in cur}
            cur.close()
            return done
        except db.errors as exc:
            db.close()
            raise InputError(
                f"{self.location.display()}: cannot prepare the output table ({exc})"
            ) from None

    def write_chunk(self, rows: Sequence[ScoreRow]) -> None:
        db = self.db
        assert db is not None
        ph = db.placeholder
        cols = ", ".join(quote_identifier(c) for c in self.schema.columns)
        marks = ", ".join([ph] * len(self.schema.columns))
        sql = f"INSERT INTO {quote_table(self.table)} ({cols}) VALUES ({marks})"
        params = []
        for row in rows:
            values = list(row)
            values[1:-1] = [float(v) for v in values[1:-1]]
            if self.schema.multilabel:
                values[-1] = json.dumps(list(values[-1]), ensure_ascii=False)
            params.append(values)
        try:
            db.begin()
            cur = db.conn.cursor()
            cur.executemany(sql, params)
            cur.close()
            _test_hook_delay()
            db.commit()
        except db.errors as exc:
            db.rollback()
            raise EhrtextError(
                f"{self.location.display()}: writing a chunk of scores failed "
                f"({type(exc).__name__}); committed chunks are kept, rerun with --resume"
            ) from None

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    def release(self) -> None:
        if self.db is not None:
            self.db.rollback()
        self.close()
