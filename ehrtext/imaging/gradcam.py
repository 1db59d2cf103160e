"""Grad-CAM heatmaps of an image model, saved as PNG overlays (``ehrtext explain-image``).

Grad-CAM (Selvaraju et al. 2017) through MONAI's ``monai.visualize.GradCAM`` on the layer
chosen by :func:`~ehrtext.imaging.networks.gradcam_layer`: the class score's gradient,
averaged over each feature map, weights those maps; the ReLU of the sum, upsampled and scaled
to [0, 1], is the heatmap. It is computed at the model's input size and resized to the
image's own size, so it lies over the picture the user gave.

Example:
    >>> model = ImageModel.load("model/")                                # doctest: +SKIP
    >>> result = explain_image(model, "xray.dcm")                        # doctest: +SKIP
    >>> result.heatmap.shape == result.image.shape                       # doctest: +SKIP
    True
    >>> save_overlay(result, "xray_cam.png")                             # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ehrtext.errors import InputError

__all__ = ["Explanation", "gradcam", "explain_image", "overlay", "save_overlay"]


@dataclass
class Explanation:
    """Grad-CAM of one image: ``image`` (grey, [0, 1], the image's own size), ``heatmap``
    (same shape, [0, 1]), ``probabilities`` per label and the explained ``label``.

    Example:
        >>> e = Explanation(np.zeros((4, 4)), np.ones((4, 4)), {"1": 0.9}, "1")
        >>> e.heatmap.shape
        (4, 4)
    """

    image: np.ndarray
    heatmap: np.ndarray
    probabilities: dict[str, float]
    label: str


def gradcam(network: Any, images: Any, layer: str, class_index: int | None = None) -> np.ndarray:
    """Grad-CAM maps ``[B, H, W]`` in [0, 1] of ``images`` ``[B, C, H, W]`` at ``layer``
    (a name from ``network.named_modules()``, see
    :func:`~ehrtext.imaging.networks.gradcam_layer`); ``class_index`` None explains the top logit
    (for a one-logit binary network: the positive class).

    Example:
        >>> import torch
        >>> from ehrtext.imaging.networks import build_network
        >>> net = build_network("compact", 2, widths=(4, 8))
        >>> gradcam(net, torch.rand(1, 1, 16, 16), "features.block1").shape
        (1, 16, 16)
    """
    import torch
    from monai.visualize import GradCAM

    names = {name for name, _ in network.named_modules()}
    if layer not in names:
        raise InputError(f"no layer {layer!r} in the network for Grad-CAM")
    was_training = network.training
    network.eval()
    try:
        # MONAI's default post-processing maps (min, max) to (1, 0), i.e. it flips the map
        # (made for OpenCV colour maps); ours maps the strongest evidence to 1.
        cam = GradCAM(nn_module=network, target_layers=layer, postprocessing=_unit_scale)
        x = images.float().contiguous().clone().requires_grad_(True)
        with torch.enable_grad():
            maps = cam(x, class_idx=class_index)
    finally:
        network.train(was_training)
    out = maps.detach().float().numpy()[:, 0]
    return np.nan_to_num(out, nan=0.0).clip(0.0, 1.0)


def _unit_scale(maps: Any) -> Any:
    """Scale each map of ``[B, 1, H, W]`` to [0, 1] (min → 0, max → 1; a constant map → 0)."""
    lo = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - lo
    return (maps - lo) / span.clamp_min(1e-12)


def explain_image(
    model: Any,
    path: str | os.PathLike[str],
    *,
    label: str | None = None,
) -> Explanation:
    """Grad-CAM of an :class:`~ehrtext.imaging.model.ImageModel` on one image file.

    ``label`` chooses the class explained (default: the predicted one; binary models explain
    the positive class's logit, whose gradient sign is reversed for the negative one).

    Example:
        >>> explain_image(ImageModel.load("model/"), "xray.png").label      # doctest: +SKIP
        'pneumonia'
    """
    import torch

    from ehrtext.imaging.networks import gradcam_layer
    from ehrtext.imaging.readers import read_image
    from ehrtext.imaging.transforms import to_model_input

    data = read_image(path, window=model.window)
    grey = data.scaled()
    grey = grey.mean(axis=0) if grey.ndim == 3 else grey  # frames → one picture
    x = torch.from_numpy(to_model_input(data, model.config.image_size))[None]
    probs = model.proba_from_logits(model.logits(x, tta=False))
    if model.task == "binary":
        p = float(np.ravel(probs)[0])
        prob_map = {model.labels[0]: 1 - p, model.labels[1]: p}
    else:
        prob_map = {lab: float(v) for lab, v in zip(model.labels, np.ravel(probs))}
    if label is None:
        label = max(prob_map, key=prob_map.get)  # type: ignore[arg-type]
    if label not in prob_map:
        raise InputError(f"label {label!r} is not one of the model's labels {model.labels}")
    layer = gradcam_layer(model.config.network, model.network)
    if model.task == "binary":
        network = model.network
        if label == model.labels[0]:
            network = _Negated(model.network)
            layer = "inner." + layer
        cam = gradcam(network, x, layer, class_index=0)[0]
    else:
        cam = gradcam(model.network, x, layer, class_index=model.labels.index(label))[0]
    heatmap = _resize(cam, grey.shape)
    return Explanation(grey.astype(np.float32), heatmap, prob_map, label)


class _Negated:
    """Wraps a one-logit network so that Grad-CAM explains the negative class."""

    def __new__(cls, inner: Any) -> Any:
        from torch import nn

        class Negated(nn.Module):
            def __init__(self, net: Any) -> None:
                super().__init__()
                self.inner = net

            def forward(self, x: Any) -> Any:
                return -self.inner(x)

        return Negated(inner)


def _resize(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    out = F.interpolate(t, size=tuple(shape[-2:]), mode="bilinear", align_corners=False)
    return out[0, 0].numpy().clip(0.0, 1.0)


def _jet(values: np.ndarray) -> np.ndarray:
    """A blue→cyan→yellow→red colour map of values in [0, 1] → uint8 RGB."""
    v = np.clip(values, 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).round().astype(np.uint8)


def overlay(explanation: Explanation, alpha: float = 0.45) -> np.ndarray:
    """The image in grey with the heatmap in colour on top: uint8 RGB ``[H, W, 3]``, where
    the heatmap's weight grows with its value (cold regions show the image).

    Example:
        >>> e = Explanation(np.zeros((2, 2)), np.array([[0, 1], [0, 0]], float), {}, "x")
        >>> overlay(e).shape
        (2, 2, 3)
    """
    grey = np.repeat((explanation.image[..., None] * 255.0), 3, axis=-1)
    heat = _jet(explanation.heatmap).astype(np.float64)
    weight = alpha * explanation.heatmap[..., None]
    return np.clip(grey * (1 - weight) + heat * weight, 0, 255).round().astype(np.uint8)


def save_overlay(
    explanation: Explanation, output: str | os.PathLike[str], alpha: float = 0.45
) -> Path:
    """Write :func:`overlay` as a PNG (atomically: a temporary file renamed into place).

    Example:
        >>> save_overlay(explain_image(model, "x.png"), "x_cam.png")        # doctest: +SKIP
    """
    from PIL import Image

    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    Image.fromarray(overlay(explanation, alpha), mode="RGB").save(tmp, format="PNG")
    tmp.replace(out)
    return out
