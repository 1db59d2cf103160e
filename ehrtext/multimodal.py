"""Multimodal patient records: notes + an image + tabular values → one risk model.

:class:`MultimodalNet` encodes each modality on its own — the notes with the packed BiGRU /
BiLSTM and masked attention pooling of :mod:`ehrtext.models.rnn`, the image with the compact
CNN of :mod:`ehrtext.imaging.networks`, tabular values (age, sex, lab values) with a small
MLP — projects each to ``fusion_dim`` and fuses them with a *masked* attention over the
modalities (``fusion="attention"``: a learned score per modality vector, softmax over the
modalities the patient has) or a gated multimodal unit (``fusion="gated"``, the default:
gates computed from all present modality vectors together, softmax over the modalities),
then a two-layer head. A missing modality (no note, no image path, an unreadable image, every
tabular value missing) is masked out of the fusion, so a patient without an image still gets
a prediction from what is there; training drops present modalities at random
(``modality_dropout``) so the model learns to predict from any subset.

The manifest is a CSV / TSV / JSONL / Parquet table: text field(s), an image path column
(relative to the manifest's folder unless absolute; several paths joined with ``;`` — the
first readable one is used), tabular columns (numbers; a non-numeric column is one-hot
encoded over the categories seen in training), a label column, and optional id / patient
columns. The model directory is the shared one (:mod:`ehrtext.bundle`, kind
``multimodal``): ``ehrtext.json``, ``vocab.txt``, ``weights.safetensors``, ``metrics.json``,
``README.md``; ``RiskModel.load`` builds it and ``RiskModel.predict(records)`` scores
records holding the same columns.

Example:
    >>> cfg = MultimodalConfig(text_fields=["note"], image_field="xray", tabular=["age"])
    >>> model = train_multimodal("train.csv", "model/", label_field="finding",
    ...                          config=cfg)                            # doctest: +SKIP
    >>> MultimodalModel.load("model/").predict([{"note": "...", "age": 60}])  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ehrtext.errors import InputError, ModelFileError

__all__ = [
    "FUSIONS",
    "MODALITIES",
    "MultimodalConfig",
    "MultimodalModel",
    "MultimodalNet",
    "build_from_bundle",
    "train_multimodal",
]

MODALITIES = ("text", "image", "tabular")
FUSIONS = ("attention", "gated")


@dataclass
class MultimodalConfig:
    """Columns, architecture and training settings of a multimodal model (JSON-ready).

    ``modalities`` (default: every modality that has columns) restricts the model to some of
    them — the text-only / image-only baselines of a comparison are the same model.

    Example:
        >>> MultimodalConfig.from_dict(MultimodalConfig(epochs=3).to_dict()).epochs
        3
    """

    text_fields: list[str] = field(default_factory=lambda: ["text"])
    image_field: str | None = "image"
    tabular: list[str] = field(default_factory=list)
    modalities: list[str] | None = None
    # text encoder
    rnn: str = "gru"
    embedding_dim: int = 64
    hidden_size: int = 64
    pooling: str = "attention"
    max_len: int = 256
    min_freq: int = 1
    max_vocab: int | None = 20000
    tokenizer: dict[str, Any] = field(default_factory=dict)
    # image encoder
    image_size: int = 64
    widths: list[int] = field(default_factory=lambda: [16, 32, 64])
    window: Any = None
    augment: bool = True
    # fusion and head
    fusion: str = "gated"  # learned the constructed interaction more reliably
    fusion_dim: int = 64
    dropout: float = 0.2
    modality_dropout: float = 0.25
    # training
    epochs: int = 20
    batch_size: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    class_weight: bool = False
    tune_fraction: float = 0.2
    threshold_rule: str = "f1"
    seed: int = 0
    threads: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.text_fields, str):
            self.text_fields = [self.text_fields]
        if isinstance(self.tabular, str):
            self.tabular = [self.tabular]
        if self.fusion not in FUSIONS:
            raise InputError(f"fusion must be one of {', '.join(FUSIONS)}, got {self.fusion!r}")
        if self.rnn not in ("gru", "lstm"):
            raise InputError(f"rnn must be 'gru' or 'lstm', got {self.rnn!r}")
        bad = [m for m in self.modalities or [] if m not in MODALITIES]
        if bad:
            raise InputError(f"unknown modalities {bad}; choose from {', '.join(MODALITIES)}")
        if not self.active():
            raise InputError("no modality: give text fields, an image field or tabular columns")

    def active(self) -> list[str]:
        """The modalities the model reads, in the order text, image, tabular."""
        have = {
            "text": bool(self.text_fields),
            "image": bool(self.image_field),
            "tabular": bool(self.tabular),
        }
        wanted = set(self.modalities) if self.modalities else set(MODALITIES)
        return [m for m in MODALITIES if have[m] and m in wanted]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (a window tuple becomes a list)."""
        d = dataclasses.asdict(self)
        if isinstance(self.window, tuple):
            d["window"] = list(self.window)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MultimodalConfig:
        """The inverse of :meth:`to_dict` (unknown keys are an :class:`InputError`)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown multimodal settings: {', '.join(unknown)}")
        d = dict(data)
        if isinstance(d.get("window"), list):
            d["window"] = tuple(float(v) for v in d["window"])
        return cls(**d)


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


def _torch() -> Any:
    import torch

    return torch


def _build_net_class() -> Any:
    import torch
    from torch import nn

    from ehrtext.imaging.networks import CompactCNN
    from ehrtext.models.rnn import MaskedPooling, RNNClassifier, sequence_mask

    class _MultimodalNet(nn.Module):
        def __init__(
            self,
            *,
            modalities: Sequence[str],
            num_outputs: int,
            vocab_size: int = 2,
            tabular_dim: int = 0,
            rnn: str = "gru",
            embedding_dim: int = 64,
            hidden_size: int = 64,
            pooling: str = "attention",
            widths: Sequence[int] = (16, 32, 64),
            fusion: str = "attention",
            fusion_dim: int = 64,
            dropout: float = 0.2,
        ) -> None:
            super().__init__()
            self.modalities = list(modalities)
            self.fusion = fusion
            self.hparams = {
                "modalities": list(modalities),
                "num_outputs": int(num_outputs),
                "vocab_size": int(vocab_size),
                "tabular_dim": int(tabular_dim),
                "rnn": rnn,
                "embedding_dim": int(embedding_dim),
                "hidden_size": int(hidden_size),
                "pooling": pooling,
                "widths": [int(w) for w in widths],
                "fusion": fusion,
                "fusion_dim": int(fusion_dim),
                "dropout": float(dropout),
            }
            self.drop = nn.Dropout(dropout)
            proj: dict[str, nn.Module] = {}
            if "text" in self.modalities:
                self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
                cls = nn.GRU if rnn == "gru" else nn.LSTM
                self.rnn = cls(embedding_dim, hidden_size, batch_first=True, bidirectional=True)
                self.pool = MaskedPooling(2 * hidden_size, pooling)
                proj["text"] = nn.Linear(self.pool.out_dim, fusion_dim)
            if "image" in self.modalities:
                self.cnn = CompactCNN(num_outputs=1, widths=widths, dropout=dropout)
                self.cnn.head = nn.Identity()  # the CNN gives its pooled features
                proj["image"] = nn.Linear(2 * int(widths[-1]), fusion_dim)
            if "tabular" in self.modalities:
                proj["tabular"] = nn.Sequential(
                    nn.Linear(tabular_dim, fusion_dim), nn.ReLU(), nn.Linear(fusion_dim, fusion_dim)
                )
            self.proj = nn.ModuleDict(proj)
            if fusion == "attention":
                self.att = nn.Sequential(
                    nn.Linear(fusion_dim, fusion_dim), nn.Tanh(), nn.Linear(fusion_dim, 1)
                )
            else:  # a gated multimodal unit: per-feature gates from all modalities at once
                n = len(self.modalities)
                self.gate = nn.Linear(n * fusion_dim, n * fusion_dim)
            self.head = nn.Sequential(
                nn.Linear(fusion_dim, fusion_dim),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(fusion_dim, num_outputs),
            )

        def encode(self, batch: Mapping[str, Any]) -> tuple[Any, Any]:
            """Per-modality vectors ``[B, M, D]`` and the mask ``[B, M]`` of present ones."""
            vecs, masks = [], []
            for m in self.modalities:
                if m == "text":
                    ids, lengths = batch["input_ids"], batch["lengths"]
                    lengths = lengths.to("cpu", torch.int64).clamp(min=1, max=ids.shape[1])
                    states = RNNClassifier._run(self.rnn, self.drop(self.embedding(ids)), lengths)
                    pooled, _ = self.pool(states, sequence_mask(lengths, ids.shape[1]))
                    h = pooled
                elif m == "image":
                    h = self.cnn(batch["images"])
                else:
                    h = batch["tabular"]
                vecs.append(torch.relu(self.proj[m](self.drop(h) if m != "tabular" else h)))
                masks.append(batch[f"{m}_mask"].bool())
            return torch.stack(vecs, dim=1), torch.stack(masks, dim=1)

        def fuse(self, vecs: Any, mask: Any) -> tuple[Any, Any]:
            """Fused vector ``[B, D]`` and the modality weights ``[B, M]`` (0 where absent)."""
            if self.fusion == "attention":
                scores = self.att(vecs).squeeze(-1).masked_fill(~mask, float("-inf"))
                weights = torch.softmax(scores, dim=-1)
                weights = torch.nan_to_num(weights, nan=0.0)  # a row with nothing at all
                return (weights.unsqueeze(-1) * vecs).sum(dim=1), weights
            b, m, d = vecs.shape
            present = vecs * mask.unsqueeze(-1)
            logits = self.gate(present.reshape(b, m * d)).reshape(b, m, d)
            logits = logits.masked_fill(~mask.unsqueeze(-1), float("-inf"))
            gates = torch.nan_to_num(torch.softmax(logits, dim=1), nan=0.0)  # over modalities
            return (gates * vecs).sum(dim=1), gates.mean(dim=-1)

        def forward(self, batch: Mapping[str, Any], return_weights: bool = False) -> Any:
            vecs, mask = self.encode(batch)
            fused, weights = self.fuse(vecs, mask)
            logits = self.head(fused)
            return (logits, weights) if return_weights else logits

    return _MultimodalNet


_NET_CLASS: Any = None


def MultimodalNet(**hparams: Any) -> Any:  # noqa: N802 - a class built on first use
    """The fusion network (an ``nn.Module``; torch is imported on first use).

    ``forward(batch)`` takes a dict with ``input_ids``/``lengths``/``text_mask``,
    ``images``/``image_mask``, ``tabular``/``tabular_mask`` (those of its modalities) and
    returns logits ``[B, num_outputs]``.

    Example:
        >>> import torch
        >>> net = MultimodalNet(modalities=["text", "tabular"], num_outputs=1, vocab_size=10,
        ...                     tabular_dim=2, embedding_dim=4, hidden_size=4, fusion_dim=8)
        >>> b = {"input_ids": torch.tensor([[2, 3]]), "lengths": torch.tensor([2]),
        ...      "text_mask": torch.tensor([True]), "tabular": torch.zeros(1, 2),
        ...      "tabular_mask": torch.tensor([False])}
        >>> net(b).shape
        torch.Size([1, 1])
    """
    global _NET_CLASS
    if _NET_CLASS is None:
        _NET_CLASS = _build_net_class()
    return _NET_CLASS(**hparams)


# --------------------------------------------------------------------------------------------
# Rows → tensors
# --------------------------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _number(value: Any) -> float | None:
    if _missing(value) or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


@dataclass
class TabularEncoder:
    """Tabular columns → standardized numbers plus a missing-indicator per column.

    A column whose non-missing training values are all numbers is standardized with the
    training mean and standard deviation (missing → 0, the mean); any other column is one-hot
    encoded over its training categories (an unseen category → all zeros).

    Example:
        >>> enc = TabularEncoder.fit([{"age": "60", "sex": "M"}, {"age": 40, "sex": "F"}],
        ...                          ["age", "sex"])
        >>> enc.transform([{"age": 50, "sex": None}]).round(2).tolist()
        [[0.0, 0.0, 0.0, 0.0, 1.0]]
    """

    columns: list[str]
    numeric: dict[str, list[float]]  # column -> [mean, std]
    categories: dict[str, list[str]]

    @classmethod
    def fit(cls, records: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> TabularEncoder:
        numeric: dict[str, list[float]] = {}
        categories: dict[str, list[str]] = {}
        for col in columns:
            values = [r.get(col) for r in records if not _missing(r.get(col))]
            nums = [_number(v) for v in values]
            if values and all(x is not None for x in nums):
                arr = np.asarray(nums, dtype=np.float64)
                numeric[col] = [float(arr.mean()), float(arr.std() or 1.0)]
            else:
                categories[col] = sorted({str(v).strip() for v in values})
        return cls(list(columns), numeric, categories)

    @property
    def dim(self) -> int:
        """Features per row: one per numeric column, one per category, one missing flag per
        column."""
        return len(self.numeric) + sum(len(c) for c in self.categories.values()) + len(self.columns)

    def transform(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``[N, dim]`` float32 features (numeric, then one-hot, then missing flags)."""
        out = np.zeros((len(records), self.dim), dtype=np.float32)
        for i, rec in enumerate(records):
            j = 0
            flags = []
            for col in self.columns:
                value = rec.get(col)
                if col in self.numeric:
                    x = _number(value)
                    mean, std = self.numeric[col]
                    if x is not None:
                        out[i, j] = (x - mean) / std
                    flags.append(x is None)
                    j += 1
                else:
                    cats = self.categories[col]
                    key = None if _missing(value) else str(value).strip()
                    if key in cats:
                        out[i, j + cats.index(key)] = 1.0
                    flags.append(key is None)
                    j += len(cats)
            out[i, j:] = np.asarray(flags, dtype=np.float32)
        return out

    def present(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """True where a row has at least one tabular value."""
        return np.array([any(not _missing(r.get(c)) for c in self.columns) for r in records])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _join_text(record: Mapping[str, Any], fields: Sequence[str]) -> str | None:
    """The note of a record as the text models build it (sections marked ``【field】``), or
    None when every text field is missing or empty."""
    from ehrtext.data import TaskSpec

    spec = TaskSpec(list(fields), "binary", label_field="_")
    try:
        return spec.join_text(record)
    except InputError:
        return None


@dataclass
class Encoded:
    """A set of rows as model inputs (numpy / torch), with per-modality presence masks."""

    ids: list[list[int]]
    text_mask: np.ndarray
    images: Any
    image_mask: np.ndarray
    tabular: np.ndarray
    tabular_mask: np.ndarray

    def __len__(self) -> int:
        return len(self.text_mask)

    def batch(self, idx: Sequence[int], modalities: Sequence[str]) -> dict[str, Any]:
        import torch

        from ehrtext.data import collate

        out: dict[str, Any] = {}
        if "text" in modalities:
            col = collate([{"input_ids": self.ids[i] or [1]} for i in idx])
            out.update(input_ids=col["input_ids"], lengths=col["lengths"])
            out["text_mask"] = torch.from_numpy(self.text_mask[list(idx)])
        if "image" in modalities:
            out["images"] = self.images[list(idx)]
            out["image_mask"] = torch.from_numpy(self.image_mask[list(idx)])
        if "tabular" in modalities:
            out["tabular"] = torch.from_numpy(self.tabular[list(idx)])
            out["tabular_mask"] = torch.from_numpy(self.tabular_mask[list(idx)])
        return out


class _Preprocessor:
    """Everything that turns records into :class:`Encoded` inputs the same way at training
    and at scoring: tokenizer + vocabulary, image reading, tabular encoding."""

    def __init__(
        self,
        config: MultimodalConfig,
        itos: Sequence[str] | None,
        tabular: TabularEncoder | None,
    ) -> None:
        self.config = config
        self.modalities = config.active()
        self.itos = list(itos) if itos is not None else ["<pad>", "<unk>"]
        self.tabular = tabular
        self._encoder: Any = None
        self.cache: dict[Any, np.ndarray] | None = None  # decoded images (opt-in)

    def text_encoder(self) -> Any:
        if self._encoder is None:
            from ehrtext.predict import TextEncoder

            self._encoder = TextEncoder(
                self.config.tokenizer, self.itos, max_len=self.config.max_len
            )
        return self._encoder

    def notes(self, records: Sequence[Mapping[str, Any]]) -> list[str | None]:
        return [_join_text(r, self.config.text_fields) for r in records]

    def encode(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        base: Path | None = None,
        errors: Any = None,
        rows: Sequence[int] | None = None,
        ids: Sequence[Any] | None = None,
    ) -> Encoded:
        import torch

        n = len(records)
        cfg = self.config
        text_ids: list[list[int]] = [[] for _ in range(n)]
        text_mask = np.zeros(n, dtype=bool)
        if "text" in self.modalities:
            notes = self.notes(records)
            have = [i for i, t in enumerate(notes) if t is not None]
            if have:
                encoded = self.text_encoder().encode([notes[i] for i in have])  # type: ignore[misc]
                for i, seq in zip(have, encoded):
                    text_ids[i] = seq
                    text_mask[i] = len(seq) > 0
        size = cfg.image_size
        images = torch.zeros((n, 1, size, size))
        image_mask = np.zeros(n, dtype=bool)
        if "image" in self.modalities and cfg.image_field:
            from ehrtext.imaging.manifest import image_paths
            from ehrtext.imaging.readers import read_image
            from ehrtext.imaging.transforms import to_model_input

            for i, rec in enumerate(records):
                reasons = []
                for path in image_paths(rec.get(cfg.image_field), base):
                    try:
                        key = (str(path), size, repr(cfg.window))
                        arr = None if self.cache is None else self.cache.get(key)
                        if arr is None:
                            arr = to_model_input(read_image(path, window=cfg.window), size)
                            if self.cache is not None:
                                self.cache[key] = arr
                        images[i] = torch.from_numpy(arr)
                        image_mask[i] = True
                        break
                    except InputError as exc:
                        reasons.append(str(exc))
                if reasons and not image_mask[i] and errors is not None:
                    row = rows[i] if rows is not None else i + 1
                    rid = None if ids is None else ids[i]
                    # the row is still scored (without its image): a warning-level entry
                    errors.add(row, rid, "bad_image", "; ".join(reasons)[:500])
        tab = np.zeros((n, self.tabular.dim if self.tabular else 0), dtype=np.float32)
        tab_mask = np.zeros(n, dtype=bool)
        if "tabular" in self.modalities and self.tabular is not None:
            tab = self.tabular.transform(records)
            tab_mask = self.tabular.present(records)
        return Encoded(text_ids, text_mask, images, image_mask, tab, tab_mask)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _forward_all(net: Any, data: Encoded, modalities: Sequence[str], bs: int = 64) -> np.ndarray:
    import torch

    net.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(data), bs):
            idx = list(range(start, min(start + bs, len(data))))
            out.append(net(data.batch(idx, modalities)).float().numpy())
    if not out:
        return np.zeros((0, net.hparams["num_outputs"]), dtype=np.float32)
    return np.concatenate(out)


def fit_network(
    data: Encoded,
    targets: np.ndarray,
    config: MultimodalConfig,
    *,
    task: str,
    num_outputs: int,
    vocab_size: int,
    tabular_dim: int,
    log: Any = None,
) -> tuple[Any, list[dict[str, float]]]:
    """Train a :func:`MultimodalNet` on encoded rows; returns (network in eval mode, history).

    AdamW with a cosine learning rate, batch augmentation of the images (small shifts,
    rotations and zooms), and modality dropout: each present modality of a training row is
    hidden with probability ``modality_dropout`` (at least one always stays).
    """
    import torch

    from ehrtext.imaging.train import loss_for
    from ehrtext.imaging.transforms import BatchAugment

    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    modalities = config.active()
    net = MultimodalNet(
        modalities=modalities,
        num_outputs=num_outputs,
        vocab_size=vocab_size,
        tabular_dim=tabular_dim,
        rnn=config.rnn,
        embedding_dim=config.embedding_dim,
        hidden_size=config.hidden_size,
        pooling=config.pooling,
        widths=config.widths,
        fusion=config.fusion,
        fusion_dim=config.fusion_dim,
        dropout=config.dropout,
    )
    opt = torch.optim.AdamW(
        net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    base_loss = loss_for(task)
    y_all = torch.as_tensor(np.asarray(targets))
    pos_weight = None
    if config.class_weight and task == "binary":
        pos = float(y_all.float().mean())
        pos_weight = torch.tensor([(1 - pos) / max(pos, 1e-6)])
    augment = BatchAugment(flip_prob=0.0, rotate_degrees=8.0, zoom=0.08, shift=0.06)
    n = len(data)
    steps = max(1, math.ceil(n / config.batch_size)) * config.epochs
    step = 0
    history: list[dict[str, float]] = []
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        net.train()
        order = torch.randperm(n, generator=gen).tolist()
        total, seen = 0.0, 0
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            if len(idx) < 2:
                continue
            batch = data.batch(idx, modalities)
            if "image" in modalities and config.augment:
                batch["images"] = augment(batch["images"], gen)
            if config.modality_dropout > 0 and len(modalities) > 1:
                masks = torch.stack([batch[f"{m}_mask"] for m in modalities], dim=1)
                drop = torch.rand(masks.shape, generator=gen) < config.modality_dropout
                kept = masks & ~drop
                lost = kept.sum(dim=1) == 0  # keep the row's strongest... any present one
                kept[lost] = masks[lost]
                for j, m in enumerate(modalities):
                    batch[f"{m}_mask"] = kept[:, j]
            lr = config.learning_rate * 0.5 * (1 + math.cos(math.pi * step / steps))
            for group in opt.param_groups:
                group["lr"] = lr
            logits = net(batch)
            yb = y_all[idx]
            if pos_weight is not None:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits.reshape(-1), yb.float(), pos_weight=pos_weight
                )
            else:
                loss = base_loss(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
            step += 1
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        row = {
            "epoch": epoch + 1,
            "loss": total / max(seen, 1),
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        if log is not None:
            log(" ".join(f"{k} {v:.4g}" for k, v in row.items()))
    net.eval()
    return net, history


def _read_records(manifest: Any) -> tuple[list[dict[str, Any]], Path | None]:
    if isinstance(manifest, (str, os.PathLike)):
        from ehrtext.imaging.manifest import read_table

        p = Path(manifest)
        return read_table(p), p.parent
    if hasattr(manifest, "to_dict") and hasattr(manifest, "columns"):
        return manifest.to_dict("records"), None
    return [dict(r) for r in manifest], None


def _targets(records: list[dict[str, Any]], spec: Any, errors: Any) -> tuple[list[int], np.ndarray]:
    keep, ys = [], []
    for i, rec in enumerate(records):
        try:
            ys.append(spec.target(rec, row=i + 1))
            keep.append(i)
        except InputError as exc:
            if errors is None:
                raise
            rid = rec.get(spec.id_field) if spec.id_field else None
            errors.add(
                i + 1, None if _missing(rid) else str(rid), "bad_label", str(exc).split(": ", 1)[-1]
            )
    return keep, np.asarray(ys)


def train_multimodal(
    manifest: Any,
    output: str | os.PathLike[str] | None,
    *,
    label_field: str = "label",
    task: str | None = None,
    labels: Sequence[str] | None = None,
    id_field: str | None = None,
    patient_field: str | None = None,
    config: MultimodalConfig | None = None,
    base: str | os.PathLike[str] | None = None,
    errors: Any = None,
    log: Any = None,
    image_cache: dict[Any, np.ndarray] | None = None,
) -> MultimodalModel:
    """Train a multimodal model on a manifest (path, DataFrame or list of records) and save it.

    A tuning split (``config.tune_fraction``, stratified, grouped by patient when
    ``patient_field``) is carved from the rows; the calibration temperature and the decision
    thresholds are fitted on it and its metrics saved (as such) in ``metrics.json``.
    ``image_cache`` (a dict) keeps decoded images between calls on the same files.

    Example:
        >>> train_multimodal("m.csv", "model/", label_field="finding",
        ...                  config=MultimodalConfig(text_fields=["note"]))  # doctest: +SKIP
    """
    from ehrtext.data import TaskSpec, Vocab, kfold_indices
    from ehrtext.imaging.model import choose_thresholds
    from ehrtext.metrics import apply_temperature, compute_metrics, fit_temperature

    cfg = config or MultimodalConfig()
    records, folder = _read_records(manifest)
    folder = Path(base) if base is not None else folder
    if not records:
        raise InputError("the multimodal manifest has no rows")
    if label_field not in set().union(*(r.keys() for r in records)):
        raise InputError(f"no label column {label_field!r} in the manifest")
    if task is None:
        values = {str(r.get(label_field)) for r in records if not _missing(r.get(label_field))}
        task = "binary" if len(values) <= 2 else "multiclass"
    labelled = [r for r in records if not _missing(r.get(label_field))]
    names = list(labels) if labels else None
    if names is None and task == "binary" and labelled:
        probe = TaskSpec(["_"], "multiclass", label_field=label_field).resolve(labelled)
        flags = {"0", "1", "0.0", "1.0", "true", "false", "True", "False"}
        names = None if set(probe.labels) <= flags else probe.labels  # 0/1: ["0", "1"]
    spec = TaskSpec(
        list(cfg.text_fields) or ["_"],
        task,
        label_field=label_field,
        labels=names,
        id_field=id_field,
        patient_field=patient_field,
    )
    if spec.labels is None:
        spec = spec.resolve(labelled)
    keep, y = _targets(records, spec, errors)
    records = [records[i] for i in keep]
    if len(records) < 4:
        raise InputError(f"{len(records)} usable rows: too few to train")
    k = max(2, round(1 / cfg.tune_fraction))
    tune_idx = kfold_indices(records, spec, k=k, seed=cfg.seed)[0][1]
    in_tune = np.zeros(len(records), dtype=bool)
    in_tune[tune_idx] = True
    fit_idx = np.flatnonzero(~in_tune)
    t0 = time.perf_counter()
    pre = _Preprocessor(cfg, None, None)
    pre.cache = image_cache
    modalities = cfg.active()
    if "text" in modalities:
        notes = pre.notes([records[i] for i in fit_idx])
        toks = pre.text_encoder().tokens([t for t in notes if t is not None])
        pre.itos = Vocab.build(toks, min_freq=cfg.min_freq, max_size=cfg.max_vocab).itos
        pre._encoder = None
    if "tabular" in modalities:
        pre.tabular = TabularEncoder.fit([records[i] for i in fit_idx], cfg.tabular)
    ids = [records[i].get(id_field) if id_field else None for i in range(len(records))]
    data = pre.encode(records, base=folder, errors=errors, rows=[i + 1 for i in keep], ids=ids)
    outputs = 1 if task == "binary" else len(spec.labels)
    sub = Encoded(
        [data.ids[i] for i in fit_idx],
        data.text_mask[fit_idx],
        data.images[fit_idx],
        data.image_mask[fit_idx],
        data.tabular[fit_idx],
        data.tabular_mask[fit_idx],
    )
    net, history = fit_network(
        sub,
        y[fit_idx],
        cfg,
        task=task,
        num_outputs=outputs,
        vocab_size=len(pre.itos),
        tabular_dim=pre.tabular.dim if pre.tabular else 0,
        log=log,
    )
    seconds = time.perf_counter() - t0
    model = MultimodalModel(net, cfg, pre, task=task, labels=spec.labels, spec=spec)
    tune = Encoded(
        [data.ids[i] for i in tune_idx],
        data.text_mask[tune_idx],
        data.images[tune_idx],
        data.image_mask[tune_idx],
        data.tabular[tune_idx],
        data.tabular_mask[tune_idx],
    )
    z = _forward_all(net, tune, modalities)
    z = z.reshape(-1) if task == "binary" else z
    yt = y[tune_idx]
    try:
        model.temperature = float(fit_temperature(z, yt, task))
    except InputError:
        model.temperature = 1.0
    probs = apply_temperature(z, model.temperature, task)
    try:
        thr = choose_thresholds(yt, probs, task, cfg.threshold_rule)
    except InputError:
        thr = None
    model.thresholds = None if thr is None else np.asarray(thr, dtype=np.float64)
    try:
        summary = compute_metrics(yt, probs, task, spec.labels, thresholds=thr, n_bootstrap=0)
    except InputError as exc:
        summary = {"note": f"metrics not computed: {exc}"}
    metrics = {
        "split": f"tuning split carved from the training rows ({len(tune_idx)} of "
        f"{len(records)}, seed {cfg.seed}"
        + (", grouped by patient" if patient_field else "")
        + "); temperature and thresholds were fitted on it, so these figures are optimistic",
        "modalities": modalities,
        "present": {
            "text": int(data.text_mask.sum()),
            "image": int(data.image_mask.sum()),
            "tabular": int(data.tabular_mask.sum()),
        },
        "train_rows": int(len(fit_idx)),
        "tune_rows": int(len(tune_idx)),
        "train_seconds": round(seconds, 1),
        "history": history,
        "summary": summary,
    }
    if output is not None:
        model.save(output, metrics=metrics)
    return model


# --------------------------------------------------------------------------------------------
# The model: scoring, saving, loading
# --------------------------------------------------------------------------------------------


class MultimodalModel:
    """A trained fusion network with its preprocessing, temperature and thresholds.

    ``predict(records)`` takes dicts (or a DataFrame) holding the text fields, the image path
    column and the tabular columns; any of them may be missing for a row.

    Example:
        >>> model = MultimodalModel.load("model/")                         # doctest: +SKIP
        >>> model.predict([{"note": "fever, cough", "age": 71}])            # doctest: +SKIP
    """

    accepts_text = False  # RiskModel hands records through unchanged

    def __init__(
        self,
        network: Any,
        config: MultimodalConfig,
        pre: _Preprocessor,
        *,
        task: str,
        labels: Sequence[str],
        spec: Any = None,
        thresholds: Any = None,
        temperature: float = 1.0,
        path: Path | None = None,
    ) -> None:
        self.network = network.eval()
        self.config = config
        self.pre = pre
        self.task = task
        self.labels = [str(x) for x in labels]
        self.spec = spec
        self.thresholds = None if thresholds is None else np.asarray(thresholds, np.float64)
        self.temperature = float(temperature)
        self.path = path
        self.base: Path | None = None  # folder relative image paths are read from

    @property
    def modalities(self) -> list[str]:
        return self.config.active()

    def _rows(self, inputs: Any) -> list[dict[str, Any]]:
        if isinstance(inputs, (str, Mapping)):
            raise InputError("predict takes a list of records (or a DataFrame): wrap it in [...]")
        if hasattr(inputs, "to_dict") and hasattr(inputs, "columns"):
            return inputs.to_dict("records")
        rows = []
        for item in inputs:
            if isinstance(item, Mapping):
                rows.append(dict(item))
            elif isinstance(item, str) and self.config.text_fields:
                rows.append({self.config.text_fields[0]: item})  # a bare note
            elif item is None:
                rows.append({})
            else:
                raise InputError(f"a {type(item).__name__} is not a record")
        return rows

    def logits(
        self, records: Sequence[Mapping[str, Any]], errors: Any = None, ids: Any = None
    ) -> np.ndarray:
        """Raw logits ``[N, outputs]`` of records (missing modalities masked)."""
        data = self.pre.encode(records, base=self.base, errors=errors, ids=ids)
        return _forward_all(self.network, data, self.modalities)

    def predict_proba(self, inputs: Any, batch_size: int = 64, errors: Any = None) -> np.ndarray:
        """Calibrated probabilities: ``(n,)`` for binary, ``(n, L)`` otherwise (unreadable
        images are reported to ``errors``, an :class:`~ehrtext.textio.ErrorSink`, when given)."""
        from ehrtext.metrics import apply_temperature

        z = self.logits(self._rows(inputs), errors=errors)
        z = z.reshape(-1) if self.task == "binary" else z
        return apply_temperature(z, self.temperature, self.task)

    def modality_weights(self, inputs: Any) -> np.ndarray:
        """The fusion weight of each modality per row ``[N, M]`` (order: :attr:`modalities`;
        0 where the modality is absent)."""
        import torch

        data = self.pre.encode(self._rows(inputs), base=self.base)
        with torch.inference_mode():
            _, w = self.network(data.batch(range(len(data)), self.modalities), return_weights=True)
        return w.numpy()

    def predict(
        self,
        inputs: Any,
        ids: Sequence[Any] | None = None,
        batch_size: int = 64,
        on_error: str = "raise",
        errors: Any = None,
    ) -> Any:
        """A DataFrame: ``id``, ``p_<label>`` per label, ``label`` (``labels`` for
        multilabel) and, with ``on_error="mark"``, ``error`` (always None: a row missing a
        modality is scored from the others; a row with nothing gets the prior-like output) and
        ``warning`` (why a row was scored without its image — the unreadable file named —, or
        None). Unreadable images also go to ``errors`` (an ErrorSink) when given.
        """
        import pandas as pd

        from ehrtext.textio import ErrorSink

        rows = self._rows(inputs)
        id_field = getattr(self.spec, "id_field", None)
        if ids is None:
            ids = [r.get(id_field, i) if id_field else i for i, r in enumerate(rows)]
        ids = list(ids)
        if len(ids) != len(rows):
            raise InputError(f"ids has {len(ids)} entries for {len(rows)} inputs")
        from ehrtext.metrics import apply_temperature

        collected = ErrorSink()
        z = self.logits(rows, errors=collected, ids=ids)
        warnings: list[str | None] = [None] * len(rows)
        for entry in collected.entries:
            warnings[entry["row"] - 1] = entry["reason"]
            if errors is not None:
                errors.add(entry["row"], entry["id"], entry["code"], entry["reason"])
        p = apply_temperature(
            z.reshape(-1) if self.task == "binary" else z, self.temperature, self.task
        )
        n = len(rows)
        if self.task == "binary":
            probs = np.stack([1 - p, p], axis=1) if n else np.zeros((0, 2))
        else:
            probs = np.asarray(p).reshape(n, len(self.labels))
        data: dict[str, Any] = {"id": ids}
        for j, lab in enumerate(self.labels):
            data[f"p_{lab}"] = probs[:, j]
        decided: list[Any] = []
        for i in range(n):
            if self.task == "multiclass":
                decided.append(self.labels[int(np.argmax(probs[i]))])
            else:
                cuts = (
                    np.full(len(self.labels), 0.5)
                    if self.thresholds is None
                    else np.ravel(self.thresholds)
                )
                if self.task == "binary":
                    decided.append(self.labels[1] if probs[i, 1] >= cuts[0] else self.labels[0])
                else:
                    decided.append(
                        [lab for j, lab in enumerate(self.labels) if probs[i, j] >= cuts[j]]
                    )
        data["labels" if self.task == "multilabel" else "label"] = decided
        if on_error == "mark":
            data["error"] = [None] * n
            data["warning"] = warnings
        return pd.DataFrame(data)

    @property
    def record_fields(self) -> list[str]:
        """The columns a record may hold: text fields, the image column, tabular columns."""
        from ehrtext.scoring.scorer import record_fields_of

        return record_fields_of({"kind": "multimodal", "multimodal": self.config.to_dict()})[1]

    # ---- saving ----------------------------------------------------------------------------

    def save(
        self, directory: str | os.PathLike[str], metrics: Mapping[str, Any] | None = None
    ) -> Path:
        """Write the model directory (kind ``multimodal``)."""
        from ehrtext.bundle import save_bundle
        from ehrtext.text import Tokenizer

        cfg = self.config
        config: dict[str, Any] = {
            "kind": "multimodal",
            "task": self.task,
            "labels": self.labels,
            "thresholds": None if self.thresholds is None else self.thresholds.tolist(),
            "temperature": self.temperature,
            "seed": cfg.seed,
            "model": dict(self.network.hparams),
            "multimodal": cfg.to_dict(),
            "tabular_encoder": self.pre.tabular.to_dict() if self.pre.tabular else None,
            "max_len": cfg.max_len,
        }
        if "text" in self.modalities:
            tok = Tokenizer.from_config(cfg.tokenizer) if cfg.tokenizer else Tokenizer()
            config["tokenizer"] = tok.config
            config["dictionary_hash"] = tok.dictionary_hash
        if self.spec is not None:
            config["spec"] = self.spec.to_dict()
        tensors = dict(self.network.state_dict())
        self.path = save_bundle(
            directory,
            config=config,
            tensors=tensors,
            vocab=self.pre.itos,
            metrics=dict(metrics) if metrics else None,
        )
        return self.path

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> MultimodalModel:
        """Load and verify a ``multimodal`` model directory."""
        from ehrtext.bundle import load_bundle

        return build_from_bundle(load_bundle(directory))


def build_from_bundle(bundle: Any) -> MultimodalModel:
    """The ``multimodal`` kind's builder (see :func:`ehrtext.bundle.register_kind`).

    Example:
        >>> from ehrtext.bundle import load_bundle
        >>> build_from_bundle(load_bundle("model/")).modalities            # doctest: +SKIP
        ['text', 'image', 'tabular']
    """
    import torch

    from ehrtext.data import TaskSpec

    cfg = bundle.config
    if bundle.kind != "multimodal":
        raise ModelFileError(f"{bundle.path}: a {bundle.kind!r} model, not a multimodal one")
    try:
        config = MultimodalConfig.from_dict(cfg["multimodal"])
        tab = cfg.get("tabular_encoder")
        tabular = TabularEncoder(**tab) if tab else None
        net = MultimodalNet(**cfg["model"])
        state = {k: torch.from_numpy(np.array(v)) for k, v in bundle.tensors.items()}
        net.load_state_dict(state)
        spec = TaskSpec.from_dict(cfg["spec"]) if cfg.get("spec") else None
    except (KeyError, TypeError, RuntimeError, InputError) as exc:
        raise ModelFileError(
            f"{bundle.path}: the multimodal model cannot be rebuilt ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]})"
        ) from None
    if bundle.vocab is None or len(bundle.vocab) != net.hparams["vocab_size"]:
        raise ModelFileError(f"{bundle.path}: vocab.txt does not fit the model")
    pre = _Preprocessor(config, bundle.vocab, tabular)
    return MultimodalModel(
        net,
        config,
        pre,
        task=cfg["task"],
        labels=cfg["labels"],
        spec=spec,
        thresholds=cfg.get("thresholds"),
        temperature=float(cfg.get("temperature", 1.0)),
        path=bundle.path,
    )


def evaluate_records(
    model: MultimodalModel, records: Sequence[Mapping[str, Any]], errors: Any = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """(targets, probabilities, rows skipped for a missing or unknown label) of labelled
    records, read with the model's own label field and labels; unreadable images (the row is
    still scored) and unlabelled rows go to ``errors`` when given.

    Example:
        >>> y, p, skipped = evaluate_records(model, rows)                    # doctest: +SKIP
    """
    if model.spec is None:
        raise InputError("the model has no task spec (label field): cannot evaluate")
    counter = _Counter(errors)
    keep, y = _targets(list(records), model.spec, errors=counter)
    kept = [records[i] for i in keep]
    if not kept:
        raise InputError("no record has a usable label")
    id_field = model.spec.id_field
    ids = [r.get(id_field) if id_field else i + 1 for i, r in zip(keep, kept)]
    z = model.logits(kept, errors=errors, ids=ids)
    from ehrtext.metrics import apply_temperature

    z = z.reshape(-1) if model.task == "binary" else z
    return y, apply_temperature(z, model.temperature, model.task), counter.count


class _Counter:
    """Counts the rows without a usable label (and passes them on to a sink when given)."""

    def __init__(self, sink: Any = None) -> None:
        self.sink = sink
        self.count = 0

    def add(self, *args: Any) -> None:
        self.count += 1
        if self.sink is not None:
            self.sink.add(*args)
