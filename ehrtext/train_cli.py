"""``ehrtext train`` and ``ehrtext evaluate``: from a data file to a model directory and a report.

The pipeline (:func:`train_model`), for ``--model bigru|bilstm``:

1. read the data (:func:`ehrtext.data.load_dataset`: JSONL / CSV / TSV / Parquet / SQL URI);
2. resolve the task (:class:`~ehrtext.data.TaskSpec`; labels sorted from the data unless given);
3. tokenize (:func:`~ehrtext.data.tokenize_dataset`, cached, ``num_proc`` workers);
4. split off a validation set (stratified, grouped by patient when ``patient_field`` is set;
   or ``val_data``); build the vocabulary from the training split only;
5. initialise the embedding from word2vec vectors (``embeddings``: a directory written by
   ``ehrtext embed train``), frozen or fine-tuned; train the BiGRU/BiLSTM with
   :class:`~ehrtext.training.Trainer` (early stopping on the validation metric);
6. fit the calibration temperature and tune the decision thresholds on the validation split;
7. save the model directory (:func:`~ehrtext.bundle.save_bundle`) with ``metrics.json`` on the
   validation split — which selected the epoch, the temperature and the thresholds, so its
   figures are optimistic: report figures from ``ehrtext evaluate`` on held-out data.

``--model linear`` replaces 5 by the TF-IDF + linear baseline
(:class:`ehrtext.models.linear.TfidfLinearModel`) on the same split.

Every option of :class:`TrainOptions` can be given in a config file (TOML or JSON, flat keys,
or under a ``[train]`` table) and overridden by flags; ``--set key=value`` sets any option from
the command line (the value is read as JSON when it parses, else as a string).

Example::

    ehrtext train --data notes.jsonl --text-field 主诉 --text-field 现病史 --label-field dx \\
        --task multiclass --model bigru --embeddings vectors/ --epochs 8 --output model/
    ehrtext train --config train.toml --set hidden_size=256
    ehrtext evaluate --model model/ --data test.jsonl --output report/
"""

from __future__ import annotations

import inspect
import json
import logging
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from ehrtext.errors import InputError

logger = logging.getLogger(__name__)

__all__ = [
    "PreparedData",
    "TrainOptions",
    "TrainOutcome",
    "evaluate_model",
    "load_options",
    "prepare_data",
    "train_model",
]

MODELS = ("bigru", "bilstm", "linear")
IMAGE_MODELS = ("image", "multimodal")  # trained from manifests by ehrtext.imaging


@dataclass
class TrainOptions:
    """Every setting of a training run (the keys of a config file).

    Example:
        >>> opts = TrainOptions(data="notes.jsonl", label_field="label", output="model/")
        >>> opts.model, opts.epochs
        ('bigru', 10)
    """

    # data and task
    data: str | list[str] | None = None
    output: str | None = None
    text_fields: list[str] = field(default_factory=lambda: ["text"])
    task: str = "multiclass"
    label_field: str | None = None
    label_fields: list[str] | None = None
    labels: list[str] | None = None
    label_sep: str | None = None
    ignore_unknown_labels: bool = False
    id_field: str | None = None
    patient_field: str | None = None
    val_data: str | list[str] | None = None
    val_fraction: float = 0.1
    bad_rows: str = "error"  # or "skip"
    # text
    tokenizer: dict[str, Any] | None = None  # Tokenizer.config; None: Tokenizer()
    granularity: str = "word"  # "word" | "char" | "word+char"
    max_len: int = 512
    min_freq: int = 1
    max_vocab: int | None = None
    num_proc: int = 1
    # model
    model: str = "bigru"
    embeddings: str | None = None
    oov: str = "char_mean"
    freeze_embeddings: bool = False
    embedding_dim: int = 200
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.3
    pooling: str = "attention"
    chunk_len: int = 0  # > 0: hierarchical encoder over windows of chunk_len tokens
    linear: dict[str, Any] = field(default_factory=dict)  # TfidfLinearModel options
    # training
    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    schedule: str = "linear"
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    class_weight: str | list[float] | None = None
    patience: int = 3
    bucket: bool = True  # length-bucketed batches (False: random batches)
    seed: int = 0
    num_threads: int | None = None
    checkpoint_dir: str | None = None
    resume: bool = False
    calibrate: bool = True
    n_bootstrap: int = 200
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.text_fields, str):
            self.text_fields = [self.text_fields]
        if self.model not in MODELS:
            raise InputError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if self.bad_rows not in ("error", "skip"):
            raise InputError(f"bad_rows must be 'error' or 'skip', got {self.bad_rows!r}")
        if self.max_len is not None and self.max_len < 1:
            raise InputError("max_len must be at least 1")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainOptions:
        """Settings from a dict; unknown keys raise :class:`InputError` naming them."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(
                f"unknown training option(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(names))})"
            )
        return cls(**data)


def load_options(path: str | Path) -> dict[str, Any]:
    """Options from a TOML (``.toml``) or JSON file: flat keys, or under a ``train`` table.

    Example:
        >>> load_options("train.toml")                                  # doctest: +SKIP
        {'data': 'notes.jsonl', 'model': 'bigru', 'epochs': 8}
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such config file") from None
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw.decode("utf-8"))
    except Exception as exc:  # noqa: BLE001 - TOMLDecodeError / JSONDecodeError / Unicode
        raise InputError(f"{path}: not valid {path.suffix.lstrip('.') or 'JSON'} ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: the config must be a table / JSON object")
    if isinstance(data.get("train"), dict):
        data = {**{k: v for k, v in data.items() if k != "train"}, **data["train"]}
    return data


@dataclass
class PreparedData:
    """Tokenized, split and encoded data, ready for training (reusable across runs)."""

    spec: Any
    tokenizer_config: dict[str, Any]
    dictionary_hash: str
    train: Any  # datasets.Dataset with tokens / target / input_ids / length
    validation: Any
    vocab: Any
    train_examples: list[dict[str, Any]]
    val_examples: list[dict[str, Any]]
    split: str


@dataclass
class TrainOutcome:
    """What :func:`train_model` returns.

    Attributes:
        output: the model directory (None when not saved).
        metrics: validation metrics (``ehrtext.metrics.compute_metrics`` plus ``split``).
        history: one dict per epoch (RNN models).
        val_probs / val_targets: calibrated validation probabilities and targets, in the
            order of the validation split.
        model: the trained model object.
    """

    output: Path | None
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    val_probs: np.ndarray
    val_targets: np.ndarray
    model: Any
    config: dict[str, Any]
    prepared: PreparedData | None = None


def _spec_from(options: TrainOptions):
    from ehrtext.data import TaskSpec

    label_field = options.label_field
    if label_field is None and options.label_fields is None:
        label_field = "label"
    return TaskSpec(
        text_fields=list(options.text_fields),
        task=options.task,
        label_field=label_field,
        label_fields=options.label_fields,
        labels=options.labels,
        id_field=options.id_field,
        patient_field=options.patient_field,
        label_sep=options.label_sep,
        ignore_unknown_labels=options.ignore_unknown_labels,
    )


def prepare_data(options: TrainOptions) -> PreparedData:
    """Read, resolve the task, tokenize, split, build the vocabulary and encode.

    Example:
        >>> prepared = prepare_data(TrainOptions(data="train.jsonl"))  # doctest: +SKIP
        >>> len(prepared.vocab), len(prepared.train_examples)          # doctest: +SKIP
    """
    from ehrtext.data import (
        Vocab,
        encode_dataset,
        load_dataset,
        split_dataset,
        tokenize_dataset,
    )
    from ehrtext.text import Tokenizer

    if not options.data:
        raise InputError("no training data: give --data (or 'data' in the config file)")
    ds = load_dataset(options.data)
    spec = _spec_from(options).resolve(ds)
    tok = Tokenizer.from_config(options.tokenizer) if options.tokenizer else Tokenizer()
    tok_cfg = tok.config
    common = dict(
        tokenizer_config=tok_cfg,
        num_proc=options.num_proc,
        bad_rows=options.bad_rows,
        granularity=options.granularity,
        max_tokens=options.max_len,
    )
    tokenized = tokenize_dataset(ds, spec, **common)
    if options.val_data:
        val_raw = load_dataset(options.val_data)
        train_ds, val_ds = tokenized, tokenize_dataset(val_raw, spec, **common)
        split = f"validation: the separate file(s) {options.val_data} ({len(val_ds)} rows)"
    else:
        parts = split_dataset(tokenized, spec, val_fraction=options.val_fraction, seed=options.seed)
        train_ds, val_ds = parts["train"], parts["validation"]
        grouped = f", grouped by {spec.patient_field}" if spec.patient_field else ""
        split = (
            f"validation: a stratified{grouped} {options.val_fraction:.0%} split of the training "
            f"data (seed {options.seed}; {len(train_ds)} train / {len(val_ds)} validation rows)"
        )
    if len(val_ds) == 0:
        raise InputError("the validation split is empty: raise --val-fraction or give val_data")
    vocab = Vocab.build(train_ds["tokens"], min_freq=options.min_freq, max_size=options.max_vocab)
    train_enc = encode_dataset(train_ds, vocab, max_len=options.max_len)
    val_enc = encode_dataset(val_ds, vocab, max_len=options.max_len)

    def examples(enc: Any) -> list[dict[str, Any]]:
        return [{"input_ids": ids, "target": t} for ids, t in zip(enc["input_ids"], enc["target"])]

    return PreparedData(
        spec=spec,
        tokenizer_config=tok_cfg,
        dictionary_hash=tok.dictionary_hash,
        train=train_enc,
        validation=val_enc,
        vocab=vocab,
        train_examples=examples(train_enc),
        val_examples=examples(val_enc),
        split=split,
    )


def _texts(ds: Any, spec: Any) -> list[str]:
    cols = [c for c in spec.text_fields if c in ds.column_names]
    sub = ds.select_columns(cols)
    return [spec.join_text(rec) for rec in sub]


def _embedding_matrix(
    options: TrainOptions, vocab: Any, dictionary_hash: str
) -> tuple[Any, dict[str, Any]]:
    from ehrtext.embeddings import build_embedding_matrix, load_vectors

    res = load_vectors(options.embeddings)
    matrix, coverage = build_embedding_matrix(vocab.itos, res, oov=options.oov, seed=options.seed)
    info = {
        "path": str(options.embeddings),
        "vector_size": int(matrix.shape[1]),
        "coverage": coverage.to_dict(),
        "frozen": options.freeze_embeddings,
    }
    tok_info = res.info.get("tokenizer") if isinstance(res.info, dict) else None
    emb_hash = (tok_info or {}).get("dictionary_hash") or res.info.get("dictionary_hash")
    if emb_hash and emb_hash != dictionary_hash:
        logger.warning("the word vectors were trained with another tokenizer dictionary")
        info["tokenizer_mismatch"] = True
    logger.info("embedding matrix: %s", coverage)
    return matrix, info


def _calibrate(
    task: str, logits: np.ndarray, targets: np.ndarray, calibrate: bool
) -> tuple[float, np.ndarray]:
    from ehrtext.metrics import apply_temperature, fit_temperature

    z = logits.reshape(-1) if task == "binary" else logits
    temperature = float(fit_temperature(z, targets, task)) if calibrate else 1.0
    return temperature, apply_temperature(z, temperature, task)


def train_model(
    options: TrainOptions | dict[str, Any], prepared: PreparedData | None = None
) -> TrainOutcome:
    """Train a model from ``options`` and save its directory at ``options.output`` (if set).

    Example:
        >>> out = train_model(TrainOptions(data="corpora/samples/notes.jsonl", epochs=2,
        ...                                output="model/"))              # doctest: +SKIP
        >>> out.metrics["macro"]["f1"]                                    # doctest: +SKIP
    """
    from ehrtext.bundle import save_bundle
    from ehrtext.metrics import compute_metrics, to_jsonable, tune_thresholds

    if isinstance(options, dict):
        options = TrainOptions.from_dict(options)
    t_start = time.perf_counter()
    if options.num_threads:
        import torch

        torch.set_num_threads(int(options.num_threads))
    if options.output:
        _check_output(Path(options.output))
    from ehrtext.distributed import is_main_process, main_first
    from ehrtext.distributed import setup as distributed_setup

    dist = distributed_setup()  # under torchrun: data-parallel (ehrtext.distributed); else None
    prepared = prepared or main_first(dist, prepare_data, options)
    spec = prepared.spec
    labels = list(spec.labels)
    task = spec.task
    val_targets = np.asarray(prepared.validation["target"])
    history: list[dict[str, float]] = []
    config: dict[str, Any] = {
        "kind": options.model,
        "task": task,
        "labels": labels,
        "spec": spec.to_dict(),
        "tokenizer": prepared.tokenizer_config,
        "dictionary_hash": prepared.dictionary_hash,
        "granularity": options.granularity,
        "max_len": options.max_len,
        "seed": options.seed,
        "options": {k: v for k, v in options.to_dict().items() if k not in ("data", "output")},
        "data": {
            "source": [str(p) for p in options.data]
            if isinstance(options.data, list)
            else str(options.data),
            "train_rows": len(prepared.train),
            "validation_rows": len(prepared.validation),
            "split": prepared.split,
        },
    }
    tensors: dict[str, Any]
    vocab_out: list[str] | None
    if options.model == "linear":
        from ehrtext.models.linear import TfidfLinearModel

        linear_opts = {
            "tokenizer_config": prepared.tokenizer_config,
            "seed": options.seed,
            **options.linear,
        }
        model = TfidfLinearModel(**linear_opts)
        train_targets = list(prepared.train["target"])
        model.fit(_texts(prepared.train, spec), train_targets, task, labels)
        val_logits = np.asarray(model.predict_logits(_texts(prepared.validation, spec)))
        temperature, val_probs = _calibrate(task, val_logits, val_targets, options.calibrate)
        arrays, linear_cfg = model.to_state()
        tensors, vocab_out = dict(arrays), None
        config["linear"] = linear_cfg
    else:
        from ehrtext.data import LengthBucketSampler
        from ehrtext.models.rnn import RNNClassifier
        from ehrtext.training import (
            BatchLoader,
            RandomBatchSampler,
            TrainConfig,
            Trainer,
            seed_everything,
        )

        seed_everything(options.seed)
        pretrained = None
        if options.embeddings:
            pretrained, config["embeddings"] = _embedding_matrix(
                options, prepared.vocab, prepared.dictionary_hash
            )
        model = RNNClassifier(
            vocab_size=len(prepared.vocab),
            num_labels=len(labels),
            task=task,
            embedding_dim=options.embedding_dim,
            hidden_size=options.hidden_size,
            num_layers=options.num_layers,
            rnn="gru" if options.model == "bigru" else "lstm",
            dropout=options.dropout,
            pooling=options.pooling,
            chunk_len=options.chunk_len,
            pretrained=pretrained,
            freeze_embeddings=options.freeze_embeddings,
        )
        train_lengths = [max(1, len(e["input_ids"])) for e in prepared.train_examples]
        if options.bucket:
            sampler: Any = LengthBucketSampler(
                train_lengths, options.batch_size, shuffle=True, seed=options.seed
            )
        else:
            sampler = RandomBatchSampler(len(train_lengths), options.batch_size, seed=options.seed)
        val_lengths = [max(1, len(e["input_ids"])) for e in prepared.val_examples]
        train_loader = BatchLoader(prepared.train_examples, sampler, task=task)
        if dist is not None:  # each rank takes its share of every global batch
            from ehrtext.distributed import ShardedBatchLoader

            train_loader = ShardedBatchLoader(prepared.train_examples, sampler, dist, task=task)
        val_loader = BatchLoader(
            prepared.val_examples,
            LengthBucketSampler(val_lengths, options.eval_batch_size, shuffle=False),
            task=task,
        )
        tcfg = TrainConfig(
            epochs=options.epochs,
            batch_size=options.batch_size,
            lr=options.lr,
            weight_decay=options.weight_decay,
            schedule=options.schedule,
            warmup_fraction=options.warmup_fraction,
            grad_clip=options.grad_clip,
            class_weight=options.class_weight,
            patience=options.patience,
            seed=options.seed,
            num_threads=options.num_threads,
            checkpoint_dir=options.checkpoint_dir,
            resume=options.resume,
            progress=options.progress,
        )
        if dist is not None:
            from ehrtext.distributed import adapt_config

            tcfg = adapt_config(tcfg, dist, prepared.train["target"], len(labels), task)
        result = Trainer(model, task, tcfg, distributed=dist).fit(train_loader, val_loader)
        history = result.history
        temperature, val_probs = _calibrate(task, result.val_logits, val_targets, options.calibrate)
        tensors, vocab_out = model.state_dict(), list(prepared.vocab.itos)
        config["model"] = model.hparams
        config["train"] = {
            "best_epoch": result.best_epoch,
            "selection_metric": result.metric_name,
            "best_metric": result.best_metric,
            "stopped_early": result.stopped_early,
            "processes": dist.world_size if dist is not None else 1,  # torchrun ranks
            "history": history,
        }
    thresholds = tune_thresholds(val_targets, val_probs, task)
    config["thresholds"] = None if thresholds is None else [float(t) for t in thresholds]
    config["temperature"] = temperature
    metrics = compute_metrics(
        val_targets,
        val_probs,
        task,
        labels,
        thresholds,
        n_bootstrap=options.n_bootstrap,
        seed=options.seed,
    )
    metrics = to_jsonable(metrics)
    metrics["split"] = prepared.split + (
        "; this split also chose the epoch, the temperature and the thresholds, so these "
        "figures are optimistic: evaluate on held-out data (ehrtext evaluate)"
    )
    metrics["train_seconds"] = round(time.perf_counter() - t_start, 2)
    out_path = None
    if options.output and is_main_process():  # rank 0 writes the model directory
        out_path = save_bundle(
            options.output, config=config, tensors=tensors, vocab=vocab_out, metrics=metrics
        )
    return TrainOutcome(out_path, metrics, history, val_probs, val_targets, model, config, prepared)


def _check_output(path: Path) -> None:
    if path.exists() and (
        not path.is_dir() or (any(path.iterdir()) and not (path / "ehrtext.json").exists())
    ):
        raise InputError(f"{path} exists and is not a model directory: choose another --output")


def evaluate_model(
    model_dir: str | Path,
    data: str | list[str],
    output: str | Path,
    *,
    label_field: str | None = None,
    n_bootstrap: int = 1000,
    batch_size: int = 64,
    title: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Score labelled data with a model directory; write ``metrics.json`` and ``report.html``
    into ``output`` (through :func:`ehrtext.report.write_report`) and return the metrics.

    The thresholds and temperature stored in the model (tuned on its validation split) are
    used as they are: nothing is tuned on ``data``.

    Example:
        >>> m = evaluate_model("model/", "test.jsonl", "report/")          # doctest: +SKIP
        >>> m["macro"]["f1"]                                               # doctest: +SKIP
    """
    from ehrtext.bundle import read_config
    from ehrtext.data import TaskSpec, find_bad_rows, load_dataset
    from ehrtext.predict import RiskModel

    if read_config(model_dir).get("kind") in ("image", "multimodal"):  # manifests of their own
        from ehrtext.imaging.cli import evaluate_manifest

        src = data if isinstance(data, str) else data[0]
        return evaluate_manifest(
            model_dir, src, output, label_field=label_field, n_bootstrap=n_bootstrap
        )
    model = RiskModel.load(model_dir)
    if model.spec is None:
        raise InputError(f"{model_dir}: the model has no task spec; evaluate needs one")
    spec_dict = model.spec.to_dict()
    if label_field:
        spec_dict.update(label_field=label_field, label_fields=None)
    spec = TaskSpec.from_dict(spec_dict)
    ds = load_dataset(data)
    bad = find_bad_rows(ds, spec)
    if bad:
        shown = "; ".join(b.reason for b in bad[:5])
        raise InputError(f"{len(bad)} of {len(ds)} rows cannot be evaluated: {shown}")
    cols = [c for c in spec.columns if c in ds.column_names]
    records = list(ds.select_columns(cols))
    y_true = np.asarray([spec.target(r, row=i) for i, r in enumerate(records)])
    probs = model.predict_proba(records, batch_size=batch_size)
    thresholds = model.thresholds
    from ehrtext.report import write_report

    kwargs: dict[str, Any] = {"n_bootstrap": n_bootstrap, "seed": seed}
    accepted = inspect.signature(write_report).parameters
    kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    return write_report(
        output,
        y_true=y_true,
        probs=probs,
        task=model.task,
        labels=model.labels,
        thresholds=thresholds,
        title=title or f"ehrtext evaluate: {Path(model_dir).name} on {Path(str(data)).name}",
        **kwargs,
    )


# --------------------------------------------------------------------------------------------
# Commands (mounted on the main app in ehrtext/cli.py)
# --------------------------------------------------------------------------------------------


def _parse_set(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def train(
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            help="Training data: JSONL/CSV/TSV/Parquet path (repeatable) or SQL URI.",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="TOML or JSON file with any training option.", show_default=False
        ),
    ] = None,
    text_field: Annotated[
        list[str] | None,
        typer.Option(
            "--text-field", "-f", help="Text field (repeat for section fields).", show_default=False
        ),
    ] = None,
    label_field: Annotated[
        str | None,
        typer.Option("--label-field", help="Label field (default: label).", show_default=False),
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(
            "--task",
            help="binary, multiclass or multilabel (default: multiclass).",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="bigru, bilstm, linear, image or multimodal (default: bigru).",
            show_default=False,
        ),
    ] = None,
    embeddings: Annotated[
        str | None,
        typer.Option(
            "--embeddings",
            help="Word2vec directory (ehrtext embed train) for the embedding.",
            show_default=False,
        ),
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(
            "--val-fraction",
            help="Validation share carved from the data (default 0.1).",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", show_default=False)] = None,
    seed: Annotated[int | None, typer.Option("--seed", show_default=False)] = None,
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", help="Model directory to write.", show_default=False),
    ] = None,
    id_field: Annotated[str | None, typer.Option("--id-field", show_default=False)] = None,
    patient_field: Annotated[
        str | None,
        typer.Option(
            "--patient-field",
            help="Patient id: validation split grouped by patient.",
            show_default=False,
        ),
    ] = None,
    label_sep: Annotated[
        str | None,
        typer.Option("--label-sep", help="Separator of multi-label strings.", show_default=False),
    ] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", show_default=False)] = None,
    max_len: Annotated[
        int | None,
        typer.Option("--max-len", help="Tokens kept per note (default 512).", show_default=False),
    ] = None,
    freeze_embeddings: Annotated[
        bool | None, typer.Option("--freeze-embeddings/--finetune-embeddings", show_default=False)
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="torch CPU threads.", show_default=False)
    ] = None,
    num_proc: Annotated[
        int | None, typer.Option("--num-proc", help="Tokenization processes.", show_default=False)
    ] = None,
    checkpoint_dir: Annotated[
        str | None,
        typer.Option(
            "--checkpoint-dir", help="Save a checkpoint after every epoch here.", show_default=False
        ),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the checkpoint in --checkpoint-dir.")
    ] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Any option as KEY=VALUE (JSON value), e.g. --set hidden_size=256.",
            show_default=False,
        ),
    ] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="No progress bar.")] = False,
    image_field: Annotated[
        str | None,
        typer.Option(
            "--image-field",
            help="--model image / multimodal: the image path column of the manifest.",
            show_default=False,
        ),
    ] = None,
    tabular: Annotated[
        list[str] | None,
        typer.Option(
            "--tabular",
            help="--model multimodal: a tabular column (repeatable), e.g. age, sex.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Train a risk model (BiGRU, BiLSTM, TF-IDF linear; or an image CNN / a multimodal
    model from a manifest) and save its model directory."""
    from ehrtext.cli import _clean_errors

    with _clean_errors():
        opts: dict[str, Any] = load_options(config) if config else {}
        flags = {
            "data": (data[0] if data and len(data) == 1 else data) if data else None,
            "text_fields": text_field or None,
            "label_field": label_field,
            "task": task,
            "model": model,
            "embeddings": embeddings,
            "val_fraction": val_fraction,
            "epochs": epochs,
            "seed": seed,
            "output": output,
            "id_field": id_field,
            "patient_field": patient_field,
            "label_sep": label_sep,
            "batch_size": batch_size,
            "max_len": max_len,
            "freeze_embeddings": freeze_embeddings,
            "num_threads": threads,
            "num_proc": num_proc,
            "checkpoint_dir": checkpoint_dir,
        }
        opts.update({k: v for k, v in flags.items() if v is not None})
        if resume:
            opts["resume"] = True
        if no_progress:
            opts["progress"] = False
        if image_field is not None:
            opts["image_field"] = image_field
        if tabular:
            opts["tabular"] = list(tabular)
        opts.update(_parse_set(set_ or []))
        if opts.get("model") in IMAGE_MODELS:
            _train_image_kind(opts)
            return
        for key in ("image_field", "tabular"):
            if key in opts:
                raise InputError(f"{key} applies to --model image / multimodal only")
        options = TrainOptions.from_dict(opts)
        if not options.output:
            raise InputError("no --output model directory given")
        outcome = train_model(options)
        if outcome.output is None:  # a rank > 0 under torchrun: rank 0 saves and reports
            return
        m = outcome.metrics
        name = "macro F1" if options.task == "multiclass" else "macro AUPRC"
        key = ("macro", "f1") if options.task == "multiclass" else ("macro", "auprc")
        value = (m.get(key[0]) or {}).get(key[1])
        shown = f"{value:.4f}" if isinstance(value, (int, float)) else "n/a"
        typer.echo(
            f"ehrtext train: {options.model} model saved to {outcome.output}; validation "
            f"{name} {shown} ({m['n_samples']} rows; optimistic: it chose the epoch and "
            f"thresholds) in {m['train_seconds']:.1f} s",
            err=True,
        )


def _train_image_kind(opts: dict[str, Any]) -> None:
    """``ehrtext train --model image|multimodal`` (see
    :func:`ehrtext.imaging.cli.train_from_options`)."""
    from ehrtext.imaging.cli import train_from_options

    if not opts.get("output"):
        raise InputError("no --output model directory given")
    _check_output(Path(opts["output"]))
    quiet = opts.get("progress") is False
    model, sink = train_from_options(
        opts, log=None if quiet else (lambda s: typer.echo("  " + s, err=True))
    )
    typer.echo(
        f"ehrtext train: {opts['model']} model saved to {opts['output']} ({model.task}, labels "
        f"{model.labels}); {sink.count} rows/images skipped or noted"
        + (f" -> {sink.path}" if sink.count else ""),
        err=True,
    )


def evaluate(
    model: Annotated[
        Path, typer.Option("--model", "-m", help="Model directory.", show_default=False)
    ],
    data: Annotated[
        list[str],
        typer.Option("--data", help="Labelled test data (repeatable).", show_default=False),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Report directory.", show_default=False)
    ],
    label_field: Annotated[
        str | None,
        typer.Option(
            "--label-field", help="Label field if it differs from training.", show_default=False
        ),
    ] = None,
    n_bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap replicates.")] = 1000,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
) -> None:
    """Evaluate a model directory on labelled data: metrics.json + report.html."""
    from ehrtext.cli import _clean_errors

    with _clean_errors():
        src: str | list[str] = data[0] if len(data) == 1 else list(data)
        result = evaluate_model(
            model,
            src,
            output,
            label_field=label_field,
            n_bootstrap=n_bootstrap,
            batch_size=batch_size,
            seed=seed,
        )
        macro = result.get("macro") or {}
        parts = [
            f"{k} {macro[k]:.4f}"
            for k in ("auroc", "auprc", "f1")
            if isinstance(macro.get(k), (int, float))
        ]
        acc = (result.get("overall") or {}).get("accuracy")
        if isinstance(acc, (int, float)):
            parts.append(f"accuracy {acc:.4f}")
        typer.echo(
            f"ehrtext evaluate: {result.get('n_samples')} rows; macro {', '.join(parts)} -> "
            f"{output}/metrics.json, {output}/report.html",
            err=True,
        )


def register(app: typer.Typer) -> None:
    """Mount ``train`` and ``evaluate`` on the main ``ehrtext`` app.

    Example:
        >>> from ehrtext.cli import app                                    # doctest: +SKIP
        >>> register(app)                                                  # doctest: +SKIP
    """
    app.command(name="train")(train)
    app.command(name="evaluate")(evaluate)
