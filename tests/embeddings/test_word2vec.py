"""train_word2vec / load_vectors: determinism, saved formats, embeddings.json, bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from ehrtext.embeddings import load_vectors, prepare_corpus, train_word2vec
from ehrtext.embeddings.word2vec import EMBEDDINGS_FORMAT
from ehrtext.errors import InputError, ModelFileError
from ehrtext.text import Tokenizer

from .conftest import DRUGS, SECRET, TINY


def test_same_seed_one_worker_same_vectors(tmp_path: Path, notes, trained) -> None:
    # a second run, its corpus prepared by two processes: the very same vectors
    again = train_word2vec(notes, tmp_path / "again", **{**TINY, "prep_workers": 2})
    assert again.vectors.index_to_key == trained.vectors.index_to_key
    assert np.array_equal(again.vectors.vectors, trained.vectors.vectors)
    other = train_word2vec(notes, tmp_path / "other", **{**TINY, "seed": 7})
    assert not np.array_equal(other.vectors.vectors, trained.vectors.vectors)


def test_saved_formats_reload(trained) -> None:
    kv = trained.vectors
    for fmt in ("bin", "txt", "kv"):
        res = load_vectors(trained.path, format=fmt)
        assert res.vectors.index_to_key == kv.index_to_key
        assert np.array_equal(res.vectors.vectors, kv.vectors), fmt  # exact, txt too
    assert sorted(p.name for p in trained.path.iterdir()) == [
        "embeddings.json", "errors.jsonl", "tokenizer", "vectors.bin", "vectors.kv",
        "vectors.txt",
    ]  # fmt: skip
    assert not list(trained.path.glob(".corpus*"))  # the tokenized corpus is deleted


def test_embeddings_json(trained, notes) -> None:
    info = json.loads((trained.path / "embeddings.json").read_text(encoding="utf-8"))
    assert info == trained.info
    assert info["format"] == EMBEDDINGS_FORMAT and info["kind"] == "word2vec"
    assert set(info["versions"]) == {"ehrtext", "gensim", "numpy", "python"}
    p = info["params"]
    assert (p["sg"], p["vector_size"], p["window"], p["min_count"], p["negative"]) == (
        1, 16, 5, 2, 5,
    )  # fmt: skip
    assert (p["epochs"], p["workers"], p["seed"], p["max_tokens"], p["prep_workers"]) == (
        2, 1, 42, 1000, 1,
    )  # fmt: skip
    tok = Tokenizer()
    assert info["tokenizer"]["config"] == tok.config
    assert info["tokenizer"]["dictionary_hash"] == tok.dictionary_hash
    c = info["corpus"]
    lines = [line for n in notes for line in tok.lines(n)]
    assert (c["notes"], c["lines"], c["rejected"]) == (len(notes), len(lines), 0)
    assert c["tokens"] == sum(len(line.split()) for line in lines)
    assert info["vocab_size"] == len(trained.vectors) and info["vector_size"] == 16
    t = info["timing"]
    assert t["train_seconds"] > 0 and t["words_per_second"] > 0
    # one gensim worker reads the whole file once per epoch: its word count is ours
    assert [e["raw_words"] for e in t["epochs"]] == [c["tokens"]] * 2
    assert set(info["files"]) == {"vectors.bin", "vectors.txt", "vectors.kv"}
    assert all(len(f["sha256"]) == 64 for f in info["files"].values())
    assert trained.tokenizer().dictionary_hash == tok.dictionary_hash


def test_neighbors_of_words_and_phrases(trained) -> None:
    near = trained.neighbors("阿司匹林", topn=5)
    assert len(near) == 5 and all(-1 <= s <= 1 for _, s in near)
    assert "阿司匹林" not in [w for w, _ in near]
    assert trained.neighbors("阿司匹林和氯吡格雷", topn=3)  # tokenized, known tokens averaged
    with pytest.raises(KeyError):
        trained.neighbors("完全未知的词汇ZZZ")


def test_prepared_corpus_source_and_cbow(tmp_path: Path, notes) -> None:
    corpus = prepare_corpus(notes, tmp_path / "c.txt", workers=1, progress=False)
    res = train_word2vec(corpus, tmp_path / "v", **{**TINY, "sg": 0}, save_formats=["txt"])
    assert res.info["params"]["sg"] == 0
    assert set(res.info["files"]) == {"vectors.txt"}
    assert corpus.path.exists()  # a prepared corpus belongs to the caller
    assert all(d in res.vectors.key_to_index for d in DRUGS)
    with pytest.raises(ModelFileError, match="not saved"):
        load_vectors(res.path)  # no vectors.bin
    assert load_vectors(res.path, format="txt").vocab_size == res.vocab_size


def test_keep_corpus_overwrite_and_progress(tmp_path: Path, notes, caplog) -> None:
    out = tmp_path / "v"
    with caplog.at_level(logging.INFO, logger="ehrtext.embeddings"):
        train_word2vec(notes, out, **{**TINY, "progress": True}, keep_corpus=True)
    assert (out / "corpus.txt").read_text(encoding="utf-8").count("\n") > len(notes)
    assert any("epoch 2/2" in r.getMessage() for r in caplog.records)
    with pytest.raises(InputError, match="overwrite"):
        train_word2vec(notes, out, **TINY)
    train_word2vec(notes, out, **TINY, overwrite=True)


# --------------------------------------------------------------------------------------------
# bad input


def test_empty_corpus(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="corpus is empty: no token in 3 notes"):
        train_word2vec(["", "  ", "。"], tmp_path / "v", **TINY)
    src = tmp_path / "notes.jsonl"
    src.write_text('{"body": "x"}\n{"body": "y"}\n', encoding="utf-8")
    with pytest.raises(InputError, match="2 rows rejected .*every row was rejected"):
        train_word2vec(src, tmp_path / "w", **TINY)
    src.write_text('{"text": 1}\n{"text": null}\n', encoding="utf-8")
    with pytest.raises(InputError, match="every row was rejected"):
        train_word2vec(src, tmp_path / "x", **TINY)
    errors = [json.loads(x) for x in (tmp_path / "x" / "errors.jsonl").read_text().splitlines()]
    assert [e["code"] for e in errors] == ["wrong_type", "wrong_type"]


def test_corpus_below_min_count(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no word occurs min_count=5 times") as exc:
        train_word2vec(["胸痛2天", f"{SECRET}发热"], tmp_path / "v", **{**TINY, "min_count": 5})
    assert SECRET not in str(exc.value) and "张三" not in str(exc.value)
    assert not list((tmp_path / "v").glob("*.txt"))  # no corpus file left behind


def test_unreadable_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        train_word2vec(tmp_path / "nope.jsonl", tmp_path / "v", **TINY)
    bad = tmp_path / "notes.jsonl.gz"
    bad.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(InputError, match="unreadable|cannot read"):
        train_word2vec(bad, tmp_path / "v2", **TINY)
    for kwargs, match in [
        ({"vector_size": 0}, "vector_size"),
        ({"sg": 2}, "sg must be"),
        ({"negative": 0}, "hs=1"),
        ({"alpha": -1.0}, "alpha"),
        ({"save_formats": ["kv"]}, "save_formats"),
        ({"workers": 1.5}, "workers"),
    ]:
        with pytest.raises(InputError, match=match):
            train_word2vec(["胸痛"], tmp_path / "v3", **{**TINY, **kwargs})


def test_load_errors(tmp_path: Path, trained) -> None:
    import shutil

    with pytest.raises(ModelFileError, match="not a directory"):
        load_vectors(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="embeddings.json is missing"):
        load_vectors(tmp_path / "empty")

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(trained.path, target)
        return target

    d = copy("truncated")
    data = (d / "vectors.bin").read_bytes()
    (d / "vectors.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="vectors.bin is truncated"):
        load_vectors(d)
    d = copy("modified")
    data = bytearray((d / "vectors.bin").read_bytes())
    data[-3] ^= 0xFF
    (d / "vectors.bin").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="modified or corrupted"):
        load_vectors(d)
    assert load_vectors(d, verify=False).vocab_size == trained.vocab_size  # same size: loads
    d = copy("gone")
    (d / "vectors.txt").unlink()
    with pytest.raises(ModelFileError, match="vectors.txt is missing"):
        load_vectors(d, format="txt")
    d = copy("newer")
    info = json.loads((d / "embeddings.json").read_text())
    info["format"] = EMBEDDINGS_FORMAT + 1
    (d / "embeddings.json").write_text(json.dumps(info))
    with pytest.raises(ModelFileError, match="upgrade ehrtext"):
        load_vectors(d)
    (d / "embeddings.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="cannot be read"):
        load_vectors(d)
