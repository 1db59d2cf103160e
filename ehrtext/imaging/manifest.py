"""Image manifests: a CSV / TSV / JSONL / Parquet table of image path(s), labels, patient id.

One row per study (or patient): the image field holds one path, several joined with ``;``
(or a JSON list in JSONL), relative to the manifest's folder unless absolute. Other columns
(labels, patient id, text fields and tabular values of multimodal manifests) are kept as is.
The labels are read with a :class:`~ehrtext.data.TaskSpec` whose single "text" field is the
image field, so binary / multiclass / multilabel labels work as for notes.

:func:`load_manifest_images` decodes every image (DICOM, PNG/JPEG, NumPy) into one float
tensor ``[N, 1, S, S]`` in [0, 1]; an unreadable image (missing, truncated, not an image) or a
row without a usable label becomes an entry of the :class:`~ehrtext.textio.ErrorSink` naming
the row, id and file, and the run goes on.

Example:
    >>> m = read_manifest("xrays.csv", image_field="path", label_field="finding",
    ...                   patient_field="patient_id")                    # doctest: +SKIP
    >>> batch = load_manifest_images(m, size=64)                          # doctest: +SKIP
    >>> batch.images.shape, batch.targets[:3]                             # doctest: +SKIP
    (torch.Size([152, 1, 64, 64]), [1, 0, 1])
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ehrtext.errors import InputError
from ehrtext.imaging.readers import Window, read_image
from ehrtext.textio import ErrorSink

__all__ = [
    "ManifestRow",
    "ImageManifest",
    "ImageBatch",
    "read_manifest",
    "read_table",
    "load_manifest_images",
    "load_image_tensor",
]


@dataclass
class ManifestRow:
    """One manifest row: 1-based ``row`` (data rows, header excluded), ``id``, ``patient``,
    resolved ``images`` paths and every column in ``fields``.

    Example:
        >>> ManifestRow(1, "a", None, [Path("x.png")], {"label": "1"}).id
        'a'
    """

    row: int
    id: str
    patient: str | None
    images: list[Path]
    fields: dict[str, Any]


@dataclass
class ImageManifest:
    """The usable rows of a manifest, its :class:`~ehrtext.data.TaskSpec` (labels resolved
    when a label field was given) and the rows that could not be used (``errors``).

    Example:
        >>> m = read_manifest("xrays.jsonl", label_field="label")          # doctest: +SKIP
        >>> len(m.rows), m.spec.labels, m.errors.count                     # doctest: +SKIP
        (120, ['normal', 'pneumonia'], 2)
    """

    path: Path
    image_field: str
    rows: list[ManifestRow]
    spec: Any  # ehrtext.data.TaskSpec | None
    errors: ErrorSink = field(default_factory=ErrorSink)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def read_table(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a CSV / TSV / JSONL / Parquet file as dicts (CSV cells stay strings).

    A JSONL line that is not a JSON object raises :class:`InputError` naming the line.

    Example:
        >>> read_table("manifest.csv")[0]                                  # doctest: +SKIP
        {'image': 'a.png', 'label': '1'}
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such manifest file")
    name = p.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".json", ".ndjson")):
        import gzip

        opener = gzip.open if p.name.lower().endswith(".gz") else open
        rows = []
        with opener(p, "rt", encoding="utf-8") as fh:
            for i, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    raise InputError(f"{p} line {i}: invalid JSON") from None
                if not isinstance(obj, dict):
                    raise InputError(f"{p} line {i}: not a JSON object")
                rows.append(obj)
        return rows
    import pandas as pd

    try:
        if name.endswith(".parquet"):
            df = pd.read_parquet(p)
        elif name.endswith((".csv", ".tsv", ".txt")):
            sep = "\t" if name.endswith(".tsv") else ","
            df = pd.read_csv(p, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
        else:
            raise InputError(f"{p}: manifest must be .csv, .tsv, .jsonl or .parquet")
    except InputError:
        raise
    except Exception as exc:  # pandas parser errors, unreadable parquet
        raise InputError(f"{p}: cannot read the manifest ({type(exc).__name__})") from None
    return [
        {k: (None if _missing(v) else v) for k, v in rec.items()} for rec in df.to_dict("records")
    ]


def image_paths(value: Any, base: Path | None, sep: str = ";") -> list[Path]:
    """The image paths of a manifest cell: a list, or a string of paths joined by ``sep``;
    blanks and missing values dropped, relative paths joined to ``base`` (when given).

    Example:
        >>> [p.as_posix() for p in image_paths("a.png; /x/b.dcm", Path("data"))]
        ['data/a.png', '/x/b.dcm']
    """
    if isinstance(value, (list, tuple)):
        items = [str(v).strip() for v in value if not _missing(v) and str(v).strip()]
    elif isinstance(value, str):
        items = [s.strip() for s in value.split(sep) if s.strip()]
    else:
        items = []
    return [Path(s) if os.path.isabs(s) or base is None else base / s for s in items]


def read_manifest(
    path: str | os.PathLike[str],
    *,
    image_field: str = "image",
    label_field: str | None = None,
    label_fields: Sequence[str] | None = None,
    task: str | None = None,
    labels: Sequence[str] | None = None,
    id_field: str | None = None,
    patient_field: str | None = None,
    label_sep: str | None = None,
    image_sep: str = ";",
    errors: ErrorSink | None = None,
) -> ImageManifest:
    """Read a manifest; rows without an image, or with an unusable label, go to ``errors``.

    ``task`` defaults to ``binary`` for two labels, else ``multiclass`` (``multilabel`` when
    ``label_sep`` or ``label_fields`` with several columns are given). Without a label field
    the manifest is for scoring: ``spec`` is None.

    Example:
        >>> m = read_manifest("m.csv", label_field="label", patient_field="pid")  # doctest: +SKIP
    """
    from ehrtext.data import TaskSpec

    p = Path(path)
    sink = errors if errors is not None else ErrorSink()
    table = read_table(p)
    if table and image_field not in set().union(*(r.keys() for r in table)):
        raise InputError(f"{p}: no column {image_field!r} (set image_field)")
    rows: list[ManifestRow] = []
    for i, rec in enumerate(table, 1):
        rid = rec.get(id_field) if id_field else None
        rid = str(i) if _missing(rid) else str(rid)
        images = image_paths(rec.get(image_field), p.parent, image_sep)
        if not images:
            sink.add(i, rid, "missing_field", f"{p} row {i}: no image path in {image_field!r}")
            continue
        patient = rec.get(patient_field) if patient_field else None
        rows.append(
            ManifestRow(i, rid, None if _missing(patient) else str(patient), images, dict(rec))
        )
    spec = None
    if label_field is not None or label_fields:
        if task is None:
            if label_sep is not None or (label_fields and len(label_fields) > 1):
                task = "multilabel"
            elif label_fields:
                task = "binary"
            else:
                values = {str(r.fields.get(label_field)) for r in rows}
                values.discard("None")
                task = "binary" if len(values) <= 2 else "multiclass"
        label_names = list(labels) if labels is not None else None
        if label_names is None and label_field is not None and task != "multilabel":
            probe = TaskSpec([image_field], "multiclass", label_field=label_field)
            usable = [r.fields for r in rows if not _missing(r.fields.get(label_field))]
            label_names = probe.resolve(usable).labels if usable else None
            if task == "binary" and label_names is not None:
                if set(label_names) <= {"0", "1", "0.0", "1.0", "true", "false", "True", "False"}:
                    label_names = None  # 0/1 flags: TaskSpec's default ["0", "1"]
                elif len(label_names) != 2:
                    raise InputError(
                        f"{p}: a binary task needs two label values, found {len(label_names)}"
                    )
        spec = TaskSpec(
            [image_field],
            task,
            label_field=label_field,
            label_fields=list(label_fields) if label_fields else None,
            labels=label_names,
            id_field=id_field,
            patient_field=patient_field,
            label_sep=label_sep,
        )
        if spec.labels is None:
            usable = [r.fields for r in rows if not _missing(r.fields.get(label_field))]
            spec = spec.resolve(usable)
        kept = []
        for r in rows:
            try:
                r.fields["__target__"] = spec.target(r.fields, row=r.row)
            except InputError as exc:
                reason = str(exc).split(": ", 1)[-1]
                sink.add(r.row, r.id, "bad_label", f"{p} row {r.row}: {reason}")
                continue
            kept.append(r)
        rows = kept
    return ImageManifest(p, image_field, rows, spec, sink)


@dataclass
class ImageBatch:
    """Decoded images of a manifest: ``images`` ``[N, 1, S, S]``, the manifest row index of
    each image (``owner``: several images may share a row), ``targets`` per image (None when
    unlabelled), and the ids of the rows with at least one image (``row_ids``).

    Example:
        >>> batch = load_manifest_images(manifest, size=28)                # doctest: +SKIP
        >>> batch.images.shape[0] == len(batch.owner)                       # doctest: +SKIP
        True
    """

    images: Any
    owner: list[int]
    targets: list[Any] | None
    rows: list[ManifestRow]


def load_image_tensor(
    paths: Sequence[str | os.PathLike[str]],
    size: int,
    *,
    window: Window = None,
    errors: ErrorSink | None = None,
    rows: Sequence[int] | None = None,
    ids: Sequence[str | None] | None = None,
) -> tuple[Any, list[int]]:
    """Decode images into a float tensor ``[N, 1, size, size]`` in [0, 1] and the indices of
    the paths that were read; an unreadable one is added to ``errors`` (or raised when
    ``errors`` is None) with ``code="bad_image"`` and a reason naming the file.

    Example:
        >>> sink = ErrorSink()
        >>> x, ok = load_image_tensor(["a.png", "bad.png"], 28, errors=sink)  # doctest: +SKIP
        >>> x.shape, ok                                                       # doctest: +SKIP
        (torch.Size([1, 1, 28, 28]), [0])
    """
    import torch

    from ehrtext.imaging.transforms import to_model_input

    arrays, ok = [], []
    for i, path in enumerate(paths):
        try:
            data = read_image(path, window=window)
            arrays.append(to_model_input(data, size))
            ok.append(i)
        except InputError as exc:
            if errors is None:
                raise
            row = rows[i] if rows is not None else i + 1
            rid = ids[i] if ids is not None else None
            errors.add(row, rid, "bad_image", str(exc))
    if not arrays:
        return torch.zeros((0, 1, size, size)), ok
    return torch.from_numpy(np.stack(arrays)), ok


def load_manifest_images(
    manifest: ImageManifest, size: int, *, window: Window = None
) -> ImageBatch:
    """Every image of ``manifest`` as one tensor (see :func:`load_image_tensor`); bad images
    go to ``manifest.errors``, and a row whose images all failed is dropped.

    Example:
        >>> load_manifest_images(read_manifest("m.csv"), size=28).images.dtype  # doctest: +SKIP
        torch.float32
    """
    paths, owner, rows_no, ids = [], [], [], []
    for k, r in enumerate(manifest.rows):
        for img in r.images:
            paths.append(img)
            owner.append(k)
            rows_no.append(r.row)
            ids.append(r.id)
    images, ok = load_image_tensor(
        paths, size, window=window, errors=manifest.errors, rows=rows_no, ids=ids
    )
    owner = [owner[i] for i in ok]
    kept_rows = sorted(set(owner))
    remap = {old: new for new, old in enumerate(kept_rows)}
    rows = [manifest.rows[k] for k in kept_rows]
    owner = [remap[k] for k in owner]
    targets = None
    if manifest.spec is not None:
        targets = [rows[k].fields["__target__"] for k in owner]
    return ImageBatch(images, owner, targets, rows)
