"""Small helpers shared by the SQL source and sink: connecting, placeholders, column lists.

SQLite uses the standard library's :mod:`sqlite3`; PostgreSQL uses psycopg 3
(``pip install "ehrtext[sql]"``), imported only when a ``postgresql://`` location is used.

Example:
    >>> from ehrtext.scoring.locations import parse_location
    >>> db = SqlDatabase(parse_location("sqlite:///:memory:?table=notes"))
    >>> db.placeholder
    '?'
    >>> db.close()
"""

from __future__ import annotations

import sqlite3
from typing import Any

from ehrtext.errors import InputError
from ehrtext.scoring.locations import Location, quote_table

__all__ = ["SqlDatabase"]


class SqlDatabase:
    """One DB-API connection to a SQLite file or a PostgreSQL server.

    ``placeholder`` is the parameter marker (``?`` or ``%s``). Connection errors become
    :class:`~ehrtext.errors.InputError` naming the location (never a password).

    Example:
        >>> db = SqlDatabase(parse_location("sqlite:///:memory:?table=t"))  # doctest: +SKIP
        >>> db.table_exists("t")                                            # doctest: +SKIP
        False
    """

    def __init__(self, location: Location) -> None:
        self.location = location
        self.kind = location.kind
        self.placeholder = "?" if self.kind == "sqlite" else "%s"
        self.conn: Any
        if self.kind == "sqlite":
            assert location.path is not None
            try:
                # isolation_level=None: autocommit; transactions are opened explicitly (BEGIN).
                self.conn = sqlite3.connect(location.path, timeout=60, isolation_level=None)
                self.conn.execute("SELECT 1")
            except sqlite3.Error as exc:
                raise InputError(
                    f"{location.display()}: cannot open the database ({exc})"
                ) from None
        elif self.kind == "postgresql":
            try:
                import psycopg
            except ImportError:
                raise InputError(
                    "PostgreSQL locations need psycopg 3: pip install 'ehrtext[sql]' "
                    "(or pip install 'psycopg[binary]')"
                ) from None
            try:
                self.conn = psycopg.connect(location.dsn or "", autocommit=True)
            except psycopg.Error as exc:
                reason = (
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                )
                raise InputError(f"{location.display()}: cannot connect ({reason})") from None
        else:  # pragma: no cover - guarded by the callers
            raise InputError(f"{location.display()}: not a SQL location")

    @property
    def errors(self) -> tuple[type[BaseException], ...]:
        """The driver's exception base classes."""
        if self.kind == "sqlite":
            return (sqlite3.Error,)
        import psycopg

        return (psycopg.Error,)

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Any:
        """Execute one statement and return the cursor."""
        cur = self.conn.cursor()
        cur.execute(sql, params)
        return cur

    def columns(self, table: str) -> list[str] | None:
        """The column names of ``table``, or ``None`` when it does not exist."""
        if not self.table_exists(table):
            return None
        cur = self.execute(f"SELECT * FROM {quote_table(table)} WHERE 1 = 0")
        names = [d[0] for d in cur.description]
        cur.close()
        return names

    def table_exists(self, table: str) -> bool:
        """Whether ``table`` (optionally ``schema.table``) exists."""
        if self.kind == "sqlite":
            schema, _, name = table.rpartition(".")
            master = f"{quote_table(schema)}.sqlite_master" if schema else "sqlite_master"
            cur = self.execute(
                f"SELECT 1 FROM {master} WHERE type IN ('table', 'view') AND name = ?", (name,)
            )
        else:
            cur = self.execute("SELECT to_regclass(%s) IS NOT NULL", (quote_table(table),))
            row = cur.fetchone()
            cur.close()
            return bool(row and row[0])
        row = cur.fetchone()
        cur.close()
        return row is not None

    def begin(self) -> None:
        """Open a transaction (committed by :meth:`commit`)."""
        if self.kind == "sqlite":
            self.conn.execute("BEGIN IMMEDIATE")
        else:
            self.conn.autocommit = False

    def commit(self) -> None:
        """Commit the open transaction."""
        if self.kind == "sqlite":
            self.conn.execute("COMMIT")
        else:
            self.conn.commit()
            self.conn.autocommit = True

    def rollback(self) -> None:
        """Roll the open transaction back (best effort)."""
        try:
            if self.kind == "sqlite":
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
            else:
                self.conn.rollback()
                self.conn.autocommit = True
        except Exception:  # noqa: BLE001 - the connection may be gone already
            pass

    def close(self) -> None:
        """Close the connection."""
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001
            pass
