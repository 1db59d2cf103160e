"""Word2vec training with gensim in its fastest mode (``corpus_file=``), saving and loading.

:func:`train_word2vec` prepares the corpus (:func:`~ehrtext.embeddings.corpus.prepare_corpus`:
normalize + tokenize in several processes into a LineSentence file), builds the vocabulary
from the word counts the workers collected (gensim's own scan is a single Python thread), and
trains gensim ``Word2Vec`` with ``corpus_file=``. Progress (percent and words/s) comes from
gensim's log records, shown as a progress bar and logged by epoch.

The output directory::

    vectors/
      embeddings.json   format, versions, every parameter, tokenizer settings + dictionary
                        hash, corpus statistics, training time and words/s, file sizes and
                        SHA-256 of the files below
      vectors.bin       word2vec binary format  (what load_vectors reads by default)
      vectors.txt       word2vec text format
      vectors.kv        gensim KeyedVectors.save (pickle-based: load only files you trust;
                        never read by load_vectors unless asked)
      tokenizer/        Tokenizer.to_disk: the exact tokenizer, dictionaries included
      errors.jsonl      rows that could not be used (row, id, reason; never the text)

Example:
    >>> from ehrtext.embeddings import train_word2vec, load_vectors
    >>> res = train_word2vec(Path("notes.jsonl"), "vectors/", min_count=5)  # doctest: +SKIP
    >>> load_vectors("vectors/").vectors.most_similar("高血压", topn=3)    # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ehrtext._version import __version__
from ehrtext.embeddings.corpus import (
    DEFAULT_MAX_TOKENS,
    CorpusErrors,
    PreparedCorpus,
    prepare_corpus,
)
from ehrtext.errors import EhrtextError, InputError, ModelFileError
from ehrtext.textio import DEFAULT_MAX_CHARS

if TYPE_CHECKING:  # pragma: no cover
    from gensim.models import KeyedVectors

    from ehrtext.text import Tokenizer

logger = logging.getLogger(__name__)

__all__ = [
    "EMBEDDINGS_FORMAT",
    "EmbeddingResult",
    "MissingDependencyError",
    "load_vectors",
    "train_word2vec",
]

#: Version of the directory layout / ``embeddings.json``.
EMBEDDINGS_FORMAT = 1
INFO_FILE = "embeddings.json"
VECTOR_FILES = {"bin": "vectors.bin", "txt": "vectors.txt", "kv": "vectors.kv"}


class MissingDependencyError(EhrtextError, ImportError):
    """An optional dependency (gensim) is not installed; the message says how to install it."""


def _gensim():
    try:
        import gensim
        from gensim.models import KeyedVectors, Word2Vec
    except ImportError as exc:
        raise MissingDependencyError(
            "word2vec needs gensim: pip install 'ehrtext[embeddings]' (or pip install gensim)"
        ) from exc
    return gensim, Word2Vec, KeyedVectors


# --------------------------------------------------------------------------------------------
# The result


@dataclass
class EmbeddingResult:
    """Trained (or loaded) word vectors with their ``embeddings.json``.

    Attributes:
        path: the directory.
        vectors: gensim ``KeyedVectors`` (``vectors.most_similar(word)``, ``vectors[word]``).
        info: the contents of ``embeddings.json``.

    Example:
        >>> res = load_vectors("vectors/")                     # doctest: +SKIP
        >>> res.vocab_size, res.vector_size                    # doctest: +SKIP
        (52311, 200)
        >>> res.neighbors("高血压", topn=2)                     # doctest: +SKIP
        [('高血压病', 0.83), ('原发性高血压', 0.79)]
    """

    path: Path
    vectors: KeyedVectors
    info: dict[str, Any] = field(repr=False)

    @property
    def vocab_size(self) -> int:
        return len(self.vectors.index_to_key)

    @property
    def vector_size(self) -> int:
        return int(self.vectors.vector_size)

    @property
    def corpus(self) -> dict[str, Any]:
        """Corpus statistics (notes, lines, tokens, ...)."""
        return self.info.get("corpus", {})

    def tokenizer(self) -> Tokenizer:
        """The tokenizer the vectors were trained with (from ``tokenizer/``), hash-checked."""
        from ehrtext.text import Tokenizer

        folder = self.path / "tokenizer"
        try:
            tok = Tokenizer.from_disk(folder)
        except EhrtextError as exc:
            raise ModelFileError(f"{folder}: cannot load the tokenizer ({exc})") from None
        expected = self.info.get("tokenizer", {}).get("dictionary_hash")
        if expected and tok.dictionary_hash != expected:
            raise ModelFileError(
                f"{folder}: the tokenizer's dictionary hash differs from {INFO_FILE} "
                "(dictionary files changed after training)"
            )
        return tok

    def neighbors(
        self, query: str, topn: int = 10, *, tokenizer: Tokenizer | None = None
    ) -> list[tuple[str, float]]:
        """Nearest words by cosine. A ``query`` that is not a vocabulary word is tokenized and
        the mean of its known tokens' vectors is used.

        Raises:
            KeyError: no token of ``query`` is in the vocabulary (the message names no text).
        """
        kv = self.vectors
        if query in kv.key_to_index:
            return [(w, float(s)) for w, s in kv.most_similar(query, topn=topn)]
        tok = tokenizer or self.tokenizer()
        known = [t for t in tok.cut(query) if t in kv.key_to_index]
        if not known:
            raise KeyError("no token of the query is in the vocabulary")
        return [(w, float(s)) for w, s in kv.most_similar(positive=known, topn=topn)]


# --------------------------------------------------------------------------------------------
# Training


def _check_params(p: dict[str, Any]) -> None:
    def positive_int(name: str, minimum: int = 1) -> None:
        v = p[name]
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise InputError(f"{name} must be an integer >= {minimum}, got {v!r}")

    for name in ("vector_size", "window", "min_count", "epochs", "workers"):
        positive_int(name)
    positive_int("negative", 0)
    if p["sg"] not in (0, 1):
        raise InputError(f"sg must be 1 (skip-gram) or 0 (CBOW), got {p['sg']!r}")
    if p["hs"] not in (0, 1):
        raise InputError(f"hs must be 0 or 1, got {p['hs']!r}")
    if p["negative"] == 0 and p["hs"] == 0:
        raise InputError("negative=0 needs hs=1 (hierarchical softmax), else nothing is trained")
    if not isinstance(p["seed"], int) or isinstance(p["seed"], bool):
        raise InputError(f"seed must be an integer, got {p['seed']!r}")
    for name in ("alpha", "min_alpha", "sample"):
        v = p[name]
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or not math.isfinite(v):
            raise InputError(f"{name} must be a number >= 0, got {v!r}")
    if p["alpha"] <= 0:
        raise InputError(f"alpha must be > 0, got {p['alpha']!r}")
    mfv = p["max_final_vocab"]
    if mfv is not None and (not isinstance(mfv, int) or isinstance(mfv, bool) or mfv < 1):
        raise InputError(f"max_final_vocab must be None or an integer >= 1, got {mfv!r}")


def train_word2vec(
    source: Any,
    output_dir: str | os.PathLike[str],
    *,
    tokenizer: Tokenizer | dict[str, Any] | None = None,
    sg: int = 1,
    vector_size: int = 200,
    window: int = 5,
    min_count: int = 5,
    negative: int = 5,
    epochs: int = 5,
    workers: int = 2,
    seed: int = 42,
    sample: float = 1e-3,
    alpha: float = 0.025,
    min_alpha: float = 0.0001,
    hs: int = 0,
    max_final_vocab: int | None = None,
    prep_workers: int | None = None,
    text_fields: Sequence[str] = ("text",),
    id_field: str | None = None,
    input_format: str | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    max_chars: int = DEFAULT_MAX_CHARS,
    errors: str | os.PathLike[str] | None = None,
    save_formats: Sequence[str] = ("bin", "txt", "kv"),
    keep_corpus: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> EmbeddingResult:
    """Train word2vec on notes and save the vectors in ``output_dir``.

    Args:
        source: files (a path, a folder, or a list of ``pathlib.Path``: TXT, JSONL, CSV/TSV,
            Parquet), a ``datasets.Dataset``, an iterable of note strings, or a
            :class:`~ehrtext.embeddings.corpus.PreparedCorpus` (already tokenized).
        output_dir: where the vectors go (created; an existing trained directory is replaced
            only with ``overwrite=True``).
        tokenizer: a :class:`~ehrtext.text.Tokenizer` (or its config); default ``Tokenizer()``.
        sg, vector_size, window, min_count, negative, epochs, workers, seed, sample, alpha,
            min_alpha, hs, max_final_vocab: gensim ``Word2Vec`` parameters (``sg=1``:
            skip-gram, ``0``: CBOW). Vectors are reproducible with ``workers=1`` and a seed;
            several gensim workers update them concurrently (not bit-reproducible).
        prep_workers: processes that tokenize (default: one per CPU).
        text_fields, id_field, input_format, max_chars: how files and datasets are read.
        max_tokens: longest corpus line in tokens (gensim truncates lines over 10,000).
        errors: the errors file (default ``output_dir/errors.jsonl``).
        save_formats: any of ``"bin"`` (word2vec binary), ``"txt"`` (word2vec text), ``"kv"``
            (gensim ``KeyedVectors.save``: pickle-based). At least one of bin/txt.
        keep_corpus: keep the tokenized corpus as ``output_dir/corpus.txt`` (it holds the
            notes' words: it is deleted by default).
        overwrite: replace the vectors of an earlier run in ``output_dir``.
        progress: progress bars on stderr (when it is a terminal).

    Returns:
        :class:`EmbeddingResult` (the vectors and the contents of ``embeddings.json``).

    Raises:
        InputError: a bad argument, an unreadable source, an empty corpus, or a corpus where
            no word occurs ``min_count`` times (bad rows are in the errors file).
        MissingDependencyError: gensim is not installed.

    Example:
        >>> res = train_word2vec(Path("notes/"), "vectors/", epochs=5)      # doctest: +SKIP
        >>> res.info["corpus"]["tokens"], res.vocab_size                   # doctest: +SKIP
    """
    params: dict[str, Any] = {
        "sg": sg,
        "vector_size": vector_size,
        "window": window,
        "min_count": min_count,
        "negative": negative,
        "epochs": epochs,
        "workers": workers,
        "seed": seed,
        "sample": sample,
        "alpha": alpha,
        "min_alpha": min_alpha,
        "hs": hs,
        "max_final_vocab": max_final_vocab,
    }
    _check_params(params)
    formats = list(dict.fromkeys(save_formats))
    unknown = [f for f in formats if f not in VECTOR_FILES]
    if unknown or not ({"bin", "txt"} & set(formats)):
        raise InputError(
            f"save_formats must include 'bin' or 'txt' (and may add 'kv'), got {list(save_formats)}"
        )
    _gensim()  # fail now, not after the corpus is prepared
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    if (out / INFO_FILE).exists() and not overwrite:
        raise InputError(
            f"{out}: holds trained vectors already; pass overwrite=True (--overwrite) to replace"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        # the old embeddings.json goes first: a run that fails must not leave it describing
        # files that are being replaced
        (out / INFO_FILE).unlink(missing_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create the output directory ({exc.strerror})") from None

    t0 = time.perf_counter()
    prepared_here = not isinstance(source, PreparedCorpus)
    if prepared_here:
        errors_path = Path(errors) if errors is not None else out / "errors.jsonl"
        corpus_path = out / f".corpus-{os.getpid()}.txt"
        sink = CorpusErrors(errors_path)
        try:
            corpus = prepare_corpus(
                source,
                corpus_path,
                tokenizer=tokenizer,
                workers=prep_workers,
                text_fields=text_fields,
                id_field=id_field,
                input_format=input_format,
                max_tokens=max_tokens,
                max_chars=max_chars,
                errors=sink,
                progress=progress,
            )
        except BaseException:
            sink.abort()
            raise
        sink.close()  # kept even when training fails below: it explains an empty corpus
    else:
        corpus = source
        if tokenizer is not None:
            raise InputError("a PreparedCorpus carries its tokenizer: do not pass tokenizer=")
        if not corpus.path.is_file():
            raise InputError(f"{corpus.path}: the prepared corpus file is missing")
    try:
        result = _train_and_save(corpus, out, params, formats, progress)
        result.info["timing"]["total_seconds"] = round(time.perf_counter() - t0, 3)
        _write_info(out, result.info)
    finally:
        if prepared_here:
            if keep_corpus and corpus.path.exists():
                os.replace(corpus.path, out / "corpus.txt")
            else:
                corpus.path.unlink(missing_ok=True)
    return result


def _check_corpus(corpus: PreparedCorpus, min_count: int) -> None:
    s = corpus.stats
    if s.tokens == 0:
        parts = [f"the corpus is empty: no token in {s.notes} notes"]
        if s.rejected:
            where = f" (see {s.errors_file})" if s.errors_file else ""
            parts.append(f"{s.rejected} rows rejected{where}")
        if s.blank:
            parts.append(f"{s.blank} blank lines")
        if s.rows and s.rejected == s.rows:
            parts.append("every row was rejected: check text_fields and the input format")
        raise InputError("; ".join(parts))
    top = max(corpus.counts.values())
    if top < min_count:
        raise InputError(
            f"no word occurs min_count={min_count} times: the corpus has {s.tokens} tokens, "
            f"{len(corpus.counts)} distinct words, the most frequent occurring {top} times; "
            "lower min_count or train on more text"
        )


class _Progress(logging.Handler):
    """Reads gensim's progress log records: a progress bar (percent of all epochs, words/s)
    and one log line per epoch. Records at or above ``forward_level`` are passed on."""

    def __init__(self, epochs: int, progress: bool, forward_level: int) -> None:
        super().__init__(logging.DEBUG)
        from tqdm import tqdm

        self.epochs = epochs
        self.forward_level = forward_level
        self.epoch_stats: list[dict[str, float]] = []
        self.bar = tqdm(
            total=100 * epochs,
            unit="%",
            file=sys.stderr,
            disable=True if not progress else None,
            dynamic_ncols=True,
            desc="word2vec",
            bar_format="{desc}: {percentage:3.0f}%|{bar}| epoch {postfix}",
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg, args = str(record.msg), record.args
            if msg.startswith("EPOCH %i - PROGRESS") and isinstance(args, tuple):
                epoch, pct, wps = int(args[0]), float(args[1]), float(args[2])
                self._show(epoch, pct, wps)
            elif msg.startswith("EPOCH %i: training on") and isinstance(args, tuple):
                epoch, raw, eff, secs, wps = args[:5]
                self.epoch_stats.append(
                    {"raw_words": int(raw), "effective_words": int(eff), "seconds": float(secs)}
                )
                self._show(int(epoch), 100.0, float(wps))
                logger.info(
                    "word2vec epoch %d/%d: %d words in %.1f s, %.0f effective words/s",
                    int(epoch) + 1,
                    self.epochs,
                    int(raw),
                    float(secs),
                    float(wps),
                )
            if record.levelno >= self.forward_level:
                logging.getLogger("gensim.models").handle(record)
        except Exception:  # noqa: BLE001 - a progress display must never break training
            self.handleError(record)

    def _show(self, epoch: int, pct: float, wps: float) -> None:
        n = int(epoch * 100 + pct)
        if n > self.bar.n:
            self.bar.update(n - self.bar.n)
        self.bar.set_postfix_str(
            f"{epoch + 1}/{self.epochs}, {wps / 1e6:.2f} M words/s", refresh=True
        )

    def close(self) -> None:
        self.bar.close()
        super().close()


def _train_and_save(
    corpus: PreparedCorpus,
    out: Path,
    params: dict[str, Any],
    formats: list[str],
    progress: bool,
) -> EmbeddingResult:
    gensim, Word2Vec, _ = _gensim()
    _check_corpus(corpus, params["min_count"])
    stats = corpus.stats
    t0 = time.perf_counter()
    model = Word2Vec(
        vector_size=params["vector_size"],
        window=params["window"],
        min_count=params["min_count"],
        sg=params["sg"],
        hs=params["hs"],
        negative=params["negative"],
        sample=params["sample"],
        alpha=params["alpha"],
        min_alpha=params["min_alpha"],
        epochs=params["epochs"],
        workers=params["workers"],
        seed=params["seed"],
        max_final_vocab=params["max_final_vocab"],
    )
    # The counts are in corpus order, as gensim's own scan would collect them, so the
    # vocabulary (and its order) is the one gensim would build from the file.
    model.build_vocab_from_freq(corpus.counts, corpus_count=stats.lines)
    model.corpus_total_words = stats.tokens
    vocab_seconds = time.perf_counter() - t0
    if not model.wv.index_to_key:  # max_final_vocab / min_count left nothing
        raise InputError(
            f"no word is left in the vocabulary with min_count={params['min_count']}; lower it"
        )

    gensim_logger = logging.getLogger("gensim.models.word2vec")
    forward = gensim_logger.getEffectiveLevel()
    handler = _Progress(params["epochs"], progress, forward)
    old_level, old_propagate = gensim_logger.level, gensim_logger.propagate
    gensim_logger.addHandler(handler)
    gensim_logger.setLevel(logging.INFO)
    gensim_logger.propagate = False
    t1 = time.perf_counter()
    try:
        model.train(
            corpus_file=str(corpus.path),
            total_examples=stats.lines,
            total_words=stats.tokens,
            epochs=params["epochs"],
            report_delay=1.0,
        )
    except (RuntimeError, ValueError, OSError, MemoryError) as exc:
        raise EhrtextError(f"word2vec training failed ({type(exc).__name__})") from None
    finally:
        gensim_logger.removeHandler(handler)
        gensim_logger.setLevel(old_level)
        gensim_logger.propagate = old_propagate
        handler.close()
    train_seconds = time.perf_counter() - t1

    kv = model.wv
    t2 = time.perf_counter()
    files = _save_vectors(kv, out, formats)
    corpus_tok = corpus.tokenizer_config
    from ehrtext.text import Tokenizer

    tok = Tokenizer.from_config(corpus_tok)
    tok_dir = out / "tokenizer"
    if tok_dir.exists():
        shutil.rmtree(tok_dir)
    tok.to_disk(tok_dir)
    save_seconds = time.perf_counter() - t2

    effective = sum(e["effective_words"] for e in handler.epoch_stats)
    raw_total = stats.tokens * params["epochs"]
    import numpy

    info: dict[str, Any] = {
        "format": EMBEDDINGS_FORMAT,
        "kind": "word2vec",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {
            "ehrtext": __version__,
            "gensim": gensim.__version__,
            "numpy": numpy.__version__,
            "python": platform.python_version(),
        },
        "params": {**params, "max_tokens": stats.max_tokens, "prep_workers": stats.workers},
        "tokenizer": {"config": corpus_tok, "dictionary_hash": tok.dictionary_hash},
        "corpus": {
            **{
                k: v
                for k, v in stats.to_dict().items()
                if k not in ("sources", "errors_file", "max_tokens", "workers")
            },
            "sources": len(stats.sources),
            "errors_file": Path(stats.errors_file).name if stats.errors_file else None,
        },
        "vocab_size": len(kv.index_to_key),
        "vector_size": int(kv.vector_size),
        "timing": {
            "prepare_seconds": round(stats.seconds, 3),
            "vocab_seconds": round(vocab_seconds, 3),
            "train_seconds": round(train_seconds, 3),
            "save_seconds": round(save_seconds, 3),
            "words_per_second": round(raw_total / train_seconds) if train_seconds > 0 else None,
            "effective_words_per_second": (
                round(effective / train_seconds) if train_seconds > 0 and effective else None
            ),
            "epochs": handler.epoch_stats,
        },
        "files": files,
    }
    logger.info(
        "word2vec: %d words in the vocabulary, %d tokens x %d epochs in %.1f s",
        info["vocab_size"],
        stats.tokens,
        params["epochs"],
        train_seconds,
    )
    return EmbeddingResult(out, kv, info)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _save_vectors(kv: Any, out: Path, formats: list[str]) -> dict[str, dict[str, Any]]:
    """Write the vector files (each via a temporary name, then renamed); their sizes and hashes."""
    for stale in out.glob("vectors.kv*"):  # an earlier .kv may have left a .npy beside it
        stale.unlink()
    written: list[Path] = []
    try:
        for fmt in formats:
            target = out / VECTOR_FILES[fmt]
            if fmt == "kv":
                kv.save(str(target))
                written.extend(sorted(out.glob("vectors.kv*")))
                continue
            tmp = target.with_name(target.name + ".tmp")
            if fmt == "bin":
                kv.save_word2vec_format(str(tmp), binary=True)
            else:
                _write_text_format(kv, tmp)
            os.replace(tmp, target)
            written.append(target)
    except OSError as exc:
        raise InputError(f"{out}: cannot write the vectors ({exc.strerror})") from None
    return {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in written}


def _write_text_format(kv: Any, path: Path) -> None:
    """The word2vec text format, as gensim writes it but twice as fast: ``%.9g`` keeps every
    float32 exactly (what gensim's ``repr`` does too)."""
    m = kv.vectors
    row_format = " ".join(["%.9g"] * m.shape[1])
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(f"{m.shape[0]} {m.shape[1]}\n")
        for key, row in zip(kv.index_to_key, m.tolist(), strict=True):
            fh.write(f"{key} {row_format % tuple(row)}\n")


def _write_info(out: Path, info: dict[str, Any]) -> None:
    tmp = out / (INFO_FILE + ".tmp")
    tmp.write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out / INFO_FILE)


# --------------------------------------------------------------------------------------------
# Loading


def read_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``embeddings.json`` of a vectors directory, checked.

    Raises:
        ModelFileError: the directory or file is missing, not JSON, or of a newer format.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ModelFileError(f"{folder}: not a directory (expected trained vectors)")
    info_file = folder / INFO_FILE
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(
            f"{info_file} is missing: not an ehrtext vectors directory "
            "(train one with `ehrtext embed train`)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{info_file} cannot be read ({type(exc).__name__})") from None
    if not isinstance(info, dict) or info.get("kind") != "word2vec":
        raise ModelFileError(f"{info_file} does not describe word2vec vectors")
    fmt = info.get("format")
    if not isinstance(fmt, int):
        raise ModelFileError(f"{info_file} has no valid 'format' entry")
    if fmt > EMBEDDINGS_FORMAT:
        raise ModelFileError(
            f"{info_file} has format {fmt}, newer than this ehrtext supports "
            f"({EMBEDDINGS_FORMAT}): upgrade ehrtext"
        )
    for key in ("files", "vocab_size", "vector_size"):
        if key not in info:
            raise ModelFileError(f"{info_file} lacks the {key!r} entry")
    return info


def load_vectors(
    path: str | os.PathLike[str], *, format: str = "bin", verify: bool = True
) -> EmbeddingResult:
    """Load vectors saved by :func:`train_word2vec`, after checking them against
    ``embeddings.json`` (present, full size, SHA-256 when ``verify``).

    Args:
        path: the vectors directory.
        format: ``"bin"`` (default) or ``"txt"`` (word2vec formats, no pickle), or ``"kv"``
            (gensim's pickle-based ``KeyedVectors.load``: only for files you trust).
        verify: check the SHA-256 of the file (reads it once more).

    Raises:
        ModelFileError: a missing, truncated, modified or unreadable file, or a mismatch with
            ``embeddings.json``; the message names the file and what is wrong.

    Example:
        >>> res = load_vectors("vectors/")                       # doctest: +SKIP
        >>> res.vectors["高血压"].shape                           # doctest: +SKIP
        (200,)
    """
    _, _, KeyedVectors = _gensim()
    if format not in VECTOR_FILES:
        raise InputError(f"format must be one of {', '.join(VECTOR_FILES)}, got {format!r}")
    folder = Path(path)
    info = read_info(folder)
    name = VECTOR_FILES[format]
    names = [name] + (
        [n for n in info["files"] if n.startswith(name + ".")] if format == "kv" else []
    )
    for n in names:
        _check_file(folder, n, info, verify)
    target = folder / name
    try:
        if format == "kv":
            kv = KeyedVectors.load(str(target))
        else:
            kv = KeyedVectors.load_word2vec_format(str(target), binary=(format == "bin"))
    except Exception as exc:  # gensim raises EOFError, ValueError, UnicodeDecodeError ...
        raise ModelFileError(
            f"{target}: cannot be read as word vectors ({type(exc).__name__})"
        ) from None
    if len(kv.index_to_key) != info["vocab_size"] or kv.vector_size != info["vector_size"]:
        raise ModelFileError(
            f"{target}: holds {len(kv.index_to_key)} x {kv.vector_size} vectors, "
            f"{INFO_FILE} says {info['vocab_size']} x {info['vector_size']}"
        )
    return EmbeddingResult(folder, kv, info)


def _check_file(folder: Path, name: str, info: dict[str, Any], verify: bool) -> None:
    entry = info["files"].get(name)
    path = folder / name
    if entry is None:
        saved = ", ".join(sorted(info["files"])) or "none"
        raise ModelFileError(f"{path}: this format was not saved (saved: {saved})")
    if not path.is_file():
        raise ModelFileError(f"{path} is missing")
    size = path.stat().st_size
    if size != entry.get("bytes"):
        what = "truncated" if size < entry.get("bytes", 0) else "modified"
        raise ModelFileError(
            f"{path} is {what}: {size} bytes, {INFO_FILE} says {entry.get('bytes')}"
        )
    if verify and entry.get("sha256") and _sha256(path) != entry["sha256"]:
        raise ModelFileError(f"{path} was modified or corrupted (SHA-256 differs from {INFO_FILE})")


def describe(result: EmbeddingResult) -> str:
    """One line about a vectors directory (for the CLI)."""
    c = result.corpus
    t = result.info.get("timing", {})
    return (
        f"{result.path}: {result.vocab_size} words x {result.vector_size} dims; corpus "
        f"{c.get('notes', 0)} notes, {c.get('lines', 0)} lines, {c.get('tokens', 0)} tokens; "
        f"trained in {t.get('train_seconds', 0):.1f} s "
        f"({(t.get('words_per_second') or 0) / 1e6:.2f} M words/s)"
    )
