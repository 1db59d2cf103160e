"""``load_pipeline``: the full ehrtext spaCy pipeline, or a saved one.

Example:
    >>> from ehrtext.spacy.pipeline import load_pipeline
    >>> nlp = load_pipeline()
    >>> nlp.pipe_names
    ['ehr_sections', 'ehr_concepts', 'ehr_context', 'ehr_deid']
    >>> doc = nlp("患者张伟，主诉：胸痛2小时。既往史：否认糖尿病史。")
    >>> [(c["norm"], c["negated"]) for c in doc._.ehr_concepts]
    [('胸痛', False), ('糖尿病', True)]
    >>> doc._.ehr_deid["text"]
    '患者[姓名]，主诉：胸痛2小时。既往史：否认糖尿病史。'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import spacy
from spacy.language import Language

import ehrtext.spacy.components  # noqa: F401 - registers the factories
import ehrtext.spacy.tokenizer  # noqa: F401 - registers the tokenizer
from ehrtext._version import __version__

__all__ = ["PIPE_NAMES", "TOKENIZER_NAME", "load_pipeline"]

TOKENIZER_NAME = "ehrtext.ChineseClinicalTokenizer.v1"
#: The components of the full pipeline, in order.
PIPE_NAMES = ("ehr_sections", "ehr_concepts", "ehr_context", "ehr_deid")


def load_pipeline(
    path: str | Path | None = None,
    *,
    deid: bool = True,
    deid_config: dict[str, Any] | None = None,
    backend: str = "rjieba",
) -> Language:
    """The full pipeline: the ``ehrtext.ChineseClinicalTokenizer.v1`` tokenizer (on spaCy's
    ``zh`` language) and ``ehr_sections``, ``ehr_concepts``, ``ehr_context``, ``ehr_deid``.

    Args:
        path: a pipeline saved with ``nlp.to_disk`` (or an installed pipeline package name):
            loaded with ``spacy.load``, the other arguments are then ignored.
        deid: add ``ehr_deid`` (its config from ``deid_config``, e.g. ``{"strategy": "mask"}``).
        backend: the segmenter, ``"rjieba"`` (default) or ``"jieba"``.
    """
    if path is not None:
        return spacy.load(path)
    nlp = spacy.blank(
        "zh", config={"nlp": {"tokenizer": {"@tokenizers": TOKENIZER_NAME, "backend": backend}}}
    )
    nlp.meta["name"] = "ehrtext_clinical"
    nlp.meta["version"] = __version__
    nlp.meta["description"] = (
        "ehrtext: Chinese clinical tokenizer, sections, dictionary concepts, assertion "
        "(ConText) and de-identification"
    )
    nlp.meta["license"] = "MIT"
    # `spacy package` copies these into the package's install_requires
    nlp.meta["requirements"] = [f"ehrtext>={__version__}"]
    for name in PIPE_NAMES:
        if name == "ehr_deid":
            if deid:
                nlp.add_pipe(name, config=dict(deid_config or {}))
        else:
            nlp.add_pipe(name)
    return nlp
