"""DDP training (``torchrun -m ehrtext train``, :mod:`ehrtext.distributed`): 2 processes
reach the 1-process result, checkpoints are written by rank 0 only and resume across world
sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ehrtext.distributed import DistContext, ShardedBatchLoader, main_first  # noqa: E402
from ehrtext.train_cli import TrainOptions, train_model  # noqa: E402
from ehrtext.training import RandomBatchSampler, TrainConfig, Trainer  # noqa: E402
from tests.scale.conftest import REPO, SAMPLES  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores
    yield
    torch.set_num_threads(old)


def _flags(opts: dict) -> list[str]:
    out = []
    for k, v in opts.items():
        out += ["--set", f"{k}={json.dumps(v, ensure_ascii=False)}"]
    return out


def _torchrun(tmp_path, nproc: int, opts: dict, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "ehrtext", "train", "--no-progress", *_flags(opts)]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def _weights(model_dir) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(model_dir / "weights.safetensors"))


def _history(model_dir) -> list[dict]:
    return json.loads((model_dir / "ehrtext.json").read_text("utf-8"))["train"]["history"]


# ---- the sharded loader ------------------------------------------------------------------


def test_shards_cover_each_global_batch_once_with_equal_step_counts():
    examples = [{"input_ids": [i % 7 + 2] * (i % 5 + 1), "target": i % 3} for i in range(23)]
    sampler = RandomBatchSampler(23, batch_size=6, seed=3)
    sampler.set_epoch(2)
    global_batches = list(sampler)  # 6, 6, 6, 5
    for world in (2, 3, 7):
        shards = []
        for rank in range(world):
            loader = ShardedBatchLoader(examples, sampler, DistContext(rank, world, rank, "gloo"))
            loader.set_epoch(2)
            shards.append(list(loader))
            assert len(shards[-1]) == len(loader) == len(global_batches)
        for b, want in enumerate(global_batches):
            got = [i for s in shards if s[b]["shard_weight"] > 0 for i in s[b]["index"]]
            assert sorted(got) == sorted(want)
            assert sum(s[b]["shard_weight"] for s in shards) == pytest.approx(1.0)
            for s in shards:  # the stand-in of an empty share adds nothing
                assert s[b]["shard_weight"] == len(s[b]["index"]) / len(want) or (
                    s[b]["shard_weight"] == 0.0 and len(s[b]["index"]) == 1)
    assert main_first(None, max, [3, 1]) == 3


class _NotMain:
    """A rank > 0 of a one-member world: the gradients stay as they are."""

    is_main = False
    world_size = 1

    def reduce_gradients(self, params, batch, loss):
        return loss

    def agree(self, *values):
        return values


def test_only_rank_zero_writes_checkpoints(tmp_path):
    from ehrtext.models.rnn import RNNClassifier

    examples = [{"input_ids": [2 + i % 5, 3], "target": i % 2} for i in range(12)]
    model = RNNClassifier(8, 2, "multiclass", embedding_dim=4, hidden_size=4)
    cfg = TrainConfig(epochs=2, progress=False, checkpoint_dir=str(tmp_path / "ck"))
    from ehrtext.training import BatchLoader

    def loaders():
        return (BatchLoader(examples, RandomBatchSampler(12, 4), task="multiclass"),
                BatchLoader(examples, RandomBatchSampler(12, 4), task="multiclass"))

    Trainer(model, "multiclass", cfg, distributed=_NotMain()).fit(*loaders())
    assert not (tmp_path / "ck").exists()
    Trainer(model, "multiclass", cfg).fit(*loaders())
    assert (tmp_path / "ck" / "trainer_state.json").exists()


# ---- torchrun ----------------------------------------------------------------------------


@pytest.mark.shared_data
def test_two_processes_reach_the_one_process_metric_on_dxy(tmp_path, shared_data):
    """DXY self-reports (5 diseases): without dropout, 2 ranks compute the same global batch
    gradients as 1 process, so the validation curve is the same up to float rounding."""
    opts = {
        "data": str(shared_data / "dxy_selfreport" / "train.jsonl"),
        "text_fields": ["self_report"], "label_field": "disease", "task": "multiclass",
        "epochs": 6, "hidden_size": 48, "embedding_dim": 48, "dropout": 0.0, "lr": 0.005,
        "patience": 0, "val_fraction": 0.2, "n_bootstrap": 0, "num_threads": 1, "seed": 0,
    }
    one = train_model(TrainOptions(**opts, progress=False, output=str(tmp_path / "one")))
    _torchrun(tmp_path, 2, {**opts, "output": str(tmp_path / "two")})
    h1, h2 = _history(tmp_path / "one"), _history(tmp_path / "two")
    cfg2 = json.loads((tmp_path / "two" / "ehrtext.json").read_text("utf-8"))
    assert cfg2["train"]["processes"] == 2 and one.config["train"]["processes"] == 1
    assert [h["epoch"] for h in h2] == list(range(1, 7))
    np.testing.assert_allclose([h["train_loss"] for h in h2], [h["train_loss"] for h in h1],
                               atol=1e-3)
    m1 = one.metrics["macro"]["f1"]
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text("utf-8"))["macro"]["f1"]
    assert m1 > 0.4  # it learned something (chance is 0.2)
    assert abs(m2 - m1) <= 0.02, (m1, m2)


def test_resume_across_world_sizes_equals_uninterrupted(tmp_path):
    """A 2-process checkpoint resumes in 1 process and a 1-process one in 2, with the result
    of an uninterrupted run (constant schedule, no dropout: only float rounding differs)."""
    base = {
        "data": str(SAMPLES), "label_field": "label", "id_field": "id", "model": "bigru",
        "embedding_dim": 16, "hidden_size": 16, "max_len": 128, "val_fraction": 0.2,
        "dropout": 0.0, "schedule": "constant", "patience": 0, "batch_size": 23,
        "n_bootstrap": 0, "num_threads": 1, "seed": 0, "lr": 0.01,
    }

    def local(epochs, out, ckpt=None, resume=False):
        train_model(TrainOptions(**base, epochs=epochs, progress=False, output=str(out),
                                 checkpoint_dir=ckpt and str(ckpt), resume=resume))

    local(4, tmp_path / "full")
    # 2 processes for 2 epochs (24 training notes: batches of 23 and 1, so rank 1 also runs
    # the weight-0 stand-in), then 2 more epochs in 1 process from its checkpoint
    _torchrun(tmp_path, 2, {**base, "epochs": 2, "output": str(tmp_path / "b1"),
                            "checkpoint_dir": str(tmp_path / "ck_b")})
    state = json.loads((tmp_path / "ck_b" / "trainer_state.json").read_text("utf-8"))
    assert state["epoch"] == 2 and not list((tmp_path / "ck_b").glob("*.tmp"))
    local(4, tmp_path / "b2", tmp_path / "ck_b", resume=True)
    # and 1 process for 2 epochs, then 2 processes
    local(2, tmp_path / "c1", tmp_path / "ck_c")
    state_c = json.loads((tmp_path / "ck_c" / "trainer_state.json").read_text("utf-8"))
    _torchrun(tmp_path, 2, {**base, "epochs": 4, "output": str(tmp_path / "c2"),
                            "checkpoint_dir": str(tmp_path / "ck_c"), "resume": True})

    full = _weights(tmp_path / "full")
    for name in ("b2", "c2"):
        got = _weights(tmp_path / name)
        assert got.keys() == full.keys()
        for k in full:
            np.testing.assert_allclose(got[k], full[k], atol=1e-4, err_msg=f"{name}: {k}")
        assert [h["epoch"] for h in _history(tmp_path / name)] == [1, 2, 3, 4]
        np.testing.assert_allclose([h["val_metric"] for h in _history(tmp_path / name)],
                                   [h["val_metric"] for h in _history(tmp_path / "full")],
                                   atol=1e-6)
    # the last-epoch weights (not only the selected ones) agree, and the resumes did train on
    from safetensors.numpy import load_file

    last_b = load_file(str(tmp_path / "ck_b" / "last.safetensors"))
    last_c = load_file(str(tmp_path / "ck_c" / "last.safetensors"))
    for k in last_b:
        np.testing.assert_allclose(last_c[k], last_b[k], atol=1e-4, err_msg=k)
    # epochs 1-2 of the resumed runs are those recorded in the checkpoints (timings included):
    # they were read back, not trained again
    assert _history(tmp_path / "b2")[:2] == state["history"]
    assert _history(tmp_path / "c2")[:2] == state_c["history"]
    for ck in ("ck_b", "ck_c"):
        assert json.loads((tmp_path / ck / "trainer_state.json").read_text("utf-8"))["epoch"] == 4
