"""Folder <-> bytes for components whose state is a folder of small files (``to_bytes``).

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "a.json").write_text("{}")
    2
    >>> folder_from_bytes(folder_to_bytes(d), pathlib.Path(tempfile.mkdtemp()) / "b")
    ... # doctest: +ELLIPSIS
    PosixPath('...b')
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import srsly

from ehrtext.errors import ResourceError

T = TypeVar("T")


def folder_to_bytes(path: Path) -> bytes:
    """The files of ``path`` (recursively) as one msgpack blob ``{relative path: bytes}``."""
    files = {
        p.relative_to(path).as_posix(): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }
    return srsly.msgpack_dumps(files)


def folder_from_bytes(data: bytes, path: Path) -> Path:
    """Write the files of a :func:`folder_to_bytes` blob under ``path``; return ``path``."""
    try:
        files = srsly.msgpack_loads(data)
    except Exception:  # msgpack raises several types for corrupt data
        raise ResourceError("component bytes are corrupt (not an ehrtext msgpack blob)") from None
    if not isinstance(files, dict):
        raise ResourceError("component bytes are corrupt (expected a mapping of files)")
    for name, content in files.items():
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise ResourceError("component bytes are corrupt (a file name leaves its folder)")
        target = path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return path


def save_to_bytes(save: Callable[[Path], None]) -> bytes:
    """Run ``save(folder)`` into a temporary folder and return its files as bytes."""
    with tempfile.TemporaryDirectory(prefix="ehrtext-") as tmp:
        folder = Path(tmp) / "data"
        folder.mkdir()
        save(folder)
        return folder_to_bytes(folder)


def load_from_bytes(data: bytes, load: Callable[[Path], T]) -> T:
    """Write ``data`` into a temporary folder and return ``load(folder)``."""
    with tempfile.TemporaryDirectory(prefix="ehrtext-") as tmp:
        return load(folder_from_bytes(data, Path(tmp) / "data"))
