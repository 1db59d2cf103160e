"""The embedding matrix of a model vocabulary, initialised from word vectors.

Row ``i`` of the matrix is the vector of ``vocab[i]``, chosen in this order:

1. ``i == padding_idx``: zeros (the padding row; ``nn.Embedding(padding_idx=...)`` keeps it so).
2. a special token (``specials``, e.g. ``<unk>``): random (see 5), never looked up.
3. the word has a vector: that vector ("in vocabulary").
4. ``oov="char_mean"`` and at least one character of the word has a vector: the mean of the
   vectors of its characters that have one, each occurrence counted ("char fallback"). Chinese
   words are made of characters, and character vectors are learned when single characters
   occur as tokens, so ``糖尿病肾病`` (unseen) starts near ``糖 尿 病 肾 病``.
5. otherwise: random normal, mean 0, standard deviation ``init_std`` (default: the standard
   deviation of all values of the trained vectors, so random rows have their scale), drawn
   with ``numpy.random.default_rng(seed)`` as one ``(n_random, dim)`` block assigned in
   index order: the same vocabulary, vectors and seed give the same matrix.
   ``oov="random"`` skips step 4; ``oov="zeros"`` puts zeros instead of random rows for OOV
   words (special tokens stay random).

The coverage report counts each case. Words are never logged (they come from notes).

Example:
    >>> import numpy as np
    >>> vecs = {"胸": np.ones(2, np.float32), "痛": np.zeros(2, np.float32)}
    >>> m, cov = build_embedding_matrix(["<pad>", "胸痛", "胸"], vecs, as_tensor=False)
    >>> m.tolist(), (cov.in_vocab, cov.char_fallback, cov.padding)
    ([[0.0, 0.0], [0.5, 0.5], [1.0, 1.0]], (1, 1, 1))
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ehrtext.errors import EhrtextError, InputError, describe_type

logger = logging.getLogger(__name__)

__all__ = ["OOV_STRATEGIES", "Coverage", "build_embedding_matrix"]

OOV_STRATEGIES = ("char_mean", "random", "zeros")
DEFAULT_SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>", "<mask>", "<cls>", "<sep>")


@dataclass
class Coverage:
    """How the rows of an embedding matrix were filled (counts add up to ``total``).

    Example:
        >>> cov = Coverage(total=4, in_vocab=2, char_fallback=1, random=0, special=0, padding=1)
        >>> cov.in_vocab_rate
        0.6667
    """

    total: int
    in_vocab: int
    char_fallback: int
    random: int
    special: int
    padding: int
    zeros: int = 0

    @property
    def in_vocab_rate(self) -> float:
        """Share of the real words (padding and specials excluded) that had a vector."""
        words = self.total - self.padding - self.special
        return round(self.in_vocab / words, 4) if words else 0.0

    @property
    def covered_rate(self) -> float:
        """Share of the real words with a vector or a character fallback."""
        words = self.total - self.padding - self.special
        return round((self.in_vocab + self.char_fallback) / words, 4) if words else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["in_vocab_rate"] = self.in_vocab_rate
        d["covered_rate"] = self.covered_rate
        return d

    def __str__(self) -> str:
        return (
            f"{self.total} rows: {self.in_vocab} in vocabulary ({self.in_vocab_rate:.1%} of "
            f"words), {self.char_fallback} from characters, {self.random} random, "
            f"{self.zeros} zeros, {self.special} special, {self.padding} padding"
        )


def _lookup(vectors: Any) -> tuple[Mapping[str, int] | Mapping[str, Any], Any, int]:
    """(word -> row or vector, matrix or None, dim) for KeyedVectors, EmbeddingResult or a dict."""
    kv = vectors
    if not hasattr(kv, "key_to_index") and hasattr(kv, "vectors"):
        kv = kv.vectors  # an EmbeddingResult
    if hasattr(kv, "key_to_index") and hasattr(kv, "vectors"):
        m = np.asarray(kv.vectors, dtype=np.float32)
        if m.ndim != 2:
            raise InputError("vectors must be a 2-D matrix of word vectors")
        return kv.key_to_index, m, m.shape[1]
    if isinstance(vectors, Mapping):
        if not vectors:
            raise InputError("vectors is empty")
        dims = {np.asarray(v).shape for v in vectors.values()}
        if len(dims) != 1 or len(next(iter(dims))) != 1:
            raise InputError("all vectors must be 1-D and of the same size")
        return vectors, None, next(iter(dims))[0]
    raise InputError(
        f"vectors must be gensim KeyedVectors, an EmbeddingResult or a dict of word -> vector, "
        f"got {describe_type(vectors)}"
    )


def build_embedding_matrix(
    vocab: Sequence[str],
    vectors: Any,
    *,
    oov: str = "char_mean",
    padding_idx: int | None = 0,
    specials: Collection[str] = DEFAULT_SPECIALS,
    seed: int = 0,
    init_std: float | None = None,
    as_tensor: bool = True,
) -> tuple[Any, Coverage]:
    """The ``(len(vocab), dim)`` float32 matrix for ``vocab`` and its coverage report.

    Args:
        vocab: the model vocabulary; row ``i`` is for ``vocab[i]``.
        vectors: gensim ``KeyedVectors``, an :class:`~ehrtext.embeddings.EmbeddingResult`,
            or a dict word -> vector.
        oov: ``"char_mean"`` (default), ``"random"`` or ``"zeros"`` (see the module docs).
        padding_idx: the row set to zeros (``None``: no padding row).
        specials: tokens that get random rows and are never looked up.
        seed: seed of the random rows.
        init_std: standard deviation of the random rows (default: that of the vectors).
        as_tensor: return a ``torch.Tensor`` (default) instead of a numpy array.

    Example:
        >>> m, cov = build_embedding_matrix(["<pad>", "<unk>", "胸痛"], kv)   # doctest: +SKIP
        >>> torch.nn.Embedding.from_pretrained(m, padding_idx=0, freeze=False)  # doctest: +SKIP
    """
    if oov not in OOV_STRATEGIES:
        raise InputError(f"oov must be one of {', '.join(OOV_STRATEGIES)}, got {oov!r}")
    if isinstance(vocab, str) or not isinstance(vocab, Sequence):
        raise InputError(f"vocab must be a list of words, got {describe_type(vocab)}")
    n = len(vocab)
    if padding_idx is not None and not (isinstance(padding_idx, int) and 0 <= padding_idx < n):
        raise InputError(f"padding_idx must be None or an index into vocab, got {padding_idx!r}")
    index, matrix, dim = _lookup(vectors)

    def vec(word: str) -> np.ndarray:
        if matrix is not None:
            return matrix[index[word]]
        return np.asarray(index[word], dtype=np.float32)

    if init_std is None:
        if matrix is not None:
            init_std = float(matrix.std()) if matrix.size else 0.1
        else:
            init_std = float(np.std(np.stack([np.asarray(v) for v in index.values()])))
        if not init_std > 0:
            init_std = 0.1
    elif not init_std >= 0:
        raise InputError(f"init_std must be >= 0, got {init_std!r}")

    out = np.zeros((n, dim), dtype=np.float32)
    special_set = set(specials)
    random_rows: list[int] = []
    in_vocab = char_fallback = special = zeros = 0
    for i, word in enumerate(vocab):
        if not isinstance(word, str):
            raise InputError(f"vocab[{i}] is {describe_type(word)}, expected a str")
        if i == padding_idx:
            continue
        if word in special_set:
            special += 1
            random_rows.append(i)
        elif word in index:
            out[i] = vec(word)
            in_vocab += 1
        elif oov == "char_mean" and any(ch in index for ch in word):
            out[i] = np.mean([vec(ch) for ch in word if ch in index], axis=0)
            char_fallback += 1
        elif oov == "zeros":
            zeros += 1
        else:
            random_rows.append(i)
    if random_rows:
        rng = np.random.default_rng(seed)
        out[random_rows] = rng.normal(0.0, init_std, size=(len(random_rows), dim)).astype(
            np.float32
        )
    coverage = Coverage(
        total=n,
        in_vocab=in_vocab,
        char_fallback=char_fallback,
        random=len(random_rows) - special,
        special=special,
        padding=0 if padding_idx is None else 1,
        zeros=zeros,
    )
    logger.info("embedding matrix: %s", coverage)
    if not as_tensor:
        return out, coverage
    try:
        import torch
    except ImportError as exc:
        raise _MissingTorch(
            "as_tensor=True needs torch: pip install 'ehrtext[models]' (or pass as_tensor=False)"
        ) from exc
    return torch.from_numpy(out), coverage


class _MissingTorch(EhrtextError, ImportError):
    """torch is not installed."""
