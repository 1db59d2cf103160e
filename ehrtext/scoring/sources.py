"""Streaming note sources for batch scoring: note files and SQL tables.

A source yields chunks of :class:`~ehrtext.textio.Record` in a fixed, repeatable order (so an
interrupted run that is resumed sees the same chunks) and reports every row it cannot use to
an :class:`~ehrtext.textio.ErrorSink`. Counters: ``rows`` (rows seen) ``== records`` (records
yielded) ``+ rejected`` (rows sent to the errors sink).

* :class:`FileSource`: JSONL / CSV / TSV / Parquet / TXT through :mod:`ehrtext.textio`.
* :class:`SqlSource`: a SQLite or PostgreSQL table read by keyset pagination on the id column
  (``WHERE id >= last ORDER BY id LIMIT n``): one short query per page, so memory stays flat,
  no long transaction or cursor is held open, and the order is the id order. Rows whose id is
  NULL cannot be paged by id; they are counted and reported as ``bad_id`` errors first.

Example:
    >>> from ehrtext.textio import ErrorSink
    >>> sink = ErrorSink()                                                 # doctest: +SKIP
    >>> src = open_source("sqlite:///ehr.db?table=notes", ["text"], "id", sink)  # doctest: +SKIP
    >>> for chunk in src.chunks(256):                                      # doctest: +SKIP
    ...     print(len(chunk), src.rows)
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from ehrtext.errors import InputError, describe_type
from ehrtext.scoring.locations import Location, parse_location, quote_identifier, quote_table
from ehrtext.scoring.sql import SqlDatabase
from ehrtext.textio import (
    DEFAULT_MAX_CHARS,
    ErrorSink,
    Record,
    RecordReader,
    RowRejected,
    join_sections,
    split_record,
)

__all__ = ["FileSource", "NoteSource", "SqlSource", "open_source"]

_SURROGATE = re.compile("[\ud800-\udfff]")


class NoteSource(Protocol):
    """What the scoring engine needs from a source."""

    rows: int
    records: int
    rejected: int

    def chunks(self, size: int) -> Iterator[list[Record]]:
        """Records in lists of at most ``size``, always in the same order."""
        ...

    def progress_total(self) -> tuple[int | None, str]:
        """``(total, unit)`` for a progress bar: ``unit`` is ``"notes"`` or ``"B"``."""
        ...

    def progress_position(self) -> int:
        """How far the source has got, in the unit of :meth:`progress_total`."""
        ...

    def close(self) -> None:
        """Release files and connections."""
        ...


def open_source(
    location: str | Location,
    text_fields: Sequence[str],
    id_field: str | None,
    errors: ErrorSink,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    input_format: str | None = None,
    record_fields: Sequence[str] | None = None,
) -> NoteSource:
    """Open a file path or SQL table URI for streaming (checks the columns now).

    ``record_fields`` switches to record mode, for models that read whole records (image,
    multimodal): each record's ``meta`` holds those columns (None where missing), any of them
    may be missing in a row or absent from the input (``absent_fields``), and
    ``text_fields`` (a subset) are only checked to be text when present.

    Example:
        >>> src = open_source("notes.jsonl", ["text"], "id", ErrorSink())  # doctest: +SKIP
    """
    loc = location if isinstance(location, Location) else parse_location(location)
    if loc.is_sql:
        if input_format is not None:
            raise InputError("--input-format applies to files only, not to SQL tables")
        if not id_field:
            raise InputError(f"{loc.display()}: a SQL table needs an id column (--id-field)")
        return SqlSource(
            loc, text_fields, id_field, errors, max_chars=max_chars, record_fields=record_fields
        )
    return FileSource(
        loc.path or "",
        text_fields,
        id_field,
        errors,
        max_chars=max_chars,
        fmt=input_format,
        record_fields=record_fields,
    )


class FileSource:
    """A note file read through :class:`ehrtext.textio.RecordReader`.

    Example:
        >>> src = FileSource("notes.csv", ["主诉", "现病史"], "id", ErrorSink())  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str,
        text_fields: Sequence[str],
        id_field: str | None,
        errors: ErrorSink,
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
        fmt: str | None = None,
        record_fields: Sequence[str] | None = None,
    ) -> None:
        self.reader = RecordReader(
            path,
            text_fields=text_fields,
            id_field=id_field,
            fmt=fmt,
            errors=errors,
            max_chars=max_chars,
            record_fields=record_fields,
        )
        self._size = self.reader.path.stat().st_size
        self.absent_fields = self.reader.absent_fields
        self._parquet_rows: int | None = None
        if self.reader.fmt == "parquet":
            self._parquet_rows = int(self.reader._pq.metadata.num_rows)

    @property
    def rows(self) -> int:
        return self.reader.rows

    @property
    def records(self) -> int:
        return self.reader.records

    @property
    def rejected(self) -> int:
        return self.reader.rejected

    def chunks(self, size: int) -> Iterator[list[Record]]:
        """Records in lists of ``size`` (a fixed count, so chunks repeat exactly on resume)."""
        return self.reader.chunks(size)

    def progress_total(self) -> tuple[int | None, str]:
        if self._parquet_rows is not None:
            return self._parquet_rows, "notes"
        return self._size, "B"

    def progress_position(self) -> int:
        if self._parquet_rows is not None:
            return self.reader.rows
        return self.reader.bytes_read

    def close(self) -> None:
        self.reader.close()


class SqlSource:
    """A SQLite or PostgreSQL table, paged by its id column (see the module docstring).

    Row numbers in error entries are positions in id order (1-based); rows with a NULL id
    have row ``None``. Ids are returned as strings (integers are converted). Within equal
    (duplicate) ids the order is SQLite's ``rowid`` / PostgreSQL's ``ctid``.

    Example:
        >>> src = SqlSource(parse_location("sqlite:///ehr.db?table=notes"), ["text"], "id",
        ...                 ErrorSink())                                   # doctest: +SKIP
    """

    def __init__(
        self,
        location: Location,
        text_fields: Sequence[str],
        id_field: str,
        errors: ErrorSink,
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
        record_fields: Sequence[str] | None = None,
    ) -> None:
        if isinstance(text_fields, str):
            text_fields = (text_fields,)
        self.location = location
        self.text_fields = tuple(text_fields)
        self.record_fields = tuple(dict.fromkeys(record_fields)) if record_fields else None
        self.absent_fields: list[str] = []
        if not self.text_fields and self.record_fields is None:
            raise InputError("at least one text field is needed")
        if len(set(self.text_fields)) != len(self.text_fields):
            raise InputError(f"text fields are repeated: {list(self.text_fields)}")
        self.id_field = id_field
        self.errors = errors
        self.max_chars = int(max_chars)
        self.rows = 0
        self.records = 0
        self.rejected = 0
        self.db = SqlDatabase(location)
        table = location.table or ""
        try:
            columns = self.db.columns(table)
        except self.db.errors as exc:
            self.db.close()
            raise InputError(f"{location.display()}: cannot read the table ({exc})") from None
        if columns is None:
            self.db.close()
            raise InputError(f"{location.display()}: table {table!r} does not exist")
        selected = list(self.text_fields)
        if self.record_fields is not None:
            selected = [f for f in self.record_fields if f in columns]
            self.absent_fields = [f for f in self.record_fields if f not in columns]
            if not selected:
                self.db.close()
                shown = ", ".join(repr(c) for c in columns[:20])
                raise InputError(
                    f"{location.display()}: none of the model's columns "
                    f"({', '.join(repr(f) for f in self.record_fields)}) is in the table "
                    f"(columns: {shown})"
                )
        self._columns = selected
        for name in (*selected, id_field):
            if name not in columns:
                self.db.close()
                role = "id" if name == id_field else "text"
                shown = ", ".join(repr(c) for c in columns[:20])
                raise InputError(
                    f"{location.display()}: {role} column {name!r} is not in the table "
                    f"(columns: {shown})"
                )
        self._table = quote_table(table)
        self._id = quote_identifier(id_field)
        self._select = ", ".join([self._id, *(quote_identifier(f) for f in selected)])
        self._tiebreak = self._find_tiebreak()
        cur = self.db.execute(f"SELECT COUNT(*) FROM {self._table}")
        self._total = int(cur.fetchone()[0])
        cur.close()

    def _find_tiebreak(self) -> str:
        """A physical row key to order rows with equal ids (``rowid`` / ``ctid``), if any."""
        candidate = "rowid" if self.db.kind == "sqlite" else "ctid"
        try:
            self.db.execute(f"SELECT {candidate} FROM {self._table} WHERE 1 = 0").close()
        except self.db.errors:
            self.db.rollback()
            return ""
        return f", {candidate}"

    def progress_total(self) -> tuple[int | None, str]:
        return self._total, "notes"

    def progress_position(self) -> int:
        return self.rows

    def chunks(self, size: int) -> Iterator[list[Record]]:
        """Records in id order, in lists of ``size``."""
        size = max(1, int(size))
        ph = self.db.placeholder
        try:
            self._report_null_ids()
            last: Any = None
            same_as_last = 0  # rows with id == last already read (duplicates across pages)
            position = 0
            while True:
                if last is None:
                    sql = (
                        f"SELECT {self._select} FROM {self._table} WHERE {self._id} IS NOT NULL "
                        f"ORDER BY {self._id}{self._tiebreak} LIMIT {size}"
                    )
                    params: tuple[Any, ...] = ()
                else:
                    sql = (
                        f"SELECT {self._select} FROM {self._table} WHERE {self._id} >= {ph} "
                        f"ORDER BY {self._id}{self._tiebreak} LIMIT {size + same_as_last}"
                    )
                    params = (last,)
                cur = self.db.execute(sql, params)
                page = cur.fetchall()
                cur.close()
                if last is not None:
                    page = page[same_as_last:]
                if not page:
                    return
                chunk: list[Record] = []
                for row in page:
                    position += 1
                    raw_id = row[0]
                    if raw_id == last:
                        same_as_last += 1
                    else:
                        last = raw_id
                        same_as_last = 1
                    rec = self._record(position, raw_id, row[1:])
                    if rec is not None:
                        chunk.append(rec)
                if chunk:
                    yield chunk
                if len(page) < size:
                    return
        except self.db.errors as exc:
            raise InputError(
                f"{self.location.display()}: reading the table failed after row {self.rows} "
                f"({type(exc).__name__})"
            ) from None

    def _report_null_ids(self) -> None:
        cur = self.db.execute(f"SELECT COUNT(*) FROM {self._table} WHERE {self._id} IS NULL")
        nulls = int(cur.fetchone()[0])
        cur.close()
        for _ in range(nulls):
            self._reject(None, None, "bad_id", f"id column {self.id_field!r} is NULL")

    def _reject(self, row: int | None, rid: str | None, code: str, reason: str) -> None:
        self.rows += 1
        self.rejected += 1
        self.errors.add(row, rid, code, reason)  # type: ignore[arg-type]

    def _record(self, row: int, raw_id: Any, values: Sequence[Any]) -> Record | None:
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
            self._reject(
                row,
                None,
                "bad_id",
                f"id column {self.id_field!r} is {describe_type(raw_id)}, "
                "expected a string or integer",
            )
            return None
        rid = str(raw_id)
        if not rid.strip():
            self._reject(row, None, "bad_id", f"id column {self.id_field!r} is empty")
            return None
        if _SURROGATE.search(rid):
            self._reject(row, None, "invalid_unicode", f"id column {self.id_field!r} is invalid")
            return None
        pairs: list[tuple[str, str]] = []
        meta: dict[str, Any] = {}
        if self.record_fields is not None:  # record mode: every field optional
            try:
                pairs, meta = split_record(
                    dict(zip(self._columns, values)), self.record_fields, self.text_fields
                )
            except RowRejected as exc:
                self._reject(row, rid, exc.code, exc.reason)
                return None
            values = ()
        for name, value in zip(self.text_fields, values):
            if not isinstance(value, str):
                what = "null" if value is None else f"{describe_type(value)}, expected a string"
                self._reject(row, rid, "wrong_type", f"field {name!r} is {what}")
                return None
            pairs.append((name, value))
        total = sum(len(v) for _, v in pairs)
        if total > self.max_chars:
            self._reject(
                row,
                rid,
                "too_long",
                f"note is too long ({total} characters > max_chars={self.max_chars})",
            )
            return None
        for name, value in pairs:
            if _SURROGATE.search(value):
                self._reject(row, rid, "invalid_unicode", f"field {name!r} is invalid Unicode")
                return None
        text, sections = join_sections(pairs)
        self.rows += 1
        self.records += 1
        return Record(row=row, id=rid, text=text, sections=sections, meta=meta)

    def close(self) -> None:
        self.db.close()
