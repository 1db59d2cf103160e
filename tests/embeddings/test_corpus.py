"""Corpus preparation: Tokenizer.lines semantics, sources, errors, workers."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from ehrtext.embeddings.corpus import (
    CorpusErrors,
    expand_paths,
    prepare_corpus,
    sentence_lines,
)
from ehrtext.errors import InputError
from ehrtext.text import Tokenizer

from .conftest import SECRET


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer()


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_sentence_lines_splits_at_sentence_ends_and_max_tokens() -> None:
    assert sentence_lines(["胸痛", "2天", "。", "。", "无", "发热", "!"]) == ["胸痛 2天", "无 发热"]
    assert sentence_lines(["a", "b", "c", "d", "e"], max_tokens=2) == ["a b", "c d", "e"]
    assert sentence_lines(["0.5g bid", "口服"]) == ["0.5g_bid 口服"]
    assert sentence_lines(["。"]) == []
    assert sentence_lines([]) == []


def test_prepared_lines_are_tokenizer_lines(tmp_path: Path, tok: Tokenizer, notes) -> None:
    extra = [
        "主诉：胸痛2天。\nＢＰ　150/90mmHg，否认高血压、糖尿病史。",
        "阿司匹林0.5g bid口服；\r\n\r\n复查血常规！",
        "",
        "   ",
        "。。。",
    ]
    texts = extra + notes[:20]
    corpus = prepare_corpus(texts, tmp_path / "c.txt", workers=1, progress=False)
    expected = [line for t in texts for line in tok.lines(t)]
    assert lines_of(corpus.path) == expected
    tokens = [w for line in expected for w in line.split()]
    assert corpus.stats.lines == len(expected)
    assert corpus.stats.tokens == len(tokens) == sum(corpus.counts.values())
    assert corpus.counts == Counter(tokens)
    assert corpus.stats.notes == len(texts)
    # counts in one fixed order: by count, then by word
    items = list(corpus.counts.items())
    assert items == sorted(items, key=lambda kv: (-kv[1], kv[0]))


def test_long_sentences_are_split_below_max_tokens(tmp_path: Path) -> None:
    note = "，".join(["发热"] * 2500)  # one sentence of 4,999 tokens
    corpus = prepare_corpus([note], tmp_path / "c.txt", workers=1, max_tokens=1000, progress=False)
    lengths = [len(line.split()) for line in lines_of(corpus.path)]
    assert max(lengths) == 1000 and sum(lengths) == 4999


def test_two_workers_write_the_same_file(tmp_path: Path, notes) -> None:
    one = prepare_corpus(notes, tmp_path / "one.txt", workers=1, progress=False)
    two = prepare_corpus(notes * 3, tmp_path / "two.txt", workers=2, progress=False)
    assert lines_of(two.path) == lines_of(one.path) * 3
    assert two.counts == Counter({w: 3 * c for w, c in one.counts.items()})
    assert list(two.counts) == list(one.counts)  # same order whatever the workers
    assert two.stats.workers == 2


def test_file_sources_folder_and_errors_file(tmp_path: Path, tok: Tokenizer) -> None:
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("胸痛2天\n\n发热\n", encoding="utf-8")
    rows = [{"id": "x1", "text": "咳嗽3天"}, {"id": "x2"}, {"id": "x3", "text": 7}]
    (folder / "sub" / "b.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        + '{"id": "x4", "text": "'
        + SECRET
        + '"\n',  # invalid JSON holding text
        encoding="utf-8",
    )
    (folder / "ignored.md").write_text("not a note file", encoding="utf-8")
    (folder / ".hidden.txt").write_text("hidden", encoding="utf-8")
    assert [p.name for p in expand_paths([folder])] == ["a.txt", "b.jsonl"]

    errors = tmp_path / "errors.jsonl"
    corpus = prepare_corpus(
        folder, tmp_path / "c.txt", workers=1, id_field=None, errors=errors, progress=False
    )
    assert lines_of(corpus.path) == ["胸痛 2天", "发热", "咳嗽 3天"]
    entries = [json.loads(x) for x in errors.read_text(encoding="utf-8").splitlines()]
    assert [(Path(e["file"]).name, e["row"], e["code"]) for e in entries] == [
        ("b.jsonl", 2, "missing_field"),
        ("b.jsonl", 3, "wrong_type"),
        ("b.jsonl", 4, "invalid_json"),
    ]
    assert SECRET not in errors.read_text(encoding="utf-8")
    s = corpus.stats
    assert (s.notes, s.rejected, s.rows, s.blank) == (3, 3, 6, 1)


def test_csv_parquet_gzip_and_text_fields(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    csv_file = tmp_path / "n.csv"
    csv_file.write_text("id,主诉,现病史\n1,胸痛2天,无发热\n", encoding="utf-8")
    pq_file = tmp_path / "n.parquet"
    pq.write_table(pa.table({"主诉": ["咳嗽"], "现病史": ["乏力"]}), pq_file)
    gz = tmp_path / "n.jsonl.gz"
    gz.write_bytes(gzip.compress('{"主诉": "头晕", "现病史": "头痛"}\n'.encode()))
    corpus = prepare_corpus(
        [csv_file, pq_file, gz],
        tmp_path / "c.txt",
        workers=1,
        text_fields=["主诉", "现病史"],
        progress=False,
    )
    # the joined 【field】 headers are tokens too
    assert lines_of(corpus.path) == [
        "【 主诉 】 胸痛 2天", "【 现病史 】 无 发热",
        "【 主诉 】 咳嗽", "【 现病史 】 乏力",
        "【 主诉 】 头晕", "【 现病史 】 头痛",
    ]  # fmt: skip


def test_dataset_source(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": ["胸痛2天", None, "发热"], "id": ["a", "b", "c"]})
    sink = CorpusErrors()
    corpus = prepare_corpus(ds, tmp_path / "c.txt", workers=1, id_field="id", errors=sink,
                            progress=False)  # fmt: skip
    assert lines_of(corpus.path) == ["胸痛 2天", "发热"]
    assert [(e["file"], e["row"], e["id"], e["code"]) for e in sink.entries] == [
        (None, 2, "b", "wrong_type")
    ]
    with pytest.raises(InputError, match="'body' is missing"):
        prepare_corpus(ds, tmp_path / "d.txt", text_fields=["body"], progress=False)


def test_iterable_items_that_are_not_text_go_to_errors(tmp_path: Path) -> None:
    sink = CorpusErrors()
    corpus = prepare_corpus(
        iter(["胸痛", None, b"x", "发热"]), tmp_path / "c.txt", workers=1, errors=sink,
        progress=False,
    )  # fmt: skip
    assert lines_of(corpus.path) == ["胸痛", "发热"]
    assert [(e["row"], e["code"]) for e in sink.entries] == [(2, "wrong_type"), (3, "wrong_type")]


def test_bad_sources_raise_input_errors(tmp_path: Path) -> None:
    out = tmp_path / "c.txt"
    with pytest.raises(InputError, match="input file not found"):
        prepare_corpus(tmp_path / "missing.jsonl", out, progress=False)
    with pytest.raises(InputError, match="no note files"):
        (tmp_path / "empty").mkdir()
        prepare_corpus(tmp_path / "empty", out, progress=False)
    bad = tmp_path / "notes.csv"
    bad.write_text("id,body\n1,x\n", encoding="utf-8")
    with pytest.raises(InputError, match="'text' is not in the CSV header"):
        prepare_corpus(bad, out, progress=False)
    paths = tmp_path / "a.jsonl"
    paths.write_text('{"text": "x"}\n', encoding="utf-8")
    with pytest.raises(InputError, match="look like file paths"):
        prepare_corpus([str(paths)], out, progress=False)
    with pytest.raises(InputError, match="source must be"):
        prepare_corpus(42, out, progress=False)
    with pytest.raises(InputError, match="workers"):
        prepare_corpus(["x"], out, workers=0, progress=False)
    with pytest.raises(InputError, match="max_tokens"):
        prepare_corpus(["x"], out, max_tokens=20_000, progress=False)
    corrupt = tmp_path / "c.jsonl.gz"
    corrupt.write_bytes(gzip.compress(b'{"text": "x"}\n' * 50)[:40])
    with pytest.raises(InputError, match="unreadable"):
        prepare_corpus(corrupt, out, workers=1, progress=False)
    assert not out.exists() and not Path(str(out) + ".tmp").exists()
