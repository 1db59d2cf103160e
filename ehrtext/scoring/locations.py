"""Where notes come from and scores go: a file path or a SQL table URI.

Two kinds of location are understood:

* a file path: ``notes.jsonl``, ``notes.csv``, ``notes.parquet`` ... (the format comes from the
  extension, as in :mod:`ehrtext.textio`);
* a SQL table: ``sqlite:///notes.db?table=notes`` (a relative path; ``sqlite:////abs/notes.db``
  for an absolute one) or ``postgresql://user@127.0.0.1:5432/db?table=notes`` (any libpq
  connection URI; ``postgres://`` works too). ``table`` may be schema-qualified
  (``?table=clinical.notes``).

Example:
    >>> loc = parse_location("sqlite:///notes.db?table=notes")
    >>> loc.kind, loc.path, loc.table
    ('sqlite', 'notes.db', 'notes')
    >>> parse_location("out/scores.parquet").kind
    'file'
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ehrtext.errors import InputError

__all__ = ["Location", "parse_location", "quote_identifier", "quote_table"]

_SQL_SCHEMES = {"sqlite": "sqlite", "postgresql": "postgresql", "postgres": "postgresql"}
_IDENTIFIER_PART = re.compile(r"^[^\x00\"]+$")


@dataclass(frozen=True)
class Location:
    """A parsed input or output location.

    Attributes:
        kind: ``"file"``, ``"sqlite"`` or ``"postgresql"``.
        path: the file path (``file``, ``sqlite``); ``None`` for PostgreSQL.
        table: the table name (SQL kinds).
        dsn: the libpq connection URI without ehrtext's own ``table`` parameter (PostgreSQL).
        original: the string as given.

    Example:
        >>> parse_location("postgresql://me@127.0.0.1:5432/ehr?table=notes").dsn
        'postgresql://me@127.0.0.1:5432/ehr'
    """

    kind: str
    path: str | None = None
    table: str | None = None
    dsn: str | None = None
    original: str = ""

    @property
    def is_sql(self) -> bool:
        """True for a SQL table."""
        return self.kind in ("sqlite", "postgresql")

    def display(self) -> str:
        """A name for messages; a PostgreSQL password is never shown."""
        if self.kind == "postgresql":
            parts = urlsplit(self.dsn or "")
            host = parts.hostname or ""
            port = f":{parts.port}" if parts.port else ""
            user = f"{parts.username}@" if parts.username else ""
            return f"postgresql://{user}{host}{port}{parts.path}?table={self.table}"
        if self.kind == "sqlite":
            return f"sqlite:///{self.path}?table={self.table}"
        return str(self.path)


def parse_location(value: str | os.PathLike[str]) -> Location:
    """Parse a file path or a ``sqlite:///…?table=`` / ``postgresql://…?table=`` URI.

    Raises :class:`~ehrtext.errors.InputError` for a SQL URI without ``table``.

    Example:
        >>> parse_location("sqlite:////data/ehr.db?table=notes").path
        '/data/ehr.db'
    """
    text = os.fspath(value)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme not in _SQL_SCHEMES:
        if scheme:
            raise InputError(
                f"{text.split('?', 1)[0]}: unknown location scheme {scheme!r}; use a file path, "
                "sqlite:///file.db?table=NAME or postgresql://user@host:port/db?table=NAME"
            )
        return Location(kind="file", path=text, original=text)
    kind = _SQL_SCHEMES[scheme]
    if kind == "sqlite":
        rest = text[len("sqlite://") :]
        if not rest.startswith("/"):
            raise InputError("a SQLite URI looks like sqlite:///relative.db?table=NAME")
        rest = rest[1:]
        path, _, query = rest.partition("?")
        params = dict(parse_qsl(query, keep_blank_values=True))
        table = params.get("table")
        if not path:
            raise InputError("the SQLite URI names no database file (sqlite:///file.db?table=…)")
        if not table:
            raise InputError(f"sqlite:///{path}: add ?table=NAME to the URI")
        _check_identifier(table)
        return Location(kind=kind, path=path, table=table, original=text)
    parts = urlsplit(text)
    params = parse_qsl(parts.query, keep_blank_values=True)
    table = next((v for k, v in params if k == "table"), None)
    rest = [(k, v) for k, v in params if k != "table"]
    dsn = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(rest), ""))
    loc = Location(kind=kind, table=table, dsn=dsn, original=text)
    if not table:
        raise InputError(f"{loc.display()}: add ?table=NAME to the PostgreSQL URI")
    _check_identifier(table)
    return loc


def _check_identifier(name: str) -> None:
    for part in name.split("."):
        if not part or not _IDENTIFIER_PART.match(part):
            raise InputError(f"invalid table name {name!r}")


def quote_identifier(name: str) -> str:
    """A column name in double quotes (a double quote inside is doubled).

    Example:
        >>> quote_identifier('p_a"b')
        '"p_a""b"'
    """
    return '"' + name.replace('"', '""') + '"'


def quote_table(name: str) -> str:
    """A table name in double quotes, ``schema.table`` quoted part by part.

    Example:
        >>> quote_table("clinical.notes")
        '"clinical"."notes"'
    """
    return ".".join(quote_identifier(part) for part in name.split("."))


def file_path(loc: Location) -> Path:
    """The path of a file location."""
    assert loc.path is not None
    return Path(loc.path)
