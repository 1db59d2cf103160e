"""ehrtext: clinical NLP for Chinese electronic health records.

Cleaning with offsets, medical Chinese tokenization (jieba's algorithm with a medical
dictionary), word2vec, BiLSTM/BiGRU disease-risk models and spaCy components.

Example:
    >>> import ehrtext
    >>> tok = ehrtext.Tokenizer()
    >>> [t.text for t in tok.tokenize("否认2型糖尿病史")]
    ['否认', '2型糖尿病', '史']

Heavy parts (torch, gensim, spaCy) are imported only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ehrtext._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from ehrtext.explain_html import render_explanation
    from ehrtext.predict import RiskModel
    from ehrtext.spacy.pipeline import load_pipeline
    from ehrtext.text import Normalized, NormalizerConfig, Token, Tokenizer, Tokens, normalize

__all__ = [
    "Normalized",
    "NormalizerConfig",
    "RiskModel",
    "Token",
    "Tokenizer",
    "Tokens",
    "__version__",
    "load_pipeline",
    "normalize",
    "render_explanation",
]

_LAZY = {
    "Normalized": "ehrtext.text",
    "NormalizerConfig": "ehrtext.text",
    "Token": "ehrtext.text",
    "Tokenizer": "ehrtext.text",
    "Tokens": "ehrtext.text",
    "normalize": "ehrtext.text",
    "load_pipeline": "ehrtext.spacy.pipeline",  # imports spaCy (the "spacy" extra)
    "render_explanation": "ehrtext.explain_html",
    "RiskModel": "ehrtext.predict",  # torch / datasets imported when a model is loaded
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ehrtext' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
