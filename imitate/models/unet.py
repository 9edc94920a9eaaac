"""A U-Net decoder on a frozen encoder's four stages: the paper's segmentation model (§IV-B, Table V).

The paper, after MGCA, fine-tunes ``segmentation_models_pytorch``'s ``Unet`` with the pretrained ResNet
as its frozen encoder, so only the decoder learns. This decoder follows smp's layout: from ``layer4``
(stride 32) each block doubles the resolution (nearest), concatenates the next shallower stage when
there is one, and applies two 3 x 3 conv + BatchNorm + ReLU; after the ``layer1`` block (stride 4) two
more blocks bring it to the input resolution, and a 3 x 3 conv gives one logit per pixel.

One difference: smp's fourth block also takes the stem's stride-2 output as a skip. :class:`FrozenStages`
exposes the four stages only, so that block has no skip here (it sees stride-4 features, upsampled).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imitate.models.frozen import FrozenStages

STAGES = 4  # layer1 .. layer4
BLOCKS = 5  # stride 32 -> 1, one doubling per block
DECODER_CHANNELS = (256, 128, 64, 32, 16)  # smp's U-Net default


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DecoderBlock(nn.Module):
    """Upsample x2 (nearest), concatenate the skip (if any), two 3 x 3 conv + BatchNorm + ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            _conv_bn_relu(in_channels + skip_channels, out_channels), _conv_bn_relu(out_channels, out_channels)
        )

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.convs(x)


class UNetDecoder(nn.Module):
    """U-Net decoder from the four stage outputs (strides 4, 8, 16, 32) to one logit map at stride 1.

    ``encoder_channels`` are the stages' channels (``FrozenStages.channels``); ``decoder_channels`` the
    output channels of the five blocks, deepest first (smp's defaults).
    """

    def __init__(
        self, encoder_channels: Sequence[int], decoder_channels: Sequence[int] = DECODER_CHANNELS
    ) -> None:
        super().__init__()
        if len(encoder_channels) != STAGES:
            raise ValueError(f"UNetDecoder needs the channels of {STAGES} stages, got {list(encoder_channels)}")
        if len(decoder_channels) != BLOCKS:
            raise ValueError(f"UNetDecoder needs {BLOCKS} decoder channel counts, got {list(decoder_channels)}")
        self.encoder_channels = tuple(encoder_channels)
        # skips, deepest block first: layer3, layer2, layer1, then none for the last two blocks
        skips = (*reversed(self.encoder_channels[:-1]), 0, 0)
        inputs = (self.encoder_channels[-1], *decoder_channels[:-1])
        self.blocks = nn.ModuleList(
            DecoderBlock(i, s, o) for i, s, o in zip(inputs, skips, decoder_channels, strict=True)
        )
        self.head = nn.Conv2d(decoder_channels[-1], 1, kernel_size=3, padding=1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        """``[layer1, layer2, layer3, layer4]`` -> logits B x 1 x (32 x layer4's H) x (32 x layer4's W)."""
        if len(features) != STAGES:
            raise ValueError(f"UNetDecoder takes {STAGES} stage outputs, got {len(features)}")
        skips = [*reversed(features[:-1]), None, None]
        x = features[-1]
        for block, skip in zip(self.blocks, skips, strict=True):
            x = block(x, skip)
        return self.head(x)


class SegmentationModel(nn.Module):
    """A frozen encoder and a trainable :class:`UNetDecoder`: normalised B x 3 x H x W -> logits B x 1 x H x W."""

    def __init__(self, encoder: FrozenStages, decoder: UNetDecoder) -> None:
        super().__init__()
        if tuple(encoder.channels) != decoder.encoder_channels:
            raise ValueError(f"decoder built for stage channels {decoder.encoder_channels}, "
                             f"encoder gives {tuple(encoder.channels)}")
        self.encoder = encoder
        self.decoder = decoder
        self.stride = encoder.reductions[-1]

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        if height % self.stride or width % self.stride:
            raise ValueError(f"segmentation input must be a multiple of {self.stride} pixels on each side, "
                             f"got {height} x {width}")
        return self.decoder(self.encoder(x))
