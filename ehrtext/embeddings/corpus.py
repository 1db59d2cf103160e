"""Corpus preparation for word2vec: notes in, a LineSentence file out, in several processes.

Every note is normalized and tokenized with the project :class:`~ehrtext.text.Tokenizer` and
written as word2vec-ready lines, with the semantics of :meth:`Tokenizer.lines`: one
space-joined line per sentence (sentence ends ``。!?;`` are dropped) and per line of the note,
a sentence longer than ``max_tokens`` split into pieces, so that no line nears gensim's
10,000-token limit (gensim silently truncates longer lines). Whitespace inside a token
(``0.5g bid``) becomes ``_``.

How it streams: the main process reads notes (files through :mod:`ehrtext.textio`, a
``datasets.Dataset`` or any iterable of strings) and hands chunks of about
``CHUNK_CHARS`` characters to ``workers`` spawned processes; each worker rebuilds the tokenizer
from ``tokenizer.config`` once, cuts its chunk with one batched segmenter call, and sends back
the chunk's lines (UTF-8 bytes) with its word counts. The main process writes the chunks in
input order (so the file is the same for any number of workers) and merges the counts, with
at most ``4 * workers`` chunks in flight: memory does not grow with the corpus, only with its
vocabulary. The word counts let training skip gensim's own (single-threaded) vocabulary scan.

Rows that cannot be used go to an :class:`~ehrtext.textio.ErrorSink` (``{"file", "row", "id",
"code", "reason"}``, never the text) and the run goes on.

Example:
    >>> from ehrtext.embeddings import prepare_corpus
    >>> corpus = prepare_corpus(["胸痛2天。无发热", "2型糖尿病"], "c.txt")  # doctest: +SKIP
    >>> corpus.stats.lines, corpus.stats.tokens                        # doctest: +SKIP
    (3, 8)
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import re
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

from ehrtext.errors import EhrtextError, InputError, ModelFileError, ResourceError, describe_type
from ehrtext.textio import DEFAULT_MAX_CHARS, ErrorSink, detect_format, join_sections, read_records

logger = logging.getLogger(__name__)

__all__ = [
    "CHUNK_CHARS",
    "CorpusErrors",
    "CorpusStats",
    "PreparedCorpus",
    "expand_paths",
    "prepare_corpus",
    "sentence_lines",
]

#: Characters of text per chunk handed to a worker (and notes per chunk at most).
CHUNK_CHARS = 200_000
CHUNK_NOTES = 2048
#: Longest line written, in tokens (gensim truncates lines over 10,000 tokens).
DEFAULT_MAX_TOKENS = 1000

_SENTENCE_ENDS = "。!?;！？；"  # as ehrtext.text.tokenize.SENTENCE_ENDS
_TOKSEP = "\x01"  # removed by normalize(), so never inside a token
_SENTSEP = "\x00"
_END_TOKEN = re.compile(f"{_TOKSEP}[{_SENTENCE_ENDS}](?={_TOKSEP})")
_WHITESPACE = re.compile(r"\s")


# --------------------------------------------------------------------------------------------
# Lines from tokens


def sentence_lines(norms: Sequence[str], max_tokens: int = DEFAULT_MAX_TOKENS) -> list[str]:
    """The word2vec lines of one line of a note, from its tokens (as :meth:`Tokenizer.lines`).

    A token that is a sentence end (``。 ! ? ;``) closes a line and is dropped; a line is cut
    every ``max_tokens`` tokens; whitespace inside a token becomes ``_``. Runs at C speed
    (string operations on the joined tokens), not token by token.

    Example:
        >>> sentence_lines(["胸痛", "2天", "。", "无", "发热"])
        ['胸痛 2天', '无 发热']
        >>> sentence_lines(["a", "b", "c"], max_tokens=2)
        ['a b', 'c']
    """
    if not norms:
        return []
    s = _TOKSEP + _TOKSEP.join(norms) + _TOKSEP
    if _WHITESPACE.search(s) is not None:
        s = _WHITESPACE.sub("_", s)
    out: list[str] = []
    for piece in _END_TOKEN.sub(_SENTSEP, s).split(_SENTSEP):
        piece = piece.strip(_TOKSEP)
        if not piece:
            continue
        if piece.count(_TOKSEP) >= max_tokens:
            toks = piece.split(_TOKSEP)
            out.extend(" ".join(toks[i : i + max_tokens]) for i in range(0, len(toks), max_tokens))
        else:
            out.append(piece.replace(_TOKSEP, " "))
    return out


class _LineMaker:
    """Turns notes into word2vec lines with one tokenizer (built once per process)."""

    def __init__(self, tokenizer_config: dict[str, Any], max_tokens: int) -> None:
        from ehrtext.text import Tokenizer

        self.tok = Tokenizer.from_config(tokenizer_config)
        self.tok.cut("预热")  # load the dictionaries now: a missing one fails here, not per note
        self.max_tokens = max_tokens
        self.counts: Counter[str] = Counter()  # word counts of every chunk made here
        # The batched segmenter of the Tokenizer (one call for many lines); ``cut`` per line
        # gives the same tokens when it is not there.
        self._segment_many = getattr(self.tok, "_segment_many", None)

    def lines(self, texts: list[str]) -> list[str]:
        """All lines of ``texts``, in order (``[l for t in texts for l in tok.lines(t)]``)."""
        from ehrtext.text.normalize import normalize_many

        tok = self.tok
        note_lines: list[str] = []
        for n in normalize_many(texts, tok.normalizer):
            note_lines.extend(n.text.split("\n"))
        if self._segment_many is not None and len(note_lines) > 1:
            cuts = [norms for norms, _, _ in self._segment_many(note_lines)]
        else:
            cuts = [tok.cut(line) for line in note_lines]
        max_tokens = self.max_tokens
        out: list[str] = []
        for norms in cuts:
            if norms:
                out.extend(sentence_lines(norms, max_tokens))
        return out

    def chunk(self, texts: list[str]) -> _ChunkResult:
        """Lines, counts and sizes of a chunk; a note that fails is isolated and reported."""
        failed: list[tuple[int, str]] = []
        try:
            lines = self.lines(texts)
        except (ResourceError, ModelFileError):
            raise
        except Exception:  # find the note at fault; the others are kept
            lines = []
            for i, text in enumerate(texts):
                try:
                    lines.extend(self.lines([text]))
                except (ResourceError, ModelFileError):
                    raise
                except Exception as exc:  # never echo the note
                    failed.append((i, type(exc).__name__))
        text = "\n".join(lines)
        toks = text.split()  # tokens hold no whitespace (sentence_lines replaced it)
        self.counts.update(toks)  # C speed; collected once at the end (see _results)
        payload = (text + "\n").encode("utf-8") if lines else b""
        n_bytes = sum(len(t.encode("utf-8")) for t in texts)
        return _ChunkResult(payload, len(lines), len(toks), n_bytes, failed)


@dataclass
class _ChunkResult:
    payload: bytes
    lines: int
    tokens: int
    note_bytes: int
    failed: list[tuple[int, str]]


# Worker-process state (spawned processes build it once, from picklable settings).
_MAKER: _LineMaker | None = None
_MAKER_ERROR: BaseException | None = None
_BARRIER: Any = None
_FLUSH_TIMEOUT = 600.0


def _init_worker(tokenizer_config: dict[str, Any], max_tokens: int, barrier: Any) -> None:
    global _MAKER, _MAKER_ERROR, _BARRIER
    _BARRIER = barrier
    try:
        _MAKER = _LineMaker(tokenizer_config, max_tokens)
    except BaseException as exc:  # a failing initializer would make the pool respawn forever
        _MAKER_ERROR = exc


def _worker_chunk(texts: list[str]) -> _ChunkResult:
    if _MAKER_ERROR is not None:
        raise _MAKER_ERROR
    assert _MAKER is not None
    return _MAKER.chunk(texts)


def _worker_counts() -> dict[str, int]:
    """This worker's word counts. One such task is sent per worker; each waits at a barrier
    until every worker holds one, so that every worker answers exactly once."""
    _BARRIER.wait(timeout=_FLUSH_TIMEOUT)
    if _MAKER is None:
        return {}
    counts = dict(_MAKER.counts)
    _MAKER.counts.clear()
    return counts


# --------------------------------------------------------------------------------------------
# Sources


class CorpusErrors(ErrorSink):
    """An :class:`~ehrtext.textio.ErrorSink` whose entries also name the input file.

    Entries are ``{"file": name-or-null, "row", "id", "code", "reason"}``; ``file`` is the
    file being read (``None`` for a dataset or an iterable of notes). Never holds note text.

    Example:
        >>> sink = CorpusErrors()
        >>> sink.file = "a.jsonl"
        >>> sink.add(3, "3", "invalid_json", "invalid JSON")
        >>> sink.entries[0]["file"], sink.entries[0]["row"]
        ('a.jsonl', 3)
    """

    file: str | None = None

    def add(self, row: int, id: str | None, code: str, reason: str) -> None:
        entry = {"file": self.file, "row": row, "id": id, "code": code, "reason": reason}
        self.count += 1
        self.codes[code] += 1
        if len(self.entries) < self.keep:
            self.entries.append(entry)
        if self._writer is not None:
            self._writer.write(json.dumps(entry, ensure_ascii=False) + "\n")


def _known_suffix(path: Path) -> bool:
    try:
        detect_format(path)
    except InputError:
        return False
    return True


def expand_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files to read: each file as given, each folder's note files (recursively, sorted).

    In a folder, files with a known extension (``.txt .jsonl .json .csv .tsv .parquet``,
    optionally ``.gz``) are taken and hidden files skipped. A path that does not exist, or a
    folder with no note file, raises :class:`~ehrtext.errors.InputError`.

    Example:
        >>> expand_paths(["notes/"])                   # doctest: +SKIP
        [PosixPath('notes/2023.jsonl'), PosixPath('notes/2024.jsonl')]
    """
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(
                f
                for f in path.rglob("*")
                if f.is_file()
                and not any(part.startswith(".") for part in f.relative_to(path).parts)
                and _known_suffix(f)
            )
            if not found:
                raise InputError(
                    f"{path}: folder holds no note files (.txt, .jsonl, .csv, .tsv, .parquet, "
                    "optionally .gz)"
                )
            out.extend(found)
        elif path.exists():
            out.append(path)
        else:
            raise InputError(f"{path}: input file not found")
    return out


def _is_dataset(obj: object) -> bool:
    return hasattr(obj, "column_names") and hasattr(obj, "features") and hasattr(obj, "iter")


def _looks_like_paths(source: object) -> bool:
    return isinstance(source, (str, os.PathLike)) or (
        isinstance(source, (list, tuple))
        and bool(source)
        and all(isinstance(p, os.PathLike) for p in source)
    )


@dataclass
class _Note:
    row: int
    id: str
    text: str


class _Source:
    """Streams ``_Note`` s from any supported source; bad rows go to the sink."""

    def __init__(
        self,
        source: Any,
        sink: CorpusErrors,
        *,
        text_fields: Sequence[str],
        id_field: str | None,
        input_format: str | None,
        max_chars: int,
    ) -> None:
        if isinstance(text_fields, str):
            text_fields = (text_fields,)
        self.text_fields = tuple(text_fields)
        self.id_field = id_field
        self.input_format = input_format
        self.max_chars = max_chars
        self.sink = sink
        self.files: list[Path] = []
        self.kind: str
        self.rows = 0  # rows seen (accepted + rejected)
        self.blank = 0
        if _looks_like_paths(source):
            paths = [source] if isinstance(source, (str, os.PathLike)) else list(source)
            self.files = expand_paths(paths)
            self.kind = "files"
            # open every file now, so a wrong column or format fails before any work
            for f in self.files:
                read_records(
                    f,
                    text_fields=self.text_fields,
                    id_field=id_field,
                    fmt=input_format,
                    errors=ErrorSink(),
                    max_chars=max_chars,
                ).close()
        elif _is_dataset(source):
            self.kind = "dataset"
            names = list(source.column_names or [])  # None for some streaming datasets
            missing = [
                c
                for c in (*self.text_fields, *([id_field] if id_field else []))
                if names and c not in names
            ]
            if missing:
                raise InputError(
                    f"dataset column {missing[0]!r} is missing (columns: "
                    f"{', '.join(map(repr, names[:20]))})"
                )
        elif isinstance(source, (bytes, bytearray)) or not isinstance(source, Iterable):
            raise InputError(
                f"source must be a path, a list of paths, a datasets.Dataset or an iterable of "
                f"note strings; got {describe_type(source)}"
            )
        else:
            self.kind = "texts"
        self.source = source

    def __iter__(self) -> Iterator[_Note]:
        if self.kind == "files":
            yield from self._files()
        elif self.kind == "dataset":
            yield from self._dataset()
        else:
            yield from self._texts()

    def _files(self) -> Iterator[_Note]:
        for f in self.files:
            self.sink.file = str(f)
            reader = read_records(
                f,
                text_fields=self.text_fields,
                id_field=self.id_field,
                fmt=self.input_format,
                errors=self.sink,
                max_chars=self.max_chars,
            )
            try:
                for rec in reader:
                    yield _Note(rec.row, rec.id, rec.text)
            finally:
                reader.close()
                self.rows += reader.rows
                self.blank += reader.blank
        self.sink.file = None

    def _check(self, row: int, rid: str, value: object, name: str) -> str | None:
        if not isinstance(value, str):
            what = "null" if value is None else f"{describe_type(value)}, expected a string"
            self.sink.add(row, rid, "wrong_type", f"{name} is {what}")
            return None
        if len(value) > self.max_chars:
            self.sink.add(
                row,
                rid,
                "too_long",
                f"note is too long ({len(value)} characters > max_chars={self.max_chars})",
            )
            return None
        return value

    def _texts(self) -> Iterator[_Note]:
        first = True
        for i, item in enumerate(self.source, 1):
            if first:
                first = False
                if (
                    isinstance(item, str)
                    and len(item) < 4096
                    and "\n" not in item
                    and _known_suffix(Path(item))
                    and os.path.isfile(item)
                ):
                    raise InputError(
                        "the source's items look like file paths, but a list of str is read "
                        "as notes: pass pathlib.Path objects (or one path) to read files"
                    )
            self.rows += 1
            text = self._check(i, str(i), item, "item")
            if text is not None:
                yield _Note(i, str(i), text)

    def _dataset(self) -> Iterator[_Note]:
        ds = self.source
        columns = [*self.text_fields, *([self.id_field] if self.id_field else [])]
        columns = list(dict.fromkeys(columns))
        row = 0
        for batch in ds.select_columns(columns).iter(batch_size=1000):
            n = len(batch[columns[0]])
            for i in range(n):
                row += 1
                self.rows += 1
                rid = str(row)
                if self.id_field:
                    value = batch[self.id_field][i]
                    if isinstance(value, bool) or not isinstance(value, (str, int)):
                        self.sink.add(row, None, "bad_id", f"id field {self.id_field!r} is invalid")
                        continue
                    rid = str(value)
                values = []
                for name in self.text_fields:
                    v = self._check(row, rid, batch[name][i], f"field {name!r}")
                    if v is None:
                        break
                    values.append((name, v))
                else:
                    text = join_sections(values)[0] if len(values) > 1 else values[0][1]
                    if len(text) > self.max_chars:
                        self._check(row, rid, text, "note")
                        continue
                    yield _Note(row, rid, text)


def _chunks(notes: Iterable[_Note]) -> Iterator[list[_Note]]:
    chunk: list[_Note] = []
    chars = 0
    for note in notes:
        chunk.append(note)
        chars += len(note.text)
        if chars >= CHUNK_CHARS or len(chunk) >= CHUNK_NOTES:
            yield chunk
            chunk = []
            chars = 0
    if chunk:
        yield chunk


# --------------------------------------------------------------------------------------------
# Preparation


@dataclass
class CorpusStats:
    """What went into a LineSentence file.

    ``notes`` notes were read and tokenized into ``lines`` lines of ``tokens`` tokens
    (``distinct`` different words); ``rejected`` rows went to the errors file; ``failed``
    of them failed in tokenization. ``note_mb`` is the UTF-8 size of the notes.

    Example:
        >>> CorpusStats(notes=2, lines=3, tokens=8).tokens_per_line
        2.67
    """

    notes: int = 0
    rows: int = 0
    rejected: int = 0
    failed: int = 0
    blank: int = 0
    lines: int = 0
    tokens: int = 0
    distinct: int = 0
    note_mb: float = 0.0
    file_mb: float = 0.0
    seconds: float = 0.0
    workers: int = 1
    max_tokens: int = DEFAULT_MAX_TOKENS
    sources: list[str] = field(default_factory=list)
    errors_file: str | None = None

    @property
    def tokens_per_line(self) -> float:
        return round(self.tokens / self.lines, 2) if self.lines else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.note_mb / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mb_per_s"] = round(self.mb_per_s, 3)
        d["note_mb"] = round(self.note_mb, 3)
        d["file_mb"] = round(self.file_mb, 3)
        d["seconds"] = round(self.seconds, 3)
        return d


@dataclass
class PreparedCorpus:
    """A LineSentence file with its word counts and the tokenizer that made it.

    :func:`train_word2vec` accepts it as its source (and then skips the preparation).

    Example:
        >>> corpus = prepare_corpus(Path("notes.jsonl"), "corpus.txt")   # doctest: +SKIP
        >>> train_word2vec(corpus, "vectors/")                          # doctest: +SKIP
    """

    path: Path
    counts: Counter
    stats: CorpusStats
    tokenizer_config: dict[str, Any]


def _resolve_tokenizer(tokenizer: Any):
    from ehrtext.text import Tokenizer

    if tokenizer is None:
        return Tokenizer()
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    if isinstance(tokenizer, dict):
        return Tokenizer.from_config(tokenizer)
    raise InputError(f"tokenizer must be a Tokenizer or its config, got {describe_type(tokenizer)}")


def _default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def prepare_corpus(
    source: Any,
    output: str | os.PathLike[str],
    *,
    tokenizer: Any = None,
    workers: int | None = None,
    text_fields: Sequence[str] = ("text",),
    id_field: str | None = None,
    input_format: str | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    max_chars: int = DEFAULT_MAX_CHARS,
    errors: str | os.PathLike[str] | CorpusErrors | None = None,
    progress: bool = True,
) -> PreparedCorpus:
    """Normalize and tokenize ``source`` into the LineSentence file ``output``.

    Args:
        source: a path (file or folder) or a list of ``pathlib.Path`` (TXT, JSONL, CSV/TSV,
            Parquet, optionally ``.gz``; read with :func:`ehrtext.textio.read_records`), a
            ``datasets.Dataset``, or an iterable of note strings.
        output: the file to write (replaced atomically: written as ``output.tmp`` first).
        tokenizer: a :class:`~ehrtext.text.Tokenizer`, its ``config``, or ``None`` (default).
        workers: processes that tokenize (default: one per CPU); 1 runs in this process.
        text_fields, id_field, input_format, max_chars: how to read files and datasets
            (several text fields are joined as ``【field】`` sections).
        max_tokens: longest line written (default 1,000; gensim truncates at 10,000).
        errors: a path for the errors file (JSONL), a :class:`CorpusErrors`, or ``None``
            (kept in memory, see ``stats.rejected``).
        progress: a progress bar on stderr (when it is a terminal).

    Raises:
        InputError: the source, a file, a column or an argument cannot be used (before any
            row is read where possible).
        EhrtextError: a worker process died.

    Example:
        >>> c = prepare_corpus(["胸痛2天。无发热"], "c.txt", workers=1)   # doctest: +SKIP
        >>> Path("c.txt").read_text(encoding="utf-8")                    # doctest: +SKIP
        '胸痛 2天\\n无 发热\\n'
    """
    if workers is None:
        workers = _default_workers()
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise InputError(f"prep workers must be an integer >= 1, got {workers!r}")
    if not isinstance(max_tokens, int) or not 1 <= max_tokens <= 10_000:
        raise InputError(f"max_tokens must be between 1 and 10,000, got {max_tokens!r}")
    tok = _resolve_tokenizer(tokenizer)
    config = tok.config
    output = Path(output)
    own_sink = not isinstance(errors, CorpusErrors)
    sink = errors if isinstance(errors, CorpusErrors) else CorpusErrors(errors)
    try:
        src = _Source(
            source,
            sink,
            text_fields=text_fields,
            id_field=id_field,
            input_format=input_format,
            max_chars=max_chars,
        )
        stats = CorpusStats(workers=workers, max_tokens=max_tokens)
        stats.sources = [str(f) for f in src.files] if src.kind == "files" else [src.kind]
        counts = _write_corpus(src, output, config, workers, max_tokens, stats, sink, progress)
    except BaseException:
        if own_sink:
            sink.abort()
        raise
    if own_sink:
        sink.close()
    stats.rows = src.rows
    stats.blank = src.blank
    stats.rejected = sink.count
    stats.distinct = len(counts)
    stats.errors_file = str(sink.path) if sink.path is not None else None
    return PreparedCorpus(output, counts, stats, config)


def _write_corpus(
    src: _Source,
    output: Path,
    config: dict[str, Any],
    workers: int,
    max_tokens: int,
    stats: CorpusStats,
    sink: CorpusErrors,
    progress: bool,
) -> Counter:
    from tqdm import tqdm

    start = time.perf_counter()
    counts: Counter = Counter()
    tmp = output.with_name(output.name + ".tmp")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fh = open(tmp, "wb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InputError(f"{output}: cannot write the corpus file ({exc.strerror})") from None
    ok = False
    try:
        with tqdm(
            unit=" notes",
            file=sys.stderr,
            disable=True if not progress else None,
            dynamic_ncols=True,
            smoothing=0.1,
            desc="tokenize",
        ) as bar:
            for chunk, res in _results(_chunks(src), config, workers, max_tokens, counts):
                fh.write(res.payload)
                stats.notes += len(chunk) - len(res.failed)
                stats.failed += len(res.failed)
                for i, exc_name in res.failed:
                    note = chunk[i]
                    sink.add(note.row, note.id, "failed", f"tokenization failed ({exc_name})")
                stats.lines += res.lines
                stats.tokens += res.tokens
                stats.note_mb += res.note_bytes / 1e6
                bar.update(len(chunk))
                bar.set_postfix_str(
                    f"{stats.note_mb:.1f} MB, {stats.tokens / 1e6:.1f} M tokens", refresh=False
                )
        fh.close()  # no fsync: an intermediate file, read right away
        os.replace(tmp, output)
        ok = True
    except OSError as exc:
        raise InputError(f"{output}: cannot write the corpus file ({exc.strerror})") from None
    finally:
        if not ok:
            fh.close()
            tmp.unlink(missing_ok=True)
    stats.seconds = time.perf_counter() - start
    stats.file_mb = output.stat().st_size / 1e6
    # One order whatever the number of workers: by count, then by word. gensim keeps this
    # order for words of equal count, so the vocabulary (and the vectors, with one gensim
    # worker and a seed) do not depend on how the corpus was prepared.
    items = sorted(counts.items())  # by word, then (stable) by count, most frequent first
    items.sort(key=itemgetter(1), reverse=True)
    return Counter(dict(items))


def _results(
    chunks: Iterable[list[_Note]],
    config: dict[str, Any],
    workers: int,
    max_tokens: int,
    counts: Counter,
) -> Iterator[tuple[list[_Note], _ChunkResult]]:
    """Chunk results in input order. ``workers > 1`` tokenizes in spawned processes while
    this one reads the input and writes the output, with at most ``4 * workers`` chunks in
    flight (the input is never read far ahead).

    The word counts are added to ``counts``; each worker keeps its own and hands them over
    once at the end (merging them chunk by chunk would cost the main process as much as
    reading the input). (Letting the main process tokenize too, when the workers are busy,
    was tried and is slower: while it holds the GIL the executor cannot feed the workers.)
    """
    if workers <= 1:
        maker = _LineMaker(config, max_tokens)
        maker.counts = counts
        for chunk in chunks:
            yield chunk, maker.chunk([n.text for n in chunk])
        return
    ctx = mp.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(config, max_tokens, ctx.Barrier(workers)),
    )
    ok = False
    try:
        pending: deque[tuple[list[_Note], Future[_ChunkResult]]] = deque()
        for chunk in chunks:
            pending.append((chunk, pool.submit(_worker_chunk, [n.text for n in chunk])))
            if len(pending) >= 4 * workers:
                done, fut = pending.popleft()
                yield done, _get(fut)
        while pending:
            done, fut = pending.popleft()
            yield done, _get(fut)
        for fut in [pool.submit(_worker_counts) for _ in range(workers)]:
            counts.update(_get(fut))
        ok = True
    finally:
        pool.shutdown(wait=ok, cancel_futures=not ok)


def _get(future: Future) -> Any:
    try:
        return future.result()
    except BrokenProcessPool:
        raise EhrtextError(
            "a corpus worker process died (out of memory or killed?); try fewer prep workers"
        ) from None
    except threading.BrokenBarrierError:
        raise EhrtextError("corpus workers did not finish together (timeout)") from None
