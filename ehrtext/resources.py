"""Access to the files shipped in ``corpora/`` (dictionaries, rules, samples).

In a wheel, ``corpora/`` is packaged as ``ehrtext/corpora`` and read through
``importlib.resources``; in a source checkout (editable install) the top-level ``corpora/``
folder beside the package is used.

Example:
    >>> from ehrtext.resources import corpus_path
    >>> corpus_path("dict", "medical_words.txt").name
    'medical_words.txt'
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ehrtext.errors import ResourceError


@lru_cache(maxsize=1)
def corpora_root() -> Path:
    """The folder that holds the shipped corpora."""
    packaged = resources.files("ehrtext") / "corpora"
    if packaged.is_dir():
        return Path(str(packaged))
    # Source checkout / editable install: corpora/ sits next to the package folder.
    source = Path(str(resources.files("ehrtext"))).parent / "corpora"
    if source.is_dir():
        return source
    raise ResourceError(
        "ehrtext's corpora/ folder was not found: the installation is incomplete. "
        "Reinstall the package (pip install --force-reinstall ehrtext)."
    )


def corpus_path(*parts: str) -> Path:
    """Path of a shipped resource, e.g. ``corpus_path("rules", "normalize.json")``."""
    path = corpora_root().joinpath(*parts)
    if not path.exists():
        raise ResourceError(f"shipped resource corpora/{'/'.join(parts)} is missing")
    return path


@lru_cache(maxsize=32)
def load_json(*parts: str) -> Any:
    """Parse a shipped JSON resource (cached; treat the result as read-only)."""
    path = corpus_path(*parts)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResourceError(f"corpora/{'/'.join(parts)} is not valid JSON: {exc}") from None


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
