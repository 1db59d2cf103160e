"""Word2vec for clinical notes: streaming corpus preparation, gensim training, evaluation, and
the embedding matrix that initialises a model's vocabulary.

gensim is imported only when vectors are trained or loaded, torch only by
:func:`build_embedding_matrix` with ``as_tensor=True``.

Example:
    >>> from ehrtext.embeddings import train_word2vec, load_vectors, build_embedding_matrix
    >>> res = train_word2vec(Path("notes/"), "vectors/")            # doctest: +SKIP
    >>> matrix, coverage = build_embedding_matrix(["<pad>", "<unk>", "胸痛"], res)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ehrtext.embeddings.corpus import CorpusStats, PreparedCorpus, prepare_corpus
    from ehrtext.embeddings.evaluate import (
        category_coherence,
        evaluate_vectors,
        synonym_retrieval,
    )
    from ehrtext.embeddings.matrix import Coverage, build_embedding_matrix
    from ehrtext.embeddings.word2vec import (
        EmbeddingResult,
        MissingDependencyError,
        load_vectors,
        train_word2vec,
    )

__all__ = [
    "Coverage",
    "CorpusStats",
    "EmbeddingResult",
    "MissingDependencyError",
    "PreparedCorpus",
    "build_embedding_matrix",
    "category_coherence",
    "evaluate_vectors",
    "load_vectors",
    "prepare_corpus",
    "synonym_retrieval",
    "train_word2vec",
]

_LAZY = {
    "CorpusStats": "ehrtext.embeddings.corpus",
    "PreparedCorpus": "ehrtext.embeddings.corpus",
    "prepare_corpus": "ehrtext.embeddings.corpus",
    "EmbeddingResult": "ehrtext.embeddings.word2vec",
    "MissingDependencyError": "ehrtext.embeddings.word2vec",
    "load_vectors": "ehrtext.embeddings.word2vec",
    "train_word2vec": "ehrtext.embeddings.word2vec",
    "category_coherence": "ehrtext.embeddings.evaluate",
    "evaluate_vectors": "ehrtext.embeddings.evaluate",
    "synonym_retrieval": "ehrtext.embeddings.evaluate",
    "Coverage": "ehrtext.embeddings.matrix",
    "build_embedding_matrix": "ehrtext.embeddings.matrix",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ehrtext.embeddings' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
