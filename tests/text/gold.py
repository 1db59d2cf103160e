"""Readers for the gold segmentation lists in ``tests/text/data``.

* ``gold_segmentation_authored.tsv`` -- invented EMR-style sentences written for ehrtext:
  ``sentence<TAB>tok | tok | ...``; lines starting with ``#`` are comments (the annotation
  guidelines are in its header). Whitespace between tokens is not a token; a token may hold a
  space where the sentence has one (``0.5g bid``).
* ``gold_segmentation_real.tsv`` -- fragments of REAL de-identified EMR text under
  ``../shared/data``, referenced by location only (the research data may not be copied):
  ``source_file<TAB>line_number<TAB>char_start<TAB>char_end<TAB>sha1<TAB>token lengths``.
  ``source_file`` is relative to the shared data root; ``line_number`` is 1-based over the file
  decoded as UTF-8 (a leading BOM dropped) and split on ``"\\n"``; ``char_start:char_end`` are
  Python string indices into that line; ``sha1`` is the hex SHA-1 of the fragment's UTF-8
  bytes; the lengths (``2,1,5,1``) cut the fragment into the expected tokens.
  ``scripts/make_gold_real.py`` picks, annotates and hashes the fragments.

Example:
    >>> pairs = load_authored()
    >>> pairs[0]
    ('既往有2型糖尿病史', ['既往', '有', '2型糖尿病', '史'])
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
AUTHORED = DATA / "gold_segmentation_authored.tsv"
REAL = DATA / "gold_segmentation_real.tsv"
SEP = " | "


class GoldError(ValueError):
    """A gold line is malformed or no longer matches the data it points to."""


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        rows.append((lineno, line.split("\t")))
    return rows


def load_authored(path: str | Path = AUTHORED) -> list[tuple[str, list[str]]]:
    """``[(sentence, expected tokens), ...]``; checks that the tokens spell the sentence."""
    path = Path(path)
    out = []
    for lineno, cols in _rows(path):
        if len(cols) != 2:
            raise GoldError(f"{path.name}:{lineno}: expected 2 tab-separated columns")
        sentence, joined = cols
        tokens = joined.split(SEP)
        if any(not t or t != t.strip() for t in tokens):
            raise GoldError(f"{path.name}:{lineno}: empty token or stray spaces in {joined!r}")
        if "".join("".join(tokens).split()) != "".join(sentence.split()):
            raise GoldError(f"{path.name}:{lineno}: tokens do not spell the sentence")
        out.append((sentence, tokens))
    return out


@lru_cache(maxsize=16)
def _source_lines(path: str) -> tuple[str, ...]:
    return tuple(Path(path).read_text(encoding="utf-8-sig").split("\n"))


def fragment_at(shared_root: str | Path, source: str, line: int, start: int, end: int) -> str:
    """The text a gold location points to (no hash check)."""
    path = Path(shared_root) / source
    if not path.is_file():
        raise GoldError(f"{source} not found under {shared_root}")
    lines = _source_lines(str(path))
    if not 1 <= line <= len(lines):
        raise GoldError(f"{source}: no line {line}")
    text = lines[line - 1]
    if not 0 <= start < end <= len(text):
        raise GoldError(f"{source}:{line}: span {start}:{end} outside the line")
    return text[start:end]


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def load_real_rows(path: str | Path = REAL) -> list[dict]:
    """The location rows of the real gold list, unresolved (no shared data needed)."""
    path = Path(path)
    out = []
    for lineno, cols in _rows(path):
        if len(cols) != 6:
            raise GoldError(f"{path.name}:{lineno}: expected 6 tab-separated columns")
        source, line, start, end, digest, lengths = cols
        try:
            lens = [int(x) for x in lengths.split(",")]
            row = {
                "source": source,
                "line": int(line),
                "start": int(start),
                "end": int(end),
                "sha1": digest,
                "lengths": lens,
            }
        except ValueError:
            raise GoldError(f"{path.name}:{lineno}: non-integer field") from None
        if any(n <= 0 for n in lens) or sum(lens) != row["end"] - row["start"]:
            raise GoldError(f"{path.name}:{lineno}: token lengths do not add up to the span")
        out.append(row)
    return out


def load_real(shared_root: str | Path, path: str | Path = REAL) -> list[tuple[str, list[str]]]:
    """``[(fragment text, expected tokens), ...]`` read from the shared data.

    Raises :class:`GoldError` when a file, line or span is missing or a fragment's SHA-1 differs
    (the data changed: the gold line must be re-made, never silently skipped).
    """
    out = []
    for row in load_real_rows(path):
        text = fragment_at(shared_root, row["source"], row["line"], row["start"], row["end"])
        if sha1(text) != row["sha1"]:
            raise GoldError(
                f"{row['source']}:{row['line']}:{row['start']}-{row['end']}: SHA-1 mismatch"
            )
        tokens, pos = [], 0
        for n in row["lengths"]:
            tokens.append(text[pos : pos + n])
            pos += n
        out.append((text, tokens))
    return out
