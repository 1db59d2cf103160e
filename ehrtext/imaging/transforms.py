"""Image transforms: MONAI pipelines for one image at a time, and a batched augmentation.

* :func:`eval_transforms` / :func:`train_transforms` — MONAI ``Compose`` pipelines over a
  channel-first array ``[C, H, W]``: intensity scaling to [0, 1], resizing to a square size,
  and (training only) random flip, rotation and zoom.
* :class:`BatchAugment` — the same random flip / rotation / zoom (plus a small shift) applied to
  a whole batch ``[B, C, H, W]`` at once with one ``affine_grid``; on a CPU this costs a few
  milliseconds a batch where per-image MONAI transforms cost seconds an epoch.

Example:
    >>> import numpy as np
    >>> out = eval_transforms(32)(np.arange(16, dtype=np.float32).reshape(1, 4, 4))
    >>> tuple(out.shape), float(out.min()), float(out.max())
    ((1, 32, 32), 0.0, 1.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["eval_transforms", "train_transforms", "BatchAugment", "to_model_input"]


def eval_transforms(size: int | None, *, scale: bool = True) -> Any:
    """MONAI pipeline for evaluation: scale intensities to [0, 1] (min–max of the image;
    ``scale=False`` when the reader already scaled them over their nominal range), resize to
    ``size``×``size`` (``None`` keeps the size), return a float32 tensor ``[C, size, size]``.

    Example:
        >>> eval_transforms(8)(np.ones((1, 4, 4), dtype=np.float32)).shape
        torch.Size([1, 8, 8])
    """
    from monai.transforms import Compose, EnsureType, Resize, ScaleIntensity

    steps: list[Any] = [ScaleIntensity(minv=0.0, maxv=1.0)] if scale else []
    if size is not None:
        steps.append(Resize((size, size), mode="bilinear", anti_aliasing=True))
    steps.append(EnsureType(data_type="tensor", dtype=np.float32, track_meta=False))
    return Compose(steps)


def train_transforms(
    size: int | None,
    *,
    flip_prob: float = 0.5,
    rotate_degrees: float = 10.0,
    zoom: float = 0.1,
    seed: int = 0,
) -> Any:
    """MONAI pipeline for training: :func:`eval_transforms` plus random horizontal flip
    (``flip_prob``), rotation (±``rotate_degrees``) and zoom (1 ± ``zoom``), seeded.

    Example:
        >>> t = train_transforms(16, seed=1)
        >>> t(np.random.rand(1, 20, 20).astype(np.float32)).shape
        torch.Size([1, 16, 16])
    """
    from monai.transforms import (
        Compose,
        EnsureType,
        RandFlip,
        RandRotate,
        RandZoom,
        Resize,
        ScaleIntensity,
    )

    steps: list[Any] = [ScaleIntensity(minv=0.0, maxv=1.0)]
    if size is not None:
        steps.append(Resize((size, size), mode="bilinear", anti_aliasing=True))
    if flip_prob > 0:
        steps.append(RandFlip(prob=flip_prob, spatial_axis=1))
    if rotate_degrees > 0:
        r = math.radians(rotate_degrees)
        steps.append(RandRotate(range_x=r, prob=1.0, padding_mode="border"))
    if zoom > 0:
        steps.append(RandZoom(prob=1.0, min_zoom=1 - zoom, max_zoom=1 + zoom, padding_mode="edge"))
    steps.append(EnsureType(data_type="tensor", dtype=np.float32, track_meta=False))
    pipeline = Compose(steps)
    pipeline.set_random_state(seed=seed)
    return pipeline


def to_model_input(image: Any, size: int | None, *, scale: bool = True) -> np.ndarray:
    """One image → a float32 ``[1, size, size]`` array in [0, 1] for a one-channel network.

    ``image``: an :class:`~ehrtext.imaging.readers.ImageData` (scaled over its nominal value
    range: 0–255, the DICOM window, …) or an array ``[H, W]`` / ``[C, H, W]`` / ``[H, W, 3]``
    (min–max scaled unless ``scale=False``). Several frames or colour channels are averaged
    into one grey image; then :func:`eval_transforms` resizes.

    Example:
        >>> to_model_input(np.zeros((10, 12)), 8).shape
        (1, 8, 8)
    """
    if hasattr(image, "scaled") and hasattr(image, "value_range"):  # ImageData: [C, H, W]
        arr, scale = image.scaled().mean(axis=0, keepdims=True), False
    else:
        arr = np.asarray(image, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4:
        arr = arr[..., :3].mean(axis=-1)[None]  # channel-last colour ([H, W, 3], H > 4) → grey
    elif arr.ndim == 3:
        arr = arr.mean(axis=0, keepdims=True)  # frames / colour channels → one grey image
    else:
        arr = arr.reshape(-1, *arr.shape[-2:]).mean(axis=0, keepdims=True)
    arr = _box_reduce(arr.astype(np.float32), size)
    out = eval_transforms(size, scale=scale)(arr)
    return np.asarray(out, dtype=np.float32)


def _box_reduce(arr: np.ndarray, size: int | None) -> np.ndarray:
    """Shrink ``[C, H, W]`` by an integer box-filter factor when it is over four times the
    target ``size``, leaving it at least twice the size: the Gaussian anti-aliasing of the
    resize then runs on a small image (on a 3000-px radiograph it costs seconds otherwise),
    and box averaging is itself an anti-aliasing filter.

    Example:
        >>> _box_reduce(np.ones((1, 100, 90), np.float32), 10).shape
        (1, 25, 23)
    """
    if size is None or min(arr.shape[-2:]) <= 4 * size:
        return arr
    import torch
    import torch.nn.functional as F

    factor = min(arr.shape[-2:]) // (2 * size)
    t = torch.from_numpy(np.ascontiguousarray(arr))[None]
    out = F.avg_pool2d(t, factor, ceil_mode=True, count_include_pad=False)
    return out[0].numpy()


@dataclass
class BatchAugment:
    """Random flip, rotation, zoom and shift of a batch ``[B, C, H, W]`` in one affine warp.

    ``flip_prob`` flips left–right; ``rotate_degrees``, ``zoom`` (relative) and ``shift``
    (fraction of the side) are uniform ranges; borders are padded with edge values.

    Example:
        >>> import torch
        >>> aug = BatchAugment(rotate_degrees=10, zoom=0.1, shift=0.05)
        >>> aug(torch.rand(4, 1, 28, 28), torch.Generator().manual_seed(0)).shape
        torch.Size([4, 1, 28, 28])
    """

    flip_prob: float = 0.0
    rotate_degrees: float = 10.0
    zoom: float = 0.1
    shift: float = 0.08

    def __call__(self, images: Any, generator: Any = None) -> Any:
        """A randomly warped copy of ``images`` (a float tensor); ``generator`` seeds it."""
        import torch
        import torch.nn.functional as F

        b = images.shape[0]

        def uniform(low: float, high: float) -> Any:
            return torch.rand(b, generator=generator) * (high - low) + low

        angle = uniform(-self.rotate_degrees, self.rotate_degrees) * (math.pi / 180)
        scale = 1.0 / uniform(1 - self.zoom, 1 + self.zoom)  # grid scale: >1 zooms out
        flip = torch.where(torch.rand(b, generator=generator) < self.flip_prob, -1.0, 1.0)
        tx = uniform(-2 * self.shift, 2 * self.shift)  # grid coordinates span [-1, 1]
        ty = uniform(-2 * self.shift, 2 * self.shift)
        cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
        theta = torch.stack(
            [
                torch.stack([cos * flip, -sin, tx], dim=1),
                torch.stack([sin * flip, cos, ty], dim=1),
            ],
            dim=1,
        ).to(images.dtype)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(
            images, grid, mode="bilinear", padding_mode="border", align_corners=False
        )
