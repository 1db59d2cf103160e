"""spaCy component ``ehr_risk``: a trained ehrtext risk model inside a spaCy pipeline.

It scores ``doc.text`` with :class:`ehrtext.predict.RiskModel` and sets

* ``doc.cats``: ``{label: probability}`` for every label of the model (the same numbers as
  ``RiskModel.predict`` and ``ehrtext score``);
* ``doc._.risk_explanation``: ``{"label", "method", "probabilities", "tokens", "offsets",
  "weights"}`` — the token attributions of the predicted label with ``[start, end]`` character
  offsets into ``doc.text`` (plain lists, so ``Doc.to_bytes``, ``DocBin`` and
  ``n_process=2`` carry it); None when ``explain`` is empty or the doc is blank.

A blank doc gets no cats (``{}``) rather than an error. ``pipe`` scores ``batch_size`` docs in
one model call. ``nlp.to_disk`` copies the model directory into the component's folder
(``<pipeline>/ehr_risk/model``), and ``spacy.load`` loads it from there, so the saved pipeline
is self-contained; the factory is a ``spacy_factories`` entry point (no ``import ehrtext``
needed). The model is loaded when first used (or by ``from_disk``), so a config path that no
longer exists does not break ``spacy.load`` of a saved pipeline.

Example:
    >>> import ehrtext                                                    # doctest: +SKIP
    >>> nlp = ehrtext.load_pipeline()                                     # doctest: +SKIP
    >>> _ = nlp.add_pipe("ehr_risk", config={"model": "model/"})           # doctest: +SKIP
    >>> doc = nlp("主诉：胸痛3天。")                                         # doctest: +SKIP
    >>> doc.cats, doc._.risk_explanation["offsets"][:2]                   # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from spacy.language import Language
from spacy.tokens import Doc

from ehrtext.errors import InputError, ResourceError
from ehrtext.spacy.components import _Component
from ehrtext.spacy.extensions import doc_text

__all__ = ["RISK_EXPLANATION", "RiskComponent", "make_risk"]

RISK_EXPLANATION = "risk_explanation"
_METHODS = ("attention", "ig", "")
_MODEL_FOLDER = "model"


def _register() -> None:
    if not Doc.has_extension(RISK_EXPLANATION):
        Doc.set_extension(RISK_EXPLANATION, default=None)


def _one_torch_thread() -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover - a linear model needs no torch
        return
    torch.set_num_threads(1)


class RiskComponent(_Component):
    """Sets ``doc.cats`` and ``doc._.risk_explanation`` from a risk model directory.

    Args:
        model: the model directory (``ehrtext train`` output).
        explain: ``"attention"`` (default), ``"ig"`` (integrated gradients) or ``""`` (none).
        batch_size: notes per model call in ``pipe``.
        quantize: dynamic int8 quantization of the model (faster on CPU; ``explain="ig"``
            then is not available).
    """

    def __init__(
        self,
        nlp: Language,
        name: str = "ehr_risk",
        *,
        model: str | None = None,
        explain: str = "attention",
        batch_size: int = 64,
        quantize: bool = False,
    ) -> None:
        _register()
        if explain not in _METHODS:
            raise InputError(f"ehr_risk: explain must be 'attention', 'ig' or '', got {explain!r}")
        if quantize and explain == "ig":
            raise InputError("ehr_risk: explain='ig' needs the float model (quantize=False)")
        self.name = name
        self.model_dir = None if model in (None, "") else Path(str(model))
        self.explain = explain
        self.batch_size = max(1, int(batch_size))
        self.quantize = bool(quantize)
        self._model: Any = None
        self._pid = os.getpid()

    # ---- the model ---------------------------------------------------------------------------

    @property
    def risk_model(self) -> Any:
        """The :class:`~ehrtext.predict.RiskModel` (loaded on first use)."""
        if self._model is None:
            if self.model_dir is None:
                raise InputError(
                    'ehr_risk needs a model directory: nlp.add_pipe("ehr_risk", '
                    'config={"model": "path/to/model"})'
                )
            self._model = self._load(self.model_dir)
        return self._model

    def _load(self, directory: Path) -> Any:
        from ehrtext.predict import RiskModel

        model = RiskModel.load(directory)
        if self.quantize:
            from ehrtext.scoring import quantize_scorer

            quantize_scorer(model)
        return model

    @property
    def labels(self) -> tuple[str, ...]:
        """The model's labels (empty while no model is reachable: spaCy asks before
        ``from_disk`` has run)."""
        if self._model is not None:
            return tuple(self._model.labels)
        if self.model_dir is not None and (self.model_dir / "ehrtext.json").is_file():
            from ehrtext.bundle import read_config

            return tuple(str(x) for x in read_config(self.model_dir).get("labels", []))
        return ()

    # ---- scoring -----------------------------------------------------------------------------

    def __call__(self, doc: Doc) -> Doc:
        return next(iter(self._batch([doc])))

    def pipe(self, docs: Iterable[Doc], batch_size: int | None = None) -> Iterator[Doc]:
        """Score ``batch_size`` docs per model call (default: the component's ``batch_size``)."""
        size = self.batch_size if batch_size is None else max(1, int(batch_size))
        return super().pipe(docs, batch_size=size)

    def _batch(self, docs: list[Doc]) -> list[Doc]:
        if self._pid != os.getpid():
            # a forked worker of nlp.pipe(n_process=N): torch's thread pool does not survive
            # fork (the first parallel op would hang); one thread per worker process
            self._pid = os.getpid()
            _one_torch_thread()
        model = self.risk_model
        good = [d for d in docs if doc_text(d).strip()]
        for d in docs:
            d.cats = {}
            d._.set(RISK_EXPLANATION, None)
        if not good:
            return docs
        probs = model.predict(
            list(map(doc_text, good)), batch_size=max(self.batch_size, len(good))
        )
        columns = [f"p_{lab}" for lab in model.labels]
        values = probs[columns].to_numpy(dtype=float)
        for d, row in zip(good, values):
            d.cats = {lab: float(p) for lab, p in zip(model.labels, row)}
            if self.explain:
                d._.set(RISK_EXPLANATION, model.explain(doc_text(d), method=self.explain).to_dict())
        return docs

    # ---- serialisation -----------------------------------------------------------------------

    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        """Copy the model directory into ``path/model``."""
        if self.model_dir is None:
            raise InputError("ehr_risk has no model directory to save")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        target = path / _MODEL_FOLDER
        if target.resolve() == self.model_dir.resolve():
            return
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(self.model_dir, target)

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> RiskComponent:
        """Load the model saved by :meth:`to_disk` (verified: sizes, hashes, tokenizer)."""
        target = Path(path) / _MODEL_FOLDER
        if not (target / "ehrtext.json").is_file():
            raise ResourceError(f"{target} holds no model: the saved pipeline is incomplete")
        self._model = self._load(target)
        self.model_dir = target
        return self

    def to_bytes(self, *, exclude: Iterable[str] = ()) -> bytes:
        """The model directory as bytes (``nlp.to_bytes``)."""
        from ehrtext.spacy._files import save_to_bytes

        return save_to_bytes(self.to_disk)

    def from_bytes(self, data: bytes, *, exclude: Iterable[str] = ()) -> RiskComponent:
        """Inverse of :meth:`to_bytes`: the model is unpacked to a temporary folder that
        lives as long as the process."""
        import atexit
        import tempfile

        from ehrtext.spacy._files import folder_from_bytes

        keep = Path(tempfile.mkdtemp(prefix="ehrtext-risk-"))
        atexit.register(shutil.rmtree, keep, True)
        folder_from_bytes(data, keep)
        return self.from_disk(keep)

    def __getstate__(self) -> dict[str, Any]:  # the model is reloaded in the other process
        state = dict(self.__dict__)
        state["_model"] = None
        return state


@Language.factory(
    "ehr_risk",
    default_config={"model": None, "explain": "attention", "batch_size": 64, "quantize": False},
    assigns=["doc.cats", f"doc._.{RISK_EXPLANATION}"],
)
def make_risk(
    nlp: Language,
    name: str,
    model: str | None,
    explain: str,
    batch_size: int,
    quantize: bool,
) -> RiskComponent:
    """Factory of ``ehr_risk`` (see the module docs)."""
    return RiskComponent(
        nlp, name, model=model, explain=explain, batch_size=batch_size, quantize=quantize
    )
