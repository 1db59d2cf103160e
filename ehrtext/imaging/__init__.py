"""ehrtext's image module (the ``image`` extra: MONAI, pydicom, Pillow, torch).

* :mod:`~ehrtext.imaging.readers` — DICOM (rescale, windowing presets, MONOCHROME1,
  multi-frame), PNG/JPEG, NumPy; errors name the file.
* :mod:`~ehrtext.imaging.transforms` — MONAI training / evaluation pipelines and a batched
  augmentation.
* :mod:`~ehrtext.imaging.manifest` — CSV / JSONL manifests of image paths, labels, patients.
* :mod:`~ehrtext.imaging.networks` — MONAI DenseNet121 / ResNet-18 and a compact CNN.
* :mod:`~ehrtext.imaging.train`, :mod:`~ehrtext.imaging.model` — training on CPU, the
  ``image`` model directory, scoring files.
* :mod:`~ehrtext.imaging.gradcam` — Grad-CAM overlays (``ehrtext explain-image``).
* :mod:`ehrtext.multimodal` — notes + image + tabular fusion (``MultimodalModel``), re-exported
  here.

Importing this package costs nothing heavy: names are loaded on first use.

Example:
    >>> from ehrtext.imaging import read_image                          # doctest: +SKIP
    >>> read_image("ct.dcm", window="lung").array.shape                 # doctest: +SKIP
    (1, 128, 128)
"""

from __future__ import annotations

import importlib
from typing import Any

from ehrtext.bundle import register_kind

__all__ = [
    "ImageData",
    "ImageModel",
    "ImageTrainConfig",
    "MultimodalConfig",
    "MultimodalModel",
    "WINDOW_PRESETS",
    "build_network",
    "explain_image",
    "read_image",
    "read_manifest",
    "save_overlay",
    "train_image_model",
    "train_multimodal",
]

_LAZY = {
    "ImageData": "ehrtext.imaging.readers",
    "WINDOW_PRESETS": "ehrtext.imaging.readers",
    "read_image": "ehrtext.imaging.readers",
    "read_manifest": "ehrtext.imaging.manifest",
    "build_network": "ehrtext.imaging.networks",
    "ImageTrainConfig": "ehrtext.imaging.train",
    "ImageModel": "ehrtext.imaging.model",
    "train_image_model": "ehrtext.imaging.model",
    "explain_image": "ehrtext.imaging.gradcam",
    "save_overlay": "ehrtext.imaging.gradcam",
    "MultimodalConfig": "ehrtext.multimodal",
    "MultimodalModel": "ehrtext.multimodal",
    "train_multimodal": "ehrtext.multimodal",
}

# RiskModel.load builds "image" directories through this (imported on first use only).
register_kind("image", "ehrtext.imaging.model:build_from_bundle")


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ehrtext.imaging' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
