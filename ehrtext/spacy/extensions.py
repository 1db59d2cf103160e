"""Every ``Doc`` / ``Span`` / ``Token`` extension of ehrtext's spaCy components, in one place.

Stored values are msgpack-serialisable (lists of plain dicts with character offsets into
``doc.text``, never ``Span`` objects), so ``Doc.to_bytes``, ``DocBin(store_user_data=True)``
and ``nlp.pipe(n_process=2)`` keep them. ``Span`` and ``Token`` extensions are getters
computed from the ``Doc`` values.

==========================  =============================================================
``doc._.ehr_sections``      ``[{"name", "title", "start", "end", "header_start",
                            "header_end", "attributes"}]`` (``ehr_sections``)
``doc._.ehr_concepts``      ``[{"start", "end", "norm", "category", "source"}]``
                            (``ehr_concepts``); ``ehr_context`` adds ``"negated"``,
                            ``"uncertain"``, ``"historical"``, ``"family"``,
                            ``"hypothetical"`` and ``"cues"`` (offsets and rule names)
``doc._.ehr_phi``           ``[{"start", "end", "type", "rule"}]`` (``ehr_deid``)
``doc._.ehr_deid``          ``{"text", "strategy", "counts"}``: the de-identified note
                            (``ehr_deid``; ``doc.text`` itself never changes)
``doc._.ehr_patient_id``    set by the caller: ``ehr_deid`` gives each patient consistent
                            surrogates
``span._.ehr_section``      name of the section the span starts in (getter)
``span._.ehr_concept``      the concept dict with exactly the span's offsets, or ``None``
``token._.ehr_section``     name of the section the token lies in (getter)
==========================  =============================================================

Span groups (serialised by spaCy itself): ``doc.spans["ehr_sections"]`` (label: section
name), ``doc.spans["ehr_concepts"]`` (label: category), ``doc.spans["ehr_phi"]`` (label: PHI
type). Offsets that do not fall on token boundaries are widened to the enclosing tokens in
the span groups; the dicts keep the exact character offsets.

Example:
    >>> import spacy
    >>> from ehrtext.spacy.extensions import register_extensions
    >>> register_extensions()
    >>> doc = spacy.blank("zh")("无")
    >>> doc._.ehr_concepts
    []
"""

from __future__ import annotations

import weakref
from bisect import bisect_right
from typing import Any

from spacy.tokens import Doc, Span, Token

__all__ = [
    "CONCEPTS_KEY",
    "PHI_KEY",
    "SECTIONS_KEY",
    "doc_text",
    "register_extensions",
    "remember_text",
    "section_at",
]

SECTIONS_KEY = "ehr_sections"
CONCEPTS_KEY = "ehr_concepts"
PHI_KEY = "ehr_phi"


# ``doc.text`` of the Docs alive: spaCy builds it anew on every access, from a Token object per
# token (about 1 µs a token: 4x the time of all four components' own work on a long note), and
# every ehrtext component reads it. A Doc's text never changes (the retokenizer keeps it).
_TEXTS: weakref.WeakKeyDictionary[Doc, str] = weakref.WeakKeyDictionary()


def remember_text(doc: Doc, text: str) -> None:
    """Record ``text`` as ``doc.text`` (for the one who built ``doc`` from ``text``)."""
    _TEXTS[doc] = text


def doc_text(doc: Doc) -> str:
    """``doc.text``, built once per Doc (see :func:`remember_text`).

    Example:
        >>> import spacy
        >>> doc = spacy.blank("zh")("无发热")
        >>> doc_text(doc) == doc.text == "无发热"
        True
    """
    try:
        return _TEXTS[doc]
    except KeyError:
        text = _TEXTS[doc] = doc.text
        return text


def section_at(doc: Doc, char: int) -> str | None:
    """Name of the section of ``doc`` holding character ``char`` (``None`` outside any).

    Example:
        >>> section_at(doc, 0)  # doctest: +SKIP
        'chief_complaint'
    """
    sections = doc._.ehr_sections
    if not sections:
        return None
    j = bisect_right([s["start"] for s in sections], char) - 1
    if j >= 0 and char < sections[j]["end"]:
        return sections[j]["name"]
    return None


def _span_section(span: Span) -> str | None:
    return section_at(span.doc, span.start_char)


def _token_section(token: Token) -> str | None:
    return section_at(token.doc, token.idx)


def _span_concept(span: Span) -> dict[str, Any] | None:
    s, e = span.start_char, span.end_char
    for c in span.doc._.ehr_concepts:
        if c["start"] == s and c["end"] == e:
            return c
        if c["start"] >= e:
            break
    return None


def register_extensions(force: bool = False) -> None:
    """Declare the extensions (idempotent; ``force=True`` re-declares them).

    Example:
        >>> register_extensions()
        >>> Doc.has_extension("ehr_concepts")
        True
    """
    # A default is one object shared by every Doc: components always assign a new list and
    # never append to the default.
    doc_values: dict[str, Any] = {
        "ehr_sections": [],
        "ehr_concepts": [],
        "ehr_phi": [],
        "ehr_deid": None,
        "ehr_patient_id": None,
    }
    for name, default in doc_values.items():
        if force or not Doc.has_extension(name):
            Doc.set_extension(name, default=default, force=True)
    if force or not Span.has_extension("ehr_section"):
        Span.set_extension("ehr_section", getter=_span_section, force=True)
    if force or not Span.has_extension("ehr_concept"):
        Span.set_extension("ehr_concept", getter=_span_concept, force=True)
    if force or not Token.has_extension("ehr_section"):
        Token.set_extension("ehr_section", getter=_token_section, force=True)
