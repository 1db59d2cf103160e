"""ehrtext.data: reading, task spec, bad rows, cached tokenization, splits, vocabulary, batches."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

datasets = pytest.importorskip("datasets")

from ehrtext.data import (  # noqa: E402
    LengthBucketSampler,
    TaskSpec,
    Vocab,
    collate,
    encode_dataset,
    find_bad_rows,
    kfold_indices,
    load_dataset,
    split_dataset,
    tokenize_dataset,
)
from ehrtext.errors import InputError  # noqa: E402

NOTES = [
    "患者胸痛2天，伴出汗",
    "反复咳嗽咳痰10年，加重3天",
    "否认2型糖尿病史，BP 150/90mmHg",
    "发热1周，最高体温39.2℃",
    "活动后胸闷气短半年",
    "双下肢水肿1月，夜间不能平卧",
]


def _rows(n: int = 60) -> list[dict]:
    return [
        {
            "id": f"r{i}",
            "text": NOTES[i % len(NOTES)] + f"，第{i}例",
            "label": ["冠心病", "心衰", "高血压"][i % 3],
            "patient": f"p{i // 4}",
        }
        for i in range(n)
    ]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", "utf-8")
    return path


# ---- TaskSpec --------------------------------------------------------------------------------


def test_join_text_single_field_is_unchanged_and_sections_get_markers():
    one = TaskSpec(["text"], "multiclass", label_field="y")
    assert one.join_text({"text": " 胸痛2天 "}) == " 胸痛2天 "
    many = TaskSpec(["主诉", "现病史", "既往史"], "multiclass", label_field="y")
    rec = {"主诉": "胸痛2天", "现病史": " 无发热 ", "既往史": None}
    assert many.join_text(rec) == "【主诉】胸痛2天\n【现病史】无发热"


def test_join_text_errors_name_row_and_field_but_never_the_text():
    spec = TaskSpec(["text"], "multiclass", label_field="y", id_field="id")
    with pytest.raises(InputError, match=r"row 7 id 'n7': text field 'text' holds int"):
        spec.join_text({"text": 5, "id": "n7"}, row=7)
    with pytest.raises(InputError, match="is empty"):
        spec.join_text({"text": "   "}, row=1)
    many = TaskSpec(["a", "b"], "multiclass", label_field="y")
    with pytest.raises(InputError, match="every text field"):
        many.join_text({"a": "", "b": None}, row=3)
    with pytest.raises(InputError) as info:
        many.join_text({"a": "秘密病情", "b": ["x"]}, row=3)
    assert "秘密病情" not in str(info.value)


def test_targets_for_each_label_layout():
    mc = TaskSpec(["t"], "multiclass", label_field="y", labels=["a", "b", "c"])
    assert mc.target({"y": "c"}) == 2
    with pytest.raises(InputError, match="not one of the labels"):
        mc.target({"y": "z"}, row=4)
    with pytest.raises(InputError, match="row 4: label field 'y' is missing"):
        mc.target({"y": None}, row=4)
    binary = TaskSpec(["t"], "binary", label_field="y")
    assert [binary.target({"y": v}) for v in (0, 1, True, "0", 1.0)] == [0, 1, 1, 0, 1]
    named = TaskSpec(["t"], "binary", label_field="y", labels=["阴性", "阳性"])
    assert named.target({"y": "阳性"}) == 1
    ml_list = TaskSpec(["t"], "multilabel", label_field="y", labels=["E11", "I10", "I50"])
    assert ml_list.target({"y": ["I50", "E11"]}) == [1, 0, 1]
    assert ml_list.target({"y": []}) == [0, 0, 0]
    ml_str = TaskSpec(["t"], "multilabel", label_field="y", labels=["E11", "I10"], label_sep=";")
    assert ml_str.target({"y": "I10; E11"}) == [1, 1]
    with pytest.raises(InputError, match="'N18' is not one of"):
        ml_str.target({"y": "I10;N18"})
    lenient = TaskSpec.from_dict({**ml_str.to_dict(), "ignore_unknown_labels": True})
    assert lenient.target({"y": "I10;N18"}) == [0, 1]
    cols = TaskSpec(["t"], "multilabel", label_fields=["dm", "htn"])
    assert cols.labels == ["dm", "htn"]
    assert cols.target({"dm": "1", "htn": False}) == [1, 0]
    with pytest.raises(InputError, match="must be 0/1"):
        cols.target({"dm": 2, "htn": 0}, row=0)


def test_spec_round_trip_resolve_and_validation():
    spec = TaskSpec(["主诉", "现病史"], "multilabel", label_field="codes", label_sep=";",
                    patient_field="pid")
    again = TaskSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    resolved = spec.resolve([{"codes": "I10;E11"}, {"codes": "I50"}, {"codes": None}])
    assert resolved.labels == ["E11", "I10", "I50"] and resolved.num_labels == 3
    with pytest.raises(InputError, match="exactly one of"):
        TaskSpec(["t"], "multiclass")
    with pytest.raises(InputError, match="task must be one of"):
        TaskSpec(["t"], "regression", label_field="y")
    with pytest.raises(InputError, match="unknown TaskSpec settings"):
        TaskSpec.from_dict({**spec.to_dict(), "labelfield": "x"})


# ---- reading ---------------------------------------------------------------------------------


def test_load_dataset_reads_every_file_format(tmp_path):
    rows = _rows(12)
    df = pd.DataFrame(rows)
    _write_jsonl(tmp_path / "a.jsonl", rows[:6])
    _write_jsonl(tmp_path / "b.jsonl", rows[6:])
    df.to_csv(tmp_path / "n.csv", index=False)
    df.to_csv(tmp_path / "n.tsv", index=False, sep="\t")
    df.to_parquet(tmp_path / "n.parquet")
    cache = tmp_path / "cache"
    two = load_dataset([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], cache_dir=cache)
    assert two["id"] == df["id"].tolist()
    for name in ("n.csv", "n.tsv", "n.parquet"):
        ds = load_dataset(tmp_path / name, cache_dir=cache)
        assert ds["text"] == df["text"].tolist(), name
        assert ds["label"] == df["label"].tolist(), name


def test_load_dataset_from_a_real_sqlite_database(tmp_path):
    db = tmp_path / "notes.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE notes (id TEXT, text TEXT, label TEXT)")
    con.executemany("INSERT INTO notes VALUES (?, ?, ?)",
                    [(r["id"], r["text"], r["label"]) for r in _rows(10)])
    con.commit()
    con.close()
    ds = load_dataset(f"sqlite:///{db}?table=notes", cache_dir=tmp_path / "c")
    assert len(ds) == 10 and ds[3]["id"] == "r3" and ds[3]["text"] == _rows(10)[3]["text"]
    q = load_dataset(f"sqlite:///{db}?query=SELECT id, label FROM notes WHERE label = '心衰'",
                     cache_dir=tmp_path / "c")
    assert q.column_names == ["id", "label"] and q["id"] == ["r1", "r4", "r7"]
    with pytest.raises(InputError, match="no such table: nope"):
        load_dataset(f"sqlite:///{db}?table=nope", cache_dir=tmp_path / "c")
    with pytest.raises(InputError, match="not a plain identifier"):
        load_dataset(f"sqlite:///{db}?table=notes;DROP TABLE notes")
    with pytest.raises(InputError, match="exactly one of"):
        load_dataset(f"sqlite:///{db}")
    with pytest.raises(InputError, match="no such SQLite database"):
        load_dataset(f"sqlite:///{tmp_path}/absent.db?table=notes")


def test_load_dataset_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "胸痛"}\n{"text": 胸痛}\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.jsonl line 2: invalid JSON"):
        load_dataset(bad, cache_dir=tmp_path / "c")
    with pytest.raises(InputError, match="no such file"):
        load_dataset(tmp_path / "absent.jsonl")
    (tmp_path / "notes.xlsx").write_bytes(b"x")
    with pytest.raises(InputError, match="cannot tell the format"):
        load_dataset(tmp_path / "notes.xlsx")


# ---- bad rows ----------------------------------------------------------------------------------


def test_bad_rows_are_named_before_any_worker_starts_or_skipped_with_a_report(tmp_path):
    rows = _rows(8)
    rows[2]["text"] = None
    rows[4]["text"] = "\u3000 "
    rows[5]["text"] = "  "
    rows[6]["label"] = None
    ds = datasets.Dataset.from_list(rows)
    spec = TaskSpec(["text"], "multiclass", label_field="label", id_field="id",
                    labels=["冠心病", "心衰", "高血压"])
    found = find_bad_rows(ds, spec)
    assert [(b.row, b.id, b.code) for b in found] == [
        (2, "r2", "missing_text"), (4, "r4", "empty_text"), (5, "r5", "empty_text"),
        (6, "r6", "missing_label")]
    with pytest.raises(InputError, match=r"4 of 8 rows cannot be used: row 2 id 'r2'"):
        tokenize_dataset(ds, spec, num_proc=2)
    errors = tmp_path / "errors.jsonl"
    kept = tokenize_dataset(ds, spec, bad_rows="skip", errors_path=errors)
    assert kept["id"] == ["r0", "r1", "r3", "r7"]
    report = [json.loads(line) for line in errors.read_text("utf-8").splitlines()]
    assert [r["id"] for r in report] == ["r2", "r4", "r5", "r6"]
    assert all(r["code"] for r in report)
    with pytest.raises(InputError, match=r"no column\(s\) \['note'\]"):
        find_bad_rows(ds, TaskSpec(["note"], "multiclass", label_field="label"))


def test_a_column_read_as_numbers_is_reported_as_not_text(tmp_path):
    # a CSV whose "text" column holds only numbers is parsed as integers
    (tmp_path / "n.csv").write_text("id,text,label\na,123,x\nb,456,y\n", encoding="utf-8")
    ds = load_dataset(tmp_path / "n.csv", cache_dir=tmp_path / "c")
    spec = TaskSpec(["text"], "multiclass", label_field="label", id_field="id")
    with pytest.raises(InputError, match=r"row 0 id 'a': text field 'text' holds int, not text"):
        tokenize_dataset(ds, spec)
    records = [{"text": "胸痛", "label": "x"}, {"text": ["胸痛"], "label": "x"}]
    assert [b.code for b in find_bad_rows(records, spec.resolve(records))] == ["not_text"]


# ---- tokenization and its cache --------------------------------------------------------------


def test_tokenize_adds_tokens_and_targets_and_a_rerun_is_served_from_cache(tmp_path):
    path = _write_jsonl(tmp_path / "notes.jsonl", _rows(400))
    cache = tmp_path / "cache"
    ds = load_dataset(path, cache_dir=cache)
    spec = TaskSpec(["text"], "multiclass", label_field="label").resolve(ds)
    assert spec.labels == ["冠心病", "心衰", "高血压"]
    t0 = time.perf_counter()
    first = tokenize_dataset(ds, spec, num_proc=2)
    cold = time.perf_counter() - t0
    files = [f["filename"] for f in first.cache_files]
    assert any("cache-" in Path(f).name for f in files)
    assert first[2]["tokens"][:3] == ["否认", "2型糖尿病", "史"]
    assert first[2]["target"] == spec.labels.index(_rows(3)[2]["label"])
    stamps = {f: Path(f).stat().st_mtime_ns for f in files if "cache-" in Path(f).name}
    # a fresh load of the same file, as a re-run would do
    again_ds = load_dataset(path, cache_dir=cache)
    t0 = time.perf_counter()
    second = tokenize_dataset(again_ds, spec, num_proc=2)
    warm = time.perf_counter() - t0
    assert second._fingerprint == first._fingerprint
    assert [f["filename"] for f in second.cache_files] == files
    assert {f: Path(f).stat().st_mtime_ns for f in stamps} == stamps  # not rewritten
    assert second["tokens"] == first["tokens"]
    assert warm < cold / 3, (cold, warm)
    # another task or tokenizer setting is another fingerprint
    other = tokenize_dataset(again_ds, spec, num_proc=1, max_tokens=3)
    assert other._fingerprint != first._fingerprint
    assert max(len(t) for t in other["tokens"]) == 3


def test_section_fields_multilabel_and_granularity():
    rows = [{"主诉": "胸痛2天", "现病史": "无发热", "codes": "I10;E11"},
            {"主诉": "咳嗽", "现病史": None, "codes": ""}]
    spec = TaskSpec(["主诉", "现病史"], "multilabel", label_field="codes", label_sep=";")
    ds = tokenize_dataset(datasets.Dataset.from_list(rows), spec.resolve(rows))
    assert ds[0]["tokens"] == ["【", "主诉", "】", "胸痛", "2天", "【", "现病史", "】", "无",
                               "发热"]
    assert ds["target"] == [[1, 1], [0, 0]]
    chars = tokenize_dataset(datasets.Dataset.from_list(rows[:1]), spec.resolve(rows),
                             granularity="word+char")
    assert chars[0]["tokens"][:8] == ["【", "主诉", "主", "诉", "】", "胸痛", "胸", "痛"]


# ---- splits ----------------------------------------------------------------------------------


def test_split_is_deterministic_stratified_and_grouped_by_patient():
    rows = _rows(240)
    ds = datasets.Dataset.from_list(rows)
    spec = TaskSpec(["text"], "multiclass", label_field="label", patient_field="patient")
    spec = spec.resolve(ds)
    a = split_dataset(ds, spec, val_fraction=0.2, test_fraction=0.1, seed=3)
    b = split_dataset(ds, spec, val_fraction=0.2, test_fraction=0.1, seed=3)
    c = split_dataset(ds, spec, val_fraction=0.2, test_fraction=0.1, seed=4)
    assert {k: v["id"] for k, v in a.items()} == {k: v["id"] for k, v in b.items()}
    assert a["validation"]["id"] != c["validation"]["id"]
    patients = {k: set(v["patient"]) for k, v in a.items()}
    assert not patients["train"] & patients["validation"]
    assert not patients["train"] & patients["test"]
    assert not patients["validation"] & patients["test"]
    assert sum(len(v) for v in a.values()) == 240
    assert 36 <= len(a["validation"]) <= 60 and 12 <= len(a["test"]) <= 36


def test_split_without_patients_keeps_class_proportions():
    labels = ["a"] * 900 + ["b"] * 90 + ["c"] * 10
    ds = datasets.Dataset.from_list([{"text": "胸痛", "y": y} for y in labels])
    spec = TaskSpec(["text"], "multiclass", label_field="y").resolve(ds)
    parts = split_dataset(ds, spec, val_fraction=0.1, seed=0)
    counts = {y: parts["validation"]["y"].count(y) for y in "abc"}
    assert counts == {"a": 90, "b": 9, "c": 1}


def test_kfold_partitions_rows_by_patient_and_is_reproducible():
    ds = datasets.Dataset.from_list(_rows(103))
    spec = TaskSpec(["text"], "multiclass", label_field="label", patient_field="patient")
    spec = spec.resolve(ds)
    folds = kfold_indices(ds, spec, k=5, seed=1)
    assert folds == kfold_indices(ds, spec, k=5, seed=1)
    tests = [set(t) for _, t in folds]
    assert sorted(i for t in tests for i in t) == list(range(103))
    pats = ds["patient"]
    for train, test in folds:
        assert not set(train) & set(test)
        assert not {pats[i] for i in train} & {pats[i] for i in test}
    sizes = [len(t) for t in tests]
    assert max(sizes) - min(sizes) <= 8


# ---- vocabulary and batches --------------------------------------------------------------------


def test_vocab_from_training_split_only_and_round_trip(tmp_path):
    train = [["胸痛", "发热", "胸痛"], ["咳嗽", "胸痛"]]
    validation = [["晕厥", "胸痛"]]
    vocab = Vocab.build(train)
    assert vocab.itos == ["<pad>", "<unk>", "胸痛", "发热", "咳嗽"]
    assert vocab.encode(validation[0]) == [1, 2]
    assert Vocab.build(train, min_freq=2).itos == ["<pad>", "<unk>", "胸痛"]
    assert len(Vocab.build(train, max_size=3)) == 3
    path = vocab.save(tmp_path)
    assert path.name == "vocab.txt"
    assert path.read_text("utf-8").splitlines() == vocab.itos
    assert Vocab.load(tmp_path).itos == vocab.itos
    path.write_text("<pad>\n<unk>\n胸痛\n胸痛\n", encoding="utf-8")
    with pytest.raises(InputError, match="repeats"):
        Vocab.load(path)


def test_length_bucket_sampler_covers_every_index_with_less_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 500, size=1000)
    sampler = LengthBucketSampler(lengths, batch_size=32, seed=5)
    epoch0 = list(sampler)
    epoch1 = list(sampler)
    assert sorted(i for b in epoch0 for i in b) == list(range(1000))
    assert epoch0 != epoch1  # a new order each epoch
    again = LengthBucketSampler(lengths, batch_size=32, seed=5)
    assert list(again) == epoch0  # same seed, same order
    assert len(sampler) == len(epoch0) == 32

    def padding(batches):
        return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in batches)

    perm = rng.permutation(1000)
    random_batches = [perm[i:i + 32] for i in range(0, 1000, 32)]
    assert padding(epoch0) < padding(random_batches) / 5


def test_collate_pads_and_types_targets():
    torch = pytest.importorskip("torch")
    b = collate([{"input_ids": [5, 6, 7], "target": [1, 0]}, {"input_ids": [], "target": [0, 1]}])
    assert b["input_ids"].dtype == torch.long and b["input_ids"].tolist() == [[5, 6, 7], [1, 0, 0]]
    assert b["lengths"].tolist() == [3, 1]
    assert b["targets"].dtype == torch.float32 and b["targets"].shape == (2, 2)
    binary = collate([{"input_ids": [1, 2, 3, 4], "target": 1}], max_len=2, task="binary")
    assert binary["input_ids"].tolist() == [[1, 2]] and binary["targets"].dtype == torch.float32


def test_encode_dataset_and_loader_end_to_end():
    torch = pytest.importorskip("torch")
    ds = datasets.Dataset.from_list(_rows(50))
    spec = TaskSpec(["text"], "multiclass", label_field="label").resolve(ds)
    parts = split_dataset(tokenize_dataset(ds, spec), spec, val_fraction=0.2, seed=0)
    vocab = Vocab.build(parts["train"]["tokens"])
    enc = encode_dataset(parts["validation"], vocab, max_len=6)
    assert max(enc["length"]) <= 6
    loader = torch.utils.data.DataLoader(
        enc.with_format(columns=["input_ids", "target"]),
        batch_sampler=LengthBucketSampler(enc["length"], batch_size=4, seed=0),
        collate_fn=collate,
    )
    seen = 0
    for batch in loader:
        assert batch["input_ids"].shape[0] == batch["targets"].shape[0] == batch["lengths"].shape[0]
        seen += batch["input_ids"].shape[0]
    assert seen == len(enc)


@pytest.mark.shared_data
def test_real_chip_ctc_loads_tokenizes_and_splits(shared_data, tmp_path):
    ds = load_dataset(shared_data / "chip_ctc" / "train.jsonl", cache_dir=tmp_path / "c")
    assert len(ds) == 22962
    spec = TaskSpec(["text"], "multiclass", label_field="label", id_field="id").resolve(ds)
    assert len(spec.labels) == 44
    assert find_bad_rows(ds, spec) == []
    small = ds.select(range(2000))
    tok = tokenize_dataset(small, spec, num_proc=2)
    assert all(len(t) > 0 for t in tok["tokens"])
    parts = split_dataset(ds, spec, val_fraction=0.1, seed=0)
    assert abs(len(parts["validation"]) - 2296) <= 30
    assert not set(parts["train"]["id"]) & set(parts["validation"]["id"])
