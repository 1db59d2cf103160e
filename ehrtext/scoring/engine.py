"""The batch scoring engine: stream notes from a file or table, score them in chunks, commit.

One run, step by step:

1. The source is opened (file, columns or table checked before any row is read) and yields
   :class:`~ehrtext.textio.Record` chunks of ``chunk_size`` in a fixed order; rows it cannot
   use go to the errors file (``bad_id``, ``missing_field``, ``wrong_type``, ``too_long`` ...).
2. Within each chunk, an id seen earlier in the input is a ``duplicate_id`` error (the first
   occurrence wins) and, with ``resume``, an id already in the output is *skipped*.
3. The remaining records are scored — in this process, or in ``workers`` spawned processes
   that each load the model once — with at most ``2 × workers`` chunks in flight, so memory
   stays flat whatever the input size.
4. Results are committed to the sink chunk by chunk, in input order (see
   :mod:`ehrtext.scoring.sinks` for what a commit is for each output kind).

Because chunks are cut from the validated input *before* skipping, an interrupted run that is
resumed scores exactly the chunks the uninterrupted run would have scored, with the same
batches, so the scores are identical, not merely close. A chunk whose ``predict`` raises is
scored again note by note, so one bad note costs only its own row (``failed`` with the
exception type, never its message, which could quote the note).

The summary always adds up: ``read == scored + errors + skipped``.

Example:
    >>> from ehrtext.scoring import ModelDirectory, score
    >>> s = score("notes.jsonl", "scores.jsonl", ModelDirectory("model/"),
    ...           id_field="id", workers=2)                       # doctest: +SKIP
    >>> s.read == s.scored + s.errors + s.skipped                 # doctest: +SKIP
    True
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import multiprocessing as mp
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ehrtext.errors import EhrtextError, InputError, ModelFileError, ResourceError
from ehrtext.scoring.locations import Location, parse_location
from ehrtext.scoring.scorer import (
    Scorer,
    ScorerFactory,
    default_torch_threads,
    is_multilabel,
    record_fields_of,
)
from ehrtext.scoring.sinks import OutputSchema, ScoreRow, check_output, open_sink
from ehrtext.scoring.sources import open_source
from ehrtext.textio import DEFAULT_MAX_CHARS, ErrorSink, Record

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ScoreSummary",
    "ScorerContractError",
    "default_errors_path",
    "score",
]

DEFAULT_CHUNK_SIZE = 256
"""Notes per chunk: the unit of work for a worker and of an atomic commit."""


class ScorerContractError(EhrtextError):
    """The scorer returned something other than the documented DataFrame."""


@dataclass
class ScoreSummary:
    """Counts of one run; ``read == scored + errors + skipped`` always holds.

    Attributes:
        read: input rows seen (valid or not).
        scored: rows scored and committed by this run.
        errors: rows sent to the errors file (this run re-checks every row, so after a resume
            it holds the errors of the whole input).
        skipped: rows whose id was already in the output (``resume``).
        chunks: chunks committed by this run.
        seconds: wall time of the run (model loading included).
        load_seconds: of which loading the model in this process.
        error_codes: errors by code.
        warnings: rows scored with a warning in the errors file (a multimodal record scored
            without its unreadable image); they are counted in ``scored``.
        notes: remarks on the whole run (an input without one of the model's columns).
        first_commit_seconds / first_commit_rows: when the first chunk was committed and its
            rows (start-up — model loading, worker processes — lies before it; the rate after
            it is the steady-state rate of a long run).

    Example:
        >>> s = ScoreSummary(read=10, scored=7, errors=2, skipped=1)
        >>> s.adds_up
        True
    """

    read: int = 0
    scored: int = 0
    errors: int = 0
    skipped: int = 0
    chunks: int = 0
    seconds: float = 0.0
    error_codes: dict[str, int] = field(default_factory=dict)
    output: str = ""
    errors_path: str = ""
    load_seconds: float = 0.0
    warnings: int = 0
    notes: list[str] = field(default_factory=list)
    first_commit_seconds: float = 0.0
    first_commit_rows: int = 0

    @property
    def adds_up(self) -> bool:
        """``read == scored + errors + skipped``."""
        return self.read == self.scored + self.errors + self.skipped

    def line(self) -> str:
        """A one-line summary (no note text)."""
        busy = self.seconds - self.load_seconds
        rate = self.scored / busy if busy > 0 else 0.0
        text = (
            f"ehrtext score: read {self.read} rows: {self.scored} scored, {self.errors} errors, "
            f"{self.skipped} skipped (already in the output); {self.chunks} chunks in "
            f"{self.seconds:.2f} s (model load {self.load_seconds:.2f} s; {rate:.1f} notes/s) "
            f"-> {self.output}"
        )
        if self.errors:
            kinds = ", ".join(
                f"{code} {n}" for code, n in sorted(self.error_codes.items(), key=lambda x: -x[1])
            )
            text += f"\n  errors by kind: {kinds} -> {self.errors_path}"
        if self.warnings:
            text += (
                f"\n  {self.warnings} rows scored without an unreadable image (warnings in "
                f"{self.errors_path})"
            )
        for note in self.notes:
            text += f"\n  note: {note}"
        return text


def default_errors_path(output: Location) -> Path:
    """``scores.jsonl`` -> ``scores.errors.jsonl``; a table ``t`` -> ``t.errors.jsonl`` (beside a
    SQLite file, or in the current folder for PostgreSQL).

    Example:
        >>> default_errors_path(parse_location("run/scores.csv")).as_posix()
        'run/scores.errors.jsonl'
    """
    if output.kind == "file":
        path = Path(output.path or "")
        return path.with_name(path.name.rsplit(".", 1)[0] + ".errors.jsonl")
    name = (output.table or "scores").replace(".", "_") + ".errors.jsonl"
    if output.kind == "sqlite" and output.path and output.path != ":memory:":
        return Path(output.path).parent / name
    return Path(name)


# --------------------------------------------------------------------------------------------
# Scoring one chunk (main process or worker)
# --------------------------------------------------------------------------------------------

# A chunk's inputs as sent to a worker: (row numbers, ids, model inputs).
ChunkTask = tuple[list[int], list[str], list[Any]]
# Per record: ("ok", ScoreRow) or ("err", row, id, code, reason).
Outcome = tuple[Any, ...]


class _ChunkScorer:
    """Calls ``scorer.predict`` on a chunk and turns the DataFrame into output rows."""

    def __init__(self, scorer: Scorer, batch_size: int | None) -> None:
        self.scorer = scorer
        self.schema = OutputSchema(tuple(str(x) for x in scorer.labels), is_multilabel(scorer))
        self.kwargs: dict[str, Any] = {}
        try:
            params = inspect.signature(scorer.predict).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        if batch_size is not None and "batch_size" in params:
            self.kwargs["batch_size"] = batch_size
        # record models (image, multimodal) mark unreadable images per row instead of raising
        self.marks = bool(getattr(scorer, "record_fields", None)) and "on_error" in params
        if self.marks:
            self.kwargs["on_error"] = "mark"

    def warm_up(self) -> None:
        """Score one tiny note, so dictionaries and kernels load now (a broken installation
        fails before any row is read) and the first chunk is not slower than the others."""
        try:
            self.scorer.predict(["预热"], ids=["warm-up"], **self.kwargs)
        except (ResourceError, ModelFileError):
            raise
        except Exception:  # noqa: BLE001 - a model may refuse such a short note; fine
            pass

    def __call__(self, task: ChunkTask) -> list[Outcome]:
        rows, ids, inputs = task
        rejected = self._validate(inputs, ids)
        if rejected:
            keep = [i for i in range(len(ids)) if i not in rejected]
            out = [("err", rows[i], ids[i], "invalid_note", rejected[i]) for i in sorted(rejected)]
            if keep:
                sub = ([rows[i] for i in keep], [ids[i] for i in keep], [inputs[i] for i in keep])
                out = self._score(sub) + out
            return out
        return self._score(task)

    def _validate(self, inputs: list[Any], ids: list[str]) -> dict[int, str]:
        """Rows the model itself refuses (``validate()`` of RiskModel: reasons hold no text)."""
        validate = getattr(self.scorer, "validate", None)
        if validate is None:
            return {}
        problems = validate(inputs, ids=ids)
        # "row 3 (id 'x'): the note is empty" -> "the note is empty" (row is chunk-relative)
        return {int(p.row): str(p.reason).split(": ", 1)[-1] for p in problems}

    def _score(self, task: ChunkTask) -> list[Outcome]:
        rows, ids, inputs = task
        try:
            if self.marks:
                return self._predict_marked(rows, ids, inputs)
            return [("ok", r) for r in self._predict(inputs, ids)]
        except (ResourceError, ModelFileError, ScorerContractError):
            raise  # a broken model or scorer, not a bad note: stop with its message
        except Exception as exc:  # noqa: BLE001 - isolate the bad note(s), never echo them
            if len(ids) == 1:
                return [
                    ("err", rows[0], ids[0], "failed", f"scoring failed ({type(exc).__name__})")
                ]
        out: list[Outcome] = []
        for i in range(len(ids)):
            out.extend(self._score(([rows[i]], [ids[i]], [inputs[i]])))
        return out

    def _predict(self, inputs: list[Any], ids: list[str]) -> list[ScoreRow]:
        frame = self.scorer.predict(inputs, ids=ids, **self.kwargs)
        return frame_to_rows(frame, self.schema, ids)

    def _predict_marked(self, rows: list[int], ids: list[str], inputs: list[Any]) -> list[Outcome]:
        """Record models: a row whose ``error`` is set is an error entry (its ``error_code``,
        e.g. ``bad_image`` naming the file); a ``warning`` (scored without an unreadable
        image) is a warning entry beside its scores."""
        frame = self.scorer.predict(inputs, ids=ids, **self.kwargs)
        if len(frame) != len(ids):
            raise ScorerContractError(
                f"the scorer's predict() returned {len(frame)} rows for {len(ids)} notes"
            )
        errors = _column(frame, "error")
        codes = _column(frame, "error_code")
        warnings = _column(frame, "warning")
        good = [i for i in range(len(ids)) if errors[i] is None]
        scored = frame_to_rows(frame.iloc[good], self.schema, [ids[i] for i in good])
        out: list[Outcome] = []
        by_row = dict(zip(good, scored))
        for i in range(len(ids)):
            if i in by_row:
                out.append(("ok", by_row[i]))
                if warnings[i] is not None:
                    out.append(("warn", rows[i], ids[i], "bad_image", warnings[i]))
            else:
                out.append(("err", rows[i], ids[i], codes[i] or "invalid_input", errors[i]))
        return out


def _column(frame: Any, name: str) -> list[Any]:
    """A column as a list with missing values (None, NaN) as None; all None when absent."""
    if name not in frame.columns:
        return [None] * len(frame)
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
            for v in frame[name].tolist()]


def frame_to_rows(frame: Any, schema: OutputSchema, ids: Sequence[str]) -> list[ScoreRow]:
    """Output rows from a scorer's DataFrame (checked against ``ids`` and ``schema``).

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"id": ["a"], "p_x": [0.75], "label": ["x"]})
        >>> frame_to_rows(df, OutputSchema(("x",), False), ["a"])
        [('a', 0.75, 'x')]
    """
    missing = [c for c in schema.columns if c not in frame.columns]
    if missing:
        raise ScorerContractError(
            f"the scorer's predict() returned no column(s) {missing}; expected {schema.columns}"
        )
    if len(frame) != len(ids):
        raise ScorerContractError(
            f"the scorer's predict() returned {len(frame)} rows for {len(ids)} notes"
        )
    got_ids = [str(x) for x in frame["id"].tolist()]
    if got_ids != list(ids):
        raise ScorerContractError("the scorer's predict() returned ids out of order")
    probs = [[float(v) for v in frame[c].tolist()] for c in schema.prob_columns]
    labels = frame[schema.label_column].tolist()
    out: list[ScoreRow] = []
    for i, rid in enumerate(ids):
        p = tuple(col[i] for col in probs)
        if any(math.isnan(x) for x in p):
            raise ValueError("NaN probability")  # treated as a failed note
        lab = labels[i]
        if schema.multilabel:
            lab = [str(x) for x in (lab if lab is not None else [])]
        else:
            lab = None if lab is None else str(lab)
        out.append((rid, *p, lab))
    return out


_WORKER: _ChunkScorer | None = None
_WORKER_ERROR: BaseException | None = None


def _init_worker(factory: ScorerFactory, batch_size: int | None, threads: int | None) -> None:
    global _WORKER, _WORKER_ERROR
    try:
        if threads is not None:
            try:
                import torch

                torch.set_num_threads(threads)
            except ImportError:
                pass
        _WORKER = _ChunkScorer(factory.load(), batch_size)
        _WORKER.warm_up()
    except BaseException as exc:  # noqa: BLE001 - reported on the first chunk
        _WORKER_ERROR = exc


def _worker_chunk(task: ChunkTask) -> list[Outcome]:
    if _WORKER_ERROR is not None:
        raise _WORKER_ERROR
    assert _WORKER is not None
    return _WORKER(task)


def _outcomes(
    factory: ScorerFactory | None,
    local: _ChunkScorer | None,
    tasks: Iterable[ChunkTask],
    workers: int,
    batch_size: int | None,
) -> Iterator[list[Outcome]]:
    """Chunk outcomes in input order, from this process or from spawned workers."""
    if workers <= 1:
        assert local is not None
        for task in tasks:
            yield local(task)
        return
    assert factory is not None
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context("spawn"),
        initializer=_init_worker,
        initargs=(factory, batch_size, default_torch_threads(workers)),
    )
    ok = False
    try:
        pending: deque[Future[list[Outcome]]] = deque()
        for task in tasks:
            pending.append(pool.submit(_worker_chunk, task))
            if len(pending) >= 2 * workers:  # bounded: never read the whole input ahead
                yield _result(pending.popleft())
        while pending:
            yield _result(pending.popleft())
        ok = True
    finally:
        pool.shutdown(wait=ok, cancel_futures=not ok)


def _result(future: Future[list[Outcome]]) -> list[Outcome]:
    try:
        return future.result()
    except BrokenProcessPool:
        raise EhrtextError(
            "a scoring worker died (out of memory or killed?); committed chunks are kept: "
            "rerun with --resume, perhaps with fewer --workers"
        ) from None


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def _model_fields(scorer: Any) -> tuple[list[str] | None, list[str] | None]:
    """``(text fields, record fields)`` of a loaded scorer (see
    :func:`~ehrtext.scoring.scorer.record_fields_of`; record fields are None for text models)."""
    cfg = getattr(scorer, "config", None)
    if isinstance(cfg, dict):  # a RiskModel: its ehrtext.json says
        return record_fields_of(cfg)
    records = getattr(scorer, "record_fields", None)
    if records:  # an ImageModel / MultimodalModel used directly
        return [str(f) for f in getattr(cfg, "text_fields", None) or []], list(records)
    fields = getattr(getattr(scorer, "spec", None), "text_fields", None)
    return ([str(f) for f in fields] if fields else None), None


def _same_location(a: Location, b: Location) -> bool:
    if a.kind != b.kind:
        return False
    if a.kind == "file":
        return Path(a.path or "").resolve() == Path(b.path or "").resolve()
    if a.kind == "sqlite":
        return Path(a.path or "").resolve() == Path(b.path or "").resolve() and a.table == b.table
    return a.dsn == b.dsn and a.table == b.table


def score(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    scorer: Scorer | ScorerFactory,
    *,
    text_fields: Sequence[str] | None = None,
    id_field: str | None = "id",
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    workers: int = 1,
    resume: bool = False,
    overwrite: bool = False,
    errors_path: str | os.PathLike[str] | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    input_format: str | None = None,
    batch_size: int | None = None,
    progress: bool | None = None,
    image_root: str | os.PathLike[str] | None = None,
) -> ScoreSummary:
    """Score every note of ``input`` into ``output``; see the module docstring.

    Args:
        input: a note file (JSONL, CSV, TSV, Parquet, TXT) or a ``sqlite:///…?table=`` /
            ``postgresql://…?table=`` URI.
        output: a ``.jsonl`` / ``.csv`` / ``.tsv`` / ``.parquet`` path or a table URI.
        scorer: a scorer (runs in this process; ``workers`` must be 1) or a factory such as
            :class:`~ehrtext.scoring.ModelDirectory` (loaded once per worker).
        text_fields: input text columns (several are joined as sections); default: the
            model's own text fields, else ``["text"]``.
        id_field: the id column (required for SQL; ``None`` numbers file rows).
        chunk_size: notes per chunk (the unit of work and of commit).
        workers: processes; 1 scores in this process.
        resume: skip ids already in the output and continue an interrupted run.
        overwrite: discard an existing output table or leftover partial output.
        errors_path: the errors JSONL (default: beside the output, ``*.errors.jsonl``).
        max_chars: longer notes are errors (``too_long``).
        input_format: for files whose extension does not tell.
        batch_size: passed to ``predict`` when it accepts one.
        progress: a tqdm bar on stderr (``None``: only when stderr is a terminal).
        image_root: image and multimodal models: the folder relative image paths are read
            from (default: the input file's folder; the current folder for SQL input).

    Image and multimodal models read whole records (their ``record_fields``: text fields,
    image column, tabular columns) instead of one joined note: any of these may be missing
    in a row (the model scores from the rest), a column absent from the input is reported in
    ``ScoreSummary.notes``, a multimodal row with an unreadable image is scored without it
    and noted as a warning in the errors file, an image-model row without a readable image
    is an error (``bad_image`` / ``missing_image``).

    Example:
        >>> score("notes.csv", "sqlite:///scores.db?table=scores", ModelDirectory("m"),
        ...       text_fields=["主诉", "现病史"], workers=2, resume=True)   # doctest: +SKIP
    """
    threads_before = _torch_threads_to_restore(scorer, workers)
    try:
        return _run(
            input,
            output,
            scorer,
            text_fields=text_fields,
            id_field=id_field,
            chunk_size=chunk_size,
            workers=workers,
            resume=resume,
            overwrite=overwrite,
            errors_path=errors_path,
            max_chars=max_chars,
            input_format=input_format,
            batch_size=batch_size,
            progress=progress,
            image_root=image_root,
        )
    finally:
        if threads_before is not None:  # a factory's torch_threads applies to this run only
            import torch

            torch.set_num_threads(threads_before)


def _torch_threads_to_restore(scorer: Any, workers: int) -> int | None:
    """torch's thread count now, when loading ``scorer`` in this process will change it."""
    if workers > 1 or getattr(scorer, "torch_threads", None) is None:
        return None
    try:
        import torch
    except ImportError:
        return None
    return int(torch.get_num_threads())


def _run(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    scorer: Scorer | ScorerFactory,
    *,
    text_fields: Sequence[str] | None,
    id_field: str | None,
    chunk_size: int,
    workers: int,
    resume: bool,
    overwrite: bool,
    errors_path: str | os.PathLike[str] | None,
    max_chars: int,
    input_format: str | None,
    batch_size: int | None,
    progress: bool | None,
    image_root: str | os.PathLike[str] | None,
) -> ScoreSummary:
    start = time.perf_counter()
    if chunk_size < 1:
        raise InputError("--chunk-size must be at least 1")
    if workers < 1:
        raise InputError("--workers must be at least 1")
    in_loc = parse_location(input)
    out_loc = parse_location(output)
    if _same_location(in_loc, out_loc):
        raise InputError(f"{out_loc.display()}: the output would overwrite the input")
    errors_file = Path(errors_path) if errors_path is not None else default_errors_path(out_loc)
    if in_loc.kind == "file" and errors_file.resolve() == Path(in_loc.path or "").resolve():
        raise InputError(f"{errors_file}: the errors file must differ from the input")

    # Cheap checks first: a wrong path or a leftover output should not cost a model load.
    check_output(out_loc, resume=resume, overwrite=overwrite)
    if in_loc.kind == "file" and not Path(in_loc.path or "").is_file():
        raise InputError(f"{in_loc.path}: input file not found")

    factory: ScorerFactory | None = None
    local: _ChunkScorer | None = None
    if image_root is None and in_loc.kind == "file":
        image_root = Path(in_loc.path or "").resolve().parent
    if hasattr(scorer, "predict"):
        if image_root is not None and getattr(scorer, "record_fields", None):
            if getattr(scorer, "image_root", None) is None and hasattr(scorer, "image_root"):
                scorer.image_root = str(image_root)  # type: ignore[union-attr]
        if workers > 1:
            raise InputError(
                "workers > 1 needs a scorer factory (e.g. ModelDirectory), not a loaded scorer"
            )
        local = _ChunkScorer(scorer, batch_size)  # type: ignore[arg-type]
    else:
        factory = scorer  # type: ignore[assignment]
        if (
            image_root is not None
            and dataclasses.is_dataclass(factory)
            and getattr(factory, "image_root", "") is None
        ):
            factory = dataclasses.replace(factory, image_root=str(image_root))  # type: ignore
        describe = getattr(factory, "describe", None)
        if workers > 1 and describe is not None:
            info = describe()  # labels etc. without loading the model here: workers do that
            schema = OutputSchema(tuple(str(x) for x in info.labels), info.task == "multilabel")
            model_fields = info.text_fields
            record_fields = info.record_fields
        else:
            local = _ChunkScorer(factory.load(), batch_size)  # type: ignore[union-attr]
    if local is not None:
        schema = local.schema
        model_fields, record_fields = _model_fields(local.scorer)
        if workers <= 1:
            local.warm_up()
        else:
            local = None  # workers load their own copy
    load_seconds = time.perf_counter() - start
    if record_fields:
        if text_fields:
            raise InputError(
                "--text-field does not apply to this model: it reads records with the columns "
                f"{', '.join(record_fields)} (rename the input's columns to match)"
            )
        fields = list(model_fields or [])
    else:
        record_fields = None
        fields = list(text_fields) if text_fields else (model_fields or ["text"])
    as_records = len(fields) > 1

    errors = ErrorSink(errors_file)
    source = None
    sink = None
    finished = False
    summary = ScoreSummary(
        output=out_loc.display(), errors_path=str(errors_file), load_seconds=load_seconds
    )
    try:
        source = open_source(
            in_loc,
            fields,
            id_field,
            errors,
            max_chars=max_chars,
            input_format=input_format,
            record_fields=record_fields,
        )
        summary.notes.extend(
            f"column {name!r} is not in the input: every row is scored without it"
            for name in getattr(source, "absent_fields", [])
        )
        sink = open_sink(out_loc, schema)
        done = sink.open(resume=resume, overwrite=overwrite)
        seen: set[str] = set()

        def tasks() -> Iterator[ChunkTask]:
            for chunk in source.chunks(chunk_size):  # type: ignore[union-attr]
                todo: list[Record] = []
                for rec in chunk:
                    if rec.id in seen:
                        errors.add(
                            rec.row, rec.id, "duplicate_id", "id already used by an earlier row"
                        )
                        continue
                    seen.add(rec.id)
                    if rec.id in done:
                        done.discard(rec.id)  # now in `seen`: a later copy is a duplicate
                        summary.skipped += 1
                        continue
                    todo.append(rec)
                if todo:
                    inputs: list[Any] = (
                        [dict(rec.meta) for rec in todo]
                        if record_fields
                        else [{name: rec.field(name) for name in fields} for rec in todo]
                        if as_records
                        else [rec.text for rec in todo]
                    )
                    yield [rec.row for rec in todo], [rec.id for rec in todo], inputs

        from tqdm import tqdm

        total, unit = source.progress_total()
        with tqdm(
            total=total,
            unit=" notes" if unit == "notes" else "B",
            unit_scale=unit == "B",
            unit_divisor=1024 if unit == "B" else 1000,
            file=sys.stderr,
            disable=True if progress is False else (None if progress is None else False),
            dynamic_ncols=True,
            smoothing=0.1,
            desc="scoring",
        ) as bar:
            position = 0
            for outcomes in _outcomes(factory, local, tasks(), workers, batch_size):
                rows: list[ScoreRow] = []
                for res in outcomes:
                    if res[0] == "ok":
                        rows.append(res[1])
                    elif res[0] == "warn":
                        errors.warn(*res[1:])
                    else:
                        errors.add(*res[1:])
                if rows:
                    sink.write_chunk(rows)
                    summary.chunks += 1
                    summary.scored += len(rows)
                    if summary.chunks == 1:
                        summary.first_commit_seconds = time.perf_counter() - start
                        summary.first_commit_rows = len(rows)
                now = source.progress_position()
                bar.update(max(0, now - position))
                position = now
                elapsed = time.perf_counter() - start
                bar.set_postfix_str(
                    f"{summary.scored / elapsed if elapsed > 0 else 0.0:.1f} notes/s", refresh=False
                )
        summary.read = source.rows
        sink.close()
        finished = True
        errors.close()
    finally:
        if source is not None:
            source.close()
        if not finished:
            if sink is not None:
                sink.release()
            errors.abort()
    summary.errors = errors.count
    summary.error_codes = dict(errors.codes)
    summary.warnings = errors.warnings
    summary.seconds = time.perf_counter() - start
    if not summary.adds_up:  # pragma: no cover - an engine bug; say so rather than mislead
        raise EhrtextError(f"internal error: the counts do not add up ({summary})")
    return summary
