"""``ehrtext score``: score note files or SQL tables with a saved model, resumably.

Usage::

    ehrtext score --model model/ --input notes.jsonl --output scores.jsonl
    ehrtext score --model model/ --input "sqlite:///ehr.db?table=notes" \\
        --output "sqlite:///ehr.db?table=scores" --workers 2 --resume
    ehrtext score --model model/ --input notes.csv -f 主诉 -f 现病史 --output scores.parquet
    ehrtext score --model model/ --input "postgresql://me@127.0.0.1:5432/ehr?table=notes" \\
        --output "postgresql://me@127.0.0.1:5432/ehr?table=scores"

The command is mounted on the main ``ehrtext`` app in :mod:`ehrtext.cli`; the engine is
:func:`ehrtext.scoring.score`.

Example:
    >>> from typer.testing import CliRunner
    >>> from ehrtext.cli import app
    >>> CliRunner().invoke(app, ["score", "--help"]).exit_code
    0
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from ehrtext.errors import EhrtextError, InputError
from ehrtext.textio import DEFAULT_MAX_CHARS

__all__ = ["score_command"]


@contextmanager
def _clean_errors() -> Iterator[None]:
    """Our errors become a one-line message and an exit code (2: bad input, 1: otherwise)."""
    try:
        yield
    except InputError as exc:
        typer.echo(f"ehrtext: error: {exc}", err=True)
        raise typer.Exit(2) from None
    except EhrtextError as exc:
        typer.echo(f"ehrtext: error: {exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        typer.echo("ehrtext: interrupted; committed chunks are kept: rerun with --resume", err=True)
        raise typer.Exit(130) from None
    except OSError as exc:
        typer.echo(f"ehrtext: error: {type(exc).__name__}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None


def score_command(
    model: Annotated[
        Path,
        typer.Option("--model", "-m", help="Model directory (any kind).", metavar="DIR"),
    ],
    input: Annotated[
        str,
        typer.Option(
            "--input",
            "-i",
            help="Notes: a .jsonl/.csv/.tsv/.parquet/.txt file, or sqlite:///file.db?table=T "
            "or postgresql://user@host:port/db?table=T.",
            metavar="PATH_OR_URI",
        ),
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            help="Scores: a .jsonl/.csv/.tsv/.parquet file, or a sqlite:/// or postgresql:// "
            "table URI (created with id as primary key).",
            metavar="PATH_OR_URI",
        ),
    ],
    text_field: Annotated[
        list[str] | None,
        typer.Option(
            "--text-field",
            "-f",
            help="Text column (repeat for section fields). Default: the model's text fields.",
            show_default=False,
            metavar="FIELD",
        ),
    ] = None,
    id_field: Annotated[
        str, typer.Option("--id-field", help="Id column (unique per note).", metavar="FIELD")
    ] = "id",
    workers: Annotated[
        int,
        typer.Option(
            "--workers", "-j", help="Scoring processes (each loads the model once).", min=1
        ),
    ] = 1,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue an interrupted run: ids already written are skipped."
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Discard an existing output table or partial output."),
    ] = False,
    chunk_size: Annotated[
        int,
        typer.Option("--chunk-size", help="Notes per chunk (unit of work and of commit).", min=1),
    ] = 256,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Notes per model batch inside a chunk.", min=1)
    ] = 64,
    errors: Annotated[
        Path | None,
        typer.Option(
            "--errors",
            help="Errors JSONL (id and reason, never the text). Default: beside the output, "
            "*.errors.jsonl.",
            show_default=False,
            metavar="PATH",
        ),
    ] = None,
    quantize: Annotated[
        bool,
        typer.Option(
            "--quantize", help="Dynamic int8 quantization of LSTM/GRU/Linear layers (RNN models)."
        ),
    ] = False,
    max_chars: Annotated[
        int, typer.Option("--max-chars", help="Longer notes go to the errors file.", min=1)
    ] = DEFAULT_MAX_CHARS,
    input_format: Annotated[
        str | None,
        typer.Option(
            "--input-format",
            help="jsonl, csv, tsv, parquet or txt when the extension does not tell.",
            show_default=False,
        ),
    ] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
    image_root: Annotated[
        Path | None,
        typer.Option(
            "--image-root",
            help="Image / multimodal models: folder of relative image paths (default: the "
            "input file's folder).",
            show_default=False,
            metavar="DIR",
        ),
    ] = None,
) -> None:
    """Score notes with a saved model: id, one p_<label> per label, predicted label(s).

    Image and multimodal models read manifests / tables of records (text fields, image path
    column, tabular columns; any may be missing in a row).

    Streams in chunks (flat memory), commits each chunk atomically, and --resume continues
    an interrupted run. Bad rows go to the errors file; the summary adds up:
    read = scored + errors + skipped.
    """
    with _clean_errors():
        from ehrtext.scoring import ModelDirectory, score

        if not model.is_dir():
            raise InputError(f"{model}: model directory not found")
        summary = score(
            input,
            output,
            ModelDirectory(str(model), quantize=quantize),
            text_fields=text_field or None,
            id_field=id_field,
            chunk_size=chunk_size,
            workers=workers,
            resume=resume,
            overwrite=overwrite,
            errors_path=errors,
            max_chars=max_chars,
            input_format=input_format,
            batch_size=batch_size,
            progress=False if no_progress else None,
            image_root=image_root,
        )
        typer.echo(summary.line(), err=True)
