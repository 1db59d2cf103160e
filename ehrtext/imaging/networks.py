"""Image networks: MONAI DenseNet121 / ResNet-18 (2D, one channel) and a compact CNN for CPUs.

``build_network(name, num_outputs)`` returns an ``nn.Module`` mapping ``[B, C, H, W]`` float
images to ``[B, num_outputs]`` logits; ``gradcam_layer(name, net)`` names the layer whose
activations Grad-CAM reads. torch (and MONAI, for the two MONAI networks) are imported here,
never by ``import ehrtext``.

Example:
    >>> import torch
    >>> net = build_network("compact", num_outputs=1, widths=(16, 32, 64))
    >>> net(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 1])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ehrtext.errors import InputError

__all__ = ["NETWORKS", "GRADCAM_LAYERS", "CompactCNN", "build_network", "gradcam_layer"]

#: Names accepted by :func:`build_network`.
NETWORKS = ("compact", "densenet121", "resnet18")

#: The layer (a dotted name for ``named_modules``) whose output Grad-CAM weights, per network.
GRADCAM_LAYERS = {
    "compact": "features.block{last}",
    "densenet121": "class_layers.relu",
    "resnet18": "layer4",
}


class ConvBlock(nn.Sequential):
    """Two 3×3 convolutions with BatchNorm and ReLU (the first may widen the channels).

    Example:
        >>> ConvBlock(1, 8)(torch.zeros(1, 1, 8, 8)).shape
        torch.Size([1, 8, 8, 8])
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class CompactCNN(nn.Module):
    """A VGG-style CNN small enough to train on two CPU cores at 28–128 px.

    Blocks of two 3×3 conv + BatchNorm + ReLU, 2×2 max-pooling between blocks (not after the
    last one, so a 28 px input keeps a 7×7 map for Grad-CAM), then global average + max
    pooling, dropout and a linear head. Any input size ≥ ``2 ** (len(widths) - 1)`` works.

    Example:
        >>> net = CompactCNN(num_outputs=2, widths=(8, 16))
        >>> net(torch.zeros(3, 1, 32, 32)).shape
        torch.Size([3, 2])
    """

    def __init__(
        self,
        num_outputs: int = 1,
        in_channels: int = 1,
        widths: Sequence[int] = (32, 64, 128),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        if not widths:
            raise InputError("CompactCNN needs at least one block width")
        self.features = nn.Sequential()
        channels = in_channels
        for i, width in enumerate(widths):
            if i > 0:
                self.features.add_module(f"pool{i - 1}", nn.MaxPool2d(2))
            self.features.add_module(f"block{i}", ConvBlock(channels, int(width)))
            channels = int(width)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * channels, num_outputs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` images → ``[B, num_outputs]`` logits."""
        maps = self.features(images)
        pooled = torch.cat([maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))], dim=1)
        return self.head(self.dropout(pooled))


def build_network(name: str, num_outputs: int, in_channels: int = 1, **options: Any) -> nn.Module:
    """A network by name: ``compact`` (:class:`CompactCNN`), ``densenet121`` or ``resnet18``
    (MONAI, 2D). ``options`` go to the constructor (``widths``/``dropout`` for ``compact``,
    ``dropout_prob`` for DenseNet121, ``pretrained`` is not offered: no downloads).

    Example:
        >>> build_network("resnet18", num_outputs=2)(torch.zeros(1, 1, 32, 32)).shape
        torch.Size([1, 2])
    """
    if name == "compact":
        return CompactCNN(num_outputs=num_outputs, in_channels=in_channels, **options)
    if name == "densenet121":
        from monai.networks.nets import DenseNet121

        return DenseNet121(
            spatial_dims=2, in_channels=in_channels, out_channels=num_outputs, **options
        )
    if name == "resnet18":
        from monai.networks.nets import resnet18

        return resnet18(
            spatial_dims=2, n_input_channels=in_channels, num_classes=num_outputs, **options
        )
    raise InputError(f"unknown image network {name!r}; choose one of {', '.join(NETWORKS)}")


def gradcam_layer(name: str, network: nn.Module) -> str:
    """The Grad-CAM layer of ``network`` (built as ``name``): the last convolutional block.

    Example:
        >>> gradcam_layer("compact", build_network("compact", 1, widths=(4, 8)))
        'features.block1'
    """
    if name == "compact":
        blocks = [n for n, _ in network.named_modules() if n.startswith("features.block")]
        blocks = [n for n in blocks if n.count(".") == 1]
        if not blocks:
            raise InputError("the compact network has no convolutional block")
        return blocks[-1]
    if name not in GRADCAM_LAYERS:
        raise InputError(f"no Grad-CAM layer known for network {name!r}")
    return GRADCAM_LAYERS[name]
