"""Training an image classifier on CPU: a compact loop with augmentation, cosine LR and TTA.

The data is a float tensor ``[N, C, S, S]`` in [0, 1] (see :func:`ehrtext.imaging.dataset`)
and integer targets (binary: 0/1; multiclass: class index; multilabel: multi-hot rows). The
loop: AdamW, one-cycle cosine learning rate (warm-up then cosine decay), random flip /
rotation / zoom / shift of each batch (:class:`~ehrtext.imaging.transforms.BatchAugment`),
an exponential moving average of the weights (the averaged weights are the ones kept), and
test-time augmentation at prediction (the mean logit over the image and a few small shifts).

Example:
    >>> import torch
    >>> x, y = torch.rand(64, 1, 16, 16), torch.randint(0, 2, (64,))
    >>> cfg = ImageTrainConfig(epochs=1, widths=(8, 16), batch_size=32)
    >>> net, history = train_image_classifier(x, y.numpy(), cfg, task="binary", num_outputs=1)
    >>> predict_logits(net, x[:4], tta=cfg.tta_shifts).shape
    torch.Size([4, 1])
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ehrtext.errors import InputError
from ehrtext.imaging.networks import build_network
from ehrtext.imaging.transforms import BatchAugment

__all__ = [
    "ImageTrainConfig",
    "train_image_classifier",
    "predict_logits",
    "loss_for",
    "set_seed",
]


@dataclass
class ImageTrainConfig:
    """Settings of :func:`train_image_classifier` (JSON-serialisable via ``to_dict``).

    Example:
        >>> ImageTrainConfig.from_dict(ImageTrainConfig(epochs=3).to_dict()).epochs
        3
    """

    network: str = "compact"
    widths: tuple[int, ...] = (32, 64, 128)
    dropout: float = 0.3
    image_size: int = 28
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 5e-4
    warmup_fraction: float = 0.1
    label_smoothing: float = 0.0
    flip_prob: float = 0.0
    rotate_degrees: float = 10.0
    zoom: float = 0.1
    shift: float = 0.08
    ema_decay: float = 0.99
    tta_shifts: int = 1  # pixels; 0 turns test-time augmentation off
    seed: int = 0
    threads: int | None = None
    channels_last: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageTrainConfig:
        """The inverse of :meth:`to_dict` (unknown keys are an :class:`InputError`)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown image training settings: {', '.join(unknown)}")
        d = dict(data)
        if "widths" in d:
            d["widths"] = tuple(int(w) for w in d["widths"])
        return cls(**d)


def set_seed(seed: int) -> torch.Generator:
    """Seed torch and NumPy; return a torch generator for the data order and augmentation.

    Example:
        >>> isinstance(set_seed(0), torch.Generator)
        True
    """
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    return torch.Generator().manual_seed(seed)


def loss_for(task: str, label_smoothing: float = 0.0) -> Callable[[torch.Tensor, Any], Any]:
    """The loss of a task: BCE with logits (binary: one logit; multilabel) or cross-entropy.

    Example:
        >>> float(loss_for("binary")(torch.zeros(2, 1), torch.tensor([0, 1])))  # doctest: +ELLIPSIS
        0.693...
    """
    if task == "multiclass":
        ce = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        return lambda logits, y: ce(logits, y.long())
    if task in ("binary", "multilabel"):

        def bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            y = y.float().reshape(logits.shape)
            if label_smoothing:
                y = y * (1 - label_smoothing) + 0.5 * label_smoothing
            return F.binary_cross_entropy_with_logits(logits, y)

        return bce
    raise InputError(f"task must be binary, multiclass or multilabel, got {task!r}")


def _lr_at(step: int, total: int, config: ImageTrainConfig) -> float:
    warm = max(1, int(config.warmup_fraction * total))
    if step < warm:
        return config.learning_rate * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return config.learning_rate * 0.5 * (1 + math.cos(math.pi * progress))


def _shift(images: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Shift by whole pixels, repeating the edge (no wrap-around)."""
    h, w = images.shape[-2:]
    pad = (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0))
    padded = F.pad(images, pad, mode="replicate")
    top, left = max(-dy, 0), max(-dx, 0)
    return padded[..., top : top + h, left : left + w]


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 256,
    tta: int = 0,
    flip: bool = False,
) -> torch.Tensor:
    """Logits ``[N, outputs]`` of ``images`` ``[N, C, H, W]`` in eval mode; ``tta`` > 0 takes
    the mean logit over the image and its shifts by ±``tta`` pixels (4 shifts), plus the
    left–right mirror of each when ``flip``.

    Example:
        >>> net = build_network("compact", 1, widths=(4,))
        >>> predict_logits(net, torch.rand(3, 1, 8, 8), tta=1).shape
        torch.Size([3, 1])
    """
    model.eval()
    shifts = [(0, 0)]
    if tta > 0:
        shifts += [(tta, 0), (-tta, 0), (0, tta), (0, -tta)]
    out = []
    channels_last = next(model.parameters()).is_contiguous(memory_format=torch.channels_last)
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].float()
        views = [_shift(batch, dx, dy) for dx, dy in shifts]
        if flip:
            views += [v.flip(-1) for v in views]
        total = None
        for v in views:
            if channels_last:
                v = v.contiguous(memory_format=torch.channels_last)
            logits = model(v)
            total = logits if total is None else total + logits
        out.append(total / len(views))
    return torch.cat(out) if out else torch.zeros(0, 1)


def train_image_classifier(
    images: torch.Tensor,
    targets: np.ndarray | Sequence[Any],
    config: ImageTrainConfig,
    *,
    task: str,
    num_outputs: int,
    eval_images: torch.Tensor | None = None,
    eval_targets: np.ndarray | None = None,
    eval_metric: Callable[[np.ndarray, np.ndarray], float] | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train a network from ``config`` on ``images`` ``[N, C, S, S]``; return the network
    (the EMA weights when ``ema_decay`` > 0, in eval mode) and one history row per epoch.

    ``eval_images``/``eval_targets`` (a split carved from the training data) are scored after
    each epoch with ``eval_metric(targets, logits)`` for the history only: nothing is chosen
    on them here (no early stopping), so a report on them stays honest about what it is.

    Example:
        >>> x, y = torch.rand(32, 1, 8, 8), np.arange(32) % 2
        >>> net, hist = train_image_classifier(x, y, ImageTrainConfig(epochs=1, widths=(4,)),
        ...                                    task="binary", num_outputs=1)
        >>> sorted(hist[0])
        ['epoch', 'loss', 'seconds']
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    gen = set_seed(config.seed)
    y = torch.as_tensor(np.asarray(targets))
    if len(y) != len(images):
        raise InputError(f"{len(images)} images but {len(y)} targets")
    if len(images) == 0:
        raise InputError("no training images")
    model = build_network(
        config.network,
        num_outputs,
        in_channels=int(images.shape[1]),
        **(
            {"widths": config.widths, "dropout": config.dropout}
            if config.network == "compact"
            else {}
        ),
    )
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    ema = copy.deepcopy(model) if config.ema_decay > 0 else None
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    loss_fn = loss_for(task, config.label_smoothing)
    augment = BatchAugment(
        flip_prob=config.flip_prob,
        rotate_degrees=config.rotate_degrees,
        zoom=config.zoom,
        shift=config.shift,
    )
    use_aug = any((config.flip_prob, config.rotate_degrees, config.zoom, config.shift))
    steps_per_epoch = math.ceil(len(images) / config.batch_size)
    total = steps_per_epoch * config.epochs
    step = 0
    history: list[dict[str, float]] = []
    for epoch in range(config.epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(images), generator=gen)
        running, seen = 0.0, 0
        for start in range(0, len(images), config.batch_size):
            idx = order[start : start + config.batch_size]
            if len(idx) < 2:
                continue  # BatchNorm needs two images
            xb = images[idx].float()
            if use_aug:
                xb = augment(xb, gen)
            xb = xb.contiguous(memory_format=memory_format)
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, total, config)
            loss = loss_fn(model(xb), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            running += float(loss.detach()) * len(idx)
            seen += len(idx)
            if ema is not None:
                decay = min(config.ema_decay, (1 + step) / (10 + step))
                with torch.no_grad():
                    for pe, pm in zip(ema.parameters(), model.parameters()):
                        pe.mul_(decay).add_(pm.detach(), alpha=1 - decay)
                    for be, bm in zip(ema.buffers(), model.buffers()):
                        be.copy_(bm)
        row: dict[str, float] = {
            "epoch": epoch + 1,
            "loss": running / max(seen, 1),
            "seconds": time.perf_counter() - t0,
        }
        final = ema if ema is not None else model
        if eval_images is not None and eval_targets is not None and eval_metric is not None:
            logits = predict_logits(final, eval_images).numpy()
            row["eval"] = float(eval_metric(np.asarray(eval_targets), logits))
        history.append(row)
        if log is not None:
            log(" ".join(f"{k} {v:.4g}" for k, v in row.items()))
    final = ema if ema is not None else model
    final.eval()
    return final, history
