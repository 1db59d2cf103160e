"""Build ``corpora/rules/t2s_chars.json``, the char-level Traditional -> Simplified table.

The table is derived from OpenCC's ``TSCharacters.txt`` (Apache License 2.0), which ships inside
the PyPI package ``opencc-python-reimplemented``. For every line ``TRAD<TAB>CAND1 CAND2 ...`` the
first candidate is taken; only single-char -> single-char entries are kept, identity entries are
dropped and chains (A -> B, B -> C) are resolved to their end (A -> C) so the table is idempotent.

Usage:
    python scripts/build_t2s_table.py      # finds TSCharacters.txt in the installed package
    python scripts/build_t2s_table.py --source path/to/TSCharacters.txt \
        --out corpora/rules/t2s_chars.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "corpora" / "rules" / "t2s_chars.json"


def find_source() -> Path:
    """Locate ``TSCharacters.txt`` inside the installed ``opencc`` package."""
    try:
        import opencc  # type: ignore[import-not-found]
    except ImportError:
        sys.exit(
            "opencc-python-reimplemented is not installed: pip install opencc-python-reimplemented "
            "or pass --source path/to/TSCharacters.txt"
        )
    path = Path(opencc.__file__).resolve().parent / "dictionary" / "TSCharacters.txt"
    if not path.is_file():
        sys.exit(f"{path} not found; pass --source path/to/TSCharacters.txt")
    return path


def parse(path: Path) -> dict[str, str]:
    """Single-char -> single-char entries of an OpenCC dictionary file (first candidate)."""
    table: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.lstrip("\ufeff").strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) < 2 or not parts[1].split():
            sys.exit(f"{path.name} line {lineno}: expected 'KEY<TAB>CANDIDATES'")
        key, first = parts[0], parts[1].split()[0]
        if len(key) == 1 and len(first) == 1 and key != first:
            table[key] = first
    return table


def resolve_chains(table: dict[str, str]) -> dict[str, str]:
    """Follow A -> B -> C to A -> C; drop entries caught in a cycle."""
    out: dict[str, str] = {}
    for key, value in table.items():
        seen = {key}
        while value in table and value not in seen:
            seen.add(value)
            value = table[value]
        if value in table:  # cycle
            continue
        if value != key:
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None, help="path of TSCharacters.txt")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output JSON file")
    args = parser.parse_args(argv)
    source = args.source or find_source()
    table = resolve_chains(parse(source))
    doc = {
        "_comment": (
            "Char-level Traditional -> Simplified table used by ehrtext.text.normalize "
            "(traditional_to_simplified=True). Derived from OpenCC TSCharacters.txt "
            "(Apache License 2.0, see corpora/licenses/OpenCC-APACHE-2.0.txt): first candidate, "
            "single-char -> single-char entries only, chains resolved. "
            "Regenerate with scripts/build_t2s_table.py; do not edit by hand."
        ),
        "source": "OpenCC dictionary/TSCharacters.txt (via opencc-python-reimplemented)",
        "license": "Apache-2.0",
        "chars": dict(sorted(table.items())),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {len(table)} entries to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
