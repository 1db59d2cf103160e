"""Decision threshold and temperature for binary image models (fallbacks until
``ehrtext.metrics`` provides the shared versions).

Example:
    >>> import numpy as np
    >>> accuracy_threshold(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.6, 0.9]))
    0.5
"""

from __future__ import annotations

import numpy as np

__all__ = ["accuracy_threshold", "fit_temperature", "expected_calibration_error"]


def accuracy_threshold(y_true: np.ndarray, probs: np.ndarray) -> float:
    """The threshold maximising accuracy on (``y_true``, ``probs``): the midpoint between the
    two scores around the best cut (ties: the cut closest to 0.5).

    Example:
        >>> accuracy_threshold(np.array([0, 1]), np.array([0.2, 0.4]))
        0.30000000000000004
    """
    y = np.asarray(y_true).astype(int).reshape(-1)
    p = np.asarray(probs, dtype=float).reshape(-1)
    order = np.argsort(p, kind="stable")
    ps, ys = p[order], y[order]
    # cut k: everything before k is predicted 0. correct = negatives before + positives after.
    neg_before = np.concatenate([[0], np.cumsum(ys == 0)])
    pos_after = np.concatenate([np.cumsum((ys == 1)[::-1])[::-1], [0]])
    correct = neg_before + pos_after
    cuts = np.concatenate([[ps[0] - 1e-6], (ps[:-1] + ps[1:]) / 2, [ps[-1] + 1e-6]])
    valid = np.concatenate([[True], ps[:-1] < ps[1:], [True]])  # no cut between equal scores
    correct = np.where(valid, correct, -1)
    best = np.flatnonzero(correct == correct.max())
    k = best[np.argmin(np.abs(cuts[best] - 0.5))]
    return float(np.clip(cuts[k], 0.0, 1.0))


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """Temperature T > 0 minimising the log-loss of ``sigmoid(logits / T)`` (1-D search on
    log T, so it is deterministic and needs no torch).

    Example:
        >>> round(fit_temperature(np.array([-4.0, 4.0, -4.0, 4.0]), np.array([0, 1, 1, 0])), 1)
        100.0
    """
    z = np.asarray(logits, dtype=float).reshape(-1)
    y = np.asarray(y_true, dtype=float).reshape(-1)

    def nll(log_t: float) -> float:
        s = z / np.exp(log_t)
        return float(np.mean(np.logaddexp(0, s) - y * s))

    lo, hi = np.log(0.05), np.log(100.0)
    grid = np.linspace(lo, hi, 200)
    best = grid[int(np.argmin([nll(g) for g in grid]))]
    a, b = best - (hi - lo) / 199, best + (hi - lo) / 199
    for _ in range(60):  # golden-section refinement
        c, d = b - 0.618 * (b - a), a + 0.618 * (b - a)
        if nll(c) < nll(d):
            b = d
        else:
            a = c
    return float(np.clip(np.exp((a + b) / 2), 0.05, 100.0))


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """ECE of binary probabilities: the mean |accuracy − confidence| over equal-width bins of
    P(positive), weighted by bin size.

    Example:
        >>> expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0]))
        0.0
    """
    y = np.asarray(y_true, dtype=float).reshape(-1)
    p = np.asarray(probs, dtype=float).reshape(-1)
    bins = np.minimum((p * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            total += m.mean() * abs(y[m].mean() - p[m].mean())
    return float(total)
