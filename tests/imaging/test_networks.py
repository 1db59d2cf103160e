"""Networks: output shapes at 28–128 px for the compact CNN and the MONAI networks."""

from __future__ import annotations

import pytest
import torch

from ehrtext.errors import InputError
from ehrtext.imaging.networks import CompactCNN, build_network, gradcam_layer


@pytest.mark.parametrize("size", [28, 64, 128])
def test_compact_cnn_sizes(size: int) -> None:
    net = build_network("compact", 3, widths=(8, 16, 32))
    assert net(torch.rand(2, 1, size, size)).shape == (2, 3)


@pytest.mark.parametrize("name", ["resnet18", "densenet121"])
def test_monai_networks_one_channel_2d(name: str) -> None:
    net = build_network(name, 2).eval()
    with torch.no_grad():
        assert net(torch.rand(2, 1, 64, 64)).shape == (2, 2)
    assert gradcam_layer(name, net) in dict(net.named_modules())


def test_compact_layer_names_and_errors() -> None:
    net = CompactCNN(1, widths=(4, 8, 16, 32))
    assert gradcam_layer("compact", net) == "features.block3"
    with pytest.raises(InputError, match="unknown image network"):
        build_network("vgg", 1)
    with pytest.raises(InputError, match="at least one"):
        CompactCNN(1, widths=())
