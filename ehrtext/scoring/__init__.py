"""Batch scoring at scale: notes from files or SQL tables in, one probability per label out.

Streams in chunks with flat memory, scores in worker processes that load the model once,
commits each chunk atomically so ``resume=True`` continues an interrupted run, and sends bad
rows to an errors file (id and reason, never the note). The command-line face is
``ehrtext score``; ``scripts/score_batch.py`` runs the same engine.

Example:
    >>> from ehrtext.scoring import ModelDirectory, score
    >>> summary = score("notes.jsonl", "sqlite:///scores.db?table=scores",
    ...                 ModelDirectory("model/"), id_field="id", workers=2)   # doctest: +SKIP
    >>> print(summary.line())                                                 # doctest: +SKIP
"""

from __future__ import annotations

from ehrtext.scoring.engine import (
    DEFAULT_CHUNK_SIZE,
    ScorerContractError,
    ScoreSummary,
    default_errors_path,
    frame_to_rows,
    score,
)
from ehrtext.scoring.locations import Location, parse_location
from ehrtext.scoring.scorer import ModelDirectory, Scorer, ScorerFactory, quantize_scorer
from ehrtext.scoring.sinks import TEST_DELAY_ENV, OutputSchema, open_sink
from ehrtext.scoring.sources import open_source

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "Location",
    "ModelDirectory",
    "OutputSchema",
    "ScoreSummary",
    "Scorer",
    "ScorerContractError",
    "ScorerFactory",
    "TEST_DELAY_ENV",
    "default_errors_path",
    "frame_to_rows",
    "open_sink",
    "open_source",
    "parse_location",
    "quantize_scorer",
    "score",
]
