"""RNNClassifier: shapes per task, padding invariance (packed + masked), masks, pooling modes."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ehrtext.errors import InputError  # noqa: E402
from ehrtext.models.rnn import (  # noqa: E402
    MaskedPooling,
    RNNClassifier,
    probabilities,
    sequence_mask,
)


def _model(task="multiclass", rnn="gru", pooling="attention", num_labels=4, layers=1,
           chunk_len=0):
    torch.manual_seed(0)
    m = RNNClassifier(
        vocab_size=60,
        num_labels=num_labels,
        task=task,
        embedding_dim=16,
        hidden_size=8,
        num_layers=layers,
        rnn=rnn,
        pooling=pooling,
        dropout=0.5,
        chunk_len=chunk_len,
    )
    return m.eval()


@pytest.mark.parametrize("task,expected", [("binary", 1), ("multiclass", 4), ("multilabel", 4)])
def test_output_shapes(task, expected):
    m = _model(task)
    ids = torch.randint(2, 60, (3, 7))
    out = m(ids, torch.tensor([7, 5, 2]))
    assert out.shape == (3, expected)
    probs = probabilities(out, task)
    if task == "binary":
        assert probs.shape == (3,)
    elif task == "multiclass":
        assert torch.allclose(probs.sum(-1), torch.ones(3))
    else:
        assert probs.shape == (3, 4) and ((probs > 0) & (probs < 1)).all()


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
@pytest.mark.parametrize("pooling", ["attention", "max", "mean", "attention+max"])
@pytest.mark.parametrize("layers", [1, 2])
def test_padding_does_not_change_logits(rnn, pooling, layers):
    m = _model(rnn=rnn, pooling=pooling, layers=layers)
    g = torch.Generator().manual_seed(1)
    notes = [torch.randint(2, 60, (n,), generator=g) for n in (5, 11, 1, 8)]
    alone = torch.cat([m(n.unsqueeze(0), torch.tensor([len(n)])) for n in notes])
    T = 15  # more padding than any note needs
    batch = torch.zeros(len(notes), T, dtype=torch.long)
    for i, n in enumerate(notes):
        batch[i, : len(n)] = n
    lengths = torch.tensor([len(n) for n in notes])
    padded = m(batch, lengths)
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)
    # garbage in the padded positions is ignored too (the model never reads them)
    noisy = batch.clone()
    for i, n in enumerate(notes):
        noisy[i, len(n) :] = torch.randint(2, 60, (T - len(n),), generator=g)
    torch.testing.assert_close(m(noisy, lengths), padded, atol=1e-6, rtol=1e-6)


def test_attention_weights_are_masked_and_sum_to_one():
    m = _model()
    ids = torch.randint(2, 60, (3, 9))
    lengths = torch.tensor([9, 4, 1])
    logits, attn = m(ids, lengths, return_attention=True)
    assert attn.shape == (3, 9)
    torch.testing.assert_close(attn.sum(-1), torch.ones(3))
    assert (attn[1, 4:] == 0).all() and (attn[2, 1:] == 0).all()
    assert (attn[0] > 0).all()
    _, none = _model(pooling="max")(ids, lengths, return_attention=True)
    assert none is None


def test_sequence_mask_and_masked_pooling():
    mask = sequence_mask(torch.tensor([3, 1, 0]), 4)
    assert mask.tolist() == [
        [True, True, True, False],
        [True, False, False, False],
        [False, False, False, False],
    ]
    states = torch.arange(12, dtype=torch.float32).reshape(1, 4, 3)
    states[0, 3] = 1000.0  # padding: must not win the max nor weigh in the mean
    m = torch.tensor([[True, True, True, False]])
    assert MaskedPooling(3, "max")(states, m)[0].tolist() == [[6.0, 7.0, 8.0]]
    assert MaskedPooling(3, "mean")(states, m)[0].tolist() == [[3.0, 4.0, 5.0]]


def test_pretrained_embedding_frozen_or_finetuned():
    pre = torch.randn(60, 12)
    frozen = RNNClassifier(
        60, 3, "multiclass", pretrained=pre, freeze_embeddings=True, hidden_size=4
    )
    assert frozen.embedding.weight.shape == (60, 12)  # dim from the matrix
    assert not frozen.embedding.weight.requires_grad
    torch.testing.assert_close(frozen.embedding.weight[1:], pre[1:])
    assert (frozen.embedding.weight[0] == 0).all()  # padding row
    tuned = RNNClassifier(60, 3, "multiclass", pretrained=pre, hidden_size=4)
    assert tuned.embedding.weight.requires_grad
    with pytest.raises(InputError, match="shape"):
        RNNClassifier(61, 3, "multiclass", pretrained=pre)


def test_zero_length_note_is_read_as_one_token():
    m = _model()
    ids = torch.tensor([[1, 0, 0], [5, 6, 7]])
    out = m(ids, torch.tensor([0, 3]))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], m(torch.tensor([[1]]), torch.tensor([1]))[0])


def test_hparams_round_trip_and_bad_settings():
    m = _model(task="multilabel", rnn="lstm", pooling="mean")
    rebuilt = RNNClassifier.from_hparams(m.hparams)
    rebuilt.load_state_dict(m.state_dict())
    rebuilt.eval()
    ids = torch.randint(2, 60, (2, 5))
    torch.testing.assert_close(rebuilt(ids, torch.tensor([5, 3])), m(ids, torch.tensor([5, 3])))
    with pytest.raises(InputError, match="rnn"):
        RNNClassifier(10, 2, "binary", rnn="transformer")
    with pytest.raises(InputError, match="pooling"):
        RNNClassifier(10, 2, "binary", pooling="sum")
    with pytest.raises(InputError, match="task"):
        RNNClassifier(10, 2, "regression")


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
@pytest.mark.parametrize("pooling", ["attention", "max", "attention+max"])
def test_hierarchical_padding_does_not_change_logits(rnn, pooling):
    m = _model(rnn=rnn, pooling=pooling, chunk_len=4)
    g = torch.Generator().manual_seed(2)
    # lengths: inside one window, exactly two windows, a partial last window, one token
    notes = [torch.randint(2, 60, (n,), generator=g) for n in (3, 8, 11, 1)]
    alone = torch.cat([m(n.unsqueeze(0), torch.tensor([len(n)])) for n in notes])
    T = 17  # more windows than any note has
    batch = torch.randint(2, 60, (len(notes), T), generator=g)  # garbage after each note
    for i, n in enumerate(notes):
        batch[i, : len(n)] = n
    lengths = torch.tensor([len(n) for n in notes])
    torch.testing.assert_close(m(batch, lengths), alone, atol=1e-5, rtol=1e-5)


def test_hierarchical_reads_every_window_and_attention_sums_to_one():
    m = _model(chunk_len=3)
    ids = torch.randint(2, 60, (3, 10))
    lengths = torch.tensor([10, 4, 1])
    logits, attn = m(ids, lengths, return_attention=True)
    assert logits.shape == (3, 4) and attn.shape == (3, 10)
    torch.testing.assert_close(attn.sum(-1), torch.ones(3))
    assert (attn[1, 4:] == 0).all() and (attn[2, 1:] == 0).all()
    assert (attn[0] > 0).all()  # tokens of the last, partial window weigh in too
    # changing a token in the last window changes the note's logits (it is read)
    changed = ids.clone()
    changed[0, 9] = 2 if ids[0, 9] != 2 else 3
    assert not torch.allclose(m(changed, lengths)[0], logits[0])
    rebuilt = RNNClassifier.from_hparams(m.hparams)
    rebuilt.load_state_dict(m.state_dict())
    torch.testing.assert_close(rebuilt.eval()(ids, lengths), logits)
    with pytest.raises(InputError, match="chunk_len"):
        RNNClassifier(10, 2, "binary", chunk_len=-1)


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
@pytest.mark.parametrize("layers,chunk_len", [(1, 0), (2, 0), (1, 4)])
@pytest.mark.parametrize("sizes", [(6, 13, 1, 9), (12, 13, 11, 13)])
def test_training_path_matches_inference_and_per_note_gradients(rnn, layers, chunk_len, sizes):
    """With gradients on, a little-padded batch (12, 13, 11, 13) of a one-layer model is read
    twice without packing, others packed: the logits equal the inference (packed) ones, and
    the gradients equal the sum of each note's gradients computed alone, without padding."""
    m = _model(rnn=rnn, layers=layers, chunk_len=chunk_len)
    g = torch.Generator().manual_seed(3)
    notes = [torch.randint(2, 60, (n,), generator=g) for n in sizes]
    T = 13 if max(sizes) == 13 and min(sizes) > 10 else 16
    batch = torch.randint(2, 60, (len(notes), T), generator=g)
    for i, n in enumerate(notes):
        batch[i, : len(n)] = n
    lengths = torch.tensor([len(n) for n in notes])
    with torch.inference_mode():
        packed = m(batch, lengths)
    m.zero_grad()
    logits = m(batch, lengths)
    torch.testing.assert_close(logits, packed, atol=1e-5, rtol=1e-5)
    logits.pow(2).sum().backward()
    batch_grads = {k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None}
    m.zero_grad()
    for n in notes:
        m(n.unsqueeze(0), torch.tensor([len(n)])).pow(2).sum().backward()
    for k, p in m.named_parameters():
        if k in batch_grads:
            torch.testing.assert_close(batch_grads[k], p.grad, atol=1e-5, rtol=1e-4)
