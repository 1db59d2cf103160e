#!/usr/bin/env python
"""Batch scoring as a script: the same engine as ``ehrtext score`` (:func:`ehrtext.scoring.score`).

    python scripts/score_batch.py --model model/ --input notes.jsonl --output scores.jsonl
    python scripts/score_batch.py --model model/ --input "sqlite:///ehr.db?table=notes" \\
        --output "postgresql://me@127.0.0.1:5432/ehr?table=scores" --workers 2 --resume

Instead of ``--model DIR`` a scorer of your own can be plugged in with
``--scorer package.module:factory``: ``factory()`` must return an object whose ``load()``
returns a scorer (``labels`` and ``predict(inputs, ids=...) -> DataFrame``, see
:mod:`ehrtext.scoring.scorer`); it must be importable by the worker processes. The tests use
this to drive the engine with a small deterministic scorer.

Exit codes: 0 done, 2 bad input (one-line message), 1 other errors of ours.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ehrtext.errors import EhrtextError, InputError
from ehrtext.scoring import DEFAULT_CHUNK_SIZE, ModelDirectory, score
from ehrtext.textio import DEFAULT_MAX_CHARS


def _factory(args: argparse.Namespace):
    if args.scorer:
        module, _, name = args.scorer.partition(":")
        if not name:
            raise InputError("--scorer takes package.module:callable")
        try:
            return getattr(importlib.import_module(module), name)()
        except (ImportError, AttributeError) as exc:
            raise InputError(f"--scorer {args.scorer}: {type(exc).__name__}") from None
    return ModelDirectory(args.model, quantize=args.quantize)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--model", "-m", help="model directory")
    who.add_argument("--scorer", help="package.module:callable returning a scorer factory")
    p.add_argument("--input", "-i", required=True, help="note file or table URI")
    p.add_argument("--output", "-o", required=True, help="score file or table URI")
    p.add_argument("--text-field", "-f", action="append", help="text column (repeatable)")
    p.add_argument("--id-field", default="id")
    p.add_argument("--workers", "-j", type=int, default=1)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--errors", default=None)
    p.add_argument("--quantize", action="store_true")
    p.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS)
    p.add_argument("--input-format", default=None)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        summary = score(
            args.input,
            args.output,
            _factory(args),
            text_fields=args.text_field,
            id_field=args.id_field,
            chunk_size=args.chunk_size,
            workers=args.workers,
            resume=args.resume,
            overwrite=args.overwrite,
            errors_path=args.errors,
            max_chars=args.max_chars,
            input_format=args.input_format,
            batch_size=args.batch_size,
            progress=False if args.no_progress else None,
        )
    except InputError as exc:
        print(f"score_batch: error: {exc}", file=sys.stderr)
        return 2
    except EhrtextError as exc:
        print(f"score_batch: error: {exc}", file=sys.stderr)
        return 1
    print(summary.line(), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
