"""Exceptions raised by ehrtext.

Every error names the file, row or setting at fault and, where it can, the fix. None of them
ever carries note text: messages name rows by number or id, never by content.

Example:
    >>> from ehrtext.errors import InputError
    >>> raise InputError("notes.jsonl line 12: field 'text' is missing")  # doctest: +SKIP
"""

from __future__ import annotations


class EhrtextError(Exception):
    """Base class of every ehrtext exception."""


class InputError(EhrtextError, ValueError):
    """A row, file or argument that ehrtext cannot read (names the row or file, never the text)."""


class ResourceError(EhrtextError, FileNotFoundError):
    """A dictionary, rule file or other resource is missing or malformed."""


class ModelFileError(EhrtextError):
    """A model directory is incomplete, truncated, tampered with or of a newer format."""


def describe_type(value: object) -> str:
    """The type of ``value`` as a short name for error messages (never its content)."""
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
