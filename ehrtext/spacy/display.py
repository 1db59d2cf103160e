"""displaCy for ehrtext docs: sections, concepts with their assertions, and PHI as spans.

:func:`render` draws one span group in displaCy's ``span`` style: each section (label
``§ chief_complaint``), each concept (label = category, plus the assertion flags that are set:
``disease NEG HIST``) and, with ``phi=True``, each PHI span (``PHI name``). The same can be
done by hand: ``displacy.render(doc, style="span", options={"spans_key": "ehr_concepts"})``
shows the concepts alone.

Example:
    >>> from ehrtext.spacy import load_pipeline, render
    >>> html = render(load_pipeline()("既往史：否认糖尿病史。"))
    >>> "past_history" in html and "disease NEG HIST" in html
    True
"""

from __future__ import annotations

from typing import Any

from spacy import displacy
from spacy.tokens import Doc

from ehrtext.spacy.extensions import register_extensions

__all__ = ["DISPLAY_KEY", "display_spans", "render"]

#: The temporary span group that :func:`render` draws.
DISPLAY_KEY = "ehr_display"
_FLAG_TAGS = (
    ("negated", "NEG"),
    ("uncertain", "POSS"),
    ("historical", "HIST"),
    ("family", "FAM"),
    ("hypothetical", "HYPO"),
)
_CATEGORY_COLORS = {
    "disease": "#f4a6a6",
    "symptom": "#f9d38c",
    "drug": "#a6d8f4",
    "exam": "#c9b6f2",
    "procedure": "#a6f4c5",
    "body_part": "#e0e0e0",
}
_NEGATED_COLOR = "#bdbdbd"
_SECTION_COLOR = "#dfe9f7"
_PHI_COLOR = "#ff8a80"


def concept_label(concept: dict[str, Any]) -> str:
    """``category`` plus the tags of the assertion flags that are set (``disease NEG``).

    Example:
        >>> concept_label({"category": "disease", "negated": True, "historical": False})
        'disease NEG'
    """
    tags = [tag for flag, tag in _FLAG_TAGS if concept.get(flag)]
    return " ".join([concept["category"], *tags])


def display_spans(
    doc: Doc, *, sections: bool = True, concepts: bool = True, phi: bool = False
) -> list[tuple[int, int, str]]:
    """``(start_char, end_char, label)`` of what :func:`render` draws."""
    out: list[tuple[int, int, str]] = []
    if sections:
        out.extend((s["start"], s["end"], f"§ {s['name']}") for s in doc._.ehr_sections)
    if concepts:
        out.extend((c["start"], c["end"], concept_label(c)) for c in doc._.ehr_concepts)
    if phi:
        out.extend((p["start"], p["end"], f"PHI {p['type']}") for p in doc._.ehr_phi)
    return out


def render(
    doc: Doc,
    *,
    sections: bool = True,
    concepts: bool = True,
    phi: bool = False,
    page: bool = False,
    jupyter: bool | None = False,
) -> str:
    """HTML of ``doc`` in displaCy's span style (sections, concepts + assertions, PHI).

    The note text is in the HTML: treat it like the note (``phi=True`` only marks PHI, it
    does not hide it; render ``doc._.ehr_deid["text"]`` through a pipeline to show a
    de-identified note).
    """
    register_extensions()
    items = display_spans(doc, sections=sections, concepts=concepts, phi=phi)
    spans = []
    colors: dict[str, str] = {}
    for s, e, label in items:
        span = doc.char_span(s, e, label=label, alignment_mode="expand")
        if span is None or not len(span):
            continue
        spans.append(span)
        if label.startswith("§"):
            colors[label] = _SECTION_COLOR
        elif label.startswith("PHI"):
            colors[label] = _PHI_COLOR
        elif " NEG" in label:
            colors[label] = _NEGATED_COLOR
        else:
            colors[label] = _CATEGORY_COLORS.get(label.split(" ")[0], "#ddd")
    had = DISPLAY_KEY in doc.spans
    previous = list(doc.spans[DISPLAY_KEY]) if had else None
    doc.spans[DISPLAY_KEY] = spans
    try:
        html = displacy.render(
            doc,
            style="span",
            page=page,
            jupyter=jupyter,
            options={"spans_key": DISPLAY_KEY, "colors": colors},
        )
    finally:
        if had:
            doc.spans[DISPLAY_KEY] = previous
        else:
            del doc.spans[DISPLAY_KEY]
    return html or ""
