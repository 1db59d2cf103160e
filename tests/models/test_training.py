"""Trainer: learning on a synthetic task, seeds, checkpoint/resume, early stopping, weights,
schedules, the selection metric, bucketed vs random batches."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ehrtext.data import LengthBucketSampler  # noqa: E402
from ehrtext.errors import InputError, ModelFileError  # noqa: E402
from ehrtext.models.rnn import RNNClassifier  # noqa: E402
from ehrtext.training import (  # noqa: E402
    BatchLoader,
    RandomBatchSampler,
    TrainConfig,
    Trainer,
    _schedule_fn,
    balanced_weights,
    predict_logits,
    selection_metric,
)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: more threads only spin
    yield
    torch.set_num_threads(old)


def _examples(task: str, n: int, seed: int):
    """Notes of random filler tokens (ids 10..59); a label's keyword (ids 2..5) marks it."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        length = int(rng.integers(3, 20))
        ids = rng.integers(10, 60, size=length).tolist()
        if task == "multilabel":
            target = rng.integers(0, 2, size=3).tolist()
            for j, on in enumerate(target):
                if on:
                    ids[int(rng.integers(0, length))] = 2 + j
        else:
            k = 2 if task == "binary" else 4
            target = int(rng.integers(0, k))
            ids[int(rng.integers(0, length))] = 2 + target
        out.append({"input_ids": ids, "target": target})
    return out


def _loaders(task, seed=0, n_train=240, n_val=80, bucket=True, batch=16):
    train, val = _examples(task, n_train, seed), _examples(task, n_val, seed + 100)
    lengths = [len(e["input_ids"]) for e in train]
    sampler = (
        LengthBucketSampler(lengths, batch, shuffle=True, seed=seed)
        if bucket
        else RandomBatchSampler(len(train), batch, seed=seed)
    )
    val_sampler = LengthBucketSampler([len(e["input_ids"]) for e in val], 64, shuffle=False)
    return BatchLoader(train, sampler, task=task), BatchLoader(val, val_sampler, task=task)


def _model(task, seed=0, rnn="gru"):
    torch.manual_seed(seed)
    n = {"binary": 2, "multiclass": 4, "multilabel": 3}[task]
    return RNNClassifier(60, n, task, embedding_dim=16, hidden_size=16, rnn=rnn, dropout=0.1)


@pytest.mark.parametrize(
    "task,rnn", [("binary", "gru"), ("multiclass", "lstm"), ("multilabel", "gru")]
)
def test_learns_keyword_tasks(task, rnn):
    train_dl, val_dl = _loaders(task)
    cfg = TrainConfig(epochs=6, lr=1e-2, progress=False, patience=0)
    trainer = Trainer(_model(task, rnn=rnn), task, cfg)
    result = trainer.fit(train_dl, val_dl)
    assert (
        result.metric_name
        == {"binary": "auprc", "multiclass": "macro_f1", "multilabel": "macro_auprc"}[task]
    )
    assert result.best_metric > 0.85, result.history  # chance: ~0.5 AUPRC, ~0.25 F1
    assert len(result.history) == 6
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    # the returned validation logits are those of the best weights, in example order
    logits, targets = result.val_logits, result.val_targets
    assert selection_metric(task, logits, targets) == pytest.approx(result.best_metric)
    expected = np.asarray([e["target"] for e in val_dl.examples])
    np.testing.assert_array_equal(targets.astype(int), expected)
    again, _ = predict_logits(trainer.model, val_dl)
    np.testing.assert_array_equal(again, logits)


def test_same_seed_same_metrics_and_weights():
    runs = []
    for _ in range(2):
        train_dl, val_dl = _loaders("multiclass", seed=3)
        model = _model("multiclass", seed=3)
        res = Trainer(model, "multiclass", TrainConfig(epochs=2, seed=3, progress=False)).fit(
            train_dl, val_dl
        )
        runs.append((res, model.state_dict()))
    (a, wa), (b, wb) = runs
    assert [h["val_metric"] for h in a.history] == [h["val_metric"] for h in b.history]
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    # another seed gives another run
    train_dl, val_dl = _loaders("multiclass", seed=3)
    c = Trainer(
        _model("multiclass", seed=4), "multiclass", TrainConfig(epochs=2, seed=4, progress=False)
    ).fit(train_dl, val_dl)
    assert [h["train_loss"] for h in c.history] != [h["train_loss"] for h in a.history]


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    def run(epochs, ckpt, resume):
        train_dl, val_dl = _loaders("multilabel", seed=1)
        model = _model("multilabel", seed=1)
        cfg = TrainConfig(
            epochs=epochs,
            seed=1,
            progress=False,
            checkpoint_dir=str(ckpt),
            resume=resume,
            patience=0,
        )
        return Trainer(model, "multilabel", cfg).fit(train_dl, val_dl), model

    full, full_model = run(3, tmp_path / "full", False)
    # a 3-epoch run killed during epoch 3, then resumed from its epoch-2 checkpoint
    resumed_dir = tmp_path / "resumed"
    _interrupt_after(2, 3, resumed_dir)
    resumed, resumed_model = run(3, resumed_dir, True)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert [h["val_metric"] for h in resumed.history] == [h["val_metric"] for h in full.history]
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    for k, v in full_model.state_dict().items():
        assert torch.equal(v, resumed_model.state_dict()[k]), k
    # nothing pickled: the optimizer state loads with weights_only=True
    torch.load(resumed_dir / "optimizer.pt", weights_only=True)


class _Interrupt(Exception):
    pass


def _interrupt_after(stop_epoch: int, epochs: int, ckpt):
    """Run a 3-epoch plan and kill it (an exception) during epoch stop_epoch + 1."""
    train_dl, val_dl = _loaders("multilabel", seed=1)
    model = _model("multilabel", seed=1)
    cfg = TrainConfig(epochs=epochs, seed=1, progress=False, checkpoint_dir=str(ckpt), patience=0)
    n_per_epoch = len(train_dl)
    calls = {"n": 0}
    original = model.forward

    def forward(*a, **k):
        if model.training:
            calls["n"] += 1
            if calls["n"] > n_per_epoch * stop_epoch + 2:
                raise _Interrupt
        return original(*a, **k)

    model.forward = forward
    with pytest.raises(_Interrupt):
        Trainer(model, "multilabel", cfg).fit(train_dl, val_dl)
    assert json.loads((ckpt / "trainer_state.json").read_text())["epoch"] == stop_epoch


def test_resume_refuses_other_seed_and_damaged_checkpoint(tmp_path):
    train_dl, val_dl = _loaders("binary")
    cfg = TrainConfig(epochs=1, seed=0, progress=False, checkpoint_dir=str(tmp_path))
    Trainer(_model("binary"), "binary", cfg).fit(train_dl, val_dl)
    other = TrainConfig(epochs=2, seed=5, progress=False, checkpoint_dir=str(tmp_path), resume=True)
    with pytest.raises(ModelFileError, match="seed"):
        Trainer(_model("binary"), "binary", other).fit(train_dl, val_dl)
    (tmp_path / "last.safetensors").write_bytes(b"broken")
    again = TrainConfig(epochs=2, seed=0, progress=False, checkpoint_dir=str(tmp_path), resume=True)
    with pytest.raises(ModelFileError, match="cannot be resumed"):
        Trainer(_model("binary"), "binary", again).fit(train_dl, val_dl)


def test_early_stopping_keeps_best_weights():
    train_dl, val_dl = _loaders("multiclass")
    model = _model("multiclass")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=10, lr=0.0, patience=2, progress=False, weight_decay=0.0)
    res = Trainer(model, "multiclass", cfg).fit(train_dl, val_dl)
    # lr 0: the metric never improves after epoch 1 -> stop after 1 + patience epochs
    assert res.stopped_early and len(res.history) == 3 and res.best_epoch == 1
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_class_weights():
    w = balanced_weights(np.array([0, 0, 0, 1, 2, 2]), "multiclass", 3)
    np.testing.assert_allclose(w, [6 / 9, 2.0, 1.0])
    pw = balanced_weights(np.array([[1, 0], [0, 0], [0, 0], [0, 1]]), "multilabel", 2)
    np.testing.assert_allclose(pw, [3.0, 3.0])
    t = Trainer(_model("multiclass"), "multiclass", TrainConfig(class_weight="balanced"))
    train_dl, _ = _loaders("multiclass")
    loss = t._loss_fn(train_dl)
    counts = np.bincount([e["target"] for e in train_dl.examples], minlength=4)
    np.testing.assert_allclose(
        loss.weight.numpy(), len(train_dl.examples) / (4 * counts), rtol=1e-6
    )
    t2 = Trainer(_model("binary"), "binary", TrainConfig(class_weight=[4.0]))
    assert t2._loss_fn(train_dl).pos_weight.tolist() == [4.0]
    with pytest.raises(InputError):
        TrainConfig(class_weight="inverse")


def test_schedules():
    lin = _schedule_fn("linear", total=10, warmup=2)
    assert [round(lin(s), 3) for s in (0, 1, 2, 6, 10)] == [0.5, 1.0, 1.0, 0.5, 0.0]
    cos = _schedule_fn("cosine", total=10, warmup=0)
    assert cos(0) == 1.0 and cos(5) == pytest.approx(0.5) and cos(10) == pytest.approx(0.0)
    assert _schedule_fn("constant", 10, 0)(7) == 1.0
    with pytest.raises(InputError, match="schedule"):
        TrainConfig(schedule="step")


def test_selection_metric_matches_sklearn():
    from sklearn.metrics import average_precision_score, f1_score

    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 3))
    y = rng.integers(0, 2, size=(50, 3))
    y[:, 2] = 0  # no positive: left out of the macro average
    expected = np.mean([average_precision_score(y[:, j], z[:, j]) for j in range(2)])
    assert selection_metric("multilabel", z, y) == pytest.approx(expected)
    yc = rng.integers(0, 3, size=50)
    assert selection_metric("multiclass", z, yc) == pytest.approx(
        f1_score(yc, z.argmax(1), average="macro")
    )
    yb = rng.integers(0, 2, size=50)
    assert selection_metric("binary", z[:, :1], yb) == pytest.approx(
        average_precision_score(yb, z[:, 0])
    )


def test_random_and_bucketed_batches_cover_every_example_once_per_epoch():
    lengths = np.random.default_rng(0).integers(1, 100, size=101).tolist()
    for sampler in (RandomBatchSampler(101, 8, seed=1), LengthBucketSampler(lengths, 8, seed=1)):
        sampler.set_epoch(1)
        first = [i for b in sampler for i in b]
        assert sorted(first) == list(range(101))
        sampler.set_epoch(1)
        assert [i for b in sampler for i in b] == first  # deterministic per epoch
        sampler.set_epoch(2)
        assert [i for b in sampler for i in b] != first

    # bucketing: far less padding than random batches
    def padding(sampler):
        return sum(
            max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in sampler
        )

    assert padding(LengthBucketSampler(lengths, 8, seed=1)) < 0.2 * padding(
        RandomBatchSampler(101, 8, seed=1)
    )
