"""Streaming readers and writers for note files: TXT, JSON Lines, CSV/TSV (optionally gzipped)
and Parquet.

Reading never stops on a bad row. A row that cannot be used (invalid UTF-8, invalid JSON, a
missing or non-string text field, a note over ``max_chars``...) is reported to an
:class:`ErrorSink` as ``{"row": n, "id": ..., "code": ..., "reason": ...}`` and the run goes on,
so every input row ends up either in the output or in the errors file. Problems with the file
itself (missing, unreadable, wrong format, a column absent from the CSV header or Parquet
schema) raise :class:`~ehrtext.errors.InputError` *before* any row is read. Messages and error
entries name rows by number and id and never contain note text.

Row numbers are 1-based: the physical line number for TXT and JSONL (blank lines are skipped
but still counted), the data row (header excluded) for CSV/TSV and Parquet.

Several text fields are joined into one note, each value preceded by its field name in
``【】`` brackets and separated by a newline, so a section splitter sees the headers::

    text_fields=("主诉", "现病史")  ->  "【主诉】胸痛2天\\n【现病史】患者2天前..."

With a single text field the value is used as is, so offsets point into the original field.
:attr:`Record.sections` gives where each field's value lies in the joined text.

Example:
    >>> from ehrtext.textio import read_records, ErrorSink
    >>> sink = ErrorSink()                                           # doctest: +SKIP
    >>> for rec in read_records("notes.jsonl", id_field="id", errors=sink):  # doctest: +SKIP
    ...     print(rec.row, rec.id, len(rec.text))
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import os
import re
import sys
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import IO, Any

from ehrtext.errors import InputError, describe_type

__all__ = [
    "DEFAULT_MAX_CHARS",
    "FORMATS",
    "ErrorSink",
    "JsonlWriter",
    "LinesWriter",
    "Record",
    "RecordReader",
    "Sections",
    "detect_format",
    "join_sections",
    "open_writer",
    "read_records",
]

DEFAULT_MAX_CHARS = 1_000_000
"""Longest note accepted, in characters; longer ones go to the errors file."""

FORMATS = ("txt", "jsonl", "csv", "tsv", "parquet")
"""Input formats understood by :func:`read_records`."""

EXTENSION_FORMATS = {
    ".txt": "txt",
    ".text": "txt",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_GZIP_MAGIC = b"\x1f\x8b"
_BOM = codecs.BOM_UTF8
_SURROGATE = re.compile("[\ud800-\udfff]")
_READ_ERRORS = (OSError, EOFError, zlib.error)


# --------------------------------------------------------------------------------------------
# Records and errors
# --------------------------------------------------------------------------------------------


Sections = tuple[tuple[str, int, int], ...]
"""``(field, start, end)`` of each text field inside a joined note."""


@dataclass(frozen=True, slots=True)
class Record:
    """One note read from a file.

    Attributes:
        row: 1-based line number (TXT, JSONL) or data row (CSV, TSV, Parquet).
        id: the value of ``id_field`` as a string, or the row number when there is no id field.
        text: the note; several text fields are joined (see :func:`join_sections`).
        sections: ``(field, start, end)`` of each text field's value inside ``text``.
        meta: the ``keep_fields`` of the row (missing ones are ``None``), passed through as is.

    Example:
        >>> rec = Record(row=3, id="3", text="胸痛2天", sections=(("text", 0, 4),))
        >>> rec.field("text")
        '胸痛2天'
    """

    row: int
    id: str
    text: str
    sections: Sections = ()
    meta: dict[str, Any] = dc_field(default_factory=dict)

    def field(self, name: str) -> str:
        """The value of text field ``name`` (a slice of :attr:`text`)."""
        for sec_name, start, end in self.sections:
            if sec_name == name:
                return self.text[start:end]
        raise KeyError(name)


def join_sections(values: Sequence[tuple[str, str]]) -> tuple[str, Sections]:
    """Join ``(field, value)`` pairs into one note with ``【field】`` headers.

    A single pair is returned unchanged (no header), so offsets stay those of the field.

    Example:
        >>> join_sections([("主诉", "胸痛2天"), ("现病史", "无发热")])[0]
        '【主诉】胸痛2天\\n【现病史】无发热'
        >>> join_sections([("text", "胸痛")])
        ('胸痛', (('text', 0, 2),))
    """
    if len(values) == 1:
        name, value = values[0]
        return value, ((name, 0, len(value)),)
    parts: list[str] = []
    sections: list[tuple[str, int, int]] = []
    pos = 0
    for i, (name, value) in enumerate(values):
        header = ("\n" if i else "") + f"【{name}】"
        parts.append(header)
        pos += len(header)
        parts.append(value)
        sections.append((name, pos, pos + len(value)))
        pos += len(value)
    return "".join(parts), tuple(sections)


class ErrorSink:
    """Collects rows that could not be used; writes them as JSON Lines when given a path.

    Each entry is ``{"row": n, "id": id-or-null, "code": short-code, "reason": message}``.
    The file is written to ``path.tmp`` and renamed on :meth:`close`, and it is written even
    when empty, so a stale file from an earlier run is never mistaken for this one's. Entries
    never contain note text. Without a path, entries are kept in memory (up to ``keep``).

    Codes: ``invalid_utf8``, ``invalid_unicode``, ``invalid_json``, ``not_an_object``,
    ``malformed_csv``, ``missing_field``, ``wrong_type``, ``too_long``, ``bad_id``,
    ``empty_record`` (record mode: no field has a value), ``failed`` (processing raised).
    Warnings (:meth:`warn`: the row was still used) carry ``"level": "warning"``.

    Example:
        >>> sink = ErrorSink()
        >>> sink.add(7, "7", "missing_field", "field 'text' is missing")
        >>> sink.count, sink.entries[0]["row"]
        (1, 7)
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, keep: int = 10_000) -> None:
        self.path = Path(path) if path is not None else None
        self.keep = keep
        self.count = 0
        self.codes: Counter[str] = Counter()
        self.warnings = 0
        self.warning_codes: Counter[str] = Counter()
        self.entries: list[dict[str, Any]] = []
        self._writer: _AtomicFile | None = _AtomicFile(self.path) if self.path else None

    def add(self, row: int, id: str | None, code: str, reason: str) -> None:
        """Record one bad row."""
        self.count += 1
        self.codes[code] += 1
        self._write({"row": row, "id": id, "code": code, "reason": reason})

    def warn(self, row: int, id: str | None, code: str, reason: str) -> None:
        """Record a problem with a row that was still used (e.g. a multimodal record scored
        without its unreadable image): written with ``"level": "warning"``, counted in
        :attr:`warnings`, not in :attr:`count`.

        Example:
            >>> sink = ErrorSink()
            >>> sink.warn(2, "p2", "bad_image", "x.png: not an image")
            >>> sink.count, sink.warnings
            (0, 1)
        """
        self.warnings += 1
        self.warning_codes[code] += 1
        self._write({"row": row, "id": id, "code": code, "reason": reason, "level": "warning"})

    def _write(self, entry: dict[str, Any]) -> None:
        if len(self.entries) < self.keep:
            self.entries.append(entry)
        if self._writer is not None:
            self._writer.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def close(self) -> None:
        """Finish the errors file (rename ``path.tmp`` to ``path``)."""
        if self._writer is not None:
            self._writer.commit()

    def abort(self) -> None:
        """Drop the errors file of a run that failed."""
        if self._writer is not None:
            self._writer.abort()

    def __enter__(self) -> ErrorSink:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def detect_format(path: str | os.PathLike[str]) -> str:
    """The input format of ``path`` from its extension (``.gz`` is looked through).

    Example:
        >>> detect_format("notes.jsonl.gz"), detect_format("a.TSV")
        ('jsonl', 'tsv')
    """
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = EXTENSION_FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        known = ", ".join(sorted(EXTENSION_FORMATS))
        raise InputError(
            f"{p}: cannot tell the format from the extension; use one of {known} "
            f"(optionally .gz) or pass the format explicitly ({', '.join(FORMATS)})"
        )
    return fmt


class RowRejected(Exception):
    """A row that cannot be used: ``code`` and ``reason`` (never the row's text)."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def split_record(
    values: Mapping[str, Any],
    record_fields: Sequence[str],
    text_fields: Sequence[str],
    *,
    blank_is_missing: bool = False,
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Record mode, for models that read whole records (image, multimodal): ``(text pairs,
    record)`` of one row. Every field is optional (a missing one is None; with
    ``blank_is_missing``, as for CSV cells, so is ``""``); a present text field must be text.

    Raises:
        RowRejected: ``wrong_type`` (a text field that is not text) or ``empty_record`` (no
            field has a value).

    Example:
        >>> split_record({"note": "胸痛", "age": 70}, ["note", "xray", "age"], ["note"])
        ([('note', '胸痛')], {'note': '胸痛', 'xray': None, 'age': 70})
    """
    pairs: list[tuple[str, str]] = []
    record: dict[str, Any] = {}
    for name in record_fields:
        value = values.get(name)
        if blank_is_missing and value == "":
            value = None
        if name in text_fields and value is not None:
            if not isinstance(value, str):
                what = f"{describe_type(value)}, expected a string"
                raise RowRejected("wrong_type", f"field {name!r} is {what}")
            pairs.append((name, value))
        record[name] = value
    if all(v is None or (isinstance(v, str) and not v.strip()) for v in record.values()):
        raise RowRejected("empty_record", "none of the model's fields has a value")
    return pairs, record


def read_records(
    path: str | os.PathLike[str],
    text_fields: Sequence[str] = ("text",),
    id_field: str | None = None,
    fmt: str | None = None,
    errors: ErrorSink | None = None,
    chunk_size: int = 256,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    keep_fields: Sequence[str] = (),
    record_fields: Sequence[str] | None = None,
) -> RecordReader:
    """Open a note file for streaming; bad rows go to ``errors``.

    The file, its format and its columns are checked now (:class:`InputError` if they are
    wrong); rows are read lazily while iterating. ``chunk_size`` is the number of rows per
    Parquet batch (other formats stream line by line).

    Example:
        >>> sink = ErrorSink("errors.jsonl")                             # doctest: +SKIP
        >>> rd = read_records("notes.csv", ["主诉", "现病史"], "id", errors=sink)  # doctest: +SKIP
        >>> notes = [rec.text for rec in rd]                             # doctest: +SKIP
        >>> rd.rows == rd.records + sink.count                           # doctest: +SKIP
        True
    """
    return RecordReader(
        path,
        text_fields=text_fields,
        id_field=id_field,
        fmt=fmt,
        errors=errors,
        chunk_size=chunk_size,
        max_chars=max_chars,
        keep_fields=keep_fields,
        record_fields=record_fields,
    )


class RecordReader:
    """Iterable over the :class:`Record` s of one file, with counters (see :func:`read_records`).

    Attributes after (or during) iteration: ``rows`` (rows seen), ``records`` (records
    yielded), ``rejected`` (rows sent to the error sink), ``blank`` (blank lines skipped, not
    rows), ``bytes_read`` (bytes of the file consumed, compressed size for ``.gz``).
    ``rows == records + rejected`` always holds.

    Example:
        >>> reader = RecordReader("notes.txt")           # doctest: +SKIP
        >>> texts = [r.text for r in reader]             # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        text_fields: Sequence[str] = ("text",),
        id_field: str | None = None,
        fmt: str | None = None,
        errors: ErrorSink | None = None,
        chunk_size: int = 256,
        max_chars: int = DEFAULT_MAX_CHARS,
        keep_fields: Sequence[str] = (),
        record_fields: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(path)
        if isinstance(text_fields, str):
            text_fields = (text_fields,)
        self.text_fields = tuple(text_fields)
        self.id_field = id_field
        self.keep_fields = tuple(keep_fields)
        # record mode (models that read whole records, e.g. multimodal): every column of
        # ``record_fields`` is optional — per row, and as a column of the file
        self.record_fields = tuple(dict.fromkeys(record_fields)) if record_fields else None
        self.absent_fields: list[str] = []
        self.errors = errors if errors is not None else ErrorSink()
        self.chunk_size = max(1, int(chunk_size))
        self.max_chars = int(max_chars)
        self.rows = 0
        self.records = 0
        self.rejected = 0
        self.blank = 0
        self._raw: IO[bytes] | None = None
        self._bytes_at_close = 0
        self._started = False

        if not self.text_fields and self.record_fields is None:
            raise InputError("at least one text field is needed")
        if len(set(self.text_fields)) != len(self.text_fields):
            raise InputError(f"text fields are repeated: {list(self.text_fields)}")
        if self.record_fields is not None:
            extra = [f for f in self.text_fields if f not in self.record_fields]
            if extra:
                raise InputError(f"text fields {extra} are not among the record fields")
        if fmt is not None:
            fmt = fmt.lower().lstrip(".")
            fmt = {"json": "jsonl", "ndjson": "jsonl", "text": "txt", "pq": "parquet"}.get(fmt, fmt)
            if fmt not in FORMATS:
                raise InputError(f"unknown input format {fmt!r}; use one of {', '.join(FORMATS)}")
        self.fmt = fmt or detect_format(self.path)
        self._check_file()
        if self.fmt == "txt":
            if (
                len(self.text_fields) > 1
                or id_field is not None
                or self.keep_fields
                or self.record_fields is not None
            ):
                raise InputError(
                    f"{self.path}: a .txt file holds one note per line and has no fields; "
                    "text/id/keep fields apply to JSONL, CSV and Parquet input only"
                )
            self._fh = self._open_binary()
        elif self.fmt in ("csv", "tsv"):
            self._open_csv()
        elif self.fmt == "parquet":
            self._open_parquet()
        else:
            self._open_lines()

    # -- opening ---------------------------------------------------------------------------

    def _check_file(self) -> None:
        if not self.path.exists():
            raise InputError(f"{self.path}: input file not found")
        if not self.path.is_file():
            raise InputError(f"{self.path}: not a regular file")
        if not os.access(self.path, os.R_OK):
            raise InputError(f"{self.path}: input file is not readable (permission denied)")

    def _open_binary(self) -> IO[bytes]:
        try:
            raw = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise InputError(f"{self.path}: cannot open input file ({exc.strerror})") from None
        self._raw = raw
        magic = raw.read(2)
        raw.seek(0)
        if magic == _GZIP_MAGIC:
            if self.fmt == "parquet":
                raise InputError(f"{self.path}: gzipped Parquet is not supported")
            return gzip.GzipFile(fileobj=raw, mode="rb")
        return raw

    def _open_lines(self) -> None:
        self._fh = self._open_binary()
        # A JSON array is a common mistake for JSON Lines: say so instead of failing every line.
        try:
            head = self._fh.peek(64) if hasattr(self._fh, "peek") else b""
        except _READ_ERRORS as exc:
            self.close()
            raise InputError(f"{self.path}: cannot read input file ({exc})") from None
        if head.removeprefix(_BOM).lstrip()[:1] == b"[":
            self.close()
            raise InputError(
                f"{self.path}: looks like a JSON array; ehrtext reads JSON Lines "
                "(one JSON object per line)"
            )

    def _open_csv(self) -> None:
        _raise_csv_field_limit()
        binary = self._open_binary()
        self._fh = binary
        self._text = io.TextIOWrapper(
            binary, encoding="utf-8-sig", errors="surrogateescape", newline=""
        )
        self._csv = csv.reader(self._text, delimiter="\t" if self.fmt == "tsv" else ",")
        try:
            header = next(self._csv, None)
        except (csv.Error, *_READ_ERRORS) as exc:
            self.close()
            raise InputError(f"{self.path}: cannot read the CSV header ({exc})") from None
        if header is None:
            self.close()
            raise InputError(f"{self.path}: empty file (no header row)")
        if any(_SURROGATE.search(h) for h in header):
            self.close()
            raise InputError(f"{self.path}: the header row is not valid UTF-8")
        self._header = header
        self._index = self._column_index(header, "CSV header")

    def _open_parquet(self) -> None:
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:  # pragma: no cover - pyarrow is a dependency
            raise InputError("reading Parquet needs pyarrow (pip install pyarrow)") from exc
        raw = self._open_binary()
        try:
            self._pq = pq.ParquetFile(raw)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError...
            self.close()
            raise InputError(
                f"{self.path}: not a readable Parquet file ({type(exc).__name__})"
            ) from None
        names = list(self._pq.schema_arrow.names)
        self._column_index(names, "Parquet schema")

    def _column_index(self, names: list[str], where: str) -> dict[str, int]:
        index: dict[str, int] = {}
        for i, name in enumerate(names):
            index.setdefault(name, i)
        required = self.text_fields if self.record_fields is None else ()
        wanted = [*required, *([self.id_field] if self.id_field else []), *self.keep_fields]
        if self.record_fields is not None:
            present = [f for f in self.record_fields if f in index]
            self.absent_fields = [f for f in self.record_fields if f not in index]
            if not present:
                self.close()
                shown = ", ".join(repr(n) for n in names[:20]) + (" ..." if len(names) > 20 else "")
                raise InputError(
                    f"{self.path}: none of the model's columns "
                    f"({', '.join(repr(f) for f in self.record_fields)}) is in the {where} "
                    f"(columns: {shown})"
                )
            wanted += present
        for name in wanted:
            if name not in index:
                self.close()
                shown = ", ".join(repr(n) for n in names[:20]) + (" ..." if len(names) > 20 else "")
                role = (
                    "text"
                    if name in self.text_fields
                    else "id"
                    if name == self.id_field
                    else "keep"
                )
                raise InputError(
                    f"{self.path}: {role} column {name!r} is not in the {where} (columns: {shown})"
                )
            if names.count(name) > 1:
                self.close()
                raise InputError(f"{self.path}: column {name!r} appears more than once")
        return index

    # -- iteration -------------------------------------------------------------------------

    @property
    def bytes_read(self) -> int:
        """Bytes of the input file consumed so far (compressed bytes for ``.gz``)."""
        raw = self._raw
        if raw is None or raw.closed:
            return self._bytes_at_close
        try:
            return raw.tell()
        except (OSError, ValueError):
            return self._bytes_at_close

    def __iter__(self) -> Iterator[Record]:
        if self._started:
            raise RuntimeError("a RecordReader can be iterated only once; open the file again")
        self._started = True
        try:
            if self.fmt == "txt":
                yield from self._iter_txt()
            elif self.fmt == "jsonl":
                yield from self._iter_jsonl()
            elif self.fmt in ("csv", "tsv"):
                yield from self._iter_csv()
            else:
                yield from self._iter_parquet()
        finally:
            self.close()

    def chunks(self, size: int, max_chars: int | None = None) -> Iterator[list[Record]]:
        """The records in lists of at most ``size`` (and about ``max_chars`` characters).

        Example:
            >>> for chunk in read_records("notes.txt").chunks(64):   # doctest: +SKIP
            ...     print(len(chunk))
        """
        chunk: list[Record] = []
        chars = 0
        for rec in self:
            chunk.append(rec)
            chars += len(rec.text)
            if len(chunk) >= size or (max_chars is not None and chars >= max_chars):
                yield chunk
                chunk = []
                chars = 0
        if chunk:
            yield chunk

    def close(self) -> None:
        """Close the input file (done automatically at the end of iteration)."""
        raw = self._raw
        if raw is not None and not raw.closed:
            try:
                self._bytes_at_close = raw.tell()
            except (OSError, ValueError):
                pass
            raw.close()

    def __enter__(self) -> RecordReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reject(self, row: int, id: str | None, code: str, reason: str) -> None:
        self.rows += 1
        self.rejected += 1
        self.errors.add(row, id, code, reason)

    def _accept(self, rec: Record) -> Record:
        self.rows += 1
        self.records += 1
        return rec

    def _lines(self, limit: int) -> Iterator[tuple[int, bytes | None]]:
        """``(line number, bytes without the newline)``; ``None`` for a line over ``limit``."""
        fh = self._fh
        lineno = 0
        try:
            while True:
                line = fh.readline(limit + 1)
                if not line:
                    return
                lineno += 1
                if len(line) > limit and not line.endswith(b"\n"):
                    # Too long to hold: skip the rest of the line without keeping it.
                    while line and not line.endswith(b"\n"):
                        line = fh.readline(1 << 20)
                    yield lineno, None
                    continue
                if lineno == 1 and line.startswith(_BOM):
                    line = line[len(_BOM) :]
                if line.endswith(b"\n"):
                    line = line[:-1]
                if line.endswith(b"\r"):
                    line = line[:-1]
                yield lineno, line
        except _READ_ERRORS as exc:
            raise InputError(
                f"{self.path}: input file became unreadable after line {lineno} "
                f"({type(exc).__name__}: {exc})"
            ) from None

    def _decode(self, lineno: int, raw: bytes) -> str | None:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._reject(
                lineno,
                None if self.id_field else str(lineno),
                "invalid_utf8",
                f"invalid UTF-8 at byte {exc.start} of the line",
            )
            return None

    def _too_long_line(self, lineno: int) -> None:
        self._reject(
            lineno,
            None if self.id_field else str(lineno),
            "too_long",
            f"line is too long (note over max_chars={self.max_chars})",
        )

    def _iter_txt(self) -> Iterator[Record]:
        name = self.text_fields[0]
        for lineno, raw in self._lines(self.max_chars * 4 + 2):
            if raw is None:
                self._too_long_line(lineno)
                continue
            if not raw.strip():
                self.blank += 1
                continue
            text = self._decode(lineno, raw)
            if text is None:
                continue
            rec = self._build(lineno, str(lineno), [(name, text)], {})
            if rec is not None:
                yield self._accept(rec)

    def _iter_jsonl(self) -> Iterator[Record]:
        # \\uXXXX escapes take 6 bytes a character; other fields may come along too.
        for lineno, raw in self._lines(self.max_chars * 6 + (1 << 20)):
            if raw is None:
                self._too_long_line(lineno)
                continue
            if not raw.strip():
                self.blank += 1
                continue
            line = self._decode(lineno, raw)
            if line is None:
                continue
            fallback_id = None if self.id_field else str(lineno)
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                self._reject(
                    lineno,
                    fallback_id,
                    "invalid_json",
                    f"invalid JSON: {exc.msg} at column {exc.colno}",
                )
                continue
            except RecursionError:
                self._reject(lineno, fallback_id, "invalid_json", "invalid JSON: nested too deep")
                continue
            if not isinstance(obj, dict):
                self._reject(
                    lineno,
                    fallback_id,
                    "not_an_object",
                    f"line is a JSON {_json_kind(obj)}, expected an object",
                )
                continue
            rec = self._from_mapping(lineno, obj)
            if rec is not None:
                yield self._accept(rec)

    def _iter_csv(self) -> Iterator[Record]:
        width = len(self._header)
        index = self._index
        row = 0
        while True:
            try:
                fields = next(self._csv)
            except StopIteration:
                return
            except csv.Error as exc:
                row += 1
                self._reject(
                    row,
                    None if self.id_field else str(row),
                    "malformed_csv",
                    f"malformed CSV row ({exc})",
                )
                continue
            except _READ_ERRORS as exc:
                raise InputError(
                    f"{self.path}: input file became unreadable after data row {row} "
                    f"({type(exc).__name__}: {exc})"
                ) from None
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                self.blank += 1
                continue
            row += 1
            if len(fields) != width:
                self._reject(
                    row,
                    None if self.id_field else str(row),
                    "malformed_csv",
                    f"row has {len(fields)} fields, the header has {width}",
                )
                continue
            obj = {name: fields[i] for name, i in index.items()}
            rec = self._from_mapping(row, obj, from_csv=True)
            if rec is not None:
                yield self._accept(rec)

    def _iter_parquet(self) -> Iterator[Record]:
        present = [f for f in self.record_fields or () if f not in self.absent_fields]
        required = self.text_fields if self.record_fields is None else ()
        columns = list(
            dict.fromkeys(
                [*required, *([self.id_field] if self.id_field else []), *self.keep_fields,
                 *present]
            )
        )
        row = 0
        try:
            batches = self._pq.iter_batches(batch_size=self.chunk_size, columns=columns)
            for batch in batches:
                values = {name: batch.column(name).to_pylist() for name in columns}
                for i in range(batch.num_rows):
                    row += 1
                    obj = {name: values[name][i] for name in columns}
                    rec = self._from_mapping(row, obj)
                    if rec is not None:
                        yield self._accept(rec)
        except InputError:
            raise
        except Exception as exc:  # corrupt pages surface as ArrowInvalid / OSError
            if row == 0:
                raise InputError(
                    f"{self.path}: cannot read Parquet data ({type(exc).__name__})"
                ) from None
            raise InputError(
                f"{self.path}: Parquet data became unreadable after data row {row} "
                f"({type(exc).__name__})"
            ) from None

    # -- validation ------------------------------------------------------------------------

    def _from_mapping(
        self, row: int, obj: dict[str, Any], *, from_csv: bool = False
    ) -> Record | None:
        if self.id_field is None:
            rid = str(row)
        else:
            rid = self._get_id(row, obj, from_csv)
            if rid is None:
                return None
        if self.record_fields is not None:
            return self._from_record(row, rid, obj, from_csv)
        values: list[tuple[str, str]] = []
        for name in self.text_fields:
            if name not in obj:
                self._reject(row, rid, "missing_field", f"field {name!r} is missing")
                return None
            value = obj[name]
            if not isinstance(value, str):
                what = "null" if value is None else f"{describe_type(value)}, expected a string"
                self._reject(row, rid, "wrong_type", f"field {name!r} is {what}")
                return None
            if from_csv and _SURROGATE.search(value):
                self._reject(row, rid, "invalid_utf8", f"field {name!r} is not valid UTF-8")
                return None
            values.append((name, value))
        meta = {name: obj.get(name) for name in self.keep_fields}
        return self._build(row, rid, values, meta)

    def _from_record(
        self, row: int, rid: str, obj: dict[str, Any], from_csv: bool
    ) -> Record | None:
        """Record mode (see :func:`split_record`); an empty CSV cell is missing."""
        if from_csv:
            for name in self.record_fields or ():
                value = obj.get(name)
                if isinstance(value, str) and _SURROGATE.search(value):
                    self._reject(row, rid, "invalid_utf8", f"field {name!r} is not valid UTF-8")
                    return None
        try:
            values, meta = split_record(
                obj, self.record_fields or (), self.text_fields, blank_is_missing=from_csv
            )
        except RowRejected as exc:
            self._reject(row, rid, exc.code, exc.reason)
            return None
        meta.update({name: obj.get(name) for name in self.keep_fields})
        return self._build(row, rid, values, meta)

    def _get_id(self, row: int, obj: dict[str, Any], from_csv: bool) -> str | None:
        name = self.id_field
        assert name is not None
        if name not in obj:
            self._reject(row, None, "bad_id", f"id field {name!r} is missing")
            return None
        value = obj[name]
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            what = "null" if value is None else describe_type(value)
            self._reject(
                row, None, "bad_id", f"id field {name!r} is {what}, expected a string or integer"
            )
            return None
        rid = str(value)
        if not rid.strip():
            self._reject(row, None, "bad_id", f"id field {name!r} is empty")
            return None
        if _SURROGATE.search(rid):
            code = "invalid_utf8" if from_csv else "invalid_unicode"
            self._reject(row, None, code, f"id field {name!r} is not valid Unicode")
            return None
        return rid

    def _build(
        self, row: int, rid: str, values: list[tuple[str, str]], meta: dict[str, Any]
    ) -> Record | None:
        total = sum(len(v) for _, v in values)
        if total > self.max_chars:
            self._reject(
                row,
                rid,
                "too_long",
                f"note is too long ({total} characters > max_chars={self.max_chars})",
            )
            return None
        for name, value in values:
            if _SURROGATE.search(value):
                self._reject(
                    row,
                    rid,
                    "invalid_unicode",
                    f"field {name!r} contains an unpaired surrogate (invalid Unicode)",
                )
                return None
        text, sections = join_sections(values)
        return Record(row=row, id=rid, text=text, sections=sections, meta=meta)


def _json_kind(obj: object) -> str:
    if isinstance(obj, list):
        return "array"
    if isinstance(obj, str):
        return "string"
    if obj is None:
        return "null"
    if isinstance(obj, bool):
        return "boolean"
    return "number"


_CSV_LIMIT_RAISED = False


def _raise_csv_field_limit() -> None:
    """Let the csv module read fields of any size (the default stops at 128 KiB)."""
    global _CSV_LIMIT_RAISED
    if _CSV_LIMIT_RAISED:
        return
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            break
        except OverflowError:  # C long is 32-bit on Windows
            limit //= 2
    _CSV_LIMIT_RAISED = True


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


class _AtomicFile:
    """A UTF-8 text file written to ``path.tmp`` and renamed to ``path`` on commit.

    A ``.gz`` path is gzip-compressed.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            binary: IO[bytes] = open(self.tmp, "wb")  # noqa: SIM115
        except OSError as exc:
            raise InputError(f"{self.path}: cannot write output ({exc.strerror})") from None
        self._binary = binary
        self._gz: gzip.GzipFile | None = None
        if self.path.suffix.lower() == ".gz":
            self._gz = gzip.GzipFile(fileobj=binary, mode="wb", mtime=0)
            target: IO[bytes] = self._gz
        else:
            target = binary
        self._fh = io.TextIOWrapper(target, encoding="utf-8", newline="\n")
        self.closed = False

    def write(self, s: str) -> None:
        self._fh.write(s)

    def commit(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._fh.flush()
        self._fh.detach()  # so its finalizer does not touch the closed streams
        if self._gz is not None:
            self._gz.close()
        self._binary.flush()
        os.fsync(self._binary.fileno())
        self._binary.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self._fh.close()  # closes the gzip stream and the file too
        except Exception:  # noqa: BLE001 - best effort while failing
            pass
        finally:
            self._binary.close()
            self.tmp.unlink(missing_ok=True)


class JsonlWriter:
    """Writes one JSON object per line, atomically (``path.tmp`` renamed on success).

    Use as a context manager: the file appears only if the block finishes without an
    exception. Non-ASCII text is written as is (UTF-8). A ``.gz`` path is compressed.

    Example:
        >>> with JsonlWriter("out.jsonl") as w:                   # doctest: +SKIP
        ...     w.write({"id": "1", "text": "胸痛"})
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file = _AtomicFile(path)
        self.count = 0

    def write(self, obj: Any) -> None:
        """Write one object as a line."""
        self._file.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self.count += 1

    def write_raw(self, line: str) -> None:
        """Write an already serialized JSON line (without its newline)."""
        self._file.write(line + "\n")
        self.count += 1

    def close(self) -> None:
        """Finish the file (rename ``path.tmp`` to ``path``)."""
        self._file.commit()

    def abort(self) -> None:
        """Drop the partial file."""
        self._file.abort()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class LinesWriter(JsonlWriter):
    """Writes plain text lines (e.g. word2vec input), atomically like :class:`JsonlWriter`.

    A newline inside a line is replaced by a space so each call writes exactly one line.

    Example:
        >>> with LinesWriter("corpus.txt") as w:                  # doctest: +SKIP
        ...     w.write("患者 胸痛 2天")
    """

    def write(self, obj: Any) -> None:
        """Write one line of text."""
        line = str(obj)
        if "\n" in line or "\r" in line:
            line = line.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
        self._file.write(line + "\n")
        self.count += 1

    def write_lines(self, lines: Iterable[str]) -> None:
        """Write several lines."""
        for line in lines:
            self.write(line)


def open_writer(path: str | os.PathLike[str], fmt: str = "jsonl") -> JsonlWriter:
    """A :class:`JsonlWriter` (``fmt="jsonl"``) or :class:`LinesWriter` (``fmt="lines"``).

    Example:
        >>> with open_writer("tokens.txt", "lines") as w:         # doctest: +SKIP
        ...     w.write("胸痛 2天")
    """
    if fmt == "jsonl":
        return JsonlWriter(path)
    if fmt == "lines":
        return LinesWriter(path)
    raise InputError(f"unknown output format {fmt!r}; use 'jsonl' or 'lines'")
