"""Transforms: MONAI pipelines (shapes, ranges, seeded randomness) and the batched augmentation
(identity when every range is zero, an exact mirror when flipping)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ehrtext.imaging.readers import ImageData
from ehrtext.imaging.transforms import (
    BatchAugment,
    eval_transforms,
    to_model_input,
    train_transforms,
)


def test_eval_transforms_scale_and_resize() -> None:
    arr = np.arange(16, dtype=np.float32).reshape(1, 4, 4) * 10 + 5
    out = eval_transforms(None)(arr)
    np.testing.assert_allclose(out.numpy(), (arr - 5) / 150, atol=1e-6)  # min-max to [0, 1]
    big = eval_transforms(32)(arr)
    assert tuple(big.shape) == (1, 32, 32) and big.dtype == torch.float32
    assert float(big.min()) >= 0 and float(big.max()) <= 1


def test_train_transforms_seeded_and_random() -> None:
    img = np.random.default_rng(0).random((1, 24, 24)).astype(np.float32)
    a = train_transforms(16, seed=3)
    b = train_transforms(16, seed=3)
    first, second = a(img), a(img)
    np.testing.assert_array_equal(first.numpy(), b(img).numpy())  # same seed, same draw
    assert not np.array_equal(first.numpy(), second.numpy())  # a new draw each call
    assert tuple(first.shape) == (1, 16, 16)


def test_to_model_input_uses_the_nominal_range() -> None:
    dark = ImageData(np.full((1, 4, 4), 51, np.float32), (0.0, 255.0))
    out = to_model_input(dark, 8)
    assert out.shape == (1, 8, 8)
    np.testing.assert_allclose(out, 0.2, atol=1e-6)  # /255, not min-max stretched
    frames = ImageData(np.stack([np.zeros((4, 4)), np.ones((4, 4))]).astype(np.float32), (0, 1))
    np.testing.assert_allclose(to_model_input(frames, None), 0.5)  # frames are averaged


def test_batch_augment_identity_and_exact_flip() -> None:
    x = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    ident = BatchAugment(flip_prob=0, rotate_degrees=0, zoom=0, shift=0)
    torch.testing.assert_close(ident(x), x, atol=1e-5, rtol=0)
    flip = BatchAugment(flip_prob=1.0, rotate_degrees=0, zoom=0, shift=0)
    torch.testing.assert_close(flip(x), x.flip(-1), atol=1e-5, rtol=0)


def test_batch_augment_is_seeded_and_changes_images() -> None:
    x = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    aug = BatchAugment(rotate_degrees=15, zoom=0.1, shift=0.1)
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    assert (a - x).abs().mean() > 0.01
    assert a.shape == x.shape
    assert float(a.min()) >= 0 and float(a.max()) <= 1  # border padding: no new values


@pytest.mark.parametrize("size", [28, 64])
def test_eval_pipeline_on_real_dicom(size: int, data_dir) -> None:
    from ehrtext.imaging.readers import read_image

    out = to_model_input(read_image(data_dir / "CT_small.dcm", window="mediastinum"), size)
    assert out.shape == (1, size, size) and 0 <= out.min() < out.max() <= 1
