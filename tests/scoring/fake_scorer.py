"""A small deterministic scorer for engine tests (stands in for ``RiskModel``).

Its probabilities are a softmax (single-label) or sigmoids (multi-label) of numbers derived
from the SHA-256 of the note, so they depend on the text and nothing else. A note containing
``FAIL_ON_THIS`` makes ``predict`` raise an exception whose message quotes the note, as a
careless model might: the engine must not let that text reach any log or file.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

LABELS = ("冠心病", "心力衰竭", "2型糖尿病", "肺炎", "脑梗死")
FAIL_MARKER = "FAIL_ON_THIS"


def _logits(text: str, k: int) -> list[float]:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [(digest[i] - 128) / 32.0 for i in range(k)]


class FakeScorer:
    """Deterministic scorer with the ``RiskModel.predict`` contract."""

    def __init__(self, multilabel: bool = False, text_fields: Sequence[str] | None = None):
        self.labels = list(LABELS)
        self.task = "multilabel" if multilabel else "multiclass"
        self.text_fields = list(text_fields) if text_fields else None
        self.calls = 0

    def _text(self, item: Any) -> str:
        if isinstance(item, str):
            return item
        if isinstance(item, dict):
            assert self.text_fields, "records need text_fields"
            return "\n".join(f"【{f}】{item[f]}" for f in self.text_fields)
        raise TypeError(type(item).__name__)

    def probabilities(self, text: str) -> list[float]:
        z = _logits(text, len(self.labels))
        if self.task == "multilabel":
            return [1.0 / (1.0 + math.exp(-v)) for v in z]
        m = max(z)
        e = [math.exp(v - m) for v in z]
        s = sum(e)
        return [v / s for v in e]

    def predict(self, inputs: Sequence[Any], ids: Sequence[str] | None = None) -> pd.DataFrame:
        self.calls += 1
        texts = [self._text(x) for x in inputs]
        for t in texts:
            if FAIL_MARKER in t:
                raise ValueError(f"cannot score note {t!r}")
        ids = list(ids) if ids is not None else [str(i) for i in range(len(texts))]
        rows = []
        for rid, t in zip(ids, texts):
            p = self.probabilities(t)
            row: dict[str, Any] = {"id": rid}
            row.update({f"p_{lab}": v for lab, v in zip(self.labels, p)})
            if self.task == "multilabel":
                row["labels"] = [lab for lab, v in zip(self.labels, p) if v >= 0.5]
            else:
                row["label"] = self.labels[max(range(len(p)), key=p.__getitem__)]
            rows.append(row)
        return pd.DataFrame(rows)


@dataclass(frozen=True)
class FakeFactory:
    """Picklable factory, loaded once per worker process."""

    multilabel: bool = False
    text_fields: tuple[str, ...] | None = None

    def load(self) -> FakeScorer:
        return FakeScorer(self.multilabel, self.text_fields)


def multilabel_factory() -> FakeFactory:
    """For ``scripts/score_batch.py --scorer tests.scoring.fake_scorer:multilabel_factory``."""
    return FakeFactory(multilabel=True)
