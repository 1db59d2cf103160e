"""Score notes inside Apache Spark: a pandas (Arrow) UDF and a DataFrame helper.

The model directory is read by every Python worker that Spark starts (on each executor), once
per process: a module-level cache keyed by the directory keeps the loaded
:class:`~ehrtext.predict.RiskModel` for as long as the worker lives (Spark reuses Python
workers between tasks by default, ``spark.python.worker.reuse``). The directory must be
readable at the same path on every executor (a shared file system, or ship it with
``spark-submit --archives model.tgz#model`` and pass ``"model"``).

Each Arrow batch is cut into chunks of ``chunk_size`` notes and scored by the same chunk logic
as ``ehrtext score`` (:mod:`ehrtext.scoring.engine`: the model's own row checks, a chunk whose
``predict`` raises is scored again note by note), so the probabilities are those of
``ehrtext score`` (equal to float rounding of other batch compositions; tested row for row).

Bad rows never fail a task: they get null probabilities and label, and ``error`` says why as
``"<code>: <reason>"`` with the codes of ``ehrtext score`` (``wrong_type`` for a null or
non-string text, ``too_long``, ``invalid_unicode``, ``invalid_note`` for what the model refuses,
``failed`` with the exception type when scoring raised, ``bad_id`` for a null or empty id in
:func:`score_dataframe`). Reasons never quote the note. Unlike ``ehrtext score``, duplicate ids
are not checked (that needs a shuffle: ``df.dropDuplicates([id_col])`` first if it matters).

Output columns: one ``p_<label>`` (double) per label in the model's label order, then ``label``
(string; binary and multi-class) or ``labels`` (array of strings; multi-label), then ``error``.
:func:`score_dataframe` puts ``id`` (string, as ``ehrtext score`` writes it) first.

Example:
    >>> from ehrtext.spark import score_dataframe, score_udf
    >>> scores = score_dataframe(notes_df, "model/", "text", "id")     # doctest: +SKIP
    >>> udf = score_udf("model/")                                                  # doctest: +SKIP
    >>> notes_df.withColumn("s", udf("text")).select("id", "s.*")                  # doctest: +SKIP
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ehrtext.errors import InputError
from ehrtext.textio import DEFAULT_MAX_CHARS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "ScoreSettings",
    "cached_model",
    "result_schema",
    "score_dataframe",
    "score_pandas",
    "score_udf",
]

_SURROGATE = re.compile("[\ud800-\udfff]")
_CACHE: dict[tuple[str, bool, int | None], Any] = {}
_LOCK = threading.Lock()
_LOADS = 0  # models loaded by this process (the tests check one per worker)


@dataclass(frozen=True)
class ScoreSettings:
    """What every worker needs to score (small and picklable: it travels with the UDF).

    Example:
        >>> ScoreSettings("model/", ("text",)).chunk_size
        256
    """

    model_dir: str
    text_fields: tuple[str, ...]
    batch_size: int = 64
    chunk_size: int = 256
    max_chars: int = DEFAULT_MAX_CHARS
    quantize: bool = False
    torch_threads: int | None = 1


def cached_model(model_dir: str, quantize: bool = False, torch_threads: int | None = 1) -> Any:
    """The :class:`~ehrtext.predict.RiskModel` of ``model_dir``, loaded (and warmed up) once
    per process and kept for the life of the process.

    Example:
        >>> cached_model("model/").labels                            # doctest: +SKIP
        ['冠心病', '肺炎']
    """
    global _LOADS
    key = (str(model_dir), bool(quantize), torch_threads)
    with _LOCK:
        found = _CACHE.get(key)
        if found is None:
            from ehrtext.scoring.engine import _ChunkScorer
            from ehrtext.scoring.scorer import ModelDirectory

            found = ModelDirectory(str(model_dir), quantize, torch_threads).load()
            _ChunkScorer(found, None).warm_up()
            _CACHE[key] = found
            _LOADS += 1
        return found


def _describe(model_dir: str) -> Any:
    from ehrtext.scoring.scorer import ModelDirectory

    return ModelDirectory(str(model_dir)).describe()


def _settings(
    model_dir: str, text_fields: Sequence[str] | str | None, **kwargs: Any
) -> tuple[ScoreSettings, Any]:
    info = _describe(model_dir)  # checks the directory on the driver, before any task runs
    if isinstance(text_fields, str):
        text_fields = [text_fields]
    fields = tuple(text_fields) if text_fields else tuple(info.text_fields or ["text"])
    settings = ScoreSettings(str(model_dir), fields, **kwargs)
    if settings.chunk_size < 1 or settings.batch_size < 1:
        raise InputError("chunk_size and batch_size must be at least 1")
    return settings, info


def result_schema(model_dir: str, with_id: bool = False) -> Any:
    """The Spark ``StructType`` of the scores of ``model_dir`` (see the module docs).

    Example:
        >>> result_schema("model/").fieldNames()                     # doctest: +SKIP
        ['p_冠心病', 'p_肺炎', 'label', 'error']
    """
    return _schema(_describe(model_dir), with_id)


def _schema(info: Any, with_id: bool) -> Any:
    from pyspark.sql.types import ArrayType, DoubleType, StringType, StructField, StructType

    fields = [StructField("id", StringType(), True)] if with_id else []
    fields += [StructField(f"p_{label}", DoubleType(), True) for label in info.labels]
    if info.task == "multilabel":
        fields.append(StructField("labels", ArrayType(StringType(), True), True))
    else:
        fields.append(StructField("label", StringType(), True))
    fields.append(StructField("error", StringType(), True))
    return StructType(fields)


# --------------------------------------------------------------------------------------------
# Scoring one pandas batch (runs on the executors; no Spark needed, so it is tested directly)
# --------------------------------------------------------------------------------------------


def _check_text(name: str, value: Any) -> str | None:
    if isinstance(value, str):
        if _SURROGATE.search(value):
            return f"invalid_unicode: field {name!r} contains an unpaired surrogate"
        return None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"wrong_type: field {name!r} is null"
    return f"wrong_type: field {name!r} is {type(value).__name__}, expected a string"


def _check_id(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "bad_id: the id is null"
    if not str(value).strip():
        return "bad_id: the id is empty"
    return None


def score_pandas(
    notes: pd.DataFrame, settings: ScoreSettings, ids: Sequence[Any] | None = None
) -> pd.DataFrame:
    """Scores of one batch: ``notes`` has one column per text field; one output row per input
    row, in order (columns of :func:`result_schema` without ``id``). Never raises for a bad row.

    Example:
        >>> score_pandas(pd.DataFrame({"text": ["胸痛3天", None]}),
        ...              ScoreSettings("model/", ("text",)))          # doctest: +SKIP
    """
    import numpy as np
    import pandas as pd

    from ehrtext.scoring.engine import _ChunkScorer

    model = cached_model(settings.model_dir, settings.quantize, settings.torch_threads)
    chunk_scorer = _ChunkScorer(model, settings.batch_size)
    schema = chunk_scorer.schema
    fields = list(settings.text_fields)
    missing = [f for f in fields if f not in notes.columns]
    if missing:
        raise InputError(f"the notes have no column(s) {missing}")
    n = len(notes)
    probs = np.full((n, len(schema.labels)), np.nan)
    labels: list[Any] = [None] * n
    errors: list[str | None] = [None] * n
    columns = [notes[f].tolist() for f in fields]
    id_values = list(ids) if ids is not None else None
    todo: list[tuple[int, Any]] = []
    for i in range(n):
        problem = _check_id(id_values[i]) if id_values is not None else None
        values = [col[i] for col in columns]
        for name, value in zip(fields, values):
            problem = problem or _check_text(name, value)
        if problem is None:
            total = sum(len(v) for v in values)
            if total > settings.max_chars:
                problem = (
                    f"too_long: note is too long ({total} characters > "
                    f"max_chars={settings.max_chars})"
                )
        if problem is not None:
            errors[i] = problem
            continue
        todo.append((i, values[0] if len(fields) == 1 else dict(zip(fields, values))))
    for start in range(0, len(todo), settings.chunk_size):
        part = todo[start : start + settings.chunk_size]
        # rows and ids are positions in this batch (the real ids never reach the scorer)
        task = ([p[0] for p in part], [str(p[0]) for p in part], [p[1] for p in part])
        for outcome in chunk_scorer(task):
            if outcome[0] == "ok":
                row = outcome[1]
                i = int(row[0])
                probs[i] = row[1:-1]
                labels[i] = row[-1]
            else:
                _, i, _, code, reason = outcome
                errors[int(i)] = f"{code}: {reason}"
    data: dict[str, Any] = {c: probs[:, j] for j, c in enumerate(schema.prob_columns)}
    data[schema.label_column] = pd.Series(labels, dtype=object)  # None stays None (pandas 3)
    data["error"] = pd.Series(errors, dtype=object)
    return pd.DataFrame(data, index=range(n))


# --------------------------------------------------------------------------------------------
# Spark faces
# --------------------------------------------------------------------------------------------


def score_udf(
    model_dir: str,
    text_fields: Sequence[str] | str | None = None,
    *,
    batch_size: int = 64,
    chunk_size: int = 256,
    max_chars: int = DEFAULT_MAX_CHARS,
    quantize: bool = False,
    torch_threads: int | None = 1,
) -> Any:
    """A pandas UDF returning a struct of scores (``p_<label>`` …, ``label(s)``, ``error``).

    With one text field the UDF takes that string column; with several (section fields, as
    in training) it takes ``F.struct(*fields)``, whose field names must be the text fields.

    Args:
        model_dir: the model directory, at this path on every executor.
        text_fields: default: the model's own text fields, else ``["text"]``.
        batch_size / chunk_size / max_chars / quantize: as for ``ehrtext score``.
        torch_threads: torch threads per Python worker (1: one task slot, one core).

    Example:
        >>> udf = score_udf("model/")                                    # doctest: +SKIP
        >>> df.select("id", udf("text").alias("s")).select("id", "s.*")  # doctest: +SKIP
    """
    import pandas as pd
    from pyspark.sql.functions import pandas_udf

    settings, info = _settings(
        model_dir,
        text_fields,
        batch_size=batch_size,
        chunk_size=chunk_size,
        max_chars=max_chars,
        quantize=quantize,
        torch_threads=torch_threads,
    )
    schema = _schema(info, with_id=False)
    if len(settings.text_fields) == 1:
        name = settings.text_fields[0]

        def score_notes(notes):  # type: ignore[no-untyped-def]
            return score_pandas(pd.DataFrame({name: notes.reset_index(drop=True)}), settings)

        kind: Any = pd.Series
    else:

        def score_notes(notes):  # type: ignore[no-untyped-def]
            return score_pandas(notes.reset_index(drop=True), settings)

        kind = pd.DataFrame
    # real classes, not the strings of `from __future__ import annotations`: Spark reads these
    # hints to choose the UDF kind (Series or struct in, struct out)
    score_notes.__annotations__ = {"notes": kind, "return": pd.DataFrame}
    return pandas_udf(score_notes, returnType=schema)  # type: ignore[call-overload]


def score_dataframe(
    df: Any,
    model_dir: str,
    text_col: Sequence[str] | str | None = None,
    id_col: str = "id",
    *,
    batch_size: int = 64,
    chunk_size: int = 256,
    max_chars: int = DEFAULT_MAX_CHARS,
    quantize: bool = False,
    torch_threads: int | None = 1,
) -> Any:
    """Score a Spark DataFrame of notes: ``id`` (string), ``p_<label>`` …, ``label(s)``,
    ``error`` — the columns of ``ehrtext score`` plus ``error`` (through ``mapInPandas``).

    Args:
        df: the notes; ``text_col`` (one name or the section fields) and ``id_col``.
        model_dir / batch_size / …: as for :func:`score_udf`.

    Example:
        >>> notes = spark.read.parquet("notes.parquet")                  # doctest: +SKIP
        >>> scores = score_dataframe(notes, "model/", "text", "id")     # doctest: +SKIP
        >>> scores.write.parquet("scores/")                              # doctest: +SKIP
    """
    settings, info = _settings(
        model_dir,
        text_col,
        batch_size=batch_size,
        chunk_size=chunk_size,
        max_chars=max_chars,
        quantize=quantize,
        torch_threads=torch_threads,
    )
    from pyspark.sql import functions as F

    missing = [c for c in (id_col, *settings.text_fields) if c not in df.columns]
    if missing:
        raise InputError(f"the DataFrame has no column(s) {missing} (columns: {df.columns})")
    fields = list(settings.text_fields)
    key = "__ehrtext_id"
    selected = df.select(
        F.col(id_col).cast("string").alias(key),
        *[F.col(c).alias(f"__ehrtext_t{j}") for j, c in enumerate(fields)],
    )

    def score_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            notes = batch[[f"__ehrtext_t{j}" for j in range(len(fields))]]
            notes.columns = fields
            notes = notes.reset_index(drop=True)
            ids = batch[key].tolist()
            out = score_pandas(notes, settings, ids=ids)
            out.insert(0, "id", ids)
            yield out

    return selected.mapInPandas(score_batches, schema=_schema(info, with_id=True))
