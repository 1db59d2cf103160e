"""The ``ehrtext`` command line: normalize and tokenize note files, and a demo.

Usage::

    ehrtext --version
    ehrtext demo
    ehrtext normalize notes.jsonl -o clean.jsonl --id-field id [--with-offsets] [--t2s]
    ehrtext tokenize notes.csv -o tokens.jsonl -f 主诉 -f 现病史 --id-field id --workers 4
    ehrtext tokenize notes.parquet -o corpus.txt --format lines        # word2vec input

Rows that cannot be used go to an errors file (``--errors``, by default ``OUTPUT`` with
``.errors.jsonl``) as ``{"row", "id", "code", "reason"}``; read = written + errors, and a
summary line saying so is printed on stderr. A missing file or column stops the run before
any row is read, with a one-line message and exit code 2. Outputs are written atomically.

Example:
    >>> from typer.testing import CliRunner
    >>> CliRunner().invoke(app, ["--version"]).output  # doctest: +ELLIPSIS
    'ehrtext ...\\n'
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ehrtext._version import __version__
from ehrtext.errors import EhrtextError, InputError, ModelFileError, ResourceError
from ehrtext.textio import (
    DEFAULT_MAX_CHARS,
    ErrorSink,
    Record,
    RecordReader,
    open_writer,
    read_records,
)

__all__ = ["app", "main"]

app = typer.Typer(
    name="ehrtext",
    help="Clinical NLP for Chinese EHR notes: normalize and tokenize note files with offsets.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

#: Records per chunk handed to a worker, and the characters at which a chunk is cut early.
CHUNK_RECORDS = 64
CHUNK_CHARS = 1_000_000
_RESERVED_KEYS = ("id", "text", "tokens", "offsets")


# --------------------------------------------------------------------------------------------
# Processing (runs in the main process or in spawned workers)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What to do with each record; picklable, so spawned workers can rebuild the processor.

    Example:
        >>> job = Job(kind="normalize", normalizer={"traditional_to_simplified": True})
        >>> job.build()(Record(row=1, id="1", text="ＢＰ　150/90mmHg"))
        ['{"id": "1", "text": "BP 150/90mmHg"}']
    """

    kind: str  # "normalize" | "tokenize" | "deid" | "annotate"
    normalizer: dict[str, Any] | None = None  # NormalizerConfig.to_dict() (normalize)
    tokenizer: dict[str, Any] | None = None  # Tokenizer.config (tokenize)
    out_format: str = "jsonl"  # "jsonl" | "lines" (tokenize)
    with_offsets: bool = False  # normalize: add the offset map
    options: dict[str, Any] | None = None  # deid / annotate settings

    def build(self) -> Callable[[Record], list[str]]:
        """A function turning one record into its output lines."""
        if self.kind == "deid":
            return _build_deid(self.options or {})
        if self.kind == "annotate":
            return _build_annotate(self.options or {})
        if self.kind == "normalize":
            from ehrtext.text import NormalizerConfig, normalize

            config = NormalizerConfig.from_dict(self.normalizer or {})
            with_offsets = self.with_offsets

            def run_normalize(rec: Record) -> list[str]:
                n = normalize(rec.text, config)
                obj: dict[str, Any] = {"id": rec.id, **rec.meta, "text": n.text}
                if with_offsets:
                    obj["offsets"] = n.offsets.to_dict()
                return [json.dumps(obj, ensure_ascii=False)]

            return run_normalize

        from ehrtext.text import Tokenizer

        tok = Tokenizer.from_config(self.tokenizer or {})
        tok.cut("预热")  # load the dictionaries now: a missing one fails here, not per row
        if self.out_format == "lines":
            return lambda rec: tok.lines(rec.text)

        def run_tokenize(rec: Record) -> list[str]:
            toks = tok.tokenize(rec.text)
            obj = {"id": rec.id, **rec.meta, "tokens": toks.to_list()}
            return [json.dumps(obj, ensure_ascii=False)]

        return run_tokenize


# A chunk result: ("ok", output lines) or ("err", row, id, code, reason), one per record.
Result = tuple[Any, ...]

_WORKER: Callable[[Record], list[str]] | None = None
_WORKER_ERROR: BaseException | None = None
_WORKER_STAGE = ""


def _process(fn: Callable[[Record], list[str]], chunk: list[Record], stage: str) -> list[Result]:
    out: list[Result] = []
    for rec in chunk:
        try:
            out.append(("ok", fn(rec)))
        except (ResourceError, ModelFileError):
            raise  # a broken installation, not a bad row: stop with its message
        except Exception as exc:  # one bad note must not stop the run; never echo its text
            out.append(("err", rec.row, rec.id, "failed", f"{stage} failed ({type(exc).__name__})"))
    return out


def _init_worker(job: Job) -> None:
    """Pool initializer: build the processor once per worker (errors are raised per chunk)."""
    global _WORKER, _WORKER_ERROR, _WORKER_STAGE
    _WORKER_STAGE = job.kind
    try:
        _WORKER = job.build()
    except BaseException as exc:  # a failing initializer would make the pool respawn forever
        _WORKER_ERROR = exc


def _worker_chunk(chunk: list[Record]) -> list[Result]:
    if _WORKER_ERROR is not None:
        raise _WORKER_ERROR
    assert _WORKER is not None
    return _process(_WORKER, chunk, _WORKER_STAGE)


def _results(job: Job, chunks: Iterable[list[Record]], workers: int) -> Iterator[list[Result]]:
    """Chunk results in input order; ``workers > 1`` uses spawned processes, each building the
    processor once (from the picklable ``job``), with at most ``4 * workers`` chunks in flight."""
    if workers <= 1:
        fn = job.build()
        for chunk in chunks:
            yield _process(fn, chunk, job.kind)
        return
    # concurrent.futures rather than multiprocessing.Pool: a worker that dies (out of memory,
    # killed) raises BrokenProcessPool here instead of hanging the run forever.
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context("spawn"),
        initializer=_init_worker,
        initargs=(job,),
    )
    ok = False
    try:
        pending: deque[Future[list[Result]]] = deque()
        for chunk in chunks:
            pending.append(pool.submit(_worker_chunk, chunk))
            if len(pending) >= 4 * workers:  # bounded: never read the whole file ahead
                yield _get(pending.popleft())
        while pending:
            yield _get(pending.popleft())
        ok = True
    finally:
        pool.shutdown(wait=ok, cancel_futures=not ok)


def _get(future: Future[list[Result]]) -> list[Result]:
    try:
        return future.result()
    except BrokenProcessPool:
        raise EhrtextError(
            "a worker process died (out of memory or killed?); try fewer --workers"
        ) from None


# --------------------------------------------------------------------------------------------
# Running a job over a file
# --------------------------------------------------------------------------------------------


@dataclass
class RunSummary:
    """Counts of one run: ``read == written + errors``."""

    read: int
    written: int
    errors: int
    blank: int
    seconds: float
    bytes_read: int


def default_errors_path(output: Path) -> Path:
    """``out.jsonl`` -> ``out.errors.jsonl``; ``corpus.txt.gz`` -> ``corpus.errors.jsonl``.

    Example:
        >>> default_errors_path(Path("run/tokens.jsonl")).as_posix()
        'run/tokens.errors.jsonl'
    """
    name = output.name
    for suffix in (".gz", ".jsonl", ".json", ".txt"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return output.with_name(name + ".errors.jsonl")


def run_job(
    job: Job,
    reader: RecordReader,
    output: Path,
    sink: ErrorSink,
    *,
    workers: int = 1,
    progress: bool = True,
    on_result: Callable[[list[str]], None] | None = None,
) -> RunSummary:
    """Process every record of ``reader`` into ``output`` (atomically); bad rows go to ``sink``.

    ``on_result`` is called with the output lines of each processed record (in the main
    process, whatever ``workers`` is).

    Example:
        >>> sink = ErrorSink("err.jsonl")                                    # doctest: +SKIP
        >>> run_job(Job("tokenize", tokenizer={}), read_records("a.txt", errors=sink),
        ...         Path("tokens.jsonl"), sink)                              # doctest: +SKIP
    """
    from tqdm import tqdm

    start = time.perf_counter()
    written = 0
    with (
        reader,
        sink,
        open_writer(output, job.out_format) as writer,
        tqdm(
            unit=" notes",
            file=sys.stderr,
            disable=True if not progress else None,  # None: off when stderr is not a TTY
            dynamic_ncols=True,
            smoothing=0.1,
        ) as bar,
    ):
        emit = writer.write_raw if job.out_format == "jsonl" else writer.write
        chunks = reader.chunks(CHUNK_RECORDS, max_chars=CHUNK_CHARS)
        for results in _results(job, chunks, workers):
            for res in results:
                if res[0] == "ok":
                    for line in res[1]:
                        emit(line)
                    written += 1
                    if on_result is not None:
                        on_result(res[1])
                else:
                    sink.add(*res[1:])
            bar.update(len(results))
            bar.set_postfix_str(f"{reader.bytes_read / 1e6:.1f} MB", refresh=False)
    return RunSummary(
        read=reader.rows,
        written=written,
        errors=sink.count,
        blank=reader.blank,
        seconds=time.perf_counter() - start,
        bytes_read=reader.path.stat().st_size,
    )


def _summary_line(command: str, s: RunSummary, errors_path: Path, codes: dict[str, int]) -> str:
    parts = [f"ehrtext {command}: read {s.read} rows: {s.written} written, {s.errors} errors"]
    if s.errors:
        parts.append(f" -> {errors_path}")
    if s.blank:
        parts.append(f" ({s.blank} blank lines skipped)")
    mb = s.bytes_read / 1e6
    rate = mb / s.seconds if s.seconds > 0 else 0.0
    parts.append(f"; {mb:.2f} MB in {s.seconds:.2f} s ({rate:.2f} MB/s)")
    line = "".join(parts)
    if codes:
        kinds = ", ".join(f"{code} {n}" for code, n in sorted(codes.items(), key=lambda x: -x[1]))
        line += f"\n  errors by kind: {kinds}"
        if s.read and s.errors == s.read and set(codes) <= {"missing_field", "bad_id"}:
            line += "\n  every row failed: check --text-field / --id-field"
    return line


@contextmanager
def _clean_errors() -> Iterator[None]:
    """Turn ehrtext errors into a one-line message and an exit code (no traceback)."""
    try:
        yield
    except InputError as exc:
        typer.echo(f"ehrtext: error: {exc}", err=True)
        raise typer.Exit(2) from None
    except EhrtextError as exc:
        typer.echo(f"ehrtext: error: {exc}", err=True)
        raise typer.Exit(1) from None
    except BrokenPipeError:
        raise  # stdout closed early (``| head``): click exits quietly
    except OSError as exc:
        typer.echo(f"ehrtext: error: {exc}", err=True)
        raise typer.Exit(1) from None


def _run_file_command(
    command: str,
    job: Job,
    input: Path,
    output: Path,
    text_field: list[str] | None,
    id_field: str | None,
    keep_field: list[str] | None,
    errors: Path | None,
    input_format: str | None,
    max_chars: int,
    workers: int,
    no_progress: bool,
    extra_fields: list[str] | None = None,
    on_result: Callable[[list[str]], None] | None = None,
) -> RunSummary:
    """Run ``job`` over ``input``; ``extra_fields`` are read besides ``keep_field`` (the job
    decides whether they are written)."""
    with _clean_errors():
        if workers < 0:
            raise InputError("--workers must be 0 (all CPUs) or more")
        if workers == 0:
            workers = mp.cpu_count()
        keep = list(keep_field or [])
        clash = [k for k in keep if k in _RESERVED_KEYS]
        if clash:
            raise InputError(f"--keep-field cannot be {clash[0]!r} (an output key)")
        if keep and job.out_format == "lines":
            raise InputError("--keep-field applies to jsonl output only")
        errors_path = errors if errors is not None else default_errors_path(output)
        if output.resolve() == input.resolve():
            raise InputError(f"{output}: the output would overwrite the input")
        if errors_path.resolve() in (output.resolve(), input.resolve()):
            raise InputError(f"{errors_path}: the errors file must differ from input and output")
        sink = ErrorSink(errors_path)
        try:
            reader = read_records(
                input,
                text_fields=text_field or ["text"],
                id_field=id_field,
                fmt=input_format,
                errors=sink,
                max_chars=max_chars,
                keep_fields=keep + [f for f in extra_fields or [] if f not in keep],
            )
        except BaseException:
            sink.abort()
            raise
        summary = run_job(
            job,
            reader,
            output,
            sink,
            workers=workers,
            progress=not no_progress,
            on_result=on_result,
        )
        typer.echo(_summary_line(command, summary, errors_path, dict(sink.codes)), err=True)
        return summary


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------

InputArg = Annotated[
    Path,
    typer.Argument(
        help="Notes: .txt (one per line), .jsonl/.json, .csv, .tsv (optionally .gz), .parquet.",
        show_default=False,
        metavar="INPUT",
    ),
]
OutputOpt = Annotated[
    Path, typer.Option("--output", "-o", help="Output file (written atomically).", metavar="OUTPUT")
]
TextFieldOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--text-field",
        "-f",
        help="Text column (repeat for several; they are joined as 【field】value sections). "
        "Default: text.",
        show_default=False,
        metavar="FIELD",
    ),
]
IdFieldOpt = Annotated[
    str | None,
    typer.Option("--id-field", help="Id column (default: the row number).", metavar="FIELD"),
]
KeepFieldOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--keep-field",
        help="Column copied to the output as is (repeatable).",
        show_default=False,
        metavar="FIELD",
    ),
]
ErrorsOpt = Annotated[
    Path | None,
    typer.Option(
        "--errors",
        help="Errors JSONL file (default: OUTPUT with .errors.jsonl).",
        show_default=False,
        metavar="ERRORS",
    ),
]
InputFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--input-format",
        help="txt, jsonl, csv, tsv or parquet (default: from the extension).",
        show_default=False,
        metavar="FORMAT",
    ),
]
MaxCharsOpt = Annotated[
    int, typer.Option("--max-chars", help="Longer notes go to the errors file.", min=1, metavar="N")
]
WorkersOpt = Annotated[
    int,
    typer.Option("--workers", "-j", help="Worker processes (0: one per CPU).", min=0, metavar="N"),
]
T2sOpt = Annotated[
    bool, typer.Option("--t2s", help="Convert traditional Chinese characters to simplified.")
]


class Backend(str, Enum):
    """Segmenter backends."""

    rjieba = "rjieba"
    jieba = "jieba"


class OutFormat(str, Enum):
    """Output formats of ``tokenize``."""

    jsonl = "jsonl"
    lines = "lines"


BackendOpt = Annotated[Backend, typer.Option("--backend", help="Segmenter.")]
NoProgressOpt = Annotated[bool, typer.Option("--no-progress", help="No progress bar.")]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"ehrtext {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            help="Print the version and exit.",
            callback=_version_callback,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Clinical NLP for Chinese EHR notes: normalize and tokenize note files with offsets."""


@app.command()
def normalize(
    input: InputArg,
    output: OutputOpt,
    text_field: TextFieldOpt = None,
    id_field: IdFieldOpt = None,
    keep_field: KeepFieldOpt = None,
    errors: ErrorsOpt = None,
    input_format: InputFormatOpt = None,
    with_offsets: Annotated[
        bool,
        typer.Option("--with-offsets", help="Add the offset map back to the original note."),
    ] = False,
    t2s: T2sOpt = False,
    max_chars: MaxCharsOpt = DEFAULT_MAX_CHARS,
    workers: WorkersOpt = 1,
    no_progress: NoProgressOpt = False,
) -> None:
    """Normalize notes: JSONL of {"id", "text"} (+ "offsets" with --with-offsets)."""
    from ehrtext.text import NormalizerConfig

    job = Job(
        kind="normalize",
        normalizer=NormalizerConfig(traditional_to_simplified=t2s).to_dict(),
        with_offsets=with_offsets,
    )
    _run_file_command(
        "normalize",
        job,
        input,
        output,
        text_field,
        id_field,
        keep_field,
        errors,
        input_format,
        max_chars,
        workers,
        no_progress,
    )


@app.command()
def tokenize(
    input: InputArg,
    output: OutputOpt,
    out_format: Annotated[
        OutFormat,
        typer.Option(
            "--format",
            help='jsonl: {"id", "tokens": [[norm, start, end], ...]} with offsets into the '
            "original note; lines: word2vec-ready space-joined lines.",
        ),
    ] = OutFormat.jsonl,
    text_field: TextFieldOpt = None,
    id_field: IdFieldOpt = None,
    keep_field: KeepFieldOpt = None,
    errors: ErrorsOpt = None,
    input_format: InputFormatOpt = None,
    backend: BackendOpt = Backend.rjieba,
    stopwords: Annotated[
        bool, typer.Option("--stopwords", help="Drop the shipped stopwords.")
    ] = False,
    t2s: T2sOpt = False,
    max_chars: MaxCharsOpt = DEFAULT_MAX_CHARS,
    workers: WorkersOpt = 1,
    no_progress: NoProgressOpt = False,
) -> None:
    """Tokenize notes into JSONL tokens with offsets, or word2vec lines (--format lines)."""
    with _clean_errors():
        from ehrtext.text import NormalizerConfig, Tokenizer

        tok = Tokenizer(
            backend=backend.value,
            stopwords=stopwords,
            normalizer=NormalizerConfig(traditional_to_simplified=t2s),
        )
        job = Job(kind="tokenize", tokenizer=tok.config, out_format=out_format.value)
    _run_file_command(
        "tokenize",
        job,
        input,
        output,
        text_field,
        id_field,
        keep_field,
        errors,
        input_format,
        max_chars,
        workers,
        no_progress,
    )


def _width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def _wrap(items: list[str], width: int = 96, indent: str = "    ") -> list[str]:
    lines: list[str] = []
    current = indent
    for item in items:
        if current.strip() and _width(current) + 2 + _width(item) > width:
            lines.append(current)
            current = indent
        current += ("  " if current.strip() else "") + item
    if current.strip():
        lines.append(current)
    return lines


def _show(s: str) -> str:
    return s.replace("\n", "\\n").replace("\t", "\\t").replace(" ", "␣")


@app.command()
def demo(
    limit: Annotated[
        int, typer.Option("--limit", "--notes", "-n", help="Notes whose tokens are shown.")
    ] = 3,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Tokens shown per note.")] = 60,
    backend: BackendOpt = Backend.rjieba,
    score: Annotated[
        bool, typer.Option("--score/--no-score", help="Score the notes with the demo model.")
    ] = True,
) -> None:
    """Normalize and tokenize the shipped (invented) sample notes and show the offsets, then
    score them with the shipped demo model and explain one prediction."""
    with _clean_errors():
        from ehrtext.resources import corpus_path
        from ehrtext.text import Tokenizer, normalize

        path = corpus_path("samples", "notes.jsonl")
        records = list(read_records(path, id_field="id", keep_fields=["label"]))
        t0 = time.perf_counter()
        tok = Tokenizer(backend=backend.value)
        tok.tokenize("预热")  # load the dictionaries now, so the timing below is the cutting only
        load_s = time.perf_counter() - t0

        typer.echo(
            f"ehrtext {__version__} demo: {len(records)} invented sample notes "
            f"(corpora/samples/notes.jsonl), backend {backend.value}"
        )
        typer.echo(
            "Each token: original text [start:end] in the note as given, -> normalized "
            "form where it differs.\n"
        )
        for rec in records[: max(0, limit)]:
            n = normalize(rec.text)
            rewritten = sum(
                1 for i, ch in enumerate(n.text) if rec.text[slice(*n.to_original(i, i + 1))] != ch
            )
            toks = tok.tokenize(rec.text)
            typer.echo(
                f"[{rec.id}] label {rec.meta.get('label')}: {len(rec.text)} chars, "
                f"{len(toks)} tokens; normalized: {len(n.text)} chars, {rewritten} rewritten"
            )
            first_line = rec.text.split("\n", 1)[0]
            typer.echo(f"  note:       {first_line}")
            typer.echo(f"  normalized: {n.text.split(chr(10), 1)[0]}")
            shown = []
            for t in list(toks)[: max(0, max_tokens)]:
                item = f"{_show(t.text)}[{t.start}:{t.end}]"
                if t.norm != t.text:
                    item += f"->{_show(t.norm)}"
                shown.append(item)
            for line in _wrap(shown):
                typer.echo(line)
            if len(toks) > max_tokens:
                typer.echo(f"    ... {len(toks) - max_tokens} more tokens")
            typer.echo("")

        t1 = time.perf_counter()
        n_tokens = 0
        bad_offsets = 0
        n_bytes = 0
        for rec in records:
            toks = tok.tokenize(rec.text)
            n_tokens += len(toks)
            n_bytes += len(rec.text.encode("utf-8"))
            bad_offsets += sum(1 for t in toks if rec.text[t.start : t.end] != t.text)
        secs = time.perf_counter() - t1
        mb = n_bytes / 1e6
        typer.echo(
            f"Summary: {len(records)} notes, {sum(len(r.text) for r in records)} chars "
            f"({mb:.3f} MB), {n_tokens} tokens; normalize+tokenize {secs * 1000:.1f} ms "
            f"= {mb / secs if secs else 0.0:.2f} MB/s (dictionary load {load_s:.2f} s)"
        )
        typer.echo(
            "Offsets: every token's [start:end] slices its text out of the original note"
            if bad_offsets == 0
            else f"Offsets: {bad_offsets} tokens do NOT match the original note"
        )
        if bad_offsets:
            raise typer.Exit(1)
        if score:
            try:
                import safetensors  # noqa: F401
                import torch  # noqa: F401
            except ImportError as exc:
                typer.echo(
                    f"\nScoring skipped: {exc.name} is not installed "
                    "(pip install 'ehrtext[models]' to score the notes with the demo model)"
                )
                return
            _demo_score(records)


#: The model `ehrtext demo` scores with (scripts/train_demo_model.py; card in its README.md).
DEMO_MODEL = "toyhom_im_departments"


def _demo_score(records: list[Any]) -> None:
    """The main job on the sample notes: score them with the shipped demo model and explain
    one prediction (top tokens with their offsets in the note)."""
    from ehrtext.predict import RiskModel
    from ehrtext.resources import corpus_path

    t0 = time.perf_counter()
    model = RiskModel.load(corpus_path("models", DEMO_MODEL), num_threads=1)
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    df = model.predict([r.text for r in records], ids=[r.id for r in records])
    score_s = time.perf_counter() - t1
    typer.echo(
        f"\nScoring: the {len(records)} notes with the shipped demo model corpora/models/"
        f"{DEMO_MODEL} ({model.kind}; trained on MIT-licensed patient questions, "
        f"Toyhom internal medicine; labels = sub-departments; see its README.md)"
    )
    short = [lab[:4] for lab in model.labels]
    typer.echo("  id    diagnosis   " + " ".join(f"{lab:>5}" for lab in short) + "  -> department")
    for rec, (_, row) in zip(records, df.iterrows()):
        probs = " ".join(f"{row[f'p_{lab}']:6.3f}" for lab in model.labels)
        diag = str(rec.meta.get("label", ""))
        typer.echo(f"  {rec.id:<5} {diag:<7} {probs}  -> {row['label']}")
    typer.echo(
        f"  ({len(records)} notes scored in {score_s * 1000:.0f} ms; model load {load_s:.2f} s. "
        "The same numbers come from RiskModel.predict, spaCy ehr_risk and `ehrtext score`.)\n"
        "  (The model learned from short patient questions; these are inpatient records, "
        "outside its training domain, so many departments are wrong: it shows the machinery, "
        "not a clinical model. Train your own with `ehrtext train`.)"
    )
    rec = records[0]
    ex = model.explain(rec.text, method="attention")
    typer.echo(
        f"\nExplanation of [{rec.id}] -> {ex.label} (p = {ex.probabilities[ex.label]:.3f}), "
        "attention weights; [start:end] are offsets in the original note:"
    )
    for piece, start, end, weight in ex.top(8):
        typer.echo(f"  {_show(piece)}[{start}:{end}]  {weight:.3f}")
    typer.echo(
        "Draw it as HTML with ehrtext.render_explanation(model.explain(note)); "
        "score files and SQL tables with `ehrtext score`."
    )


# --------------------------------------------------------------------------------------------
# Clinical structure: deid and annotate
# --------------------------------------------------------------------------------------------


class _CountedLines(list):
    """Output lines of one record plus what it counted (PHI per type); picklable, so counts
    come back from worker processes with the lines."""

    counts: dict[str, int]


def _build_deid(opts: dict[str, Any]) -> Callable[[Record], list[str]]:
    """One record -> ``{"id", keep fields..., FIELD: de-identified text, ["phi"]}``."""
    from ehrtext.text.deid import Deidentifier

    deid = Deidentifier(
        strategy=opts.get("strategy", "tag"),
        secret=opts.get("secret"),
        types=opts.get("types"),
        mask_char=opts.get("mask_char", "*"),
    )
    deid.deidentify("预热")  # load the rules now: a broken installation fails here, not per row
    keep = list(opts.get("keep", []))
    patient_field = opts.get("patient_field")
    with_spans = bool(opts.get("with_spans"))
    encode = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(obj, ensure_ascii=False)

    def run_deid(rec: Record) -> list[str]:
        pid = rec.meta.get(patient_field) if patient_field else None
        obj: dict[str, Any] = {"id": rec.id}
        for k in keep:
            obj[k] = rec.meta.get(k)
        counts: dict[str, int] = {}
        spans: dict[str, list[list[Any]]] = {}
        for name, start, end in rec.sections or (("text", 0, len(rec.text)),):
            result = deid.deidentify(rec.text[start:end], None if pid is None else str(pid))
            obj[name] = result.text
            for t, n in result.counts.items():
                counts[t] = counts.get(t, 0) + n
            if with_spans:
                spans[name] = [
                    [r.type, r.start, r.end, r.out_start, r.out_end] for r in result.replacements
                ]
        if with_spans:
            obj["phi"] = spans
        out = _CountedLines([encode(obj)])
        out.counts = counts
        return out

    return run_deid


def _build_annotate(opts: dict[str, Any]) -> Callable[[Record], list[str]]:
    """One record -> ``{"id", keep fields..., "sections", "concepts"[, "fields", "tokens"]}``."""
    from ehrtext.text.pipeline import TextPipeline
    from ehrtext.text.tokenize import Tokenizer

    with_tokens = bool(opts.get("with_tokens"))
    pipeline = TextPipeline(
        Tokenizer.from_config(opts.get("tokenizer") or {}), tokenize=with_tokens
    )
    pipeline.annotate("主诉：预热。")  # load dictionaries and rules now, not per row

    def run_annotate(rec: Record) -> list[str]:
        obj: dict[str, Any] = {"id": rec.id, **rec.meta}
        if len(rec.sections) > 1:  # several text fields joined: where each one lies
            obj["fields"] = [list(s) for s in rec.sections]
        obj.update(pipeline.annotate(rec.text).to_dict(with_tokens=with_tokens))
        return [json.dumps(obj, ensure_ascii=False)]

    return run_annotate


def default_audit_path(output: Path) -> Path:
    """``deid.jsonl`` -> ``deid.audit.json``.

    Example:
        >>> default_audit_path(Path("run/deid.jsonl")).as_posix()
        'run/deid.audit.json'
    """
    return default_errors_path(output).with_name(
        default_errors_path(output).name.replace(".errors.jsonl", ".audit.json")
    )


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write ({exc.strerror})") from None


class Strategy(str, Enum):
    """De-identification strategies."""

    tag = "tag"
    mask = "mask"
    surrogate = "surrogate"


@app.command()
def deid(
    input: InputArg,
    output: OutputOpt,
    strategy: Annotated[
        Strategy,
        typer.Option(
            "--strategy",
            help="tag: [姓名]; mask: same length (offsets kept); surrogate: consistent fake values "
            "per patient (needs --secret).",
        ),
    ] = Strategy.tag,
    secret: Annotated[
        str | None,
        typer.Option(
            "--secret",
            envvar="EHRTEXT_DEID_SECRET",
            help="Secret seeding the surrogates (or the EHRTEXT_DEID_SECRET variable, which "
            "keeps it out of the shell history). Never written anywhere.",
            show_default=False,
            show_envvar=True,
        ),
    ] = None,
    patient_field: Annotated[
        str | None,
        typer.Option(
            "--patient-field",
            help="Column with the patient id: surrogates are consistent per patient.",
            metavar="FIELD",
        ),
    ] = None,
    phi_type: Annotated[
        list[str] | None,
        typer.Option(
            "--type",
            help="PHI type to remove (repeatable; default: all). One of id_number, phone, mrn, "
            "email, url, ip, date, age, name, org, address.",
            show_default=False,
            metavar="TYPE",
        ),
    ] = None,
    with_spans: Annotated[
        bool,
        typer.Option(
            "--with-spans",
            help='Add "phi": {field: [[type, start, end, out_start, out_end], ...]} (offsets, '
            "no text).",
        ),
    ] = False,
    audit: Annotated[
        Path | None,
        typer.Option(
            "--audit",
            help="Audit JSON: counts per PHI type, rows, settings; never PHI (default: OUTPUT "
            "with .audit.json).",
            show_default=False,
            metavar="AUDIT",
        ),
    ] = None,
    text_field: TextFieldOpt = None,
    id_field: IdFieldOpt = None,
    keep_field: KeepFieldOpt = None,
    errors: ErrorsOpt = None,
    input_format: InputFormatOpt = None,
    max_chars: MaxCharsOpt = DEFAULT_MAX_CHARS,
    workers: WorkersOpt = 1,
    no_progress: NoProgressOpt = False,
) -> None:
    """De-identify notes: JSONL of {"id", FIELD: de-identified text} plus an audit file."""
    from collections import Counter

    with _clean_errors():
        from ehrtext.text.deid import PHI_TYPES

        fields = list(text_field or ["text"])
        types = sorted(set(phi_type)) if phi_type else None
        unknown = sorted(set(types or []) - set(PHI_TYPES))
        if unknown:
            raise InputError(f"--type {unknown[0]!r} is not a PHI type; use one of {PHI_TYPES}")
        if strategy is Strategy.surrogate and not secret:
            raise InputError(
                "--strategy surrogate needs --secret (or the EHRTEXT_DEID_SECRET variable)"
            )
        clash = [k for k in keep_field or [] if k in fields or k in ("id", "phi")]
        if clash:
            raise InputError(f"--keep-field cannot be {clash[0]!r} (an output key)")
        audit_path = audit if audit is not None else default_audit_path(output)
        if audit_path.resolve() in (output.resolve(), input.resolve()):
            raise InputError(f"{audit_path}: the audit file must differ from input and output")
        job = Job(
            kind="deid",
            options={
                "strategy": strategy.value,
                "secret": secret if strategy is Strategy.surrogate else None,
                "types": types,
                "keep": list(keep_field or []),
                "patient_field": patient_field,
                "with_spans": with_spans,
            },
        )
    phi: Counter[str] = Counter()
    notes_with_phi = 0

    def count(lines: list[str]) -> None:
        nonlocal notes_with_phi
        counts = getattr(lines, "counts", None) or {}
        phi.update(counts)
        notes_with_phi += bool(counts)

    cpu_start = time.process_time()
    summary = _run_file_command(
        "deid",
        job,
        input,
        output,
        fields,
        id_field,
        keep_field,
        errors,
        input_format,
        max_chars,
        workers,
        no_progress,
        extra_fields=[patient_field] if patient_field else None,
        on_result=count,
    )
    cpu_seconds = time.process_time() - cpu_start
    record = {
        "command": "deid",
        "ehrtext_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "input": str(input),
        "output": str(output),
        "strategy": strategy.value,
        "types": types or list(PHI_TYPES),
        "text_fields": fields,
        "patient_field": patient_field,
        "rows": {
            "read": summary.read,
            "written": summary.written,
            "errors": summary.errors,
            "blank": summary.blank,
        },
        "notes_with_phi": notes_with_phi,
        "phi": {t: phi[t] for t in PHI_TYPES if phi[t]},
        "phi_total": sum(phi.values()),
        "seconds": round(summary.seconds, 3),
        "mb_per_s": round(summary.bytes_read / 1e6 / summary.seconds, 3) if summary.seconds else 0,
        # CPU time of this process (rules loaded, file read, de-identified, written; the
        # workers' own time is not in it when --workers > 1)
        "cpu_seconds": round(cpu_seconds, 3),
    }
    with _clean_errors():
        _write_json_atomic(audit_path, record)
    kinds = ", ".join(f"{t} {n}" for t, n in phi.most_common()) or "none"
    typer.echo(f"  PHI replaced: {sum(phi.values())} ({kinds}) -> audit {audit_path}", err=True)


@app.command()
def annotate(
    input: InputArg,
    output: OutputOpt,
    with_tokens: Annotated[
        bool, typer.Option("--tokens", help='Add "tokens": [[norm, start, end], ...].')
    ] = False,
    text_field: TextFieldOpt = None,
    id_field: IdFieldOpt = None,
    keep_field: KeepFieldOpt = None,
    errors: ErrorsOpt = None,
    input_format: InputFormatOpt = None,
    backend: BackendOpt = Backend.rjieba,
    max_chars: MaxCharsOpt = DEFAULT_MAX_CHARS,
    workers: WorkersOpt = 1,
    no_progress: NoProgressOpt = False,
) -> None:
    """Sections, concepts and their assertions (negated, uncertain, historical, family,
    hypothetical) as JSONL, offsets into the note (several --text-field values are joined as
    【field】value; "fields" says where each lies)."""
    with _clean_errors():
        from ehrtext.text import Tokenizer

        clash = [k for k in keep_field or [] if k in ("sections", "concepts", "fields", "tokens")]
        if clash:
            raise InputError(f"--keep-field cannot be {clash[0]!r} (an output key)")
        job = Job(
            kind="annotate",
            options={
                "tokenizer": Tokenizer(backend=backend.value).config,
                "with_tokens": with_tokens,
            },
        )
    _run_file_command(
        "annotate",
        job,
        input,
        output,
        text_field,
        id_field,
        keep_field,
        errors,
        input_format,
        max_chars,
        workers,
        no_progress,
    )


from ehrtext.embeddings.cli import app as _embed_app  # noqa: E402 - gensim is imported lazily

app.add_typer(_embed_app, name="embed")

from ehrtext.score_cli import score_command as _score_command  # noqa: E402

app.command("score")(_score_command)

from ehrtext.train_cli import register as _register_train  # noqa: E402 - torch imported lazily

_register_train(app)  # ehrtext train, ehrtext evaluate

from ehrtext.imaging.cli import explain_image_command, image_app  # noqa: E402 - MONAI lazily

app.add_typer(image_app, name="image")
app.command("explain-image")(explain_image_command)

from ehrtext.imaging.cli import multimodal_app  # noqa: E402 - torch imported lazily

app.add_typer(multimodal_app, name="multimodal")


def main() -> None:
    """Console-script entry point (``ehrtext``)."""
    app(prog_name="ehrtext")


if __name__ == "__main__":
    main()
