"""Datasets for the disease-risk models: read, describe the task, check rows, tokenize, split,
build the vocabulary, batch.

The pieces, in the order a training run uses them:

* :func:`load_dataset` reads JSONL / CSV / TSV / Parquet files (or lists of them) and SQL
  tables or queries (``sqlite:///notes.db?table=notes``, ``postgresql://…?query=SELECT…``)
  into a :class:`datasets.Dataset` (Arrow-backed, memory-mapped, cached by ``datasets``).
* :class:`TaskSpec` says which fields hold the text (one, or several section fields joined with
  ``【主诉】…`` markers) and the labels (one label, a multi-label list or ``label_sep``-joined
  string, or one 0/1 column per disease), plus optional id and patient fields.
* :func:`find_bad_rows` names every unusable row (missing / non-text / empty text, missing or
  unknown label) by row number and id, never by content; :func:`tokenize_dataset` refuses them
  with an :class:`~ehrtext.errors.InputError` (``bad_rows="error"``) or drops them with a
  report (``bad_rows="skip"``) *before* any worker starts.
* :func:`tokenize_dataset` adds ``tokens`` (token norms from :class:`ehrtext.text.Tokenizer`)
  and ``target`` through ``Dataset.map(num_proc=…)``; each worker builds its tokenizer once, and
  the fingerprint is computed from the input fingerprint, the task and the tokenizer's settings
  and dictionary hash, so a re-run is served from the ``datasets`` cache.
* :func:`split_dataset` / :func:`kfold_indices`: deterministic stratified splits, grouped by
  patient when ``patient_field`` is set (no patient in two splits).
* :class:`Vocab` is built from the training split only; :func:`encode_dataset` adds
  ``input_ids``; :class:`LengthBucketSampler` and :func:`collate` make padded batches of
  similar lengths for packed RNNs (torch is imported inside :func:`collate` only).

Example:
    >>> from ehrtext.data import TaskSpec, load_dataset, tokenize_dataset, split_dataset, Vocab
    >>> spec = TaskSpec(text_fields=["text"], task="multiclass", label_field="label")
    >>> ds = load_dataset("train.jsonl")                                  # doctest: +SKIP
    >>> spec = spec.resolve(ds)          # labels taken from the data, sorted  # doctest: +SKIP
    >>> parts = split_dataset(tokenize_dataset(ds, spec), spec, val_fraction=0.1)  # doctest: +SKIP
    >>> vocab = Vocab.build(parts["train"]["tokens"], min_freq=2)        # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl, urlencode

import numpy as np

from ehrtext.errors import InputError, describe_type

if TYPE_CHECKING:  # pragma: no cover
    import datasets

logger = logging.getLogger(__name__)

__all__ = [
    "BadRow",
    "LengthBucketSampler",
    "TASKS",
    "TaskSpec",
    "Vocab",
    "collate",
    "encode_dataset",
    "find_bad_rows",
    "kfold_indices",
    "load_dataset",
    "split_dataset",
    "tokenize_dataset",
]

TASKS = ("binary", "multiclass", "multilabel")
PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
# bump when the output of tokenize_dataset changes for the same input (invalidates caches)
_TOKENIZE_VERSION = 1
_SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_MAX_SHOWN = 5  # bad rows named in an exception message


# --------------------------------------------------------------------------------------------
# the task


@dataclass
class TaskSpec:
    """What a dataset's rows mean: which fields are text, which are labels.

    Args:
        text_fields: one text field, or several section fields joined in this order with
            ``【name】`` markers (a missing or empty section is left out).
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        label_field: the label column: one class name (binary / multiclass; for binary also
            0/1 or true/false), or for multilabel a list of names or a ``label_sep``-joined
            string (an empty list or string means "no label").
        label_fields: instead of ``label_field``: one 0/1 column per label (multilabel), or a
            single 0/1 column (binary).
        labels: the label names in model order. ``None``: taken from the data by
            :meth:`resolve` (sorted), or ``label_fields`` themselves.
        id_field: a row id, used in error reports and predictions.
        patient_field: a patient id: splits keep each patient's rows together.
        label_sep: separator of a multilabel string (``"I10;E11"`` with ``";"``).
        ignore_unknown_labels: multilabel only: drop names not in ``labels`` (e.g. rare codes
            left out of the model) instead of reporting the row.

    Example:
        >>> spec = TaskSpec(["主诉", "现病史"], "multilabel", label_field="codes", label_sep=";",
        ...                 labels=["E11", "I10"])
        >>> spec.join_text({"主诉": "胸痛2天", "现病史": "无发热"})
        '【主诉】胸痛2天\\n【现病史】无发热'
        >>> spec.target({"codes": "I10;E11"})
        [1, 1]
    """

    text_fields: list[str]
    task: str = "multiclass"
    label_field: str | None = None
    label_fields: list[str] | None = None
    labels: list[str] | None = None
    id_field: str | None = None
    patient_field: str | None = None
    label_sep: str | None = None
    ignore_unknown_labels: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.text_fields, str):
            self.text_fields = [self.text_fields]
        self.text_fields = list(self.text_fields)
        if not self.text_fields or not all(isinstance(f, str) and f for f in self.text_fields):
            raise InputError("TaskSpec.text_fields must name at least one text field")
        if len(set(self.text_fields)) != len(self.text_fields):
            raise InputError("TaskSpec.text_fields names a field twice")
        if self.task not in TASKS:
            raise InputError(f"TaskSpec.task must be one of {TASKS}, got {self.task!r}")
        if (self.label_field is None) == (self.label_fields is None):
            raise InputError("TaskSpec needs exactly one of label_field or label_fields")
        if self.label_fields is not None:
            self.label_fields = list(self.label_fields)
            if not self.label_fields:
                raise InputError("TaskSpec.label_fields is empty")
            if self.task == "multiclass":
                raise InputError(
                    "label_fields (one 0/1 column per label) fit 'multilabel' or 'binary'; "
                    "for one class per row use label_field"
                )
            if self.task == "binary" and len(self.label_fields) != 1:
                raise InputError("a binary task takes one 0/1 column in label_fields")
        if self.labels is not None:
            self.labels = [str(x) for x in self.labels]
            if len(set(self.labels)) != len(self.labels):
                raise InputError("TaskSpec.labels names a label twice")
            if self.task == "binary" and len(self.labels) != 2 and self.label_fields is None:
                raise InputError("a binary task has two labels: [negative, positive]")
            if self.label_fields is not None and self.task == "multilabel":
                if len(self.labels) != len(self.label_fields):
                    raise InputError("labels and label_fields must have the same length")
        elif self.label_fields is not None:
            self.labels = list(self.label_fields)
        elif self.task == "binary":
            self.labels = ["0", "1"]

    # ---- (de)serialisation ---------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (``TaskSpec.from_dict(spec.to_dict()) == spec``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskSpec:
        """Rebuild from :meth:`to_dict` (unknown keys are an error: they are likely typos)."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise InputError(f"unknown TaskSpec settings: {sorted(unknown)}")
        return cls(**dict(data))

    @property
    def num_labels(self) -> int:
        """Number of model outputs: 1 for binary, else the number of labels."""
        if self.labels is None:
            raise InputError("the labels are not known yet: call spec.resolve(dataset) first")
        return 1 if self.task == "binary" else len(self.labels)

    @property
    def columns(self) -> list[str]:
        """The dataset columns this task reads."""
        cols = list(self.text_fields)
        cols += [self.label_field] if self.label_field else list(self.label_fields or [])
        for extra in (self.id_field, self.patient_field):
            if extra and extra not in cols:
                cols.append(extra)
        return cols

    def resolve(self, ds: datasets.Dataset | Sequence[Mapping[str, Any]]) -> TaskSpec:
        """A copy with ``labels`` filled in from the data (sorted names) when they are None.

        Rows whose label is missing are skipped here (:func:`find_bad_rows` reports them).
        """
        if self.labels is not None:
            return self
        if self.label_field is None:  # label_fields set labels in __post_init__
            return self
        values = _column(ds, self.label_field)
        names: set[str] = set()
        for value in values:
            if self.task == "multilabel":
                try:
                    names.update(self._label_list(value))
                except (InputError, TypeError):
                    continue
            else:
                key = _label_key(value)
                if key is not None:
                    names.add(key)
        if not names:
            raise InputError(f"no labels found in field {self.label_field!r}")
        return TaskSpec.from_dict({**self.to_dict(), "labels": sorted(names)})

    # ---- one record ----------------------------------------------------------------------

    def join_text(self, record: Mapping[str, Any], row: int | None = None) -> str:
        """The note of ``record``: the text field, or its sections joined with markers.

        Raises:
            InputError: a text field holds something other than a string, or every text field
                is missing or empty (the message names the row and field, never the text).
        """
        where = _where(row, record, self.id_field)
        if len(self.text_fields) == 1:
            name = self.text_fields[0]
            value = record.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                raise InputError(f"{where}: text field {name!r} is missing")
            if not isinstance(value, str):
                raise InputError(
                    f"{where}: text field {name!r} holds {describe_type(value)}, not text"
                )
            if not value.strip():
                raise InputError(f"{where}: text field {name!r} is empty")
            return value
        parts: list[str] = []
        for name in self.text_fields:
            value = record.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if not isinstance(value, str):
                raise InputError(
                    f"{where}: text field {name!r} holds {describe_type(value)}, not text"
                )
            value = value.strip()
            if value:
                parts.append(("\n" if parts else "") + f"【{name}】" + value)
        if not parts:
            raise InputError(f"{where}: every text field {self.text_fields} is missing or empty")
        return "".join(parts)

    def target(self, record: Mapping[str, Any], row: int | None = None) -> int | list[int]:
        """The training target of ``record``: a class index (binary: 0/1, multiclass: the
        position in ``labels``) or a multi-hot list (multilabel).

        Raises:
            InputError: the label is missing, malformed or not among ``labels``.
        """
        where = _where(row, record, self.id_field)
        if self.labels is None:
            raise InputError("the labels are not known yet: call spec.resolve(dataset) first")
        if self.label_fields is not None:
            flags = []
            for name in self.label_fields:
                if name not in record:
                    raise InputError(f"{where}: label column {name!r} is missing")
                flag = _flag(record[name])
                if flag is None:
                    raise InputError(
                        f"{where}: label column {name!r} must be 0/1 or true/false, "
                        f"got {_show(record[name])}"
                    )
                flags.append(flag)
            return flags[0] if self.task == "binary" else flags
        value = record.get(self.label_field)
        if self.task == "multilabel":
            try:
                names = self._label_list(value)
            except InputError as exc:
                raise InputError(f"{where}: {exc}") from None
            index = {name: i for i, name in enumerate(self.labels)}
            hot = [0] * len(self.labels)
            for name in names:
                i = index.get(name)
                if i is None:
                    if self.ignore_unknown_labels:
                        continue
                    raise InputError(
                        f"{where}: label {_show(name)} is not one of the {len(self.labels)} "
                        "labels (set ignore_unknown_labels=True to drop unknown ones)"
                    )
                hot[i] = 1
            return hot
        key = _label_key(value)
        if key is None:
            raise InputError(f"{where}: label field {self.label_field!r} is missing")
        try:
            return self.labels.index(key)
        except ValueError:
            pass
        if self.task == "binary":
            flag = _flag(value)
            if flag is not None:
                return flag
        raise InputError(
            f"{where}: label {_show(value)} is not one of the labels {_show(self.labels)}"
        )

    def _label_list(self, value: Any) -> list[str]:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise InputError(f"label field {self.label_field!r} is missing")
        if isinstance(value, str):
            if self.label_sep is None:
                raise InputError(
                    f"label field {self.label_field!r} is a string: set label_sep to split it"
                )
            return [p.strip() for p in value.split(self.label_sep) if p.strip()]
        if isinstance(value, (list, tuple, np.ndarray)):
            out = []
            for item in value:
                key = _label_key(item)
                if key is None:
                    raise InputError(f"label field {self.label_field!r} holds an empty name")
                out.append(key)
            return out
        raise InputError(
            f"label field {self.label_field!r} holds {describe_type(value)}, "
            "expected a list of names or a separated string"
        )


def _where(row: int | None, record: Mapping[str, Any] | None, id_field: str | None) -> str:
    parts = []
    if row is not None:
        parts.append(f"row {row}")
    if id_field and record is not None and record.get(id_field) is not None:
        parts.append(f"id {_show(record.get(id_field))}")
    return " ".join(parts) if parts else "record"


def _show(value: Any, limit: int = 40) -> str:
    """A short repr of a label or id (never used for note text)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _label_key(value: Any) -> str | None:
    """A class label as the string it is compared by (``1``, ``1.0`` and ``"1"`` agree)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    if isinstance(value, (np.integer,)):
        return str(int(value))
    text = str(value).strip()
    return text or None


def _flag(value: Any) -> int | None:
    """0/1 from a 0/1 column value; None when it is not one."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return int(value)
    if isinstance(value, float) and value in (0.0, 1.0):
        return int(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("0", "false", "no"):
            return 0
        if v in ("1", "true", "yes"):
            return 1
    return None


def _column(ds: Any, name: str) -> list[Any]:
    if hasattr(ds, "column_names"):
        if name not in ds.column_names:
            raise InputError(f"the dataset has no column {name!r} (it has {ds.column_names})")
        return list(ds[name])
    return [rec.get(name) for rec in ds]


# --------------------------------------------------------------------------------------------
# reading


def _require_datasets():
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise InputError(
            "reading datasets needs the 'datasets' package: pip install 'ehrtext[models]'"
        ) from exc
    return datasets


def _file_format(path: str) -> str:
    name = path.lower()
    if name.endswith((".gz", ".bz2", ".xz", ".zst")):
        name = name.rsplit(".", 1)[0]
    for ext, fmt in (
        (".jsonl", "json"),
        (".json", "json"),
        (".ndjson", "json"),
        (".csv", "csv"),
        (".tsv", "tsv"),
        (".parquet", "parquet"),
        (".pq", "parquet"),
    ):
        if name.endswith(ext):
            return fmt
    raise InputError(
        f"{path}: cannot tell the format from the extension "
        "(use .jsonl, .csv, .tsv or .parquet, or pass format=)"
    )


def _is_sql_uri(source: str) -> bool:
    scheme = source.split("://", 1)[0].split("+", 1)[0].lower() if "://" in source else ""
    return scheme in _SQL_SCHEMES


def _sql_query(uri: str) -> tuple[str, str]:
    """(query, connection URI without the ``table``/``query`` parameters)."""
    base, _, query_string = uri.partition("?")
    params = parse_qsl(query_string, keep_blank_values=True)
    table = [v for k, v in params if k == "table"]
    query = [v for k, v in params if k == "query"]
    rest = [(k, v) for k, v in params if k not in ("table", "query")]
    con = base + ("?" + urlencode(rest) if rest else "")
    if len(table) + len(query) != 1:
        raise InputError(
            "a SQL source needs exactly one of ?table=NAME or ?query=SELECT… "
            "(e.g. sqlite:///notes.db?table=notes)"
        )
    if table:
        name = table[0]
        if not _IDENTIFIER.match(name):
            raise InputError(
                f"table name {_show(name)} is not a plain identifier; use ?query= instead"
            )
        return f"SELECT * FROM {name}", con
    if not query[0].lstrip().lower().startswith(("select", "with")):
        raise InputError("the ?query= of a SQL source must be a SELECT (or WITH … SELECT)")
    return query[0], con


def load_dataset(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    format: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Read files or a SQL table / query into one :class:`datasets.Dataset`.

    Args:
        source: a path (``.jsonl``, ``.json``, ``.csv``, ``.tsv``, ``.parquet``, optionally
            compressed), a list of paths of one format, or a SQL URI:
            ``sqlite:///notes.db?table=notes``, ``postgresql://user@host/db?query=SELECT…``
            (any SQLAlchemy URI; needs SQLAlchemy ≥ 2.0.42).
        format: ``"json"``, ``"csv"``, ``"tsv"`` or ``"parquet"`` when the extension does not
            say it.
        cache_dir: the ``datasets`` cache folder (default: ``HF_DATASETS_CACHE``). File sources
            are converted to Arrow once and memory-mapped afterwards.
        num_proc: processes for the conversion of many files.

    Raises:
        InputError: a missing file, an unknown format, an unreadable file (the message names
            the file and, for JSON Lines, the first bad line), a bad SQL URI or query.

    Example:
        >>> ds = load_dataset("notes.jsonl")                              # doctest: +SKIP
        >>> ds = load_dataset("sqlite:///notes.db?table=notes")           # doctest: +SKIP
    """
    dsets = _require_datasets()
    if isinstance(source, (str, os.PathLike)) and _is_sql_uri(str(source)):
        return _load_sql(dsets, str(source), cache_dir)
    paths = [str(source)] if isinstance(source, (str, os.PathLike)) else [str(p) for p in source]
    if not paths:
        raise InputError("no input files given")
    for p in paths:
        if not Path(p).is_file():
            raise InputError(f"{p}: no such file")
    fmts = {format or _file_format(p) for p in paths}
    if len(fmts) != 1:
        raise InputError(f"the input files mix formats {sorted(fmts)}: give one format at a time")
    fmt = fmts.pop()
    if fmt not in ("json", "csv", "tsv", "parquet"):
        raise InputError(f"unknown format {fmt!r}: use json, csv, tsv or parquet")
    builder, kwargs = fmt, {}
    if fmt == "tsv":
        builder, kwargs = "csv", {"delimiter": "\t"}
    try:
        ds = dsets.load_dataset(
            builder,
            data_files=paths,
            split="train",
            cache_dir=str(cache_dir) if cache_dir else None,
            num_proc=num_proc,
            **kwargs,
        )
    except Exception as exc:  # datasets wraps parser errors in many types
        raise InputError(_explain_read_error(paths, fmt, exc)) from None
    return ds


def _explain_read_error(paths: list[str], fmt: str, exc: BaseException) -> str:
    """Name the file (and for JSON Lines the first bad line) of a failed conversion."""
    if fmt == "json":
        for p in paths:
            bad = _first_bad_json_line(p)
            if bad is not None:
                return f"{p} line {bad[0]}: {bad[1]}"
    cause = exc
    while cause.__cause__ is not None:
        cause = cause.__cause__
    kind = type(cause).__name__
    names = ", ".join(paths[:3]) + (" …" if len(paths) > 3 else "")
    return (
        f"{names}: could not be read as {fmt} ({kind}); check that every row has the same "
        "columns and that each column holds one type"
    )


def _first_bad_json_line(path: str) -> tuple[int, str] | None:
    import gzip

    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:  # type: ignore[operator]
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    return lineno, f"invalid JSON (column {exc.colno})"
                if not isinstance(obj, dict):
                    return lineno, f"a JSON {type(obj).__name__}, not an object"
    except UnicodeDecodeError as exc:
        return 0, f"not UTF-8 (byte {exc.start})"
    except OSError:
        return None
    return None


def _load_sql(dsets: Any, uri: str, cache_dir: Any) -> datasets.Dataset:
    query, con = _sql_query(uri)
    try:
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        raise InputError(
            "SQL sources need SQLAlchemy >= 2.0.42: pip install 'ehrtext[models]'"
        ) from exc
    if con.startswith("sqlite:///"):
        db = con[len("sqlite:///") :].split("?", 1)[0]
        if db and db != ":memory:" and not Path(db).is_file():
            raise InputError(f"{db}: no such SQLite database")
    try:
        return dsets.Dataset.from_sql(query, con, cache_dir=str(cache_dir) if cache_dir else None)
    except Exception as exc:
        root = _root_cause(exc)
        kind = type(root).__name__
        safe_con = re.sub(r"://[^@/]*@", "://***@", con)  # no password in messages
        reason = f"{kind}: {_first_line(root)}"
        raise InputError(f"{safe_con}: the SQL query failed ({reason})") from None


def _root_cause(exc: BaseException) -> BaseException:
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = exc.__cause__ or exc.__context__
        if nxt is None:
            break
        exc = nxt
    return exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


# --------------------------------------------------------------------------------------------
# row checks


class BadRow(NamedTuple):
    """A row that cannot be used: 0-based ``row`` in the dataset, its id, a code, the reason."""

    row: int
    id: str | None
    code: str
    reason: str


def find_bad_rows(
    ds: datasets.Dataset | Sequence[Mapping[str, Any]],
    spec: TaskSpec,
    *,
    require_labels: bool = True,
) -> list[BadRow]:
    """Every row that :func:`tokenize_dataset` could not use, with the reason.

    Checks: the columns exist; each text field is a string or missing; the joined text is not
    empty; the label is present and valid (when ``require_labels``). Runs in this process, so a
    bad row is reported before any worker starts.

    Raises:
        InputError: a column named by the spec is absent (a file-level problem).

    Example:
        >>> spec = TaskSpec(["text"], "multiclass", label_field="y", labels=["a", "b"])
        >>> find_bad_rows([{"text": "胸痛", "y": "a"}, {"text": "", "y": "c"}], spec)[0].code
        'empty_text'
    """
    names = ds.column_names if hasattr(ds, "column_names") else None
    needed = list(spec.text_fields)
    if require_labels:
        needed += [spec.label_field] if spec.label_field else list(spec.label_fields or [])
    if names is not None:
        missing = [c for c in needed if c not in names]
        # several section fields: a section may be absent from the data only if others exist
        if len(spec.text_fields) > 1:
            missing = [c for c in missing if c not in spec.text_fields] + (
                list(spec.text_fields) if all(c in missing for c in spec.text_fields) else []
            )
        if missing:
            raise InputError(f"the dataset has no column(s) {missing} (it has {names})")
        cols = [c for c in spec.columns if c in names]
        rows: Iterable[Mapping[str, Any]] = _iter_rows(ds, cols)
    else:
        rows = ds
    spec_ok = spec if (spec.labels is not None or not require_labels) else spec.resolve(ds)
    bad: list[BadRow] = []
    for i, rec in enumerate(rows):
        try:
            spec_ok.join_text(rec, row=i)
        except InputError as exc:
            code = (
                "empty_text"
                if "empty" in str(exc)
                else ("missing_text" if "missing" in str(exc) else "not_text")
            )
            bad.append(BadRow(i, _id_of(rec, spec), code, str(exc)))
            continue
        if require_labels:
            try:
                spec_ok.target(rec, row=i)
            except InputError as exc:
                code = "missing_label" if "missing" in str(exc) else "bad_label"
                bad.append(BadRow(i, _id_of(rec, spec), code, str(exc)))
    return bad


def _id_of(rec: Mapping[str, Any], spec: TaskSpec) -> str | None:
    if spec.id_field and rec.get(spec.id_field) is not None:
        return str(rec.get(spec.id_field))
    return None


def _iter_rows(ds: Any, cols: list[str], chunk: int = 4096) -> Iterator[dict[str, Any]]:
    """Rows of a Dataset restricted to ``cols``, read in column chunks (fast)."""
    n = len(ds)
    sub = ds.select_columns(cols) if cols else ds
    for start in range(0, n, chunk):
        batch = sub[start : start + chunk]
        keys = list(batch)
        for values in zip(*(batch[k] for k in keys)):
            yield dict(zip(keys, values))


# --------------------------------------------------------------------------------------------
# tokenization


_WORKER_TOKENIZERS: dict[str, Any] = {}


def _worker_tokenizer(config_json: str):
    """The tokenizer of this process for ``config_json`` (built once per worker)."""
    tok = _WORKER_TOKENIZERS.get(config_json)
    if tok is None:
        from ehrtext.text import Tokenizer

        tok = Tokenizer.from_config(json.loads(config_json))
        _WORKER_TOKENIZERS[config_json] = tok
    return tok


GRANULARITIES = ("word", "char", "word+char")


def _han_chars(word: str) -> list[str]:
    return [c for c in word if "\u4e00" <= c <= "\u9fff"]


class _TokenizeBatch:
    """The ``map`` function of :func:`tokenize_dataset` (picklable; no tokenizer inside)."""

    def __init__(
        self,
        spec: dict[str, Any],
        tokenizer_json: str,
        granularity: str,
        with_target: bool,
        max_tokens: int | None,
    ) -> None:
        self.spec = spec
        self.tokenizer_json = tokenizer_json
        self.granularity = granularity
        self.with_target = with_target
        self.max_tokens = max_tokens

    def __call__(self, batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        spec = TaskSpec.from_dict(self.spec)
        tok = _worker_tokenizer(self.tokenizer_json)
        keys = list(batch)
        records = [dict(zip(keys, values)) for values in zip(*(batch[k] for k in keys))]
        texts = [spec.join_text(rec, row=i) for rec, i in zip(records, indices)]
        out_tokens = []
        for toks in tok.pipe(texts, batch_size=max(1, len(texts))):
            norms = toks.norms
            if self.granularity == "char":
                norms = [
                    c
                    for w in norms
                    for c in (_han_chars(w) if _han_chars(w) == list(w) and len(w) > 1 else [w])
                ]
            elif self.granularity == "word+char":
                expanded = []
                for w in norms:
                    expanded.append(w)
                    if len(w) > 1 and _han_chars(w) == list(w):
                        expanded.extend(w)
                norms = expanded
            if self.max_tokens is not None:
                norms = norms[: self.max_tokens]
            out_tokens.append(norms)
        out: dict[str, list[Any]] = {"tokens": out_tokens}
        if self.with_target:
            out["target"] = [spec.target(rec, row=i) for rec, i in zip(records, indices)]
        return out


def tokenize_dataset(
    ds: datasets.Dataset,
    spec: TaskSpec,
    tokenizer_config: Mapping[str, Any] | None = None,
    num_proc: int = 1,
    *,
    bad_rows: str = "error",
    with_target: bool = True,
    granularity: str = "word",
    max_tokens: int | None = None,
    batch_size: int = 256,
    errors_path: str | os.PathLike[str] | None = None,
    load_from_cache_file: bool | None = None,
) -> datasets.Dataset:
    """Add ``tokens`` (token norms) and ``target`` columns, in ``num_proc`` processes.

    Args:
        ds: the rows (other columns are kept).
        spec: the task; its ``labels`` must be known (see :meth:`TaskSpec.resolve`) when
            ``with_target``.
        tokenizer_config: :attr:`ehrtext.text.Tokenizer.config` (default: ``Tokenizer()``).
            Each worker builds its tokenizer once from it.
        num_proc: worker processes for ``Dataset.map``.
        bad_rows: ``"error"``: raise :class:`InputError` naming the bad rows (up to five, and
            the count) before any work starts; ``"skip"``: drop them, log a warning with the
            count, and write them to ``errors_path`` (JSON Lines: row, id, code, reason).
        with_target: compute ``target`` (False for unlabelled data to score).
        granularity: ``"word"`` (default), ``"char"`` (Han words split into characters) or
            ``"word+char"`` (each Han word followed by its characters).
        max_tokens: keep only the first ``max_tokens`` tokens of each note.
        load_from_cache_file: passed to ``Dataset.map`` (None: the ``datasets`` default).

    The fingerprint of the result is derived from ``ds``'s fingerprint, the task, the
    tokenizer's settings and dictionary hash and these options, so the same call on the same
    file is served from the cache (a file-backed ``ds`` writes ``cache-*.arrow`` beside it).

    Example:
        >>> spec = TaskSpec(["text"], "binary", label_field="y")
        >>> import datasets
        >>> ds = datasets.Dataset.from_list([{"text": "否认糖尿病史", "y": 0}])
        >>> tokenize_dataset(ds, spec)[0]["tokens"]
        ['否认', '糖尿病', '史']
    """
    if bad_rows not in ("error", "skip"):
        raise InputError(f"bad_rows must be 'error' or 'skip', got {bad_rows!r}")
    if granularity not in GRANULARITIES:
        raise InputError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if with_target and spec.labels is None:
        spec = spec.resolve(ds)
    from ehrtext.text import Tokenizer

    tok = Tokenizer.from_config(dict(tokenizer_config)) if tokenizer_config else Tokenizer()
    tok_config = tok.config
    tok_json = json.dumps(tok_config, sort_keys=True, ensure_ascii=False)
    problems = find_bad_rows(ds, spec, require_labels=with_target)
    if problems:
        if bad_rows == "error":
            shown = "; ".join(p.reason for p in problems[:_MAX_SHOWN])
            more = f" (and {len(problems) - _MAX_SHOWN} more)" if len(problems) > _MAX_SHOWN else ""
            raise InputError(
                f"{len(problems)} of {len(ds)} rows cannot be used: {shown}{more}. "
                "Fix them, or pass bad_rows='skip' to drop them with a report."
            )
        logger.warning("skipping %d of %d unusable rows", len(problems), len(ds))
        if errors_path is not None:
            from ehrtext.textio import ErrorSink

            with ErrorSink(errors_path) as sink:
                for p in problems:
                    sink.add(p.row + 1, p.id, p.code, p.reason)
        drop = {p.row for p in problems}
        ds = ds.select([i for i in range(len(ds)) if i not in drop])
    if "tokens" in ds.column_names or (with_target and "target" in ds.column_names):
        raise InputError("the dataset already has a 'tokens' or 'target' column")
    fn = _TokenizeBatch(spec.to_dict(), tok_json, granularity, with_target, max_tokens)
    fingerprint = _fingerprint(
        getattr(ds, "_fingerprint", ""),
        spec.to_dict(),
        tok_config,
        tok.dictionary_hash,
        granularity,
        with_target,
        max_tokens,
        _TOKENIZE_VERSION,
    )
    if len(ds) == 0:
        raise InputError("the dataset has no usable rows")
    num_proc = max(1, min(int(num_proc), len(ds)))
    return ds.map(
        fn,
        batched=True,
        batch_size=batch_size,
        with_indices=True,
        input_columns=None,
        fn_kwargs=None,
        num_proc=num_proc if num_proc > 1 else None,
        new_fingerprint=fingerprint,
        load_from_cache_file=load_from_cache_file,
        desc="tokenize",
        features=None,
        remove_columns=None,
        keep_in_memory=False,
    )


def _fingerprint(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, ensure_ascii=False, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()[:32]


# --------------------------------------------------------------------------------------------
# splits


def _strata(ds: Any, spec: TaskSpec) -> list[str]:
    """A stratum key per row: the class (single-label) or the rarest positive label
    (multilabel; ``"-"`` for rows with none)."""
    if spec.labels is None:
        spec = spec.resolve(ds)
    names = getattr(ds, "column_names", None)
    if names is not None and "target" in names:
        targets = list(ds["target"])
    else:
        rows = _iter_rows(ds, [c for c in spec.columns if c in names]) if names else iter(ds)
        targets = [spec.target(rec, row=i) for i, rec in enumerate(rows)]
    if spec.task != "multilabel":
        return [str(t) for t in targets]
    counts = np.zeros(len(spec.labels), dtype=np.int64)
    for t in targets:
        counts += np.asarray(t, dtype=np.int64)
    keys = []
    for t in targets:
        pos = [i for i, v in enumerate(t) if v]
        keys.append(str(min(pos, key=lambda i: (counts[i], i))) if pos else "-")
    return keys


def _units(ds: Any, spec: TaskSpec) -> tuple[list[list[int]], list[str]]:
    """Split units (patients, or single rows) and the stratum of each unit."""
    strata = _strata(ds, spec)
    if spec.patient_field:
        patients = _column(ds, spec.patient_field)
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(patients):
            if p is None or (isinstance(p, float) and math.isnan(p)):
                raise InputError(f"row {i}: patient field {spec.patient_field!r} is missing")
            groups.setdefault(str(p), []).append(i)
        units = [groups[k] for k in sorted(groups)]
        unit_strata = [
            Counter(strata[i] for i in members).most_common(1)[0][0] for members in units
        ]
        return units, unit_strata
    return [[i] for i in range(len(strata))], strata


def split_dataset(
    ds: datasets.Dataset,
    spec: TaskSpec,
    val_fraction: float = 0.1,
    test_fraction: float = 0.0,
    seed: int = 0,
) -> dict[str, datasets.Dataset]:
    """Deterministic stratified split into ``train`` / ``validation`` (/ ``test``).

    Each stratum (class; for multilabel the row's rarest positive label) is shuffled with
    ``numpy.random.default_rng(seed)`` and cut by the fractions, so class proportions are kept
    and the same seed gives the same split. With ``spec.patient_field`` the units are patients
    (stratum: their most common class): no patient is in two splits.

    Example:
        >>> parts = split_dataset(ds, spec, val_fraction=0.1, seed=0)        # doctest: +SKIP
        >>> sorted(parts)                                                    # doctest: +SKIP
        ['train', 'validation']
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise InputError("val_fraction and test_fraction must be in [0, 1) and sum below 1")
    units, strata = _units(ds, spec)
    rng = np.random.default_rng(seed)
    by_stratum: dict[str, list[int]] = {}
    for u, s in enumerate(strata):
        by_stratum.setdefault(s, []).append(u)
    assign = np.zeros(len(units), dtype=np.int8)  # 0 train, 1 validation, 2 test
    # largest-remainder allocation across strata, so the totals match the fractions
    for s in sorted(by_stratum):
        members = np.array(by_stratum[s])
        rng.shuffle(members)
        n = len(members)
        n_test = _round_half(n * test_fraction, rng)
        n_val = _round_half(n * val_fraction, rng)
        if n_test + n_val >= n:  # keep at least one unit for training
            n_val = max(0, n - 1 - n_test)
            n_test = min(n_test, n - 1 - n_val)
        assign[members[:n_test]] = 2
        assign[members[n_test : n_test + n_val]] = 1
    out: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    names = ("train", "validation", "test")
    for u, members in enumerate(units):
        out[names[assign[u]]].extend(members)
    result = {
        "train": ds.select(sorted(out["train"])),
        "validation": ds.select(sorted(out["validation"])),
    }
    if test_fraction > 0:
        result["test"] = ds.select(sorted(out["test"]))
    return result


def _round_half(x: float, rng: np.random.Generator) -> int:
    """Round ``x`` down or up at random in proportion to its fraction (unbiased over strata)."""
    base = math.floor(x)
    return base + int(rng.random() < (x - base))


def kfold_indices(
    ds: datasets.Dataset | Sequence[Mapping[str, Any]],
    spec: TaskSpec,
    k: int = 5,
    seed: int = 0,
) -> list[tuple[list[int], list[int]]]:
    """Stratified (and, with ``patient_field``, grouped) ``k``-fold cross-validation indices.

    Returns ``k`` pairs ``(train_rows, test_rows)`` of sorted row indices; every row is in
    exactly one test fold; the same seed gives the same folds.

    Example:
        >>> folds = kfold_indices(ds, spec, k=5, seed=0)                      # doctest: +SKIP
        >>> train_idx, test_idx = folds[0]                                   # doctest: +SKIP
    """
    if k < 2:
        raise InputError("k must be at least 2")
    units, strata = _units(ds, spec)
    if len(units) < k:
        raise InputError(f"{len(units)} units cannot be split into {k} folds")
    rng = np.random.default_rng(seed)
    by_stratum: dict[str, list[int]] = {}
    for u, s in enumerate(strata):
        by_stratum.setdefault(s, []).append(u)
    fold_of = np.zeros(len(units), dtype=np.int64)
    fold_sizes = np.zeros(k, dtype=np.int64)
    # deal each shuffled stratum round-robin, starting at the currently smallest folds
    for s in sorted(by_stratum, key=lambda s: (-len(by_stratum[s]), s)):
        members = np.array(by_stratum[s])
        rng.shuffle(members)
        order = np.lexsort((rng.random(k), fold_sizes))
        for j, u in enumerate(members):
            f = order[j % k]
            fold_of[u] = f
            fold_sizes[f] += len(units[u])
    folds = []
    for f in range(k):
        test = sorted(i for u in np.flatnonzero(fold_of == f) for i in units[u])
        train = sorted(i for u in np.flatnonzero(fold_of != f) for i in units[u])
        folds.append((train, test))
    return folds


# --------------------------------------------------------------------------------------------
# vocabulary


@dataclass
class Vocab:
    """Token ↔ id table: ``<pad>`` = 0, ``<unk>`` = 1, then tokens by frequency.

    Build it from the training split only. ``save`` writes ``vocab.txt`` (one token a line,
    index = line number), readable and pickle-free.

    Example:
        >>> v = Vocab.build([["胸痛", "发热"], ["胸痛"]])
        >>> v.itos
        ['<pad>', '<unk>', '胸痛', '发热']
        >>> v.encode(["胸痛", "咳嗽"])
        [2, 1]
    """

    itos: list[str] = field(default_factory=lambda: [PAD, UNK])
    stoi: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        if self.itos[:2] != [PAD, UNK]:
            raise InputError(f"a vocabulary starts with {PAD!r}, {UNK!r}")
        self.stoi = {}
        for i, tok in enumerate(self.itos):
            if not tok or "\n" in tok or "\r" in tok:
                raise InputError(f"vocabulary entry {i} is empty or holds a line break")
            if tok in self.stoi:
                raise InputError(f"vocabulary entry {i} repeats an earlier token")
            self.stoi[tok] = i

    @classmethod
    def build(
        cls, token_lists: Iterable[Sequence[str]], min_freq: int = 1, max_size: int | None = None
    ) -> Vocab:
        """Count tokens and keep those seen ``min_freq`` times or more, most frequent first
        (ties in token order, so the result is deterministic), at most ``max_size`` entries
        including the two specials. Tokens with a line break or empty ones are skipped."""
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        for special in (PAD, UNK):
            counts.pop(special, None)
        items = [
            (t, c)
            for t, c in counts.items()
            if c >= min_freq and t and "\n" not in t and "\r" not in t
        ]
        items.sort(key=lambda tc: (-tc[1], tc[0]))
        if max_size is not None:
            items = items[: max(0, max_size - 2)]
        return cls([PAD, UNK] + [t for t, _ in items])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Ids of ``tokens`` (unknown ones → 1)."""
        get = self.stoi.get
        return [get(t, UNK_ID) for t in tokens]

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Tokens of ``ids``."""
        return [self.itos[i] for i in ids]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``vocab.txt`` (``path`` is the file, or a folder to put it in)."""
        path = Path(path)
        if path.is_dir():
            path = path / "vocab.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("\n".join(self.itos) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocab:
        """Read a ``vocab.txt`` written by :meth:`save` (a file or its folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / "vocab.txt"
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"{path}: no such vocabulary file") from None
        except UnicodeDecodeError:
            raise InputError(f"{path}: not UTF-8 text") from None
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        try:
            return cls(lines)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None


def encode_dataset(
    ds: datasets.Dataset, vocab: Vocab, *, max_len: int | None = None, num_proc: int = 1
) -> datasets.Dataset:
    """Add ``input_ids`` (and ``length``) from the ``tokens`` column.

    Example:
        >>> enc = encode_dataset(tokenized, vocab, max_len=512)              # doctest: +SKIP
    """
    if "tokens" not in ds.column_names:
        raise InputError("encode_dataset needs a 'tokens' column: run tokenize_dataset first")
    fn = _EncodeBatch(vocab.itos, max_len)
    fingerprint = _fingerprint(
        getattr(ds, "_fingerprint", ""),
        hashlib.sha256("\n".join(vocab.itos).encode()).hexdigest(),
        max_len,
        "encode-1",
    )
    return ds.map(
        fn,
        batched=True,
        input_columns=["tokens"],
        num_proc=num_proc if num_proc > 1 else None,
        new_fingerprint=fingerprint,
        desc="encode",
    )


class _EncodeBatch:
    def __init__(self, itos: list[str], max_len: int | None) -> None:
        self.itos = itos
        self.max_len = max_len
        self._stoi: dict[str, int] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"itos": self.itos, "max_len": self.max_len, "_stoi": None}

    def __call__(self, tokens: list[list[str]]) -> dict[str, list[Any]]:
        if self._stoi is None:
            self._stoi = {t: i for i, t in enumerate(self.itos)}
        get = self._stoi.get
        ids = [[get(t, UNK_ID) for t in toks[: self.max_len]] for toks in tokens]
        return {"input_ids": ids, "length": [len(x) for x in ids]}


# --------------------------------------------------------------------------------------------
# batches


class LengthBucketSampler:
    """Batches of indices whose sequences have similar lengths (less padding, faster RNNs).

    With ``shuffle``: each epoch the indices are shuffled, cut into pools of
    ``batch_size * pool_batches``, each pool sorted by length and cut into batches, and the
    batches shuffled; ``set_epoch(n)`` (or iterating again) draws the next epoch's order,
    deterministically from ``seed``. Without ``shuffle``: all indices sorted by length.
    Use it as ``DataLoader(ds, batch_sampler=sampler, collate_fn=collate)``.

    Example:
        >>> s = LengthBucketSampler([5, 1, 4, 2], batch_size=2, shuffle=False)
        >>> list(s)
        [[1, 3], [2, 0]]
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        *,
        pool_batches: int = 50,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise InputError("batch_size must be at least 1")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.pool_batches = max(1, int(pool_batches))
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration yields."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _batches(self, order: np.ndarray) -> list[list[int]]:
        out = [
            order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)
        ]
        if self.drop_last and out and len(out[-1]) < self.batch_size:
            out.pop()
        return out

    def __iter__(self) -> Iterator[list[int]]:
        n = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            yield from self._batches(order)
            return
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        perm = rng.permutation(n)
        pool = self.batch_size * self.pool_batches
        batches: list[list[int]] = []
        for start in range(0, n, pool):
            chunk = perm[start : start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches.extend(self._batches(chunk))
        for i in rng.permutation(len(batches)):
            yield batches[i]


def collate(
    examples: Sequence[Mapping[str, Any]], max_len: int | None = None, *, task: str | None = None
) -> dict[str, Any]:
    """Pad a list of encoded examples into tensors.

    Each example has ``input_ids`` (list of ints) and, optionally, ``target``. Returns
    ``input_ids`` [B, T] (LongTensor, padded with 0), ``lengths`` [B] (LongTensor, at least 1:
    an empty example holds one ``<unk>``), and ``targets``: LongTensor [B] for class indices
    (FloatTensor [B] when ``task="binary"``), FloatTensor [B, L] for multi-hot lists.

    Example:
        >>> b = collate([{"input_ids": [5, 6, 7], "target": 1}, {"input_ids": [8], "target": 0}])
        >>> b["input_ids"].tolist(), b["lengths"].tolist(), b["targets"].tolist()
        ([[5, 6, 7], [8, 0, 0]], [3, 1], [1, 0])
    """
    import torch

    if not examples:
        raise InputError("collate got an empty batch")
    seqs = []
    for ex in examples:
        ids = list(ex["input_ids"])
        if max_len is not None:
            ids = ids[:max_len]
        seqs.append(ids or [UNK_ID])
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    input_ids = torch.zeros((len(seqs), int(lengths.max())), dtype=torch.long)
    for i, s in enumerate(seqs):
        input_ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    out: dict[str, Any] = {"input_ids": input_ids, "lengths": lengths}
    if "target" in examples[0]:
        targets = [ex["target"] for ex in examples]
        if isinstance(targets[0], (list, tuple, np.ndarray)):
            out["targets"] = torch.tensor(np.asarray(targets, dtype=np.float32))
        elif task == "binary":
            out["targets"] = torch.tensor(targets, dtype=torch.float32)
        else:
            out["targets"] = torch.tensor(targets, dtype=torch.long)
    return out
