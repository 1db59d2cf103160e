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

    kind: str  # "normalize" | "tokenize"
    normalizer: dict[str, Any] | None = None  # NormalizerConfig.to_dict() (normalize)
    tokenizer: dict[str, Any] | None = None  # Tokenizer.config (tokenize)
    out_format: str = "jsonl"  # "jsonl" | "lines" (tokenize)
    with_offsets: bool = False  # normalize: add the offset map

    def build(self) -> Callable[[Record], list[str]]:
        """A function turning one record into its output lines."""
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
) -> RunSummary:
    """Process every record of ``reader`` into ``output`` (atomically); bad rows go to ``sink``.

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
) -> None:
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
                keep_fields=keep,
            )
        except BaseException:
            sink.abort()
            raise
        summary = run_job(job, reader, output, sink, workers=workers, progress=not no_progress)
        typer.echo(_summary_line(command, summary, errors_path, dict(sink.codes)), err=True)


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
) -> None:
    """Normalize and tokenize the shipped (invented) sample notes and show the offsets."""
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


from ehrtext.embeddings.cli import app as _embed_app  # noqa: E402 - gensim is imported lazily

app.add_typer(_embed_app, name="embed")

from ehrtext.score_cli import score_command as _score_command  # noqa: E402

app.command("score")(_score_command)

from ehrtext.train_cli import register as _register_train  # noqa: E402 - torch imported lazily

_register_train(app)  # ehrtext train, ehrtext evaluate

from ehrtext.imaging.cli import explain_image_command, image_app  # noqa: E402 - MONAI lazily

app.add_typer(image_app, name="image")
app.command("explain-image")(explain_image_command)


def main() -> None:
    """Console-script entry point (``ehrtext``)."""
    app(prog_name="ehrtext")


if __name__ == "__main__":
    main()
