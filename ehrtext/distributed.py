"""Distributed data-parallel training: ``torchrun --nproc_per_node=N -m ehrtext train ...``.

When the process was started by ``torchrun`` (``WORLD_SIZE`` > 1 in the environment),
:func:`setup` joins the process group and :func:`ehrtext.train_cli.train_model` trains
data-parallel. The backend is ``gloo`` (CPU), because :class:`~ehrtext.training.Trainer` trains
on the CPU; ``EHRTEXT_DIST_BACKEND=nccl`` sends the gradient all-reduce through NCCL on each
rank's GPU instead (``cuda:LOCAL_RANK``, one GPU per process; the buffer is copied there and
back; not exercised by the tests, which run without GPUs).

* **Same global batches as one process.** The batch sampler (length-bucketed or random, drawn
  from ``seed + epoch``) yields the same batches on every rank; :class:`ShardedBatchLoader`
  gives rank ``r`` the examples ``batch[r::world_size]`` of each batch. ``--batch-size`` is
  therefore the *global* batch, the number of optimizer steps per epoch does not depend on
  the number of processes, and neither do the learning-rate schedule nor the checkpoint.
* **Gradients all-reduced.** After ``backward`` each rank's gradients (one flat buffer, one
  ``all_reduce``) are weighted by its share of the batch and summed, so every rank applies the
  gradient of the whole batch's mean loss — the single-process gradient, up to float rounding
  (and dropout masks, which are drawn per rank). A rank whose share of a short last batch is
  empty runs one example with weight 0, so all ranks take the same steps.
* **Validation and early stopping agree.** Every rank evaluates the whole validation split;
  rank 0's metric and loss are broadcast, so the best epoch and the stop are the same on all.
* **Rank 0 writes.** Checkpoints (``--checkpoint-dir``), the model directory and the messages
  come from rank 0 only; the progress bar too.
* **Resume across world sizes.** A checkpoint holds the weights, the optimizer and scheduler
  state and the epoch — nothing that depends on the number of processes — so a checkpoint of a
  2-process run resumes in 1 process and vice versa (tested).

Multi-node: the same command on every node with ``--nnodes``, ``--node_rank`` and a
rendezvous address (see the README, "Beyond one machine"); the data and ``--checkpoint-dir`` must be
readable on every node (rank 0 writes the checkpoint; every rank reads it on ``--resume``).

Example::

    torchrun --standalone --nproc_per_node=2 -m ehrtext train --data notes.jsonl \\
        --label-field dx --epochs 8 --threads 1 --output model/
"""

from __future__ import annotations

import atexit
import datetime
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ehrtext.errors import InputError
from ehrtext.training import BatchLoader  # numpy only: torch stays lazy

logger = logging.getLogger(__name__)

__all__ = [
    "DistContext",
    "ShardedBatchLoader",
    "current",
    "env_world_size",
    "is_main_process",
    "setup",
    "teardown",
]

BACKEND_ENV = "EHRTEXT_DIST_BACKEND"
"""Environment variable choosing the backend (``gloo`` or ``nccl``); default: see :func:`setup`."""

_CONTEXT: DistContext | None = None


@dataclass(frozen=True)
class DistContext:
    """This process's place in a distributed run.

    Example:
        >>> ctx = DistContext(rank=0, world_size=2, local_rank=0, backend="gloo")
        >>> ctx.is_main
        True
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints, the model and the messages."""
        return self.rank == 0

    def _device(self) -> Any:
        import torch

        if self.backend == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def barrier(self) -> None:
        """Wait until every rank has got here."""
        import torch.distributed as dist

        dist.barrier()

    def reduce_gradients(
        self, params: Sequence[Any], batch: dict[str, Any], loss: float
    ) -> float:
        """Replace each rank's gradients by the gradient of the whole batch; returns the
        batch's mean loss. Call after ``backward``, before clipping.

        ``batch["shard_weight"]`` is this rank's share of the global batch (set by
        :class:`ShardedBatchLoader`; ``1 / world_size`` when absent). A parameter without a
        gradient on this rank counts as a zero gradient (every rank sends the same buffer).
        """
        import torch
        import torch.distributed as dist

        weight = float(batch.get("shard_weight", 1.0 / self.world_size))
        grads = []
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad.reshape(-1))
        loss_t = torch.tensor([loss], dtype=grads[0].dtype if grads else torch.float32)
        flat = torch.cat([*grads, loss_t.to(grads[0].device if grads else "cpu")]) * weight
        device = self._device()
        moved = flat.to(device) if flat.device != device else flat
        dist.all_reduce(moved, op=dist.ReduceOp.SUM)
        flat = moved.to(flat.device) if moved is not flat else flat
        offset = 0
        for p in params:
            n = p.grad.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n
        return float(flat[offset])

    def agree(self, *values: float) -> tuple[float, ...]:
        """Rank 0's values on every rank (validation metric and loss: one decision for all).

        Example:
            >>> metric, loss = ctx.agree(0.81, 0.42)                      # doctest: +SKIP
        """
        import torch
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self._device())
        dist.broadcast(t, src=0)
        return tuple(float(x) for x in t.cpu().tolist())


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (set by ``torchrun``), 1 when absent.

    Example:
        >>> env_world_size() >= 1
        True
    """
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        value = os.environ["WORLD_SIZE"]
        raise InputError(f"WORLD_SIZE must be an integer, got {value!r}") from None


def current() -> DistContext | None:
    """The context of this process after :func:`setup`, or None (single process).

    Example:
        >>> current() is None or current().world_size > 1
        True
    """
    return _CONTEXT


def is_main_process() -> bool:
    """True unless this is a distributed run's rank > 0.

    Example:
        >>> is_main_process()
        True
    """
    return _CONTEXT is None or _CONTEXT.is_main


def setup(backend: str | None = None, timeout_minutes: float = 30.0) -> DistContext | None:
    """Join the process group when started by ``torchrun`` (``WORLD_SIZE`` > 1); idempotent.

    Backend: ``backend``, else ``$EHRTEXT_DIST_BACKEND``, else ``gloo`` (the model trains on
    the CPU). ``nccl`` needs one GPU per process. Returns None in a single process. The group
    is left at exit.

    Example:
        >>> setup() is None  # not under torchrun
        True
    """
    global _CONTEXT
    if _CONTEXT is not None:
        return _CONTEXT
    world = env_world_size()
    if world <= 1:
        return None
    import torch
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    chosen = backend or os.environ.get(BACKEND_ENV) or "gloo"
    if chosen not in ("gloo", "nccl"):
        raise InputError(f"distributed backend must be gloo or nccl, got {chosen!r}")
    if chosen == "nccl":
        if not torch.cuda.is_available():
            raise InputError("the nccl backend needs CUDA; use gloo on CPU")
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(
            chosen,
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(minutes=timeout_minutes),
        )
        atexit.register(teardown)
    _CONTEXT = DistContext(rank, world, local_rank, chosen)
    logger.info("distributed: rank %d of %d (%s)", rank, world, chosen)
    return _CONTEXT


def teardown() -> None:
    """Leave the process group (registered at exit by :func:`setup`).

    Example:
        >>> teardown()  # nothing to do in a single process
    """
    global _CONTEXT
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - best effort at exit
        pass
    _CONTEXT = None


class ShardedBatchLoader(BatchLoader):
    """This rank's share of each global batch: ``batch[rank::world_size]`` of the batches of
    ``batch_sampler``, collated as :class:`ehrtext.training.BatchLoader` does, plus
    ``shard_weight`` (share of the global batch; 0 for a stand-in when the share is empty).

    ``len()`` is the number of global batches: every rank takes the same number of steps.

    Example:
        >>> from ehrtext.training import RandomBatchSampler
        >>> ex = [{"input_ids": [i + 2], "target": 0} for i in range(5)]
        >>> ctx = DistContext(rank=1, world_size=2, local_rank=1, backend="gloo")
        >>> loader = ShardedBatchLoader(ex, RandomBatchSampler(5, 4, seed=0), ctx)
        >>> [(len(b["index"]), b["shard_weight"]) for b in loader]
        [(2, 0.5), (1, 0.0)]
    """

    def __init__(
        self,
        examples: Sequence[dict[str, Any]],
        batch_sampler: Any,
        context: DistContext,
        task: str | None = None,
        max_len: int | None = None,
    ):
        super().__init__(examples, batch_sampler, task=task, max_len=max_len)
        self.context = context

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from ehrtext.data import collate

        rank, world = self.context.rank, self.context.world_size
        for idx in self.batch_sampler:
            idx = list(idx)
            mine = idx[rank::world]
            weight = len(mine) / len(idx) if idx else 0.0
            if not mine:  # a short last batch: keep in step with the others, add nothing
                mine, weight = idx[:1], 0.0
            batch = collate([self.examples[i] for i in mine], self.max_len, task=self.task)
            batch["index"] = mine
            batch["shard_weight"] = weight
            yield batch


def main_first(context: DistContext | None, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` on rank 0 first, then on the other ranks (which then find the
    tokenization cache warm and never write it concurrently); plain call in one process.

    Example:
        >>> main_first(None, sum, [1, 2])
        3
    """
    if context is None:
        return fn(*args, **kwargs)
    result = fn(*args, **kwargs) if context.is_main else None
    context.barrier()
    if not context.is_main:
        result = fn(*args, **kwargs)
    context.barrier()
    return result


def adapt_config(
    config: Any, context: DistContext | None, train_targets: Any, num_labels: int, task: str
) -> Any:
    """The :class:`~ehrtext.training.TrainConfig` for this rank: a progress bar on rank 0 only,
    and ``class_weight="balanced"`` made explicit from *all* training targets (each rank only
    sees its share of the batches).

    Example:
        >>> adapt_config(cfg, None, targets, 5, "multiclass") is cfg         # doctest: +SKIP
        True
    """
    if context is None:
        return config
    import dataclasses

    import numpy as np

    from ehrtext.training import balanced_weights

    changes: dict[str, Any] = {}
    if not context.is_main:
        changes["progress"] = False
    if isinstance(config.class_weight, str) and config.class_weight == "balanced":
        weights = balanced_weights(np.asarray(train_targets), task, num_labels)
        changes["class_weight"] = [float(w) for w in weights]
    return dataclasses.replace(config, **changes) if changes else config
