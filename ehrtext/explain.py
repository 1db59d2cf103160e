"""Token attributions → character spans for :func:`ehrtext.explain_html.render_explanation`.

A model explains a prediction with one weight per token (attention, or integrated gradients);
each token knows its ``(start, end)`` offsets in the original note. :func:`token_spans` turns
the two into ``(start, end, weight)`` spans: tokens with the same offsets are added together
(e.g. a word seen both as a word and by its characters), empty tokens and padding positions are
dropped, weights are normalised, weak ones filtered, the strongest kept, and — on request —
adjacent tokens joined into phrases. Pure numpy.

Example:
    >>> from ehrtext.explain import token_spans
    >>> token_spans([(0, 2), (2, 4), (5, 7)], [0.1, 0.6, 0.3])
    [(0, 2, 0.16666666666666669), (2, 4, 1.0), (5, 7, 0.5)]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ehrtext.errors import InputError

__all__ = ["token_spans"]

_NORMALIZE = ("max", "sum", "none")


def token_spans(
    offsets: Sequence[tuple[int, int]] | np.ndarray,
    weights: Sequence[float] | np.ndarray,
    *,
    text_length: int | None = None,
    normalize: str = "max",
    min_weight: float = 0.0,
    top_k: int | None = None,
    merge_adjacent: bool = False,
    max_gap: int = 0,
) -> list[tuple[int, int, float]]:
    """Spans ``(start, end, weight)`` sorted by start, ready for ``render_explanation``.

    Args:
        offsets: ``(T, 2)`` character offsets of the tokens in the original note.
        weights: ``(T,)`` one weight per token; a longer array (a padded batch row) is cut to
            ``T``, provided the cut part is all zero.
        text_length: the note's length; offsets beyond it raise :class:`InputError`.
        normalize: ``"max"`` divides by the largest ``|weight|`` (so the strongest span is 1 or
            -1), ``"sum"`` by the sum of ``|weight|`` (shares), ``"none"`` keeps raw weights.
        min_weight: drop spans whose normalised ``|weight|`` is below this.
        top_k: keep only the ``top_k`` spans of largest ``|weight|`` (after merging).
        merge_adjacent: join runs of kept tokens whose gap is at most ``max_gap`` characters
            and whose weights have the same sign, into one span weighted by the run's
            strongest weight (phrases instead of word pieces).
        max_gap: see ``merge_adjacent``.

    Raises :class:`InputError` for mismatched lengths, negative or reversed offsets, offsets
    past ``text_length``, non-finite weights or an unknown ``normalize``.

    Example:
        >>> token_spans([(0, 2), (2, 4), (6, 8)], [0.5, 1.0, 0.2], merge_adjacent=True)
        [(0, 4, 1.0), (6, 8, 0.2)]
    """
    if normalize not in _NORMALIZE:
        raise InputError(f"normalize must be one of {', '.join(_NORMALIZE)}; got {normalize!r}")
    off = np.asarray(offsets, dtype=np.int64)
    if off.size == 0:
        off = np.zeros((0, 2), dtype=np.int64)
    if off.ndim != 2 or off.shape[1] != 2:
        raise InputError(f"offsets must have shape (T, 2); got {off.shape}")
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    n = off.shape[0]
    if w.size < n:
        raise InputError(f"{w.size} weights for {n} tokens")
    if w.size > n:
        if np.any(w[n:] != 0):
            raise InputError(
                f"{w.size} weights for {n} tokens and the extra ones are not zero "
                "(padding must carry no weight): slice the weights to the note's tokens"
            )
        w = w[:n]
    if not np.all(np.isfinite(w)):
        raise InputError(f"weight of token {int(np.argmax(~np.isfinite(w)))} is not finite")
    if n and (off.min() < 0 or np.any(off[:, 1] < off[:, 0])):
        bad = int(np.argmax((off[:, 0] < 0) | (off[:, 1] < off[:, 0])))
        raise InputError(f"token {bad}: offsets ({off[bad, 0]}, {off[bad, 1]}) are invalid")
    if text_length is not None and n and off[:, 1].max() > text_length:
        bad = int(np.argmax(off[:, 1] > text_length))
        raise InputError(
            f"token {bad}: end offset {off[bad, 1]} is past the note's end ({text_length})"
        )

    keep = off[:, 1] > off[:, 0]
    off, w = off[keep], w[keep]
    if off.shape[0] == 0:
        return []
    # the same offsets more than once: add the weights up
    uniq, inverse = np.unique(off, axis=0, return_inverse=True)
    summed = np.zeros(uniq.shape[0])
    np.add.at(summed, inverse.reshape(-1), w)

    if normalize == "max":
        scale = np.abs(summed).max()
    elif normalize == "sum":
        scale = np.abs(summed).sum()
    else:
        scale = 1.0
    if scale > 0:
        summed = summed / scale
    strong = (np.abs(summed) >= min_weight) & (summed != 0)
    spans = [(int(s), int(e), float(v)) for (s, e), v in zip(uniq[strong], summed[strong])]

    if merge_adjacent and spans:
        merged = [spans[0]]
        for s, e, v in spans[1:]:
            ps, pe, pv = merged[-1]
            if s - pe <= max_gap and s >= pe and (v > 0) == (pv > 0):
                merged[-1] = (ps, max(pe, e), pv if abs(pv) >= abs(v) else v)
            else:
                merged.append((s, e, v))
        spans = merged
    if top_k is not None:
        if top_k < 0:
            raise InputError(f"top_k must be >= 0; got {top_k}")
        strongest = sorted(range(len(spans)), key=lambda i: (-abs(spans[i][2]), i))[:top_k]
        spans = [spans[i] for i in sorted(strongest)]
    return spans
