"""``RiskModel``: load a model directory and score notes in one call.

::

    model = RiskModel.load("model/")          # verified: sizes, SHA-256, format, tokenizer
    df = model.predict(notes)                 # texts, records, a DataFrame or a Dataset
    p = model.predict_proba(["主诉：胸痛3天"])  # numpy probabilities

The probabilities are those of the model at the end of training, computed the same way: the
note is built with the task spec (``TaskSpec.join_text``: one text field, or section fields
joined with ``【主诉】`` markers), tokenized with the saved tokenizer settings (whose dictionary
hash must match the one recorded at training), encoded with ``vocab.txt``, cut to the trained
``max_len``, run in batches of similar length (the original order is restored), and turned
into probabilities with the calibration temperature. A fresh process gives the same numbers
as the training run (tested).

Output of :meth:`RiskModel.predict` (a pandas DataFrame, one row per input, input order):

* ``id``: from ``ids=``, else the spec's ``id_field`` in records, else the position (0, 1, …);
* ``p_<label>`` for every label, in ``model.labels`` order. Binary models have two labels
  ``[negative, positive]``: ``p_<positive>`` is the model's probability and
  ``p_<negative> = 1 - p_<positive>``;
* ``label`` (binary: positive when its probability ≥ the stored threshold; multi-class: the
  most probable label) or ``labels`` (multi-label: the list of labels at or above their
  thresholds);
* with ``on_error="mark"`` also ``error`` (None, or why the row could not be scored).

Bad rows (``None``, a non-string, a missing or empty text field): with ``on_error="raise"``
(the default) :class:`~ehrtext.errors.InputError` names the first bad row — ``row <i>`` is the
0-based position in the input, plus ``id <id>`` when known — and its field, never its text;
nothing is scored. With ``on_error="mark"`` every good row is scored and each bad row gets NaN
probabilities, ``label``/``labels`` None and the reason in ``error``. :meth:`RiskModel.validate`
lists the bad rows without scoring (row, id, reason), for batch engines that route them to an
errors file.

Example:
    >>> model = RiskModel.load("model/")                                 # doctest: +SKIP
    >>> model.predict(["主诉：反复胸痛2年，加重3天。"]).columns.tolist()     # doctest: +SKIP
    ['id', 'p_冠心病', 'p_心力衰竭', 'label']
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ehrtext.bundle import Bundle, load_bundle
from ehrtext.errors import InputError, ModelFileError, describe_type

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from ehrtext.data import TaskSpec

__all__ = [
    "Explanation",
    "RiskModel",
    "RowProblem",
    "TextEncoder",
    "build_linear",
    "build_rnn",
]

TEXT_KINDS = ("linear", "bigru", "bilstm")


@dataclass(frozen=True)
class RowProblem:
    """A row that cannot be scored: 0-based position, id (or None) and the reason (no text)."""

    row: int
    id: Any
    reason: str


@dataclass(frozen=True)
class Explanation:
    """Why the model gave a note its probability: one weight per model token, with the token's
    ``(start, end)`` character offsets in :attr:`text` — the note exactly as given (for a
    record, the note built from its section fields).

    Attributes:
        text: the note. label: the explained label. method: ``attention`` or ``ig``.
        probabilities: ``{label: probability}`` of the note (as :meth:`RiskModel.predict`).
        tokens: the model's tokens (normalized forms, cut to ``max_len``).
        offsets: ``(start, end)`` of each token in ``text``. weights: one per token
            (attention: ≥ 0, sum 1; integrated gradients: signed).

    ``ehrtext.render_explanation(explanation)`` draws it; :meth:`spans` gives highlight spans,
    :meth:`top` the strongest tokens and :meth:`to_dict` a JSON/msgpack-ready form.
    """

    text: str
    label: str
    method: str
    probabilities: dict[str, float]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    weights: list[float]

    def spans(self, **kwargs: Any) -> list[tuple[int, int, float]]:
        """``(start, end, weight)`` highlight spans (:func:`ehrtext.explain.token_spans`
        options as keywords: ``normalize``, ``min_weight``, ``top_k``, ``merge_adjacent``)."""
        from ehrtext.explain import token_spans

        return token_spans(self.offsets, self.weights, text_length=len(self.text), **kwargs)

    def top(self, k: int = 5) -> list[tuple[str, int, int, float]]:
        """The ``k`` tokens of largest ``|weight|``: ``(original text, start, end, weight)``,
        strongest first (the same offsets seen twice are added up)."""
        spans = self.spans(normalize="none")
        spans.sort(key=lambda x: (-abs(x[2]), x[0]))
        return [(self.text[s:e], s, e, w) for s, e, w in spans[: max(0, k)]]

    def to_dict(self) -> dict[str, Any]:
        """Label, method, probabilities, tokens, offsets and weights as plain lists (no note
        text: the offsets index into the note the caller has)."""
        return {
            "label": self.label,
            "method": self.method,
            "probabilities": dict(self.probabilities),
            "tokens": list(self.tokens),
            "offsets": [[int(s), int(e)] for s, e in self.offsets],
            "weights": [float(w) for w in self.weights],
        }


# --------------------------------------------------------------------------------------------
# Text → token ids, exactly as in training
# --------------------------------------------------------------------------------------------


class TextEncoder:
    """Turns notes into token ids the way :func:`ehrtext.data.tokenize_dataset` and
    :func:`ehrtext.data.encode_dataset` did at training (same tokenizer settings, granularity,
    ``max_len`` and vocabulary).

    Example:
        >>> enc = TextEncoder(tokenizer_config={}, itos=["<pad>", "<unk>", "胸痛"], max_len=8)
        >>> enc.encode(["胸痛，胸痛"])
        [[2, 1, 2]]
    """

    def __init__(
        self,
        tokenizer_config: Mapping[str, Any],
        itos: Sequence[str],
        max_len: int | None = None,
        granularity: str = "word",
    ):
        from ehrtext.data import TaskSpec, _TokenizeBatch

        self.itos = list(itos)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.max_len = max_len
        tok_json = json.dumps(dict(tokenizer_config), sort_keys=True, ensure_ascii=False)
        spec = TaskSpec(["text"], "binary", label_field="_")  # targets are not computed
        self._tokenize = _TokenizeBatch(spec.to_dict(), tok_json, granularity, False, max_len)

    def tokens(self, texts: Sequence[str]) -> list[list[str]]:
        """Token norms of each text (texts must be non-empty strings)."""
        if not texts:
            return []
        return self._tokenize({"text": list(texts)}, list(range(len(texts))))["tokens"]

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, cut to ``max_len``."""
        get = self.stoi.get
        return [[get(t, 1) for t in toks[: self.max_len]] for toks in self.tokens(texts)]

    def tokens_with_offsets(self, text: str) -> tuple[list[str], list[tuple[int, int]]]:
        """The token norms of one note (as :meth:`tokens` gives them, cut to ``max_len``) and
        each token's ``(start, end)`` character offsets in ``text`` as given (through
        normalization). A character of a word split by the ``char`` / ``word+char``
        granularity gets its own offsets when the word's norm and original have the same
        length, else the whole word's.

        Example:
            >>> enc = TextEncoder(tokenizer_config={}, itos=["<pad>", "<unk>"], max_len=8)
            >>> enc.tokens_with_offsets("ＢＰ高")
            (['BP', '高'], [(0, 2), (2, 3)])
        """
        from ehrtext.data import _han_chars, _worker_tokenizer

        tok = _worker_tokenizer(self._tokenize.tokenizer_json)
        norms: list[str] = []
        offsets: list[tuple[int, int]] = []
        granularity = self._tokenize.granularity
        for t in tok.tokenize(text):
            w, s, e = t.norm, int(t.start), int(t.end)
            split = len(w) > 1 and _han_chars(w) == list(w)
            if granularity == "word" or not split:
                norms.append(w)
                offsets.append((s, e))
                continue
            if granularity == "word+char":
                norms.append(w)
                offsets.append((s, e))
            one_to_one = e - s == len(w)
            for i, c in enumerate(w):
                norms.append(c)
                offsets.append((s + i, s + i + 1) if one_to_one else (s, e))
        if self.max_len is not None:
            norms, offsets = norms[: self.max_len], offsets[: self.max_len]
        return norms, offsets


# --------------------------------------------------------------------------------------------
# Builders (registered in ehrtext.bundle.KINDS)
# --------------------------------------------------------------------------------------------


class _RNNScorer:
    """Probabilities of an RNN model: encode, batch by length, forward, temperature."""

    accepts_text = True

    def __init__(self, model: Any, encoder: TextEncoder, task: str, temperature: float):
        self.model = model
        self.encoder = encoder
        self.task = task
        self.temperature = float(temperature)

    def logits(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Raw logits ``(n, outputs)`` in input order."""
        import torch

        from ehrtext.data import collate

        ids = self.encoder.encode(texts)
        lengths = np.array([max(1, len(x)) for x in ids], dtype=np.int64)
        order = np.argsort(lengths, kind="stable")  # as LengthBucketSampler(shuffle=False)
        out = np.zeros((len(ids), self.model.n_outputs), dtype=np.float32)
        self.model.eval()
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                batch = collate([{"input_ids": ids[i]} for i in idx])
                out[idx] = self.model(batch["input_ids"], batch["lengths"]).float().numpy()
        return out

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        from ehrtext.metrics import apply_temperature

        z = self.logits(texts, batch_size)
        if self.task == "binary":
            z = z.reshape(-1)
        return apply_temperature(z, self.temperature, self.task)


    # ---- explanations ------------------------------------------------------------------------

    def _target_prob(self, logits: Any, target: int) -> Any:
        """Probability of output ``target`` (temperature applied), differentiable."""
        import torch

        z = logits / self.temperature
        if self.task == "multiclass":
            return torch.softmax(z, dim=-1)[:, target]
        if self.task == "binary":
            return torch.sigmoid(z.reshape(-1))
        return torch.sigmoid(z[:, target])

    def attributions(
        self, ids: Sequence[int], target: int, method: str = "attention", steps: int = 32
    ) -> tuple[np.ndarray, np.ndarray]:
        """(one weight per token, probabilities of the note) for one encoded note.

        ``attention``: the pooling's attention weights (≥ 0, sum 1). ``ig``: integrated
        gradients of the target's probability w.r.t. the token embeddings, from an all-zero
        embedding baseline, ``steps`` midpoint-rule steps, summed over the embedding
        dimension (signed; they add up to about p(note) - p(baseline)).
        """
        import torch

        model = self.model
        ids_t = torch.tensor([list(ids) or [1]], dtype=torch.long)
        lengths = torch.tensor([ids_t.shape[1]])
        model.eval()
        if method == "attention":
            with torch.inference_mode():
                logits, weights = model(ids_t, lengths, return_attention=True)
            if weights is None:
                raise InputError(
                    f"this model pools with {model.hparams.get('pooling')!r}, which has no "
                    "attention weights: use method='ig'"
                )
            probs = self._probs_np(logits)
            return weights[0].float().numpy().astype(np.float64), probs
        if method != "ig":
            raise InputError(f"method must be 'attention' or 'ig', got {method!r}")
        if not isinstance(getattr(model, "embedding", None), torch.nn.Embedding) or any(
            "quantized" in type(m).__module__ for m in model.modules()
        ):
            raise InputError("integrated gradients need the float (not quantized) model")
        if getattr(model, "chunk_len", 0):
            raise InputError("integrated gradients are not implemented for the hierarchical "
                             "encoder (chunk_len > 0); use method='attention'")
        steps = max(1, int(steps))
        with torch.no_grad():
            emb = model.embedding(ids_t)  # [1, T, D]
            logits = model(ids_t, lengths)
        probs = self._probs_np(logits)
        alphas = (torch.arange(steps, dtype=emb.dtype) + 0.5) / steps
        with torch.enable_grad():
            path = (alphas.view(-1, 1, 1) * emb).detach().requires_grad_(True)  # [S, T, D]
            states, _ = model.rnn(path)  # one note, no padding: no packing needed
            mask = torch.ones(states.shape[:2], dtype=torch.bool)
            pooled, _ = model.pool(states, mask)
            out = self._target_prob(model.head(pooled), target)
            (grads,) = torch.autograd.grad(out.sum(), path)
        attr = (emb[0] * grads.mean(dim=0)).sum(dim=-1)
        return attr.detach().double().numpy(), probs

    def note_probs(self, ids: Sequence[int]) -> np.ndarray:
        """Probabilities of one encoded note (a batch of one)."""
        import torch

        ids_t = torch.tensor([list(ids) or [1]], dtype=torch.long)
        self.model.eval()
        with torch.inference_mode():
            logits = self.model(ids_t, torch.tensor([ids_t.shape[1]]))
        return self._probs_np(logits)

    def _probs_np(self, logits: Any) -> np.ndarray:
        from ehrtext.metrics import apply_temperature

        z = logits.detach().float().numpy()
        if self.task == "binary":
            z = z.reshape(-1)
        return np.asarray(apply_temperature(z, self.temperature, self.task))[0]


def _check_tokenizer(cfg: Mapping[str, Any], path: Any, allow_mismatch: bool) -> None:
    from ehrtext.text import Tokenizer

    recorded = cfg.get("dictionary_hash")
    if not recorded:
        return
    current = Tokenizer.from_config(dict(cfg.get("tokenizer") or {})).dictionary_hash
    if current != recorded and not allow_mismatch:
        raise ModelFileError(
            f"{path}: the tokenizer dictionaries differ from those the model was trained with "
            f"(dictionary hash {current[:12]}… here, {str(recorded)[:12]}… at training): notes "
            "would be cut differently. Install the ehrtext version named in ehrtext.json, or "
            "pass allow_tokenizer_mismatch=True to score anyway"
        )


def build_rnn(bundle: Bundle, *, allow_tokenizer_mismatch: bool = False) -> _RNNScorer:
    """Builder for ``bigru`` / ``bilstm`` model directories.

    Example:
        >>> scorer = build_rnn(load_bundle("model/"))                      # doctest: +SKIP
    """
    import torch

    from ehrtext.models.rnn import RNNClassifier

    cfg = bundle.config
    if bundle.vocab is None:
        raise ModelFileError(f"{bundle.path}: an RNN model directory needs vocab.txt")
    _check_tokenizer(cfg, bundle.path, allow_tokenizer_mismatch)
    try:
        model = RNNClassifier.from_hparams(cfg["model"])
        state = {k: torch.from_numpy(np.array(v)) for k, v in bundle.tensors.items()}
        model.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError, InputError) as exc:
        raise ModelFileError(
            f"{bundle.path}: the weights do not fit the architecture in ehrtext.json "
            f"({type(exc).__name__}: {str(exc)[:300]})"
        ) from None
    if len(bundle.vocab) != model.hparams["vocab_size"]:
        raise ModelFileError(
            f"{bundle.path}: vocab.txt has {len(bundle.vocab)} tokens, the model "
            f"{model.hparams['vocab_size']}"
        )
    model.eval()
    encoder = TextEncoder(
        cfg.get("tokenizer") or {},
        bundle.vocab,
        max_len=cfg.get("max_len"),
        granularity=cfg.get("granularity", "word"),
    )
    return _RNNScorer(model, encoder, cfg["task"], cfg.get("temperature", 1.0))


class _LinearScorer:
    """Probabilities of the linear model: its (calibrated) logits and the temperature."""

    accepts_text = True

    def __init__(self, model: Any, task: str, temperature: float):
        self.model = model
        self.task = task
        self.temperature = float(temperature)

    def logits(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        return np.asarray(self.model.predict_logits(list(texts)))

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        from ehrtext.metrics import apply_temperature

        z = self.logits(texts)
        if self.task == "binary":
            z = z.reshape(-1)
        return apply_temperature(z, self.temperature, self.task)


def build_linear(bundle: Bundle, **_: Any) -> _LinearScorer:
    """Builder for ``linear`` model directories (TF-IDF + linear model, from safetensors +
    JSON through ``TfidfLinearModel.from_state``).

    Example:
        >>> scorer = build_linear(load_bundle("model/"))                   # doctest: +SKIP
    """
    from ehrtext.models.linear import TfidfLinearModel

    cfg = bundle.config
    try:
        model = TfidfLinearModel.from_state(bundle.tensors, cfg["linear"])
    except (KeyError, TypeError, ValueError, InputError) as exc:
        raise ModelFileError(
            f"{bundle.path}: the linear model cannot be rebuilt ({type(exc).__name__}: "
            f"{str(exc)[:300]})"
        ) from None
    return _LinearScorer(model, cfg["task"], cfg.get("temperature", 1.0))


# --------------------------------------------------------------------------------------------
# RiskModel
# --------------------------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


class RiskModel:
    """A trained model directory, ready to score notes.

    Attributes:
        labels: label names in output order. task: ``binary``/``multiclass``/``multilabel``.
        spec: the :class:`~ehrtext.data.TaskSpec` of training (text fields, id field).
        thresholds: per-label decision thresholds (numpy array; None for multi-class).
        temperature: the calibration temperature. kind: ``linear``/``bigru``/``bilstm``/….
        config / metrics: ``ehrtext.json`` and ``metrics.json``. path: the directory.

    Example:
        >>> model = RiskModel.load("model/")                             # doctest: +SKIP
        >>> model.predict([{"主诉": "胸痛3天", "现病史": "…"}])             # doctest: +SKIP
    """

    def __init__(self, bundle: Bundle, scorer: Any):
        from ehrtext.data import TaskSpec

        self.bundle = bundle
        self.config = bundle.config
        self.metrics = bundle.metrics
        self.path = bundle.path
        self.kind = bundle.kind
        self.task: str = self.config["task"]
        self.labels: list[str] = [str(x) for x in self.config["labels"]]
        spec = self.config.get("spec")
        self.spec: TaskSpec | None = TaskSpec.from_dict(spec) if spec else None
        thr = self.config.get("thresholds")
        self.thresholds: np.ndarray | None = (
            None if thr is None or self.task == "multiclass" else np.asarray(thr, np.float64)
        )
        self.temperature: float = float(self.config.get("temperature", 1.0))
        self.scorer = scorer

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        *,
        num_threads: int | None = None,
        allow_tokenizer_mismatch: bool = False,
    ) -> RiskModel:
        """Load and verify a model directory of any kind.

        Args:
            directory: the model directory.
            num_threads: torch CPU threads (None: leave torch's setting).
            allow_tokenizer_mismatch: score even when the installed dictionaries differ from
                the training ones (otherwise :class:`ModelFileError`).

        Raises:
            ModelFileError: missing, truncated, modified or newer-format files; weights that do
                not fit; a changed tokenizer dictionary.
        """
        bundle = load_bundle(directory)
        if num_threads:
            import torch

            torch.set_num_threads(int(num_threads))
        for key in ("task", "labels"):
            if key not in bundle.config:
                raise ModelFileError(f"{bundle.path}: ehrtext.json lacks {key!r}")
        if bundle.kind in ("bigru", "bilstm"):
            scorer = build_rnn(bundle, allow_tokenizer_mismatch=allow_tokenizer_mismatch)
        else:
            scorer = bundle.build()
        return cls(bundle, scorer)

    def __repr__(self) -> str:
        return f"RiskModel(kind={self.kind!r}, task={self.task!r}, labels={len(self.labels)})"

    @property
    def record_fields(self) -> list[str] | None:
        """The columns a record may hold for models that read whole records (``image``:
        the image column; ``multimodal``: text fields, image column, tabular columns); None
        for text models, which read the joined note of :attr:`spec`'s text fields.

        Example:
            >>> RiskModel.load("mm_model/").record_fields               # doctest: +SKIP
            ['note', 'xray', 'age', 'sex']
        """
        from ehrtext.scoring.scorer import record_fields_of

        return record_fields_of(self.config)[1]

    @property
    def image_root(self) -> str | None:
        """The folder relative image paths are read from (image and multimodal models;
        None: the current directory)."""
        base = getattr(self.scorer, "base", None)
        return None if base is None else str(base)

    @image_root.setter
    def image_root(self, folder: str | os.PathLike[str] | None) -> None:
        if hasattr(self.scorer, "base"):
            self.scorer.base = None if folder is None else Path(folder)

    # ---- inputs ------------------------------------------------------------------------------

    def _records(self, inputs: Any) -> tuple[list[Any], bool]:
        """(rows, rows_are_records)."""
        if isinstance(inputs, str):
            raise InputError("predict takes a list of notes, not one string: wrap it in [...]")
        if hasattr(inputs, "to_dict") and hasattr(inputs, "columns"):  # pandas DataFrame
            return inputs.to_dict("records"), True
        if hasattr(inputs, "column_names") and hasattr(inputs, "select_columns"):  # Dataset
            return list(inputs), True
        if isinstance(inputs, Mapping):
            raise InputError("predict takes a list of records, not one record: wrap it in [...]")
        if not isinstance(inputs, Iterable):
            raise InputError(
                f"predict takes texts, records, a DataFrame or a Dataset, got "
                f"{describe_type(inputs)}"
            )
        rows = list(inputs)
        return rows, any(isinstance(r, Mapping) for r in rows)

    def _texts(
        self, rows: list[Any], as_records: bool, ids: Sequence[Any] | None
    ) -> tuple[list[str | None], list[Any], list[RowProblem]]:
        spec = self.spec
        id_field = spec.id_field if spec else None
        if ids is not None:
            ids = list(ids)
            if len(ids) != len(rows):
                raise InputError(f"ids has {len(ids)} entries for {len(rows)} inputs")
        out_ids: list[Any] = []
        texts: list[str | None] = []
        problems: list[RowProblem] = []
        for i, row in enumerate(rows):
            rid = ids[i] if ids is not None else None
            if rid is None and as_records and isinstance(row, Mapping) and id_field:
                rid = row.get(id_field)
                if _is_missing(rid):
                    rid = None
            rid = i if rid is None else rid
            out_ids.append(rid)
            where = f"row {i}" + (f" (id {rid!r})" if rid != i else "")
            try:
                if isinstance(row, Mapping):
                    if spec is None:
                        raise InputError(f"{where}: this model has no task spec: pass texts")
                    try:
                        text = spec.join_text(row)
                    except InputError as exc:  # re-word with our row numbering
                        reason = str(exc).split(": ", 1)[-1]
                        raise InputError(f"{where}: {reason}") from None
                elif isinstance(row, str):
                    if not row.strip():
                        raise InputError(f"{where}: the note is empty")
                    text = row
                elif _is_missing(row):
                    raise InputError(f"{where}: the note is missing (None)")
                else:
                    raise InputError(f"{where}: got {describe_type(row)}, not text")
                texts.append(text)
            except InputError as exc:
                texts.append(None)
                problems.append(RowProblem(i, None if rid == i else rid, str(exc)))
        return texts, out_ids, problems

    def validate(self, inputs: Any, ids: Sequence[Any] | None = None) -> list[RowProblem]:
        """The rows :meth:`predict` cannot score (row, id, reason); empty when all are fine.

        Example:
            >>> model.validate(["胸痛", None])                             # doctest: +SKIP
            [RowProblem(row=1, id=None, reason='row 1: the note is missing (None)')]
        """
        if not getattr(self.scorer, "accepts_text", True):  # image / multimodal: their own
            check = getattr(self.scorer, "validate", None)
            return [] if check is None else check(inputs, ids=ids)
        rows, as_records = self._records(inputs)
        return self._texts(rows, as_records, ids)[2]

    # ---- scoring -----------------------------------------------------------------------------

    def predict_proba(self, texts: Any, batch_size: int = 64) -> np.ndarray:
        """Probabilities: ``(n,)`` positive-class for binary, ``(n, L)`` otherwise (rows in input
        order). Takes the same inputs as :meth:`predict`; a bad row raises InputError.

        Example:
            >>> model.predict_proba(["主诉：胸痛3天"]).shape                   # doctest: +SKIP
            (1, 5)
        """
        if not getattr(self.scorer, "accepts_text", True):
            return np.asarray(self.scorer.predict_proba(texts, batch_size=batch_size))
        rows, as_records = self._records(texts)
        clean, _, problems = self._texts(rows, as_records, None)
        if problems:
            raise InputError(problems[0].reason + _more(problems))
        if not clean:
            return np.zeros((0,) if self.task == "binary" else (0, len(self.labels)))
        return np.asarray(self.scorer.predict_proba(clean, batch_size=batch_size))

    def predict(
        self,
        inputs: Any,
        ids: Sequence[Any] | None = None,
        batch_size: int = 64,
        on_error: str = "raise",
    ) -> pd.DataFrame:
        """Score notes: texts, records with the spec's text fields, a pandas DataFrame or a
        ``datasets.Dataset``. See the module docs for the columns and bad-row handling.

        Example:
            >>> model.predict(df, batch_size=128, on_error="mark")          # doctest: +SKIP
        """
        import pandas as pd

        if on_error not in ("raise", "mark"):
            raise InputError(f"on_error must be 'raise' or 'mark', got {on_error!r}")
        if not getattr(self.scorer, "accepts_text", True):  # e.g. multimodal: whole records
            return self.scorer.predict(inputs, ids=ids, batch_size=batch_size, on_error=on_error)
        rows, as_records = self._records(inputs)
        texts, out_ids, problems = self._texts(rows, as_records, ids)
        if problems and on_error == "raise":
            raise InputError(problems[0].reason + _more(problems))
        good = [i for i, t in enumerate(texts) if t is not None]
        n, n_labels = len(texts), len(self.labels)
        probs = np.full((n, n_labels), np.nan)
        if good:
            p = np.asarray(
                self.scorer.predict_proba([texts[i] for i in good], batch_size=batch_size)
            )
            if self.task == "binary":
                p = p.reshape(-1)
                probs[good, -1] = p
                probs[good, 0] = 1.0 - p
            else:
                probs[good] = p
        data: dict[str, Any] = {"id": out_ids}
        for j, label in enumerate(self.labels):
            data[f"p_{label}"] = probs[:, j]
        decided = self._decide(probs, good)
        if self.task == "multilabel":
            data["labels"] = decided
        else:
            data["label"] = decided
        if on_error == "mark":
            reasons: list[str | None] = [None] * n
            for prob in problems:
                reasons[prob.row] = prob.reason
            data["error"] = reasons
        return pd.DataFrame(data)

    def _decide(self, probs: np.ndarray, good: list[int]) -> list[Any]:
        out: list[Any] = [None] * len(probs)
        if self.task == "multiclass":
            for i in good:
                out[i] = self.labels[int(np.argmax(probs[i]))]
            return out
        thr = self.thresholds
        if self.task == "binary":
            cut = 0.5 if thr is None else float(np.ravel(thr)[0])
            for i in good:
                out[i] = self.labels[-1] if probs[i, -1] >= cut else self.labels[0]
            return out
        cuts = np.full(len(self.labels), 0.5) if thr is None else np.ravel(thr)
        for i in good:
            out[i] = [lab for j, lab in enumerate(self.labels) if probs[i, j] >= cuts[j]]
        return out


    # ---- explanations ------------------------------------------------------------------------

    def explain(
        self,
        text: str | Mapping[str, Any],
        *,
        method: str = "attention",
        label: str | None = None,
        steps: int = 32,
    ) -> Explanation:
        """Token attributions for one note, mapped to character offsets in the note as given.

        Args:
            text: a note, or a record with the spec's text fields (the offsets then index
                into the joined note, :attr:`Explanation.text`).
            method: ``"attention"`` (the attention pooling's weights; models pooled with
                ``max``/``mean`` have none) or ``"ig"`` (integrated gradients of the label's
                probability from an all-zero embedding baseline, ``steps`` steps).
            label: the label to explain (default: the predicted one — for multi-label, the
                most probable). Attention weights do not depend on it.

        Raises:
            InputError: a bad note, an unknown method or label, a model without token
                attributions (the linear model) or a quantized model with ``ig``.

        Example:
            >>> ex = model.explain("主诉：胸痛3天", method="ig")            # doctest: +SKIP
            >>> ex.top(3)                                                # doctest: +SKIP
            [('胸痛', 3, 5, 0.41), ...]
        """
        if not hasattr(self.scorer, "attributions"):
            raise InputError(f"a {self.kind!r} model has no token attributions: use an RNN model")
        as_record = isinstance(text, Mapping)
        clean, _, problems = self._texts([text], as_record, None)
        if problems:
            raise InputError(problems[0].reason)
        note = clean[0]
        assert note is not None
        encoder: TextEncoder = self.scorer.encoder
        tokens, offsets = encoder.tokens_with_offsets(note)
        if tokens != encoder.tokens([note])[0]:  # pragma: no cover - a tokenizer bug
            raise ModelFileError("tokens with offsets differ from the tokens the model reads")
        ids = [encoder.stoi.get(t, 1) for t in tokens]
        if label is None:
            target = None
        elif label in self.labels:
            target = self.labels.index(label)
        else:
            raise InputError(f"unknown label {label!r}; the model's labels: {self.labels}")
        probs = self.scorer.note_probs(ids)
        if self.task == "binary":
            p = float(np.ravel(probs)[0])
            prob_map = {self.labels[0]: 1.0 - p, self.labels[-1]: p}
            target = len(self.labels) - 1 if target is None else target
        else:
            prob_map = {lab: float(v) for lab, v in zip(self.labels, np.ravel(probs))}
            target = int(np.argmax(np.ravel(probs))) if target is None else target
        out_index = 0 if self.task == "binary" else target
        weights, _ = self.scorer.attributions(ids, out_index, method=method, steps=steps)
        if self.task == "binary" and target == 0 and method == "ig":
            weights = -weights  # attributions of 1 - p(positive)
        if not tokens:  # an empty token list is read as one <unk>: nothing to show
            weights = np.zeros(0)
        return Explanation(
            text=note,
            label=self.labels[target],
            method=method,
            probabilities=prob_map,
            tokens=tokens,
            offsets=[(int(s), int(e)) for s, e in offsets],
            weights=[float(w) for w in weights[: len(tokens)]],
        )


def _more(problems: list[RowProblem]) -> str:
    return f" (and {len(problems) - 1} more bad rows)" if len(problems) > 1 else ""


def load_model(directory: str | os.PathLike[str], **kwargs: Any) -> RiskModel:
    """Shorthand for :meth:`RiskModel.load`.

    Example:
        >>> load_model("model/").labels                                   # doctest: +SKIP
        ['冠心病', '心力衰竭']
    """
    return RiskModel.load(Path(directory), **kwargs)
