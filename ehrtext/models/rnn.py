"""BiGRU / BiLSTM note classifier: embedding → packed bidirectional RNN → masked pooling → head.

Padding never reaches the model: the RNN runs over packed sequences, each note over its own
tokens only (a batch without any padding, as length-bucketed batches often are, skips the
packing: same tokens, faster on CPU), and the pooling ignores the padded positions (attention
scores are set to ``-inf`` there, max pooling ignores them, mean pooling divides by the true
length). So a note gives the same logits alone or padded inside a batch (tested).

Long notes (``chunk_len > 0``): a hierarchical encoder. Each note's tokens are cut into
consecutive windows of ``chunk_len`` tokens; the word-level BiRNN reads every window on its
own (packed, many short sequences in one batch), masked pooling turns each window into a
vector, and a second BiRNN with its own masked pooling reads the sequence of window vectors.
Its attention weights, returned per token, are the window weight times the within-window
weight, so they still sum to 1 over the real tokens of a note.

Heads, by task:

* ``"binary"``: one logit per note (the positive class), trained with ``BCEWithLogitsLoss``.
* ``"multiclass"``: ``num_labels`` logits, softmax, ``CrossEntropyLoss``.
* ``"multilabel"``: ``num_labels`` independent logits, sigmoid, ``BCEWithLogitsLoss``.

Example:
    >>> import torch
    >>> model = RNNClassifier(vocab_size=100, num_labels=3, task="multiclass", embedding_dim=8,
    ...                       hidden_size=4)
    >>> model(torch.tensor([[5, 6, 7], [8, 9, 0]]), torch.tensor([3, 2])).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ehrtext.errors import InputError

__all__ = ["POOLINGS", "RNN_TYPES", "TASKS", "MaskedPooling", "RNNClassifier", "output_size"]

TASKS = ("binary", "multiclass", "multilabel")
RNN_TYPES = ("gru", "lstm")
POOLINGS = ("attention", "max", "mean", "attention+max")


def output_size(task: str, num_labels: int) -> int:
    """Number of logits of the head: 1 for a binary task, ``num_labels`` otherwise.

    Example:
        >>> output_size("binary", 2), output_size("multilabel", 5)
        (1, 5)
    """
    if task not in TASKS:
        raise InputError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return 1 if task == "binary" else int(num_labels)


def sequence_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Boolean ``[B, max_len]`` mask, True on real tokens.

    Example:
        >>> sequence_mask(torch.tensor([2, 1]), 3).tolist()
        [[True, True, False], [True, False, False]]
    """
    positions = torch.arange(max_len, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


class MaskedPooling(nn.Module):
    """Pools ``[B, T, H]`` states into ``[B, H']`` over the real positions only.

    ``"attention"``: additive attention (``v·tanh(W h)``), softmax over real tokens;
    ``"max"``/``"mean"``: masked max / mean; ``"attention+max"``: both, concatenated (2H).

    Example:
        >>> pool = MaskedPooling(4, "mean")
        >>> h = torch.ones(1, 3, 4); h[0, 2] = 100.0          # position 2 is padding
        >>> pool(h, torch.tensor([[True, True, False]]))[0][0].tolist()
        [1.0, 1.0, 1.0, 1.0]
    """

    def __init__(self, hidden: int, mode: str = "attention", attention_dim: int | None = None):
        super().__init__()
        if mode not in POOLINGS:
            raise InputError(f"pooling must be one of {', '.join(POOLINGS)}, got {mode!r}")
        self.mode = mode
        self.out_dim = hidden * (2 if mode == "attention+max" else 1)
        if "attention" in mode:
            attention_dim = attention_dim or hidden
            self.proj = nn.Linear(hidden, attention_dim)
            self.score = nn.Linear(attention_dim, 1, bias=False)

    def forward(
        self, states: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(pooled ``[B, out_dim]``, attention weights ``[B, T]`` or None)."""
        weights = None
        parts = []
        if "attention" in self.mode:
            scores = self.score(torch.tanh(self.proj(states))).squeeze(-1)
            scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            parts.append(torch.bmm(weights.unsqueeze(1), states).squeeze(1))
        if self.mode in ("max", "attention+max"):
            masked = states.masked_fill(~mask.unsqueeze(-1), float("-inf"))
            parts.append(masked.max(dim=1).values)
        if self.mode == "mean":
            summed = (states * mask.unsqueeze(-1)).sum(dim=1)
            parts.append(summed / mask.sum(dim=1, keepdim=True).clamp(min=1))
        return (parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)), weights


class RNNClassifier(nn.Module):
    """Embedding → bidirectional GRU/LSTM over packed sequences → masked pooling → linear head.

    Args:
        vocab_size: rows of the embedding (index 0 is padding).
        num_labels: number of labels (a binary task has one logit whatever this is).
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        embedding_dim: embedding size (taken from ``pretrained`` when given).
        hidden_size: RNN hidden size per direction.
        num_layers: stacked RNN layers.
        rnn: ``"gru"`` or ``"lstm"``.
        dropout: dropout on embeddings, between RNN layers and before the head.
        pooling: ``"attention"`` (default), ``"max"``, ``"mean"`` or ``"attention+max"``.
        pretrained: a ``[vocab_size, dim]`` matrix (e.g. from
            :func:`ehrtext.embeddings.build_embedding_matrix`) to initialise the embedding.
        freeze_embeddings: keep the embedding fixed during training.
        padding_idx: the padding token id (its row stays zero).
        chunk_len: 0 (default) for one RNN over the whole note; ``n > 0`` for the
            hierarchical encoder over windows of ``n`` tokens (see the module docstring).

    Example:
        >>> m = RNNClassifier(50, 2, "multilabel", embedding_dim=8, hidden_size=4, rnn="lstm")
        >>> logits, attn = m(torch.tensor([[3, 4, 0]]), torch.tensor([2]), return_attention=True)
        >>> logits.shape, attn[0, 2].item()
        (torch.Size([1, 2]), 0.0)
    """

    def __init__(
        self,
        vocab_size: int,
        num_labels: int,
        task: str,
        embedding_dim: int = 200,
        hidden_size: int = 128,
        num_layers: int = 1,
        rnn: str = "gru",
        dropout: float = 0.3,
        pooling: str = "attention",
        pretrained: Any = None,
        freeze_embeddings: bool = False,
        padding_idx: int = 0,
        chunk_len: int = 0,
    ):
        super().__init__()
        if int(chunk_len) < 0:
            raise InputError(f"chunk_len must be 0 or positive, got {chunk_len!r}")
        if rnn not in RNN_TYPES:
            raise InputError(f"rnn must be one of {', '.join(RNN_TYPES)}, got {rnn!r}")
        if pretrained is not None:
            pretrained = torch.as_tensor(pretrained, dtype=torch.float32)
            if pretrained.ndim != 2 or pretrained.shape[0] != vocab_size:
                raise InputError(
                    f"pretrained matrix has shape {tuple(pretrained.shape)}, expected "
                    f"({vocab_size}, dim)"
                )
            embedding_dim = int(pretrained.shape[1])
        self.task = task
        self.num_labels = int(num_labels)
        self.n_outputs = output_size(task, num_labels)
        self.hparams: dict[str, Any] = {
            "vocab_size": int(vocab_size),
            "num_labels": int(num_labels),
            "task": task,
            "embedding_dim": int(embedding_dim),
            "hidden_size": int(hidden_size),
            "num_layers": int(num_layers),
            "rnn": rnn,
            "dropout": float(dropout),
            "pooling": pooling,
            "freeze_embeddings": bool(freeze_embeddings),
            "padding_idx": int(padding_idx),
            "chunk_len": int(chunk_len),
        }
        self.chunk_len = int(chunk_len)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        if pretrained is not None:
            with torch.no_grad():
                self.embedding.weight.copy_(pretrained)
                self.embedding.weight[padding_idx].zero_()
        self.embedding.weight.requires_grad_(not freeze_embeddings)
        rnn_cls = nn.GRU if rnn == "gru" else nn.LSTM
        self.rnn = rnn_cls(
            embedding_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)
        self.pool = MaskedPooling(2 * hidden_size, pooling)
        top_dim = self.pool.out_dim
        if self.chunk_len:
            self.chunk_rnn = rnn_cls(
                self.pool.out_dim, hidden_size, batch_first=True, bidirectional=True
            )
            self.chunk_pool = MaskedPooling(2 * hidden_size, pooling)
            top_dim = self.chunk_pool.out_dim
        self.head = nn.Linear(top_dim, self.n_outputs)

    @classmethod
    def from_hparams(cls, hparams: dict[str, Any]) -> RNNClassifier:
        """Rebuild the architecture from :attr:`hparams` (weights are loaded separately).

        Example:
            >>> m = RNNClassifier(10, 2, "binary", embedding_dim=4, hidden_size=2)
            >>> RNNClassifier.from_hparams(m.hparams).hparams == m.hparams
            True
        """
        return cls(**hparams)

    @staticmethod
    def _run(rnn: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """States ``[B, T, 2H]`` of ``rnn`` over ``x`` ``[B, T, D]`` (zeros on padding);
        ``lengths`` on the CPU, each in ``1..T``."""
        max_len = x.shape[1]
        if bool((lengths == max_len).all()):
            # no padding in this batch (length-bucketed batches often are): the plain RNN
            # call reads the same tokens as the packed one and is ~1.5x faster on CPU
            states, _ = rnn(x)
            return states
        padded_share = x.shape[0] * max_len / max(int(lengths.sum()), 1)
        if (torch.is_grad_enabled() and rnn.num_layers == 1 and rnn.bidirectional
                and padded_share <= 1.5):
            # training on little padding (length-bucketed batches): the backward pass through
            # a packed sequence is ~4x slower on CPU than through plain calls (measured on
            # 700-token notes), so read the batch twice without packing. Right-padded,
            # the forward direction's states on the real tokens are exact (padding comes
            # after them); with each note rolled to the end (left-padded), so are the
            # reverse direction's. Same states as the packed call.
            hidden = rnn.hidden_size
            dim = x.shape[-1]
            pos = torch.arange(max_len, device=x.device).unsqueeze(0)
            shift = (max_len - lengths).to(x.device).unsqueeze(1)
            fwd = rnn(x)[0][..., :hidden]
            rolled = torch.gather(x, 1, ((pos - shift) % max_len).unsqueeze(-1).expand(-1, -1, dim))
            rev = rnn(rolled)[0][..., hidden:]
            back = ((pos + shift) % max_len).unsqueeze(-1).expand(-1, -1, hidden)
            states = torch.cat([fwd, torch.gather(rev, 1, back)], dim=-1)
            mask = sequence_mask(lengths.to(x.device), max_len).unsqueeze(-1)
            return states.masked_fill(~mask, 0.0)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = rnn(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=max_len)
        return states

    def encode(
        self, input_ids: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """RNN states ``[B, T, 2H]`` (zeros on padding) and the mask ``[B, T]`` (the flat
        encoder; the hierarchical one has no per-token states of a single RNN)."""
        if input_ids.ndim != 2:
            raise InputError(f"input_ids must be [batch, time], got shape {tuple(input_ids.shape)}")
        max_len = input_ids.shape[1]
        lengths = lengths.to("cpu", torch.int64).clamp(min=1, max=max(max_len, 1))
        emb = self.dropout(self.embedding(input_ids))
        mask = sequence_mask(lengths.to(input_ids.device), max_len)
        return self._run(self.rnn, emb, lengths), mask

    def _hierarchical(
        self, input_ids: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pooled note vectors ``[B, D]`` and per-token attention ``[B, T]`` (or None)."""
        if input_ids.ndim != 2:
            raise InputError(f"input_ids must be [batch, time], got shape {tuple(input_ids.shape)}")
        batch, max_len = input_ids.shape
        size = self.chunk_len
        lengths = lengths.to("cpu", torch.int64).clamp(min=1, max=max(max_len, 1))
        n_chunks = max(1, -(-max_len // size))
        ids = nn.functional.pad(input_ids, (0, n_chunks * size - max_len), value=0)
        ids = ids.reshape(batch * n_chunks, size)
        starts = torch.arange(n_chunks) * size
        chunk_lengths = (lengths.unsqueeze(1) - starts.unsqueeze(0)).clamp(min=0, max=size)
        flat = chunk_lengths.reshape(-1)
        keep = flat > 0                                # windows holding real tokens
        kept_ids, kept_len = ids[keep.to(ids.device)], flat[keep]
        emb = self.dropout(self.embedding(kept_ids))
        full = kept_len == size
        if bool(full.all()) or not bool(full.any()):
            states = self._run(self.rnn, emb, kept_len)
        else:
            # full windows (all but each note's last) skip the packing: the plain RNN call
            # is the fast one on CPU, above all backwards; the partial windows are packed
            states = emb.new_zeros(emb.shape[0], size, 2 * self.rnn.hidden_size)
            states[full] = self.rnn(emb[full])[0]
            states[~full] = self._run(self.rnn, emb[~full], kept_len[~full])
        word_mask = sequence_mask(kept_len.to(ids.device), size)
        pooled, word_w = self.pool(states, word_mask)
        vecs = pooled.new_zeros(batch * n_chunks, pooled.shape[-1])
        vecs[keep.to(vecs.device)] = pooled
        vecs = self.dropout(vecs.reshape(batch, n_chunks, -1))
        counts = (chunk_lengths > 0).sum(dim=1).clamp(min=1)
        top = self._run(self.chunk_rnn, vecs, counts)
        note, chunk_w = self.chunk_pool(top, sequence_mask(counts.to(vecs.device), n_chunks))
        weights = None
        if word_w is not None and chunk_w is not None:
            full = word_w.new_zeros(batch * n_chunks, size)
            full[keep.to(full.device)] = word_w
            weights = (full.reshape(batch, n_chunks, size) * chunk_w.unsqueeze(-1))
            weights = weights.reshape(batch, n_chunks * size)[:, :max_len]
        return note, weights

    def forward(
        self, input_ids: torch.Tensor, lengths: torch.Tensor, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``[B, n_outputs]`` (``[B, 1]`` for binary); with ``return_attention`` also
        the attention weights ``[B, T]`` (None for max/mean pooling). A note of length 0 is
        read as its first token (collate pads it with ``<unk>``)."""
        if self.chunk_len:
            pooled, weights = self._hierarchical(input_ids, lengths)
        else:
            states, mask = self.encode(input_ids, lengths)
            pooled, weights = self.pool(states, mask)
        logits = self.head(self.dropout(pooled))
        if return_attention:
            return logits, weights
        return logits


def probabilities(logits: torch.Tensor, task: str, temperature: float = 1.0) -> torch.Tensor:
    """Probabilities from logits: sigmoid (binary: ``[B]``; multilabel: ``[B, L]``) or softmax
    (multiclass), after dividing by the calibration ``temperature``.

    Example:
        >>> probabilities(torch.tensor([[0.0], [2.0]]), "binary", 2.0).tolist()[0]
        0.5
    """
    scaled = logits / float(temperature)
    if task == "multiclass":
        return torch.softmax(scaled, dim=-1)
    if task == "binary":
        return torch.sigmoid(scaled.reshape(-1))
    return torch.sigmoid(scaled)
