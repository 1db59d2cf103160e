"""ehrtext's spaCy layer: a tokenizer, four components, extensions, displaCy and the pipeline.

Importing this package imports spaCy (``pip install "ehrtext[spacy]"``); ``import ehrtext``
alone never does. Everything here is a thin wrapper over ``ehrtext.text``.

* tokenizer ``ehrtext.ChineseClinicalTokenizer.v1`` (:mod:`ehrtext.spacy.tokenizer`);
* factories ``ehr_sections``, ``ehr_concepts``, ``ehr_context``, ``ehr_deid``
  (:mod:`ehrtext.spacy.components`), declared as ``spacy_factories`` entry points;
* extensions (:mod:`ehrtext.spacy.extensions`), :func:`render` (displaCy),
  :func:`load_pipeline`.

Example:
    >>> import ehrtext
    >>> nlp = ehrtext.load_pipeline()
    >>> doc = nlp("主诉：发热3天。否认咳嗽。")
    >>> [(doc.text[c["start"]:c["end"]], c["negated"]) for c in doc._.ehr_concepts]
    [('发热', False), ('咳嗽', True)]
"""

from __future__ import annotations

from ehrtext.spacy.components import (
    ConceptsComponent,
    ContextComponent,
    DeidComponent,
    SectionsComponent,
)
from ehrtext.spacy.display import render
from ehrtext.spacy.extensions import register_extensions
from ehrtext.spacy.pipeline import load_pipeline
from ehrtext.spacy.tokenizer import ChineseClinicalTokenizer

__all__ = [
    "ChineseClinicalTokenizer",
    "ConceptsComponent",
    "ContextComponent",
    "DeidComponent",
    "SectionsComponent",
    "load_pipeline",
    "register_extensions",
    "render",
]
