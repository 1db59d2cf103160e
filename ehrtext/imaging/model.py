"""A trained image classifier in the shared model directory (kind ``image``): train, save,
load, score files.

:func:`train_image_model` reads a manifest, carves a tuning split out of it (stratified,
grouped by patient when the manifest has a patient column), trains a network
(:mod:`ehrtext.imaging.train`), fits the calibration temperature and the decision threshold
on the tuning split only, and saves the directory with :func:`ehrtext.bundle.save_bundle`::

    model/  ehrtext.json (kind "image", task, labels, thresholds, temperature, image settings)
            weights.safetensors · metrics.json (tuning-split results) · README.md

:class:`ImageModel` scores image files (DICOM, PNG/JPEG, NumPy): ``predict`` returns a
DataFrame (``id``, ``path``, ``p_<label>`` …, ``label``/``labels``, ``error``) where an
unreadable file gets NaN and the reason, never a crashed run. ``RiskModel.load(dir)`` builds
one through the ``image`` kind (registered in :mod:`ehrtext.imaging`), so texts passed to
``RiskModel.predict`` are image paths there.

Example:
    >>> model = train_image_model("xrays.csv", "model/", label_field="finding",
    ...                           config=ImageTrainConfig(epochs=10))     # doctest: +SKIP
    >>> ImageModel.load("model/").predict(["new.dcm"])                   # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ehrtext.errors import InputError, ModelFileError
from ehrtext.imaging.readers import Window
from ehrtext.imaging.train import ImageTrainConfig

__all__ = ["ImageModel", "train_image_model", "build_from_bundle", "THRESHOLD_RULES"]

THRESHOLD_RULES = ("f1", "accuracy", "0.5")


def _window_to_json(window: Window) -> Any:
    return list(window) if isinstance(window, tuple) else window


def _window_from_json(value: Any) -> Window:
    return tuple(float(v) for v in value) if isinstance(value, list) else value  # type: ignore[return-value]


class ImageModel:
    """A network plus what turns its logits into decisions: task, labels, temperature,
    thresholds, and how images are read (``image_size``, DICOM ``window``).

    Example:
        >>> model = ImageModel.load("model/")                             # doctest: +SKIP
        >>> model.predict_proba(["a.png", "b.dcm"]).shape                 # doctest: +SKIP
        (2,)
    """

    accepts_text = False  # RiskModel hands paths / records through unchanged

    def __init__(
        self,
        network: Any,
        config: ImageTrainConfig,
        *,
        task: str,
        labels: Sequence[str],
        thresholds: Sequence[float] | None = None,
        temperature: float = 1.0,
        window: Window = None,
        path: Path | None = None,
    ) -> None:
        self.network = network.eval()
        self.config = config
        self.task = task
        self.labels = [str(x) for x in labels]
        self.thresholds = None if thresholds is None else np.asarray(thresholds, np.float64)
        self.temperature = float(temperature)
        self.window = window
        self.path = path
        self.image_field = "image"  # the manifest column of image paths (records as input)
        self.base: Path | None = None  # folder relative image paths are read from

    # ---- scoring ---------------------------------------------------------------------------

    def logits(self, images: Any, *, tta: bool = True) -> np.ndarray:
        """Raw logits of a tensor ``[N, 1, S, S]`` (test-time augmentation when ``tta``)."""
        from ehrtext.imaging.train import predict_logits

        shifts = self.config.tta_shifts if tta else 0
        return predict_logits(
            self.network, images, tta=shifts, flip=tta and self.config.flip_prob > 0
        ).numpy()

    def proba_from_logits(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities: ``(n,)`` for binary, ``(n, L)`` otherwise."""
        from ehrtext.metrics import apply_temperature

        z = np.asarray(logits, dtype=np.float64)
        if self.task == "binary":
            z = z.reshape(-1)
        return apply_temperature(z, self.temperature, self.task)

    def load_images(self, paths: Sequence[str | os.PathLike[str]], errors: Any = None) -> Any:
        """Decode files at the model's size and window (see
        :func:`~ehrtext.imaging.manifest.load_image_tensor`)."""
        from ehrtext.imaging.manifest import load_image_tensor

        return load_image_tensor(paths, self.config.image_size, window=self.window, errors=errors)

    def predict_proba(
        self, paths: Sequence[str | os.PathLike[str]], batch_size: int = 64
    ) -> np.ndarray:
        """Probabilities of image files; an unreadable file raises :class:`InputError`
        naming it (use :meth:`predict` to mark bad files instead).

        Example:
            >>> model.predict_proba(["xray.png"])                          # doctest: +SKIP
            array([0.93])
        """
        if isinstance(paths, (str, os.PathLike)):
            raise InputError("predict_proba takes a list of image paths: wrap it in [...]")
        images, _ = self.load_images([self._path_of(p) for p in paths])
        return self.proba_from_logits(self.logits(images))

    @property
    def record_fields(self) -> list[str]:
        """The record column this model reads (the image path column)."""
        return [self.image_field]

    def _path_of(self, item: Any) -> str:
        """An image path from a path or a record (``image_field``; ``a.png;b.png`` or a list:
        the first), relative paths resolved against :attr:`base`; '' when there is none."""
        from collections.abc import Mapping

        from ehrtext.imaging.manifest import image_paths

        value = item.get(self.image_field) if isinstance(item, Mapping) else item
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        missing = value is None or (isinstance(value, float) and value != value)  # None, NaN
        if not missing and not isinstance(value, (str, list, tuple)):
            raise InputError(f"an image path must be text, got {type(value).__name__}")
        found = image_paths(value, self.base)
        return str(found[0]) if found else ""

    def predict(
        self,
        paths: Sequence[Any],
        ids: Sequence[Any] | None = None,
        batch_size: int = 64,
        on_error: str = "mark",
    ) -> Any:
        """A DataFrame, one row per input in order: ``id``, ``p_<label>`` for every label,
        ``label`` (``labels`` for multilabel), ``path``, ``error`` (None, or why the file
        could not be read: its probabilities are then NaN) and ``error_code``.

        ``paths`` holds image paths, or records (dicts / a DataFrame) with the model's
        :attr:`image_field`; relative paths are read from :attr:`base` when it is set.
        ``on_error="raise"`` raises :class:`InputError` naming the first unreadable file.

        Example:
            >>> model.predict(["ok.png", "notes.txt"])["error"].notna().tolist()  # doctest: +SKIP
            [False, True]
        """
        import pandas as pd

        from ehrtext.textio import ErrorSink

        if on_error not in ("raise", "mark"):
            raise InputError(f"on_error must be 'raise' or 'mark', got {on_error!r}")
        if isinstance(paths, (str, os.PathLike)):
            raise InputError("predict takes a list of image paths: wrap it in [...]")
        if hasattr(paths, "to_dict") and hasattr(paths, "columns"):  # a DataFrame
            paths = paths.to_dict("records")
        items = list(paths)
        paths = []
        missing: dict[int, tuple[str, str]] = {}
        for i, item in enumerate(items):
            try:
                path = self._path_of(item)
            except InputError as exc:
                path, missing[i] = "", ("wrong_type", str(exc))
            if not path and i not in missing:
                missing[i] = ("missing_image", f"no image path in field {self.image_field!r}")
            paths.append(path)
        ids = list(ids) if ids is not None else list(range(len(paths)))
        if len(ids) != len(paths):
            raise InputError(f"ids has {len(ids)} entries for {len(paths)} paths")
        sink = ErrorSink()
        readable = [i for i in range(len(paths)) if i not in missing]
        images, ok_sub = self.load_images([paths[i] for i in readable], errors=sink)
        ok = [readable[j] for j in ok_sub]
        n, k = len(paths), len(self.labels)
        probs = np.full((n, k), np.nan)
        if ok:
            p = self.proba_from_logits(self.logits(images))
            if self.task == "binary":
                probs[ok, 1] = p
                probs[ok, 0] = 1 - p
            else:
                probs[ok] = p
        errors: list[str | None] = [None] * n
        codes: list[str | None] = [None] * n
        for entry in sink.entries:
            i = readable[entry["row"] - 1]
            errors[i], codes[i] = entry["reason"], "bad_image"
        for i, (code, reason) in missing.items():
            errors[i], codes[i] = reason, code
        if on_error == "raise" and any(e is not None for e in errors):
            first = next(i for i, e in enumerate(errors) if e is not None)
            raise InputError(f"row {first}: {errors[first]}")
        data: dict[str, Any] = {"id": ids}
        for j, label in enumerate(self.labels):
            data[f"p_{label}"] = probs[:, j]
        decided: list[Any] = [None] * n
        for i in ok:
            decided[i] = self._decide(probs[i])
        data["labels" if self.task == "multilabel" else "label"] = decided
        data["path"] = paths
        data["error"] = errors
        data["error_code"] = codes
        return pd.DataFrame(data)

    def _decide(self, p: np.ndarray) -> Any:
        if self.task == "multiclass":
            return self.labels[int(np.argmax(p))]
        cuts = np.full(len(self.labels), 0.5) if self.thresholds is None else self.thresholds
        if self.task == "binary":
            return self.labels[1] if p[1] >= float(np.ravel(cuts)[0]) else self.labels[0]
        return [lab for j, lab in enumerate(self.labels) if p[j] >= cuts[j]]

    # ---- saving ----------------------------------------------------------------------------

    def bundle_config(self) -> dict[str, Any]:
        """The ``ehrtext.json`` entries of this model."""
        return {
            "kind": "image",
            "task": self.task,
            "labels": self.labels,
            "thresholds": None if self.thresholds is None else self.thresholds.tolist(),
            "temperature": self.temperature,
            "seed": self.config.seed,
            "model": self.config.to_dict(),
            "image": {
                "size": self.config.image_size,
                "channels": 1,
                "window": _window_to_json(self.window),
                "scaling": "nominal value range to [0, 1] (8-bit: /255; DICOM: window)",
            },
        }

    def save(
        self,
        directory: str | os.PathLike[str],
        *,
        metrics: dict[str, Any] | None = None,
        spec: dict[str, Any] | None = None,
    ) -> Path:
        """Write the model directory (``ehrtext.bundle.save_bundle``, kind ``image``).

        Example:
            >>> model.save("model/")                                       # doctest: +SKIP
        """
        from ehrtext.bundle import save_bundle

        config = self.bundle_config()
        if spec is not None:
            config["spec"] = spec
        tensors = {k: v for k, v in self.network.state_dict().items()}
        self.path = save_bundle(directory, config=config, tensors=tensors, metrics=metrics)
        return self.path

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ImageModel:
        """Load and verify a model directory of kind ``image``.

        Raises:
            ModelFileError: a missing/tampered/newer-format file, another kind, or weights
                that do not fit the recorded network.
        """
        from ehrtext.bundle import load_bundle

        return build_from_bundle(load_bundle(directory))


def build_from_bundle(bundle: Any) -> ImageModel:
    """Build an :class:`ImageModel` from a loaded :class:`~ehrtext.bundle.Bundle` (the
    ``image`` kind's builder).

    Example:
        >>> from ehrtext.bundle import load_bundle
        >>> build_from_bundle(load_bundle("model/")).labels              # doctest: +SKIP
        ['normal', 'pneumonia']
    """
    import torch

    from ehrtext.imaging.networks import build_network

    cfg = bundle.config
    if bundle.kind != "image":
        raise ModelFileError(f"{bundle.path}: a {bundle.kind!r} model, not an image model")
    try:
        config = ImageTrainConfig.from_dict(cfg["model"])
        task, labels = cfg["task"], cfg["labels"]
        window = _window_from_json((cfg.get("image") or {}).get("window"))
    except (KeyError, TypeError, InputError) as exc:
        raise ModelFileError(f"{bundle.path}: ehrtext.json is incomplete ({exc})") from None
    outputs = 1 if task == "binary" else len(labels)
    options = (
        {"widths": config.widths, "dropout": config.dropout} if config.network == "compact" else {}
    )
    network = build_network(config.network, outputs, **options)
    state = {k: torch.from_numpy(np.array(v)) for k, v in bundle.tensors.items()}
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelFileError(
            f"{bundle.path}: weights do not fit the recorded network "
            f"({str(exc).splitlines()[0][:200]})"
        ) from None
    if config.channels_last:
        network = network.to(memory_format=torch.channels_last)
    model = ImageModel(
        network,
        config,
        task=task,
        labels=labels,
        thresholds=cfg.get("thresholds"),
        temperature=float(cfg.get("temperature", 1.0)),
        window=window,
        path=bundle.path,
    )
    fields = (cfg.get("spec") or {}).get("text_fields") or ["image"]
    model.image_field = str(fields[0])
    return model


def _tune_split(rows: Sequence[Any], spec: Any, fraction: float, seed: int) -> list[int]:
    """Indices of the tuning rows: one fold of stratified (patient-grouped) k-fold."""
    from ehrtext.data import kfold_indices

    k = max(2, round(1 / fraction))
    return kfold_indices([r.fields for r in rows], spec, k=k, seed=seed)[0][1]


def choose_thresholds(
    y: np.ndarray, probs: np.ndarray, task: str, rule: str = "f1"
) -> list[float] | None:
    """Decision thresholds from a tuning split: ``f1`` (``ehrtext.metrics.tune_thresholds``),
    ``accuracy`` (binary: the cut maximising accuracy) or ``0.5``; None for multiclass.

    Example:
        >>> choose_thresholds(np.array([0, 0, 1, 1]), np.array([.1, .4, .6, .9]), "binary",
        ...                   "accuracy")
        [0.5]
    """
    from ehrtext.imaging.calibration import accuracy_threshold
    from ehrtext.metrics import tune_thresholds

    if rule not in THRESHOLD_RULES:
        raise InputError(f"threshold rule must be one of {', '.join(THRESHOLD_RULES)}")
    if task == "multiclass":
        return None
    if rule == "0.5":
        return [0.5] * (1 if task == "binary" else probs.shape[1])
    if rule == "accuracy":
        if task != "binary":
            raise InputError("the 'accuracy' threshold rule is for binary tasks")
        return [accuracy_threshold(y, probs)]
    out = tune_thresholds(y, probs, task)
    return None if out is None else [float(t) for t in out]


def train_image_model(
    manifest: str | os.PathLike[str] | Any,
    output: str | os.PathLike[str] | None,
    *,
    image_field: str = "image",
    label_field: str | None = "label",
    task: str | None = None,
    labels: Sequence[str] | None = None,
    id_field: str | None = None,
    patient_field: str | None = None,
    label_sep: str | None = None,
    window: Window = None,
    config: ImageTrainConfig | None = None,
    tune_fraction: float = 0.1,
    threshold_rule: str = "f1",
    errors: Any = None,
    log: Any = None,
) -> ImageModel:
    """Train an image classifier from a manifest and save it to ``output`` (when given).

    Rows are split into fit / tune (``tune_fraction``, stratified, by patient when
    ``patient_field``); the temperature and thresholds come from the tune split, whose
    metrics are saved in ``metrics.json`` as such. Bad rows and images go to ``errors`` (an
    :class:`~ehrtext.textio.ErrorSink`).

    Example:
        >>> train_image_model("m.csv", "model/", label_field="label",
        ...                   config=ImageTrainConfig(epochs=5, image_size=64))  # doctest: +SKIP
    """
    from ehrtext.imaging.manifest import ImageManifest, load_manifest_images, read_manifest
    from ehrtext.imaging.train import train_image_classifier
    from ehrtext.metrics import compute_metrics, fit_temperature

    cfg = config or ImageTrainConfig()
    if isinstance(manifest, ImageManifest):
        m = manifest
    else:
        m = read_manifest(
            manifest,
            image_field=image_field,
            label_field=label_field,
            task=task,
            labels=labels,
            id_field=id_field,
            patient_field=patient_field,
            label_sep=label_sep,
            errors=errors,
        )
    if m.spec is None:
        raise InputError(f"{m.path}: training needs a label field")
    if len(m.rows) < 4:
        raise InputError(f"{m.path}: {len(m.rows)} usable rows: too few to train")
    t0 = time.perf_counter()
    tune_rows = set(_tune_split(m.rows, m.spec, tune_fraction, cfg.seed))
    batch = load_manifest_images(m, cfg.image_size, window=window)
    if batch.images.shape[0] == 0:
        raise InputError(f"{m.path}: no image could be read (see the errors)")
    row_index = {id(r): i for i, r in enumerate(m.rows)}
    in_tune = np.array([row_index[id(batch.rows[o])] in tune_rows for o in batch.owner])
    targets = np.asarray(batch.targets)
    fit_idx, tune_idx = np.flatnonzero(~in_tune), np.flatnonzero(in_tune)
    if len(fit_idx) < 2 or len(tune_idx) < 1:
        raise InputError(f"{m.path}: too few readable images to train and tune")
    outputs = 1 if m.spec.task == "binary" else len(m.spec.labels)
    network, history = train_image_classifier(
        batch.images[fit_idx],
        targets[fit_idx],
        cfg,
        task=m.spec.task,
        num_outputs=outputs,
        log=log,
    )
    seconds = time.perf_counter() - t0
    model = ImageModel(network, cfg, task=m.spec.task, labels=m.spec.labels, window=window)
    model.image_field = image_field
    z = model.logits(batch.images[tune_idx])
    y = targets[tune_idx]
    z_fit = z.reshape(-1) if m.spec.task == "binary" else z
    try:
        model.temperature = float(fit_temperature(z_fit, y, m.spec.task))
    except InputError:
        model.temperature = 1.0
    probs = model.proba_from_logits(z)
    thr = choose_thresholds(y, probs, m.spec.task, threshold_rule)
    model.thresholds = None if thr is None else np.asarray(thr)
    try:
        tune_metrics = compute_metrics(
            y, probs, m.spec.task, m.spec.labels, thresholds=thr, n_bootstrap=0
        )
    except InputError as exc:  # e.g. one class only in a tiny tuning split
        tune_metrics = {"note": f"metrics not computed: {exc}"}
    metrics = {
        "split": f"tuning split carved from the training manifest ({len(tune_idx)} images, "
        f"{tune_fraction:.0%} of rows, seed {cfg.seed}"
        + (", grouped by patient)" if m.spec.patient_field else ")")
        + "; the temperature and thresholds were fitted on it, so these figures are optimistic",
        "threshold_rule": threshold_rule,
        "train_images": int(len(fit_idx)),
        "tune_images": int(len(tune_idx)),
        "train_seconds": round(seconds, 1),
        "history": history,
        "summary": tune_metrics,
    }
    if output is not None:
        model.save(output, metrics=metrics, spec=m.spec.to_dict())
    return model
