"""The scorer interface the batch engine drives, and how workers load one.

A *scorer* is any object with ``labels`` (a sequence of label names) and
``predict(inputs, ids=...) -> pandas.DataFrame`` returning, in input order, a column ``id``,
one ``p_<label>`` probability column per label and ``label`` (single-label) or ``labels``
(multi-label, a list per row). :class:`ehrtext.predict.RiskModel` is one; tests use a small
deterministic one. A scorer that says ``task == "multilabel"`` gets a ``labels`` column.

Workers never receive a scorer (models need not be picklable): they receive a picklable
*factory* — an object whose ``load()`` returns the scorer — and call it once per process.
:class:`ModelDirectory` is the factory for a model directory (``RiskModel.load``, optionally
with dynamic int8 quantization of its LSTM/GRU/Linear layers).

Example:
    >>> factory = ModelDirectory("model/")                        # doctest: +SKIP
    >>> scorer = factory.load()                                   # doctest: +SKIP
    >>> scorer.predict(["胸痛2天"], ids=["n1"])                    # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "ModelDirectory",
    "Scorer",
    "ScorerFactory",
    "ScorerInfo",
    "is_multilabel",
    "quantize_scorer",
]


@runtime_checkable
class Scorer(Protocol):
    """Anything the engine can score with (see the module docstring)."""

    labels: Sequence[str]

    def predict(self, inputs: Any, ids: Sequence[str] | None = None) -> Any:
        """Scores for ``inputs`` (texts, or records with section fields) as a DataFrame."""
        ...


class ScorerFactory(Protocol):
    """A picklable recipe that loads a scorer (once per worker process)."""

    def load(self) -> Scorer:
        """Load and return the scorer."""
        ...


def is_multilabel(scorer: Any) -> bool:
    """Whether the scorer's task is multi-label (its ``task`` attribute, or its spec's).

    Example:
        >>> class S: task = "multilabel"
        >>> is_multilabel(S())
        True
    """
    task = getattr(scorer, "task", None)
    if task is None:
        spec = getattr(scorer, "spec", None)
        task = getattr(spec, "task", None)
    return str(task) == "multilabel"


@dataclass(frozen=True)
class ScorerInfo:
    """What the engine needs to know before any model is loaded.

    Example:
        >>> ScorerInfo(labels=["a", "b"], task="multiclass", text_fields=["text"]).task
        'multiclass'
    """

    labels: list[str]
    task: str
    text_fields: list[str] | None = None
    record_fields: list[str] | None = None  # models that read whole records (image, multimodal)


def record_fields_of(config: dict[str, Any]) -> tuple[list[str] | None, list[str] | None]:
    """``(text_fields, record_fields)`` of a model's ``ehrtext.json``: for ``multimodal`` and
    ``image`` models the columns a record may hold (text fields, image column, tabular
    columns); ``record_fields`` is None for text models.

    Example:
        >>> record_fields_of({"kind": "multimodal", "multimodal": {"text_fields": ["note"],
        ...                   "image_field": "xray", "tabular": ["age"]}})
        (['note'], ['note', 'xray', 'age'])
        >>> record_fields_of({"kind": "bigru", "spec": {"text_fields": ["text"]}})
        (['text'], None)
    """
    kind = config.get("kind")
    spec = config.get("spec") or {}
    fields = spec.get("text_fields") if isinstance(spec, dict) else None
    text = [str(f) for f in fields] if fields else None
    if kind == "multimodal":
        mm = config.get("multimodal") or {}
        active = set(mm.get("modalities") or ("text", "image", "tabular"))
        text = [str(f) for f in mm.get("text_fields") or []] if "text" in active else []
        image = [str(mm["image_field"])] if mm.get("image_field") and "image" in active else []
        tabular = [str(c) for c in mm.get("tabular") or []] if "tabular" in active else []
        return text, [*text, *image, *tabular]
    if kind == "image":
        return [], [(text or ["image"])[0]]
    return text, None


@dataclass(frozen=True)
class ModelDirectory:
    """Factory for a saved model directory; ``quantize`` applies dynamic int8 quantization.

    Example:
        >>> ModelDirectory("model/", quantize=True).load()   # doctest: +SKIP
    """

    path: str
    quantize: bool = False
    torch_threads: int | None = None
    image_root: str | None = None  # folder that relative image paths are read from

    def describe(self) -> ScorerInfo:
        """Labels, task and text fields from ``ehrtext.json``, without loading the weights
        (the main process of a multi-worker run needs no model of its own)."""
        from ehrtext.bundle import read_config
        from ehrtext.errors import ModelFileError

        cfg = read_config(self.path)
        try:
            labels = [str(x) for x in cfg["labels"]]
            task = str(cfg["task"])
        except KeyError as exc:
            raise ModelFileError(f"{self.path}: ehrtext.json lacks {exc.args[0]!r}") from None
        text, records = record_fields_of(cfg)
        return ScorerInfo(labels, task, text, records)

    def load(self) -> Scorer:
        """``RiskModel.load(path)`` (and quantize it when asked)."""
        if self.torch_threads is not None:
            _set_torch_threads(self.torch_threads)
        from ehrtext.predict import RiskModel

        model = RiskModel.load(self.path)
        if self.image_root is not None:
            model.image_root = self.image_root
        if self.quantize:
            quantize_scorer(model)
        return model


def _set_torch_threads(n: int) -> None:
    try:
        import torch
    except ImportError:  # a linear model needs no torch
        return
    torch.set_num_threads(max(1, n))


def quantize_scorer(model: Any) -> bool:
    """Replace the torch module inside ``model`` by a dynamically int8-quantized copy.

    Quantizes ``nn.LSTM``, ``nn.GRU`` and ``nn.Linear`` layers with
    ``torch.ao.quantization.quantize_dynamic``. Returns ``False`` (and changes nothing) for a
    model without a torch module (the linear TF-IDF model).

    Example:
        >>> quantize_scorer(object())
        False
    """
    try:
        import torch
    except ImportError:
        return False
    from torch.ao.quantization import quantize_dynamic

    # RiskModel keeps its network at .scorer.model; look there and on the object itself.
    for holder in (getattr(model, "scorer", None), model):
        if holder is None:
            continue
        for attr in ("model", "module", "net", "network"):
            module = getattr(holder, attr, None)
            if isinstance(module, torch.nn.Module):
                module.eval()
                with warnings.catch_warnings():  # torch deprecates the quantized tensor API
                    warnings.simplefilter("ignore", UserWarning)
                    warnings.simplefilter("ignore", DeprecationWarning)
                    quantized = quantize_dynamic(
                        module, {torch.nn.LSTM, torch.nn.GRU, torch.nn.Linear}, dtype=torch.qint8
                    )
                setattr(holder, attr, quantized)
                return True
    return False


def default_torch_threads(workers: int) -> int | None:
    """Threads per worker so that workers × threads does not oversubscribe the CPUs."""
    if workers <= 1:
        return None
    return max(1, (os.cpu_count() or 1) // workers)
