"""``ehrtext embed``: train, query, evaluate and export word vectors.

Usage::

    ehrtext embed train notes/ more.jsonl -o vectors/ -f text --min-count 5 --epochs 5
    ehrtext embed neighbors vectors/ 高血压 --topn 10
    ehrtext embed evaluate vectors/ --cdn ../shared/data/corpus/cblue_other/CHIP-CDN
    ehrtext embed export vectors/ -o vectors.tsv --format tsv --limit 50000
    ehrtext embed export vectors/ -o matrix.npy --vocab model/vocab.txt

``train`` reads files and folders (TXT, JSONL, CSV/TSV, Parquet, optionally gzipped); rows
that cannot be used go to an errors file (``--errors``, default ``OUTPUT/errors.jsonl``) as
``{"file", "row", "id", "code", "reason"}`` and the run goes on. Errors print one line and
exit with code 2 (bad input) or 1 (other failures); no note text is ever printed.

Example:
    >>> from typer.testing import CliRunner
    >>> CliRunner().invoke(app, ["--help"]).exit_code
    0
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ehrtext.errors import EhrtextError, InputError

__all__ = ["app"]

app = typer.Typer(
    name="embed",
    help="Word2vec: train on note files, show neighbours, evaluate, export.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@contextmanager
def _clean_errors() -> Iterator[None]:
    """One-line messages and exit codes instead of tracebacks (as the other commands)."""
    try:
        yield
    except InputError as exc:
        typer.echo(f"ehrtext: error: {exc}", err=True)
        raise typer.Exit(2) from None
    except EhrtextError as exc:
        typer.echo(f"ehrtext: error: {exc}", err=True)
        raise typer.Exit(1) from None
    except BrokenPipeError:
        raise
    except OSError as exc:
        typer.echo(f"ehrtext: error: {exc}", err=True)
        raise typer.Exit(1) from None


class Backend(str, Enum):
    """Segmenter backends."""

    rjieba = "rjieba"
    jieba = "jieba"


class VectorFormat(str, Enum):
    """Formats ``load_vectors`` reads."""

    bin = "bin"
    txt = "txt"


class ExportFormat(str, Enum):
    """Export formats."""

    txt = "txt"
    bin = "bin"
    tsv = "tsv"
    npy = "npy"


VectorsArg = Annotated[
    Path, typer.Argument(help="A vectors directory (from `ehrtext embed train`).", metavar="DIR")
]


@app.command()
def train(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Note files or folders (.txt one note a line, .jsonl, .csv, .tsv, .parquet; "
            "optionally .gz).",
            metavar="CORPUS",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Output directory.", metavar="DIR")
    ],
    text_field: Annotated[
        list[str] | None,
        typer.Option(
            "--text-field",
            "-f",
            help="Text column (repeatable; joined as 【field】 sections). Default: text.",
            show_default=False,
            metavar="FIELD",
        ),
    ] = None,
    id_field: Annotated[
        str | None, typer.Option("--id-field", help="Id column (for the errors file).")
    ] = None,
    input_format: Annotated[
        str | None,
        typer.Option("--input-format", help="txt, jsonl, csv, tsv or parquet (default: ext)."),
    ] = None,
    cbow: Annotated[bool, typer.Option("--cbow", help="CBOW instead of skip-gram.")] = False,
    vector_size: Annotated[int, typer.Option("--vector-size", "--dim", min=1)] = 200,
    window: Annotated[int, typer.Option("--window", min=1)] = 5,
    min_count: Annotated[int, typer.Option("--min-count", min=1)] = 5,
    negative: Annotated[int, typer.Option("--negative", min=0)] = 5,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 5,
    workers: Annotated[int, typer.Option("--workers", "-j", min=1, help="gensim threads.")] = 2,
    prep_workers: Annotated[
        int, typer.Option("--prep-workers", min=0, help="Tokenizing processes (0: one per CPU).")
    ] = 0,
    seed: Annotated[int, typer.Option("--seed")] = 42,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, max=10_000, help="Longest corpus line.")
    ] = 1000,
    backend: Annotated[Backend, typer.Option("--backend", help="Segmenter.")] = Backend.rjieba,
    stopwords: Annotated[bool, typer.Option("--stopwords", help="Drop stopwords.")] = False,
    t2s: Annotated[bool, typer.Option("--t2s", help="Traditional -> simplified.")] = False,
    errors: Annotated[
        Path | None, typer.Option("--errors", help="Errors file (default OUTPUT/errors.jsonl).")
    ] = None,
    no_kv: Annotated[
        bool, typer.Option("--no-kv", help="Do not save vectors.kv (gensim pickle format).")
    ] = False,
    keep_corpus: Annotated[
        bool, typer.Option("--keep-corpus", help="Keep the tokenized corpus (corpus.txt).")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace vectors already in OUTPUT.")
    ] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bars.")] = False,
) -> None:
    """Train word2vec on note files: tokenize in parallel, then gensim (corpus_file mode)."""
    with _clean_errors():
        from ehrtext.embeddings.word2vec import describe, train_word2vec
        from ehrtext.text import NormalizerConfig, Tokenizer

        tok = Tokenizer(
            backend=backend.value,
            stopwords=stopwords,
            normalizer=NormalizerConfig(traditional_to_simplified=t2s),
        )
        _log_to_stderr(not no_progress)
        res = train_word2vec(
            [Path(p) for p in inputs],
            output,
            tokenizer=tok,
            sg=0 if cbow else 1,
            vector_size=vector_size,
            window=window,
            min_count=min_count,
            negative=negative,
            epochs=epochs,
            workers=workers,
            prep_workers=prep_workers or None,
            seed=seed,
            text_fields=text_field or ["text"],
            id_field=id_field,
            input_format=input_format,
            max_tokens=max_tokens,
            errors=errors,
            save_formats=("bin", "txt") if no_kv else ("bin", "txt", "kv"),
            keep_corpus=keep_corpus,
            overwrite=overwrite,
            progress=not no_progress,
        )
        c = res.corpus
        line = (
            f"ehrtext embed train: read {c.get('rows', 0)} rows: {c.get('notes', 0)} notes used, "
            f"{c.get('rejected', 0)} errors"
        )
        if c.get("rejected"):
            line += f" -> {errors or output / 'errors.jsonl'}"
        typer.echo(line, err=True)
        typer.echo(describe(res), err=True)


def _log_to_stderr(verbose: bool) -> None:
    """Epoch lines on stderr (INFO) unless the application configured logging itself."""
    log = logging.getLogger("ehrtext.embeddings")
    if verbose and not logging.getLogger().handlers and not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


@app.command()
def neighbors(
    vectors: VectorsArg,
    words: Annotated[
        list[str],
        typer.Argument(
            help="Words (or phrases: tokenized, their known tokens averaged).", metavar="WORD..."
        ),
    ],
    topn: Annotated[int, typer.Option("--topn", "-n", min=1, help="Neighbours shown.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines output.")] = False,
) -> None:
    """Show the nearest words (cosine) of each WORD."""
    with _clean_errors():
        from ehrtext.embeddings.word2vec import load_vectors

        res = load_vectors(vectors)
        tok = None
        missing = 0
        for word in words:
            if word not in res.vectors.key_to_index and tok is None:
                tok = res.tokenizer()
            try:
                near = res.neighbors(word, topn=topn, tokenizer=tok)
            except KeyError:
                missing += 1
                if as_json:
                    typer.echo(json.dumps({"query": word, "neighbors": None}, ensure_ascii=False))
                else:
                    typer.echo(f"{word}: not in the vocabulary")
                continue
            if as_json:
                obj = {"query": word, "neighbors": [[w, round(s, 4)] for w, s in near]}
                typer.echo(json.dumps(obj, ensure_ascii=False))
            else:
                typer.echo(f"{word}:")
                for w, s in near:
                    typer.echo(f"  {s:.3f}  {w}")
        if missing == len(words):
            raise typer.Exit(1)


@app.command()
def evaluate(
    vectors: VectorsArg,
    pairs: Annotated[
        list[Path] | None,
        typer.Option(
            "--pairs", help="Synonym pairs: TSV raw<TAB>standard (repeatable).", metavar="TSV"
        ),
    ] = None,
    cdn: Annotated[
        Path | None,
        typer.Option("--cdn", help="CHIP-CDN folder (train/dev JSON): raw -> ICD name pairs."),
    ] = None,
    lexicons: Annotated[
        Path | None,
        typer.Option("--lexicons", help="Lexicons folder: CMeKG disease -> ICD name pairs."),
    ] = None,
    categories: Annotated[
        Path | None,
        typer.Option(
            "--categories", help="Tagged dictionary (word freq tag); default: the shipped one."
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, help="Cut-off of hit@k and precision@k.")] = 10,
    max_queries: Annotated[
        int, typer.Option("--max-queries", min=1, help="Query words per category.")
    ] = 1000,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report as JSON.")
    ] = None,
) -> None:
    """Synonym retrieval (MRR, hit@k) and category coherence (precision@k) of the vectors."""
    with _clean_errors():
        from ehrtext.embeddings.evaluate import (
            evaluate_vectors,
            load_categories,
            load_cdn_pairs,
            load_icd_alias_pairs,
            read_pairs,
        )
        from ehrtext.embeddings.word2vec import load_vectors

        res = load_vectors(vectors)
        sets: dict[str, list[tuple[str, str]]] = {}
        for p in pairs or []:
            sets[p.stem] = read_pairs(p)
        if cdn is not None:
            sets["chip_cdn"] = load_cdn_pairs(cdn)
        if lexicons is not None:
            sets["icd_aliases"] = load_icd_alias_pairs(lexicons)
        cats = load_categories(categories) if categories is not None else None
        report = evaluate_vectors(
            res,
            pairs=sets,
            categories=cats,
            tokenizer=res.tokenizer() if sets else None,
            k=k,
            max_queries=max_queries,
        ).to_dict()
        for name, r in report["synonyms"].items():
            typer.echo(
                f"synonyms {name}: MRR {r['mrr']:.3f}, hit@{k} {r['hit_at_k']:.3f} over "
                f"{r['pairs_evaluated']} pairs ({r['pairs_single_token']} single-token of "
                f"{r['pairs_total']})"
            )
        for name, r in report["coherence"].items():
            if name == "macro_precision":
                typer.echo(f"coherence macro precision@{k}: {r:.3f}")
                continue
            typer.echo(
                f"coherence {name}: precision@{k} {r['precision']:.3f} over {r['queries']} "
                f"words (chance {r['chance']:.3f})"
            )
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(
                json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
            )


@app.command()
def export(
    vectors: VectorsArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output file.", metavar="PATH")],
    out_format: Annotated[
        ExportFormat | None,
        typer.Option(
            "--format",
            help="txt / bin (word2vec), tsv (vectors + OUTPUT.metadata.tsv, for TensorBoard's "
            "projector), npy (the embedding matrix of --vocab). Default: from the extension.",
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the N most frequent words.")
    ] = None,
    vocab: Annotated[
        Path | None,
        typer.Option("--vocab", help="A model vocabulary (one token a line) for --format npy."),
    ] = None,
    oov: Annotated[
        str, typer.Option("--oov", help="OOV rows: char_mean, random or zeros (npy).")
    ] = "char_mean",
    seed: Annotated[int, typer.Option("--seed", help="Seed of random rows (npy).")] = 0,
    source_format: Annotated[
        VectorFormat, typer.Option("--from", help="Which saved file to read.")
    ] = VectorFormat.bin,
) -> None:
    """Export vectors (word2vec text/binary, projector TSV) or a model's embedding matrix."""
    with _clean_errors():
        import numpy as np

        from ehrtext.embeddings.word2vec import load_vectors

        fmt = out_format.value if out_format is not None else _format_from(output)
        if fmt == "npy" and vocab is None:
            raise InputError("--format npy needs --vocab (the model vocabulary, one token a line)")
        if fmt != "npy" and vocab is not None:
            raise InputError("--vocab applies to --format npy only")
        res = load_vectors(vectors, format=source_format.value)
        kv = res.vectors
        output.parent.mkdir(parents=True, exist_ok=True)
        if fmt in ("txt", "bin"):
            n = min(limit or len(kv), len(kv))
            if n < len(kv):
                from gensim.models import KeyedVectors

                top = KeyedVectors(kv.vector_size)
                top.add_vectors(kv.index_to_key[:n], kv.vectors[:n])
                kv = top
            kv.save_word2vec_format(str(output), binary=(fmt == "bin"))
            typer.echo(f"wrote {n} vectors to {output}", err=True)
        elif fmt == "tsv":
            n = min(limit or len(kv), len(kv))
            meta = output.with_name(output.stem + ".metadata.tsv")
            with open(output, "w", encoding="utf-8") as fv, open(meta, "w", encoding="utf-8") as fm:
                for i in range(n):
                    fv.write("\t".join(f"{x:.6g}" for x in kv.vectors[i]) + "\n")
                    fm.write(kv.index_to_key[i] + "\n")
            typer.echo(f"wrote {n} vectors to {output} and words to {meta}", err=True)
        else:
            from ehrtext.embeddings.matrix import build_embedding_matrix

            assert vocab is not None
            try:
                words = vocab.read_text(encoding="utf-8").split("\n")
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"{vocab}: cannot read ({type(exc).__name__})") from None
            if words and words[-1] == "":
                words.pop()
            matrix, coverage = build_embedding_matrix(
                words, kv, oov=oov, seed=seed, as_tensor=False
            )
            np.save(output, matrix, allow_pickle=False)
            cov_file = output.with_name(output.stem + ".coverage.json")
            cov_file.write_text(json.dumps(coverage.to_dict(), indent=2) + "\n", encoding="utf-8")
            typer.echo(
                f"wrote a {matrix.shape[0]} x {matrix.shape[1]} matrix to {output}", err=True
            )
            typer.echo(f"coverage: {coverage}", err=True)


def _format_from(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("txt", "vec"):
        return "txt"
    if suffix in ("bin", "tsv", "npy"):
        return suffix
    raise InputError(f"{path}: cannot tell the export format; pass --format txt|bin|tsv|npy")
