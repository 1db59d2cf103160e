"""Training loop for the note classifiers: :class:`TrainConfig` and :class:`Trainer`.

* AdamW; a learning-rate schedule (``linear`` warmup then linear decay, ``cosine`` warmup then
  cosine decay, or ``constant``); gradient clipping by norm.
* Losses: cross-entropy (multi-class, optional class weights) or BCE-with-logits (binary and
  multi-label, optional ``pos_weight``); ``class_weight="balanced"`` derives them from the
  training targets.
* Model selection and early stopping on the validation metric: AUPRC (binary), macro AUPRC
  (multi-label, over labels with a positive in validation), macro-F1 (multi-class).
* Checkpoints (``checkpoint_dir``): ``last.safetensors`` (weights), ``best.safetensors``,
  ``optimizer.pt`` (optimizer + scheduler state, read back with ``torch.load(weights_only=True)``:
  tensors and numbers only, nothing unpickled), ``rng.safetensors`` and ``trainer_state.json``.
  ``resume=True`` continues after the last finished epoch and gives the same result as an
  uninterrupted run (tested).
* Seeds: the same seed, data and config give the same weights and metrics (tested);
  batches are reshuffled per epoch with ``seed + epoch`` (``set_epoch`` on the sampler).
* A tqdm progress bar with the running loss, and the validation metric after each epoch.

The whole pipeline from a data file to a model directory (tokenize, vocabulary, embeddings,
training, temperature scaling, thresholds, saving) is :func:`ehrtext.train_cli.train_model`.

Example:
    >>> model = RNNClassifier(len(vocab.itos), 5, "multiclass")          # doctest: +SKIP
    >>> result = Trainer(model, "multiclass", TrainConfig(epochs=5)).fit(train_dl, val_dl)
    ... # doctest: +SKIP
    >>> result.best_metric, result.best_epoch                           # doctest: +SKIP
    (0.81, 4)
"""

from __future__ import annotations

import json
import logging
import math
import random
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ehrtext.errors import InputError, ModelFileError

logger = logging.getLogger(__name__)

__all__ = [
    "SCHEDULES",
    "BatchLoader",
    "FitResult",
    "RandomBatchSampler",
    "TrainConfig",
    "Trainer",
    "balanced_weights",
    "predict_logits",
    "selection_metric",
    "seed_everything",
]

SCHEDULES = ("linear", "cosine", "constant")


@dataclass
class TrainConfig:
    """Settings of :class:`Trainer` (every field can come from a config file).

    Example:
        >>> TrainConfig(epochs=3, lr=1e-3).schedule
        'linear'
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.01
    schedule: str = "linear"
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    class_weight: str | list[float] | None = None  # None | "balanced" | explicit weights
    patience: int = 3  # epochs without improvement before stopping (0: never stop early)
    min_delta: float = 0.0
    seed: int = 0
    num_threads: int | None = None  # torch CPU threads (None: torch's default)
    checkpoint_dir: str | None = None
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise InputError(
                f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"
            )
        if self.epochs < 1:
            raise InputError(f"epochs must be >= 1, got {self.epochs}")
        if not 0 <= self.warmup_fraction < 1:
            raise InputError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if isinstance(self.class_weight, str) and self.class_weight not in ("balanced", "none"):
            raise InputError(
                f"class_weight must be 'balanced', 'none' or a list, got {self.class_weight!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable settings."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Settings from a dict; unknown keys raise :class:`InputError` naming them."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**data)


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns; the model holds the best weights afterwards.

    Attributes:
        metric_name: ``auprc``, ``macro_auprc`` or ``macro_f1``.
        best_metric / best_epoch: the selected epoch (1-based) and its validation metric.
        history: one dict per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``val_metric``,
            ``seconds`` (training time of the epoch, evaluation excluded), ``lr``.
        val_logits / val_targets: validation logits of the best weights, and the targets.
        stopped_early: True when patience ran out before ``epochs``.
    """

    metric_name: str
    best_metric: float
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    val_logits: np.ndarray | None = field(default=None, repr=False)
    val_targets: np.ndarray | None = field(default=None, repr=False)
    stopped_early: bool = False


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (call before building the model).

    Example:
        >>> seed_everything(0)
    """
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def metric_name(task: str) -> str:
    """The model-selection metric of a task.

    Example:
        >>> metric_name("multiclass")
        'macro_f1'
    """
    return {"binary": "auprc", "multilabel": "macro_auprc", "multiclass": "macro_f1"}[task]


def selection_metric(task: str, logits: np.ndarray, targets: np.ndarray) -> float:
    """The validation metric used for early stopping (higher is better).

    Binary: AUPRC (average precision) of the positive class; multi-label: macro AUPRC over
    the labels that have at least one positive and one negative; multi-class: macro-F1 of the
    argmax over the labels present in ``targets`` or predicted.

    Example:
        >>> selection_metric("multiclass", np.array([[2.0, 0.0], [0.0, 1.0]]), np.array([0, 1]))
        1.0
    """
    from sklearn.metrics import average_precision_score, f1_score

    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets)
    if task == "multiclass":
        return float(f1_score(targets, logits.argmax(axis=1), average="macro", zero_division=0))
    if task == "binary":
        y = targets.reshape(-1)
        if y.min() == y.max():
            return float("nan")
        return float(average_precision_score(y, logits.reshape(-1)))
    scores = [
        average_precision_score(targets[:, j], logits[:, j])
        for j in range(targets.shape[1])
        if 0 < targets[:, j].sum() < len(targets)
    ]
    return float(np.mean(scores)) if scores else float("nan")


def balanced_weights(targets: np.ndarray, task: str, num_labels: int) -> np.ndarray:
    """Class weights (multi-class: ``n / (k * count)``) or ``pos_weight`` (binary, multi-label:
    ``negatives / positives``, clipped to [1, 100]) from the training targets.

    Example:
        >>> balanced_weights(np.array([0, 0, 0, 1]), "multiclass", 2).tolist()
        [0.6666666666666666, 2.0]
    """
    targets = np.asarray(targets)
    if task == "multiclass":
        counts = np.bincount(targets.astype(int), minlength=num_labels).astype(np.float64)
        return len(targets) / (num_labels * np.maximum(counts, 1.0))
    y = targets.reshape(len(targets), -1).astype(np.float64)
    pos = y.sum(axis=0)
    neg = len(y) - pos
    return np.clip(neg / np.maximum(pos, 1.0), 1.0, 100.0)


def _schedule_fn(kind: str, total: int, warmup: int):
    def linear(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    def cosine(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return {"linear": linear, "cosine": cosine, "constant": lambda step: 1.0}[kind]


def _set_epoch(loader: Any, epoch: int) -> None:
    for obj in (loader, getattr(loader, "batch_sampler", None), getattr(loader, "sampler", None)):
        if obj is not None and hasattr(obj, "set_epoch"):
            obj.set_epoch(epoch)
            return


def predict_logits(model: Any, loader: Iterable[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(logits, targets) of ``model`` over ``loader`` in eval mode, without gradients; in the
    order of the examples when batches carry ``index`` (as :class:`BatchLoader`'s do).

    Example:
        >>> logits, targets = predict_logits(model, val_loader)          # doctest: +SKIP
    """
    import torch

    model.eval()
    outs, tgts, index = [], [], []
    with torch.inference_mode():
        for batch in loader:
            outs.append(model(batch["input_ids"], batch["lengths"]).float().numpy())
            if batch.get("targets") is not None:
                tgts.append(np.asarray(batch["targets"]))
            if batch.get("index") is not None:
                index.extend(batch["index"])
    logits = np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)
    targets = np.concatenate(tgts) if tgts else np.zeros((0,), np.float32)
    if len(index) == len(logits) and len(index):  # back to the order of the examples
        order = np.argsort(np.asarray(index), kind="stable")
        logits = logits[order]
        targets = targets[order] if len(targets) == len(order) else targets
    return logits, targets


class RandomBatchSampler:
    """Batches of random indices (no length bucketing): the baseline of the bucketing benchmark.

    Each epoch's order is drawn from ``numpy.random.default_rng([seed, epoch])``.

    Example:
        >>> s = RandomBatchSampler(5, batch_size=2, seed=0)
        >>> sorted(i for b in s for i in b)
        [0, 1, 2, 3, 4]
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0):
        if batch_size < 1:
            raise InputError("batch_size must be at least 1")
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next iteration yields."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        self.epoch += 1
        for start in range(0, self.n, self.batch_size):
            yield order[start : start + self.batch_size].tolist()


class BatchLoader:
    """Padded batches from in-memory encoded examples and a batch sampler.

    ``examples`` are dicts with ``input_ids`` (and ``target``); each batch is
    ``ehrtext.data.collate(...)`` plus ``index`` (the positions of its examples), so
    :func:`predict_logits` can restore the original order. ``set_epoch`` is passed on to the
    sampler. Lighter than a ``torch.utils.data.DataLoader`` over a ``datasets.Dataset``.

    Example:
        >>> from ehrtext.data import LengthBucketSampler
        >>> ex = [{"input_ids": [5, 6], "target": 0}, {"input_ids": [7], "target": 1}]
        >>> [b["index"] for b in BatchLoader(ex, LengthBucketSampler([2, 1], 2, shuffle=False))]
        [[1, 0]]
    """

    def __init__(
        self,
        examples: Sequence[dict[str, Any]],
        batch_sampler: Any,
        task: str | None = None,
        max_len: int | None = None,
    ):
        self.examples = examples
        self.batch_sampler = batch_sampler
        self.task = task
        self.max_len = max_len

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.batch_sampler, "set_epoch"):
            self.batch_sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self):
        from ehrtext.data import collate

        for idx in self.batch_sampler:
            batch = collate([self.examples[i] for i in idx], self.max_len, task=self.task)
            batch["index"] = list(idx)
            yield batch


class Trainer:
    """Trains a classifier whose ``forward(input_ids, lengths)`` returns logits.

    Batches are dicts with ``input_ids`` ``[B, T]``, ``lengths`` ``[B]`` and ``targets`` (class
    indices ``[B]`` for multi-class, 0/1 ``[B]`` for binary, multi-hot ``[B, L]`` for
    multi-label), as made by ``ehrtext.data.collate``.

    Args:
        model: a ``torch.nn.Module`` (e.g. :class:`~ehrtext.models.rnn.RNNClassifier`).
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        config: :class:`TrainConfig`.
        distributed: an :class:`ehrtext.distributed.DistContext` under ``torchrun`` (gradients
            all-reduced, rank 0's validation numbers used, checkpoints by rank 0); None: one
            process.

    Example:
        >>> trainer = Trainer(model, "multilabel", TrainConfig(epochs=8))  # doctest: +SKIP
        >>> result = trainer.fit(train_loader, val_loader)              # doctest: +SKIP
    """

    def __init__(
        self,
        model: Any,
        task: str,
        config: TrainConfig | None = None,
        distributed: Any = None,
    ):
        if task not in ("binary", "multiclass", "multilabel"):
            raise InputError(f"task must be binary, multiclass or multilabel, got {task!r}")
        self.model = model
        self.task = task
        self.config = config or TrainConfig()
        self.metric_name = metric_name(task)
        # an ehrtext.distributed.DistContext under torchrun (None: one process)
        self.distributed = distributed

    # ---- pieces ----------------------------------------------------------------------------

    def _loss_fn(self, train_loader: Iterable[dict[str, Any]]):
        import torch
        from torch import nn

        cw = self.config.class_weight
        weights = None
        if isinstance(cw, str) and cw == "balanced":
            targets = np.concatenate([np.asarray(b["targets"]) for b in train_loader])
            n_labels = getattr(self.model, "num_labels", None) or int(targets.max()) + 1
            weights = balanced_weights(targets, self.task, n_labels)
        elif isinstance(cw, (list, tuple, np.ndarray)):
            weights = np.asarray(cw, dtype=np.float64)
        if weights is not None:
            weights = torch.tensor(weights, dtype=torch.float32)
        if self.task == "multiclass":
            return nn.CrossEntropyLoss(weight=weights)
        return nn.BCEWithLogitsLoss(pos_weight=weights)

    def _loss(self, loss_fn: Any, logits: Any, targets: Any) -> Any:
        import torch

        targets = torch.as_tensor(targets)
        if self.task == "multiclass":
            return loss_fn(logits, targets.long())
        return loss_fn(
            logits.reshape(targets.shape[0], -1), targets.float().reshape(targets.shape[0], -1)
        )

    # ---- checkpoints -----------------------------------------------------------------------

    def _ckpt(self) -> Path | None:
        return Path(self.config.checkpoint_dir) if self.config.checkpoint_dir else None

    def _save_checkpoint(
        self,
        optimizer: Any,
        scheduler: Any,
        state: dict[str, Any],
        best_state: dict[str, Any] | None,
    ) -> None:
        import torch
        from safetensors.torch import save_file

        folder = self._ckpt()
        assert folder is not None
        folder.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        save_file(weights, str(folder / "last.safetensors.tmp"))
        (folder / "last.safetensors.tmp").replace(folder / "last.safetensors")
        if best_state is not None:
            save_file(best_state, str(folder / "best.safetensors.tmp"))
            (folder / "best.safetensors.tmp").replace(folder / "best.safetensors")
        torch.save(
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
            folder / "optimizer.pt.tmp",
        )
        (folder / "optimizer.pt.tmp").replace(folder / "optimizer.pt")
        save_file({"torch": torch.get_rng_state()}, str(folder / "rng.safetensors.tmp"))
        (folder / "rng.safetensors.tmp").replace(folder / "rng.safetensors")
        tmp = folder / "trainer_state.json.tmp"
        tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
        tmp.replace(folder / "trainer_state.json")  # written last: marks the checkpoint whole

    def _load_checkpoint(self, optimizer: Any, scheduler: Any) -> tuple[dict[str, Any], Any]:
        import torch
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = self._ckpt()
        assert folder is not None
        try:
            state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
            self.model.load_state_dict(load_file(str(folder / "last.safetensors")))
            opt = torch.load(folder / "optimizer.pt", weights_only=True)
            optimizer.load_state_dict(opt["optimizer"])
            scheduler.load_state_dict(opt["scheduler"])
            torch.set_rng_state(load_file(str(folder / "rng.safetensors"))["torch"])
            best = None
            if (folder / "best.safetensors").exists():
                best = load_file(str(folder / "best.safetensors"))
        except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
            raise ModelFileError(
                f"checkpoint in {folder} cannot be resumed ({type(exc).__name__}: {exc}); "
                "delete it or train without --resume"
            ) from None
        if state.get("config_seed") != self.config.seed:
            raise ModelFileError(
                f"checkpoint in {folder} was made with seed {state.get('config_seed')}, "
                f"not {self.config.seed}: resume with the same settings"
            )
        return state, best

    # ---- the loop --------------------------------------------------------------------------

    def fit(
        self,
        train_loader: Sequence[dict[str, Any]] | Iterable[dict[str, Any]],
        val_loader: Sequence[dict[str, Any]] | Iterable[dict[str, Any]],
    ) -> FitResult:
        """Train, select the best epoch on ``val_loader``, leave its weights in the model.

        Example:
            >>> Trainer(model, "binary").fit(train_loader, val_loader).best_epoch  # doctest: +SKIP
            3
        """
        import torch
        from tqdm import tqdm

        cfg = self.config
        if cfg.num_threads:
            torch.set_num_threads(int(cfg.num_threads))
        torch.manual_seed(cfg.seed)
        model = self.model
        params = [p for p in model.parameters() if p.requires_grad]
        try:  # the fused CPU kernel: ~10x faster steps on a large embedding
            optimizer = torch.optim.AdamW(
                params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True
            )
        except (RuntimeError, TypeError, ValueError):
            optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        try:
            steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
        except TypeError:
            steps_per_epoch = sum(1 for _ in train_loader)
        total = max(1, steps_per_epoch * cfg.epochs)
        warmup = int(cfg.warmup_fraction * total) if cfg.schedule != "constant" else 0
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _schedule_fn(cfg.schedule, total, warmup)
        )
        loss_fn = self._loss_fn(train_loader)

        history: list[dict[str, float]] = []
        best_metric = -math.inf
        best_epoch = 0
        best_state: dict[str, Any] | None = None
        bad_epochs = 0
        start_epoch = 1
        folder = self._ckpt()
        if cfg.resume and folder is not None and (folder / "trainer_state.json").exists():
            state, best_state = self._load_checkpoint(optimizer, scheduler)
            history = state["history"]
            best_metric = state["best_metric"]
            best_epoch = state["best_epoch"]
            bad_epochs = state["bad_epochs"]
            start_epoch = state["epoch"] + 1
            logger.info("resuming after epoch %d", state["epoch"])
            if state.get("stopped"):
                start_epoch = cfg.epochs + 1

        stopped_early = False
        for epoch in range(start_epoch, cfg.epochs + 1):
            _set_epoch(train_loader, epoch)
            model.train()
            t0 = time.perf_counter()
            running = 0.0
            n_batches = 0
            bar = tqdm(
                train_loader,
                total=steps_per_epoch,
                desc=f"epoch {epoch}/{cfg.epochs}",
                unit="batch",
                file=sys.stderr,
                disable=not cfg.progress,
                leave=False,
                dynamic_ncols=True,
            )
            for batch in bar:
                logits = model(batch["input_ids"], batch["lengths"])
                loss = self._loss(loss_fn, logits, batch["targets"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                loss_value = float(loss.detach())
                if self.distributed is not None:  # DDP: the whole batch's gradient on all ranks
                    loss_value = self.distributed.reduce_gradients(params, batch, loss_value)
                if cfg.grad_clip and cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                running += loss_value
                n_batches += 1
                if n_batches % 10 == 0 or n_batches == steps_per_epoch:
                    bar.set_postfix(loss=f"{running / n_batches:.4f}", refresh=False)
            bar.close()
            seconds = time.perf_counter() - t0
            val_logits, val_targets = predict_logits(model, val_loader)
            with torch.no_grad():
                val_loss = (
                    float(
                        self._loss(
                            loss_fn, torch.from_numpy(val_logits), torch.from_numpy(val_targets)
                        )
                    )
                    if len(val_targets)
                    else float("nan")
                )
            metric = selection_metric(self.task, val_logits, val_targets)
            if self.distributed is not None:  # rank 0's numbers: one decision on all ranks
                metric, val_loss = self.distributed.agree(metric, val_loss)
            record = {
                "epoch": epoch,
                "train_loss": running / max(1, n_batches),
                "val_loss": val_loss,
                "val_metric": metric,
                "seconds": seconds,
                "lr": float(scheduler.get_last_lr()[0]),
            }
            history.append(record)
            improved = not math.isnan(metric) and metric > best_metric + cfg.min_delta
            if improved or best_state is None:
                best_metric = metric if not math.isnan(metric) else best_metric
                best_epoch = epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                bad_epochs = 0
            else:
                bad_epochs += 1
            stop = cfg.patience > 0 and bad_epochs >= cfg.patience and epoch < cfg.epochs
            if cfg.progress:
                tqdm.write(
                    f"epoch {epoch}/{cfg.epochs}: loss {record['train_loss']:.4f}, "
                    f"val loss {val_loss:.4f}, val {self.metric_name} {metric:.4f}"
                    f"{' (best)' if best_epoch == epoch else ''} [{seconds:.1f} s]",
                    file=sys.stderr,
                )
            if folder is not None and getattr(self.distributed, "is_main", True):
                self._save_checkpoint(
                    optimizer,
                    scheduler,
                    {
                        "epoch": epoch,
                        "history": history,
                        "best_metric": best_metric,
                        "best_epoch": best_epoch,
                        "bad_epochs": bad_epochs,
                        "stopped": stop,
                        "config_seed": cfg.seed,
                        "metric_name": self.metric_name,
                    },
                    best_state,
                )
            if stop:
                stopped_early = True
                break

        if best_state is not None:
            model.load_state_dict(best_state)
        val_logits, val_targets = predict_logits(model, val_loader)
        return FitResult(
            metric_name=self.metric_name,
            best_metric=float(best_metric) if best_metric != -math.inf else float("nan"),
            best_epoch=best_epoch,
            history=history,
            val_logits=val_logits,
            val_targets=val_targets,
            stopped_early=stopped_early,
        )
