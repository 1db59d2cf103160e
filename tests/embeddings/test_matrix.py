"""build_embedding_matrix: exact OOV fallback and coverage."""

from __future__ import annotations

import numpy as np
import pytest

from ehrtext.embeddings.matrix import Coverage, build_embedding_matrix
from ehrtext.errors import InputError

VECS = {
    "胸": np.array([1.0, 0.0, 2.0], np.float32),
    "痛": np.array([0.0, 1.0, 0.0], np.float32),
    "发热": np.array([3.0, 3.0, 3.0], np.float32),
}
VOCAB = ["<pad>", "<unk>", "发热", "胸痛", "胸胸痛", "咳嗽", "胸", "X光"]


def test_rows_follow_the_documented_order() -> None:
    m, cov = build_embedding_matrix(VOCAB, VECS, seed=3, init_std=0.5, as_tensor=False)
    assert m.dtype == np.float32 and m.shape == (8, 3)
    assert np.array_equal(m[0], [0, 0, 0])  # padding
    assert np.array_equal(m[2], VECS["发热"])  # in vocabulary
    assert np.allclose(m[3], (VECS["胸"] + VECS["痛"]) / 2)  # mean of its characters
    assert np.allclose(m[4], (2 * VECS["胸"] + VECS["痛"]) / 3)  # each occurrence counted
    assert np.array_equal(m[6], VECS["胸"])
    # random rows: <unk> (special), 咳嗽 and X光 (no character known), in index order
    expected = np.random.default_rng(3).normal(0.0, 0.5, size=(3, 3)).astype(np.float32)
    assert np.array_equal(m[[1, 5, 7]], expected)
    assert cov == Coverage(total=8, in_vocab=2, char_fallback=2, random=2, special=1, padding=1)
    assert cov.in_vocab_rate == round(2 / 6, 4) and cov.covered_rate == round(4 / 6, 4)
    assert "2 in vocabulary" in str(cov)


def test_other_strategies_and_defaults() -> None:
    m, cov = build_embedding_matrix(VOCAB, VECS, oov="random", seed=1, as_tensor=False)
    std = float(np.stack(list(VECS.values())).std())  # default: the vectors' spread
    expected = np.random.default_rng(1).normal(0.0, std, size=(5, 3)).astype(np.float32)
    assert np.array_equal(m[[1, 3, 4, 5, 7]], expected)
    assert (cov.char_fallback, cov.random, cov.special) == (0, 4, 1)

    m, cov = build_embedding_matrix(VOCAB, VECS, oov="zeros", padding_idx=None, as_tensor=False)
    assert not m[[3, 4, 5, 7]].any() and m[[0, 1]].any()  # <pad> is special without padding_idx
    assert (cov.zeros, cov.padding, cov.special) == (4, 0, 2)

    a, _ = build_embedding_matrix(VOCAB, VECS, as_tensor=False)
    b, _ = build_embedding_matrix(VOCAB, VECS, as_tensor=False)
    assert np.array_equal(a, b)  # same seed, same matrix


def test_keyed_vectors_and_tensor(trained) -> None:
    torch = pytest.importorskip("torch")
    kv = trained.vectors
    char = next(w for w in kv.index_to_key if len(w) == 1)  # e.g. 予, 无
    vocab = ["<pad>", "<unk>", *kv.index_to_key[:5], char + "ZZ"]
    t, cov = build_embedding_matrix(vocab, trained, seed=0)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    assert tuple(t.shape) == (8, 16)
    assert torch.equal(t[2], torch.tensor(kv[vocab[2]]))
    assert torch.equal(t[7], torch.tensor(kv[char]))  # Z has no vector: the mean of one
    assert (cov.in_vocab, cov.char_fallback, cov.special, cov.padding) == (5, 1, 1, 1)
    emb = torch.nn.Embedding.from_pretrained(t, padding_idx=0, freeze=False)
    assert emb.weight.shape == (8, 16)


def test_bad_arguments() -> None:
    with pytest.raises(InputError, match="oov"):
        build_embedding_matrix(VOCAB, VECS, oov="mean")
    with pytest.raises(InputError, match="padding_idx"):
        build_embedding_matrix(VOCAB, VECS, padding_idx=99)
    with pytest.raises(InputError, match="list of words"):
        build_embedding_matrix("胸痛", VECS)
    with pytest.raises(InputError, match="vocab\\[1\\]"):
        build_embedding_matrix(["<pad>", 3], VECS)
    with pytest.raises(InputError, match="same size"):
        build_embedding_matrix(["胸"], {"胸": np.zeros(2), "痛": np.zeros(3)})
    with pytest.raises(InputError, match="KeyedVectors"):
        build_embedding_matrix(["胸"], [1, 2])
