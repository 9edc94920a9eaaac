"""smp's U-Net decoder on a frozen encoder's outputs: the paper's segmentation model (§IV-B, Table V).

The paper, after MGCA, trains ``segmentation_models_pytorch``'s ``Unet`` with the pretrained ResNet as
its frozen encoder, so only the decoder learns. :class:`UNetHead` holds the ``decoder`` and
``segmentation_head`` of an ``smp.Unet`` built for the backbone (smp's modules, initialisation and
state_dict keys) and runs them on the encoder's outputs ``[stem, layer1, …, layer4]``
(:class:`~imitate.models.frozen.FrozenStages`, whose ResNet keys are smp's too), which the dense tasks
compute once and cache. smp's encoder also returns the input itself, first; the decoder reads only that
tensor's size, so a zero-channel placeholder of the input's size stands in for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import segmentation_models_pytorch as smp
from torch import Tensor, nn

from imitate.models.frozen import FrozenStages

DECODER_CHANNELS = (256, 128, 64, 32, 16)  # smp's U-Net default


class UNetHead(nn.Module):
    """smp's U-Net decoder and segmentation head (one logit per pixel) for ``backbone``'s encoder outputs.

    ``encoder_channels`` are the outputs' channels (``FrozenStages.channels``: stem, then the four
    stages); ``decoder_channels`` the widths of the five decoder blocks, deepest first.
    """

    def __init__(
        self, backbone: str, encoder_channels: Sequence[int], decoder_channels: Sequence[int] = DECODER_CHANNELS
    ) -> None:
        super().__init__()
        unet = smp.Unet(backbone, encoder_weights=None, decoder_channels=tuple(decoder_channels), classes=1,
                        activation=None)
        expected = tuple(unet.encoder.out_channels[1:])
        if tuple(encoder_channels) != expected:
            raise ValueError(f"smp's {backbone} encoder gives channels {expected}, not {tuple(encoder_channels)}")
        self.encoder_channels = expected
        self.decoder = unet.decoder
        self.segmentation_head = unet.segmentation_head

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """``[stem, layer1, …, layer4]`` -> logits B x 1 x (2 x the stem's H) x (2 x the stem's W)."""
        if len(features) != len(self.encoder_channels):
            raise ValueError(f"UNetHead takes {len(self.encoder_channels)} encoder outputs, got {len(features)}")
        stem = features[0]
        n, _, height, width = stem.shape
        placeholder = stem.new_empty((n, 0, 2 * height, 2 * width))
        return self.segmentation_head(self.decoder([placeholder, *features]))


class SegmentationModel(nn.Module):
    """A frozen encoder and a trainable :class:`UNetHead`: normalised B x 3 x H x W -> logits B x 1 x H x W."""

    def __init__(self, encoder: FrozenStages, head: UNetHead) -> None:
        super().__init__()
        if tuple(encoder.channels) != head.encoder_channels:
            raise ValueError(f"head built for encoder channels {head.encoder_channels}, "
                             f"encoder gives {tuple(encoder.channels)}")
        self.encoder = encoder
        self.head = head
        self.stride = encoder.reductions[-1]

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        if height % self.stride or width % self.stride:
            raise ValueError(f"segmentation input must be a multiple of {self.stride} pixels on each side, "
                             f"got {height} x {width}")
        return self.head(self.encoder(x))
