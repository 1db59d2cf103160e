"""Command line of the image module: ``ehrtext explain-image`` and ``ehrtext image …``.

Usage::

    ehrtext image train xrays.csv --image-field path --label-field finding \\
        --patient-field patient_id --network compact --size 64 --epochs 20 -o model/
    ehrtext image score xrays.csv --model model/ -o scores.csv     # bad images -> errors file
    ehrtext image evaluate test.csv --model model/ -o report/      # metrics.json + report.html
    ehrtext explain-image --model model/ xray.dcm -o xray_cam.png  # Grad-CAM overlay (PNG)
    ehrtext multimodal train records.csv -f note --image-field xray --tabular age \
        --tabular sex --label-field finding --patient-field pid -o mm_model/
    ehrtext multimodal evaluate test.csv --model mm_model/ -o report/
    ehrtext multimodal score records.csv --model mm_model/ -o scores.csv

An unreadable image is an entry of the errors file (``{"row", "id", "code", "reason"}``, the
reason naming the file), never a crashed run; a missing model or manifest stops the command
with a one-line message (exit code 2 for bad input, 1 for a damaged model).

Example:
    >>> from typer.testing import CliRunner
    >>> CliRunner().invoke(image_app, ["--help"]).exit_code
    0
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["image_app", "multimodal_app", "explain_image_command", "evaluate_manifest"]

image_app = typer.Typer(
    name="image",
    help="Image models (DICOM, PNG/JPEG, NumPy): train from a manifest, score files.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _parse_window(window: str | None):
    if window is None:
        return None
    if "," in window:
        try:
            center, width = (float(v) for v in window.split(","))
        except ValueError:
            from ehrtext.errors import InputError

            raise InputError(f"--window {window!r}: use a preset name or CENTER,WIDTH") from None
        return (center, width)
    return window


WindowOpt = Annotated[
    str | None,
    typer.Option(
        "--window",
        help="DICOM window: lung, mediastinum, bone, brain, file (the file's own), or "
        "CENTER,WIDTH. Default: none (the rescaled values, scaled over their range).",
        metavar="WINDOW",
    ),
]


@image_app.command("train")
def train_command(
    manifest: Annotated[Path, typer.Argument(help="CSV / TSV / JSONL / Parquet manifest.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model directory.")],
    image_field: Annotated[str, typer.Option("--image-field", help="Image path column.")] = "image",
    label_field: Annotated[str, typer.Option("--label-field", help="Label column.")] = "label",
    id_field: Annotated[str | None, typer.Option("--id-field", help="Row id column.")] = None,
    patient_field: Annotated[
        str | None, typer.Option("--patient-field", help="Patient id: splits keep patients whole.")
    ] = None,
    task: Annotated[
        str | None,
        typer.Option("--task", help="binary, multiclass or multilabel (default: guessed)."),
    ] = None,
    label_sep: Annotated[
        str | None, typer.Option("--label-sep", help="Separator of multilabel strings.")
    ] = None,
    network: Annotated[
        str, typer.Option("--network", help="compact, resnet18 or densenet121.")
    ] = "compact",
    size: Annotated[int, typer.Option("--size", help="Input side in pixels.", min=8)] = 64,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 20,
    batch_size: Annotated[int, typer.Option("--batch-size", min=2)] = 64,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate.")] = 3e-3,
    threshold_rule: Annotated[
        str, typer.Option("--threshold-rule", help="f1, accuracy (binary) or 0.5.")
    ] = "f1",
    window: WindowOpt = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    errors: Annotated[
        Path | None, typer.Option("--errors", help="Errors JSONL (default: OUTPUT.errors.jsonl).")
    ] = None,
) -> None:
    """Train an image classifier from a manifest and save the model directory."""
    from ehrtext.cli import _clean_errors

    with _clean_errors():
        from ehrtext.imaging.model import train_image_model
        from ehrtext.imaging.train import ImageTrainConfig
        from ehrtext.textio import ErrorSink

        errors_path = errors or output.with_name(output.name + ".errors.jsonl")
        config = ImageTrainConfig(
            network=network,
            image_size=size,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=lr,
            seed=seed,
        )
        with ErrorSink(errors_path) as sink:
            model = train_image_model(
                manifest,
                output,
                image_field=image_field,
                label_field=label_field,
                task=task,
                id_field=id_field,
                patient_field=patient_field,
                label_sep=label_sep,
                window=_parse_window(window),
                config=config,
                threshold_rule=threshold_rule,
                errors=sink,
                log=lambda s: typer.echo("  " + s, err=True),
            )
        typer.echo(
            f"ehrtext image train: saved {output} ({model.task}, labels {model.labels}); "
            f"{sink.count} rows/images skipped" + (f" -> {errors_path}" if sink.count else ""),
            err=True,
        )


def _write_scores(df, output: Path) -> None:
    """Write a score table as JSONL (``.jsonl`` / ``.json``) or CSV, atomically (tmp + rename)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    if output.suffix.lower() in (".jsonl", ".json"):
        with open(tmp, "w", encoding="utf-8") as fh:
            for rec in df.to_dict("records"):
                fh.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
    else:
        df.to_csv(tmp, index=False)
    tmp.replace(output)


@image_app.command("score")
def score_command(
    manifest: Annotated[Path, typer.Argument(help="Manifest (CSV / TSV / JSONL / Parquet).")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Image model directory.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Scores (.csv or .jsonl).")],
    image_field: Annotated[str, typer.Option("--image-field")] = "image",
    id_field: Annotated[str | None, typer.Option("--id-field")] = None,
    errors: Annotated[
        Path | None, typer.Option("--errors", help="Errors JSONL (default: OUTPUT.errors.jsonl).")
    ] = None,
) -> None:
    """Score every image of a manifest: one row per image, probabilities per label."""
    from ehrtext.cli import _clean_errors

    with _clean_errors():
        import numpy as np

        from ehrtext.imaging.manifest import read_manifest
        from ehrtext.imaging.model import ImageModel
        from ehrtext.textio import ErrorSink

        image_model = ImageModel.load(model)
        errors_path = errors or output.with_name(output.stem + ".errors.jsonl")
        with ErrorSink(errors_path) as sink:
            m = read_manifest(manifest, image_field=image_field, id_field=id_field, errors=sink)
            paths = [str(p) for r in m.rows for p in r.images]
            ids = [r.id for r in m.rows for _ in r.images]
            rows = [r.row for r in m.rows for _ in r.images]
            df = image_model.predict(paths, ids=ids)
            failed = df["error"].notna().to_numpy()  # pandas may store None as NaN
            for i in np.flatnonzero(failed):
                sink.add(rows[i], ids[i], "bad_image", str(df["error"].iloc[i]))
            good = df[df["error"].isna()].drop(columns=["error"])
            _write_scores(good, output)
        typer.echo(
            f"ehrtext image score: {len(paths) + sink.count - (len(df) - len(good))} images "
            f"read: {len(good)} scored, {sink.count} errors"
            + (f" -> {errors_path}" if sink.count else ""),
            err=True,
        )


def explain_image_command(
    image: Annotated[Path, typer.Argument(help="Image file (DICOM, PNG/JPEG, .npy).")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Image model directory.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Overlay PNG to write.")],
    label: Annotated[
        str | None, typer.Option("--label", help="Label to explain (default: the predicted one).")
    ] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Heatmap opacity.", min=0, max=1)] = 0.45,
) -> None:
    """Grad-CAM heatmap of an image model over one image, saved as a PNG overlay."""
    from ehrtext.cli import _clean_errors

    with _clean_errors():
        from ehrtext.imaging.gradcam import explain_image, save_overlay
        from ehrtext.imaging.model import ImageModel

        explanation = explain_image(ImageModel.load(model), image, label=label)
        save_overlay(explanation, output, alpha=alpha)
        probs = ", ".join(f"{k} {v:.3f}" for k, v in explanation.probabilities.items())
        typer.echo(
            f"ehrtext explain-image: {output} ({explanation.heatmap.shape[1]}x"
            f"{explanation.heatmap.shape[0]}); explained {explanation.label!r}; {probs}",
            err=True,
        )


def _report(output: Path, y, probs, model, title: str, n_bootstrap: int, extra: dict) -> dict:
    from ehrtext.report import write_report

    return write_report(
        output,
        y_true=y,
        probs=probs,
        task=model.task,
        labels=model.labels,
        thresholds=model.thresholds,
        title=title,
        extra=extra,
        n_bootstrap=n_bootstrap,
    )


def _summary(result: dict) -> str:
    macro = result.get("macro") or {}
    parts = [
        f"{k} {macro[k]:.4f}" for k in ("auroc", "auprc", "f1") if isinstance(macro.get(k), float)
    ]
    acc = (result.get("overall") or {}).get("accuracy")
    if isinstance(acc, float):
        parts.append(f"accuracy {acc:.4f}")
    return ", ".join(parts)


def evaluate_manifest(
    model_dir: str | Path,
    data: str | Path,
    output: str | Path,
    *,
    label_field: str | None = None,
    image_field: str | None = None,
    id_field: str | None = None,
    n_bootstrap: int = 1000,
) -> dict:
    """Evaluate an ``image`` or ``multimodal`` model directory on a labelled manifest: writes
    ``metrics.json``, ``report.html`` and ``errors.jsonl`` (unreadable images) into
    ``output`` and returns the metrics. The model's stored thresholds and temperature are used:
    nothing is tuned on this data. Image models score one row per image; multimodal models one
    row per record (a record missing a modality is scored from the others).

    Example:
        >>> evaluate_manifest("model/", "test.csv", "report/")["n_samples"]  # doctest: +SKIP
        624
    """
    import numpy as np

    from ehrtext.bundle import read_config
    from ehrtext.errors import InputError
    from ehrtext.textio import ErrorSink

    model_dir, data, output = Path(model_dir), Path(data), Path(output)
    cfg = read_config(model_dir)
    kind = cfg.get("kind")
    spec = cfg.get("spec") or {}
    output.mkdir(parents=True, exist_ok=True)
    with ErrorSink(output / "errors.jsonl") as sink:
        if kind == "multimodal":
            from ehrtext.multimodal import MultimodalModel, evaluate_records

            model = MultimodalModel.load(model_dir)
            model.base = data.parent
            if label_field and model.spec is not None:
                from ehrtext.data import TaskSpec

                model.spec = TaskSpec.from_dict(
                    {**model.spec.to_dict(), "label_field": label_field}
                )
            from ehrtext.imaging.manifest import read_table

            y, probs, skipped = evaluate_records(model, read_table(data), errors=sink)
            extra = {
                "records": int(len(y)),
                "unlabelled_rows_skipped": skipped,
                "modalities": ", ".join(model.modalities),
            }
        elif kind == "image":
            from ehrtext.imaging.manifest import read_manifest
            from ehrtext.imaging.model import ImageModel

            model = ImageModel.load(model_dir)
            m = read_manifest(
                data,
                image_field=image_field or (spec.get("text_fields") or ["image"])[0],
                label_field=label_field or spec.get("label_field") or "label",
                task=model.task,
                labels=model.labels,
                id_field=id_field or spec.get("id_field"),
                errors=sink,
            )
            owners = [r for r in m.rows for _ in r.images]
            df = model.predict([str(p) for r in m.rows for p in r.images])
            ok = df["error"].isna().to_numpy()
            for i in np.flatnonzero(~ok):
                sink.add(owners[i].row, owners[i].id, "bad_image", str(df["error"].iloc[i]))
            probs = df.loc[ok, [f"p_{lab}" for lab in model.labels]].to_numpy()
            if model.task == "binary":
                probs = probs[:, 1]
            y = np.asarray([r.fields["__target__"] for r, good in zip(owners, ok) if good])
            extra = {"images": int(ok.sum())}
        else:
            raise InputError(f"{model_dir}: a {kind!r} model: use `ehrtext evaluate` for text")
        if len(y) == 0:
            raise InputError(f"{data}: nothing could be evaluated (see {output}/errors.jsonl)")
        extra["errors"] = sink.count
        return _report(
            output,
            y,
            probs,
            model,
            f"ehrtext evaluate: {model_dir.name} on {data.name}",
            n_bootstrap,
            extra,
        )


@image_app.command("evaluate")
def image_evaluate_command(
    manifest: Annotated[Path, typer.Argument(help="Labelled manifest (test data).")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Image model directory.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Report directory.")],
    image_field: Annotated[str | None, typer.Option("--image-field")] = None,
    label_field: Annotated[str | None, typer.Option("--label-field")] = None,
    id_field: Annotated[str | None, typer.Option("--id-field")] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap replicates.")] = 1000,
) -> None:
    """Evaluate an image model on a labelled manifest: metrics.json + report.html (one row
    per image; the model's stored thresholds and temperature, nothing tuned here)."""
    from ehrtext.cli import _clean_errors

    with _clean_errors():
        result = evaluate_manifest(
            model,
            manifest,
            output,
            label_field=label_field,
            image_field=image_field,
            id_field=id_field,
            n_bootstrap=bootstrap,
        )
        typer.echo(
            f"ehrtext image evaluate: {result.get('n_samples')} images; {_summary(result)} "
            f"-> {output}",
            err=True,
        )


multimodal_app = typer.Typer(
    name="multimodal",
    help="Multimodal models: notes + an image + tabular columns per patient record.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@multimodal_app.command("train")
def multimodal_train_command(
    manifest: Annotated[Path, typer.Argument(help="CSV / TSV / JSONL / Parquet manifest.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Model directory.")],
    text_field: Annotated[
        list[str] | None, typer.Option("--text-field", "-f", help="Text field (repeatable).")
    ] = None,
    image_field: Annotated[
        str | None, typer.Option("--image-field", help="Image path column ('' for none).")
    ] = "image",
    tabular: Annotated[
        list[str] | None, typer.Option("--tabular", help="Tabular column (repeatable).")
    ] = None,
    label_field: Annotated[str, typer.Option("--label-field")] = "label",
    id_field: Annotated[str | None, typer.Option("--id-field")] = None,
    patient_field: Annotated[str | None, typer.Option("--patient-field")] = None,
    task: Annotated[str | None, typer.Option("--task", help="binary or multiclass.")] = None,
    modalities: Annotated[
        list[str] | None,
        typer.Option("--modality", help="Use only these (text, image, tabular; repeatable)."),
    ] = None,
    fusion: Annotated[str, typer.Option("--fusion", help="gated or attention.")] = "gated",
    rnn: Annotated[str, typer.Option("--rnn", help="gru or lstm.")] = "gru",
    size: Annotated[int, typer.Option("--size", help="Image side in pixels.", min=8)] = 64,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 20,
    batch_size: Annotated[int, typer.Option("--batch-size", min=2)] = 16,
    lr: Annotated[float, typer.Option("--lr")] = 2e-3,
    window: WindowOpt = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    threads: Annotated[int | None, typer.Option("--threads", help="torch CPU threads.")] = None,
    errors: Annotated[
        Path | None, typer.Option("--errors", help="Errors JSONL (default: OUTPUT.errors.jsonl).")
    ] = None,
) -> None:
    """Train a multimodal model (text BiGRU/BiLSTM + image CNN + tabular, fused) and save it."""
    from ehrtext.cli import _clean_errors

    with _clean_errors():
        from ehrtext.multimodal import MultimodalConfig, train_multimodal
        from ehrtext.textio import ErrorSink

        config = MultimodalConfig(
            text_fields=list(text_field or ["text"]),
            image_field=image_field or None,
            tabular=list(tabular or []),
            modalities=list(modalities) if modalities else None,
            fusion=fusion,
            rnn=rnn,
            image_size=size,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=lr,
            window=_parse_window(window),
            seed=seed,
            threads=threads,
        )
        errors_path = errors or output.with_name(output.name + ".errors.jsonl")
        with ErrorSink(errors_path) as sink:
            model = train_multimodal(
                manifest,
                output,
                label_field=label_field,
                task=task,
                id_field=id_field,
                patient_field=patient_field,
                config=config,
                errors=sink,
                log=lambda s: typer.echo("  " + s, err=True),
            )
        typer.echo(
            f"ehrtext multimodal train: saved {output} ({model.task}, labels {model.labels}, "
            f"modalities {model.modalities}); {sink.count} warnings/skipped rows"
            + (f" -> {errors_path}" if sink.count else ""),
            err=True,
        )


def _multimodal_rows(manifest: Path):
    from ehrtext.imaging.manifest import read_table

    return read_table(manifest)


@multimodal_app.command("score")
def multimodal_score_command(
    manifest: Annotated[Path, typer.Argument(help="Manifest of records to score.")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Multimodal model directory.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Scores (.csv or .jsonl).")],
    id_field: Annotated[str | None, typer.Option("--id-field")] = None,
    errors: Annotated[
        Path | None, typer.Option("--errors", help="Errors JSONL (default: OUTPUT.errors.jsonl).")
    ] = None,
) -> None:
    """Score every record of a manifest; a record missing a modality is scored from the
    others (an unreadable image is noted in the errors file, the row still scored)."""
    from ehrtext.cli import _clean_errors

    with _clean_errors():
        from ehrtext.multimodal import MultimodalModel
        from ehrtext.textio import ErrorSink

        mm = MultimodalModel.load(model)
        mm.base = manifest.parent
        rows = _multimodal_rows(manifest)
        key = id_field or getattr(mm.spec, "id_field", None)
        ids = [r.get(key) if key else i + 1 for i, r in enumerate(rows)]
        errors_path = errors or output.with_name(output.stem + ".errors.jsonl")
        with ErrorSink(errors_path) as sink:
            df = mm.predict(rows, ids=ids, errors=sink)
            _write_scores(df, output)
        typer.echo(
            f"ehrtext multimodal score: {len(df)} records scored; {sink.count} unreadable "
            "images (scored without them)" + (f" -> {errors_path}" if sink.count else ""),
            err=True,
        )


@multimodal_app.command("evaluate")
def multimodal_evaluate_command(
    manifest: Annotated[Path, typer.Argument(help="Labelled manifest (test data).")],
    model: Annotated[Path, typer.Option("--model", "-m", help="Multimodal model directory.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Report directory.")],
    label_field: Annotated[str | None, typer.Option("--label-field")] = None,
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap replicates.")] = 1000,
) -> None:
    """Evaluate a multimodal model on labelled records: metrics.json + report.html (the
    model's stored thresholds and temperature; nothing is tuned on this data)."""
    from ehrtext.cli import _clean_errors

    with _clean_errors():
        result = evaluate_manifest(
            model, manifest, output, label_field=label_field, n_bootstrap=bootstrap
        )
        typer.echo(
            f"ehrtext multimodal evaluate: {result.get('n_samples')} records; "
            f"{_summary(result)} -> {output}",
            err=True,
        )


# --------------------------------------------------------------------------------------------
# ``ehrtext train --model image|multimodal``: the generic training options mapped onto the
# image and multimodal trainers
# --------------------------------------------------------------------------------------------

# generic ``ehrtext train`` option -> the name the image / multimodal trainer uses
_RENAMED = {"lr": "learning_rate", "num_threads": "threads", "val_fraction": "tune_fraction"}
# options of the trainers' own calls (not of their config dataclasses)
_CALL_KEYS = {
    "image": {"image_field", "label_field", "task", "labels", "id_field", "patient_field",
              "label_sep", "window", "tune_fraction", "threshold_rule"},
    "multimodal": {"label_field", "task", "labels", "id_field", "patient_field"},
}
# generic options that mean nothing here but are harmless (progress bars, text-model caches)
_IGNORED = {"progress", "model"}


def train_from_options(
    options: dict,
    *,
    errors_path: str | Path | None = None,
    log=None,
):
    """Train an ``image`` or ``multimodal`` model from ``ehrtext train`` options.

    ``options`` are the keys of a config file / flags / ``--set`` (``model`` is ``image`` or
    ``multimodal``; ``data`` a manifest; ``output`` the model directory). Generic names map
    onto the image trainers (``lr`` → ``learning_rate``, ``num_threads`` → ``threads``,
    ``val_fraction`` → ``tune_fraction``); the image / multimodal settings (``network``,
    ``image_size``, ``window``, ``tabular``, ``fusion`` …) are accepted as they are; a key that
    applies to neither is an :class:`~ehrtext.errors.InputError` naming it. Returns
    ``(model, error_sink)``.

    Example:
        >>> train_from_options({"model": "image", "data": "xrays.csv",
        ...                     "output": "model/", "epochs": 5})           # doctest: +SKIP
    """
    import dataclasses

    from ehrtext.errors import InputError
    from ehrtext.textio import ErrorSink

    kind = options.get("model")
    if kind not in ("image", "multimodal"):
        raise InputError(f"train_from_options: model must be image or multimodal, got {kind!r}")
    data = options.get("data")
    if isinstance(data, list):
        if len(data) != 1:
            raise InputError(f"--model {kind} trains from one manifest, got {len(data)} --data")
        data = data[0]
    if not data:
        raise InputError("no --data manifest given")
    output = options.get("output")
    if not output:
        raise InputError("no --output model directory given")
    if kind == "image":
        from ehrtext.imaging.train import ImageTrainConfig as Config

        defaults = {"image_size": 64, "epochs": 20, "batch_size": 64, "learning_rate": 3e-3}
    else:
        from ehrtext.multimodal import MultimodalConfig as Config

        defaults = {}
    config_keys = {f.name for f in dataclasses.fields(Config)}
    call: dict = {}
    config: dict = dict(defaults)
    unknown = []
    for key, value in options.items():
        if key in ("data", "output") or key in _IGNORED:
            continue
        key = _RENAMED.get(key, key)
        if kind == "image" and key == "text_fields":  # --text-field names the image column
            value = value[0] if isinstance(value, list) and len(value) == 1 else value
            key = "image_field"
        if key == "window" and isinstance(value, str):
            value = _parse_window(value)
        if key in _CALL_KEYS[kind]:
            call[key] = value
        elif key in config_keys:
            config[key] = value
        else:
            unknown.append(key)
    if unknown:
        raise InputError(
            f"option(s) {', '.join(sorted(unknown))} do not apply to --model {kind} (image / "
            f"fusion settings: {', '.join(sorted(config_keys | _CALL_KEYS[kind]))})"
        )
    if kind == "image" and isinstance(call.get("image_field"), list):
        raise InputError("--model image reads one image column: give one --image-field")
    if "widths" in config and kind == "image":
        config["widths"] = tuple(config["widths"])
    out = Path(output)
    errors_path = Path(errors_path) if errors_path else out.with_name(out.name + ".errors.jsonl")
    with ErrorSink(errors_path) as sink:
        if kind == "image":
            from ehrtext.imaging.model import train_image_model

            model = train_image_model(
                data, out, config=Config(**config), errors=sink, log=log, **call
            )
        else:
            from ehrtext.multimodal import train_multimodal

            model = train_multimodal(
                data, out, config=Config.from_dict(config), errors=sink, log=log, **call
            )
    return model, sink
