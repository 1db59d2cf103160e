"""Model directory: round trip, verification (truncated / tampered / missing / newer format),
no pickle, kind registry, model card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ehrtext.bundle import (
    CONFIG_FILE,
    FORMAT_VERSION,
    Bundle,
    build_from_bundle,
    load_bundle,
    register_kind,
    save_bundle,
)
from ehrtext.errors import InputError, ModelFileError

CONFIG = {
    "kind": "bigru",
    "task": "multiclass",
    "labels": ["冠心病", "心力衰竭", "肺炎"],
    "thresholds": None,
    "temperature": 1.3,
    "seed": 7,
    "spec": {"text_fields": ["text"], "task": "multiclass", "label_field": "label"},
}


def _save(tmp_path: Path, **kw) -> Path:
    rng = np.random.default_rng(0)
    tensors = {
        "embedding.weight": rng.normal(size=(5, 4)).astype(np.float32),
        "head.bias": np.arange(3, dtype=np.float32),
    }
    return save_bundle(
        tmp_path / "model",
        config=CONFIG,
        tensors=tensors,
        vocab=["<pad>", "<unk>", "胸痛", "心悸", "HbA1c"],
        metrics={"split": "validation 10%", "macro_f1": 0.5},
        **kw,
    )


def test_round_trip(tmp_path):
    folder = _save(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "ehrtext.json",
        "metrics.json",
        "vocab.txt",
        "weights.safetensors",
    ]
    b = load_bundle(folder)
    assert b.kind == "bigru" and b.path == folder
    assert b.vocab == ["<pad>", "<unk>", "胸痛", "心悸", "HbA1c"]
    assert b.metrics == {"split": "validation 10%", "macro_f1": 0.5}
    np.testing.assert_array_equal(b.tensors["head.bias"], [0, 1, 2])
    cfg = b.config
    assert cfg["format_version"] == FORMAT_VERSION
    assert cfg["versions"]["ehrtext"] and cfg["labels"] == CONFIG["labels"]
    assert cfg["temperature"] == 1.3 and cfg["seed"] == 7
    assert set(cfg["files"]) == {"README.md", "metrics.json", "vocab.txt", "weights.safetensors"}
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "bigru" in card and "心力衰竭" in card and "macro_f1 | 0.5000" in card
    # no temporary folder left beside it
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_torch_tensors_are_saved(tmp_path):
    torch = pytest.importorskip("torch")
    folder = save_bundle(
        tmp_path / "m", config={"kind": "bigru"}, tensors={"w": torch.arange(6.0).reshape(2, 3).t()}
    )  # non-contiguous
    np.testing.assert_array_equal(load_bundle(folder).tensors["w"], np.arange(6.0).reshape(2, 3).T)


def test_truncated_weights(tmp_path):
    folder = _save(tmp_path)
    w = folder / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:-10])
    with pytest.raises(ModelFileError, match=r"weights\.safetensors is truncated"):
        load_bundle(folder)


def test_tampered_weights(tmp_path):
    folder = _save(tmp_path)
    w = folder / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0xFF  # same size, one byte changed
    w.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"weights\.safetensors does not match its SHA-256"):
        load_bundle(folder)


def test_tampered_vocab(tmp_path):
    folder = _save(tmp_path)
    v = folder / "vocab.txt"
    v.write_text(v.read_text(encoding="utf-8").replace("胸痛", "胸闷"), encoding="utf-8")
    with pytest.raises(ModelFileError, match="vocab.txt"):
        load_bundle(folder)


@pytest.mark.parametrize("name", ["weights.safetensors", "vocab.txt", "metrics.json"])
def test_missing_file(tmp_path, name):
    folder = _save(tmp_path)
    (folder / name).unlink()
    with pytest.raises(ModelFileError, match=rf"{name} is missing"):
        load_bundle(folder)


def test_missing_config_and_directory(tmp_path):
    folder = _save(tmp_path)
    (folder / CONFIG_FILE).unlink()
    with pytest.raises(ModelFileError, match="ehrtext.json is missing"):
        load_bundle(folder)
    with pytest.raises(ModelFileError, match="no such model directory"):
        load_bundle(tmp_path / "nowhere")


def test_newer_format(tmp_path):
    folder = _save(tmp_path)
    cfg = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    cfg["format_version"] = FORMAT_VERSION + 1
    (folder / CONFIG_FILE).write_text(json.dumps(cfg), encoding="utf-8")
    with pytest.raises(ModelFileError, match=r"newer than this ehrtext supports.*upgrade"):
        load_bundle(folder)


def test_damaged_config(tmp_path):
    folder = _save(tmp_path)
    (folder / CONFIG_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load_bundle(folder)


def test_edited_model_card_still_loads(tmp_path):
    folder = _save(tmp_path)
    (folder / "README.md").write_text("# my notes about this model\n", encoding="utf-8")
    assert load_bundle(folder).kind == "bigru"


def test_overwrite_and_refusals(tmp_path):
    folder = _save(tmp_path)
    folder2 = save_bundle(folder, config={**CONFIG, "seed": 8}, tensors={"x": np.ones(2)})
    assert load_bundle(folder2).config["seed"] == 8 and load_bundle(folder2).vocab is None
    other = tmp_path / "not_a_model"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not a model directory"):
        save_bundle(other, config=CONFIG, tensors={})
    with pytest.raises(InputError, match="kind"):
        save_bundle(tmp_path / "k", config={}, tensors={})
    with pytest.raises(InputError, match="single-line"):
        save_bundle(tmp_path / "v", config=CONFIG, tensors={}, vocab=["a\nb"])
    assert not (tmp_path / "v").exists()


def test_nothing_is_unpickled(tmp_path, monkeypatch):
    import pickle

    folder = _save(tmp_path)

    def boom(*a, **k):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", boom)
    monkeypatch.setattr(pickle, "loads", boom)
    assert load_bundle(folder).vocab[2] == "胸痛"


def test_kind_registry(tmp_path):
    folder = save_bundle(
        tmp_path / "img", config={"kind": "image-test"}, tensors={"w": np.ones(3, np.float32)}
    )
    with pytest.raises(ModelFileError, match="unknown model kind 'image-test'"):
        build_from_bundle(load_bundle(folder))
    register_kind("image-test", lambda b: ("built", float(b.tensors["w"].sum())))
    assert load_bundle(folder).build() == ("built", 3.0)
    assert isinstance(load_bundle(folder), Bundle)
