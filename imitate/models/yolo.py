"""YOLOv3's neck and head on a frozen ResNet's last three stages: the detector of the paper's Table V.

The paper follows MGCA (§IV-B): YOLOv3 with the pretrained encoder as its backbone, only the head trained.
YOLOv3's head takes Darknet-53's outputs at strides 8, 16 and 32; here they are ResNet's ``layer2``,
``layer3`` and ``layer4``. From the coarsest level down, each level runs a detection block (five
alternating 1x1 / 3x3 conv + BN + LeakyReLU(0.1) layers), then a 3x3 conv and a 1x1 output conv; the
block's features also go through a 1x1 conv, a nearest x2 upsampling and a concatenation with the next
finer stage, which feeds that level's block.

Widths: YOLOv3's blocks are 512, 256 and 128 wide at strides 32, 16 and 8 (half of Darknet's 1024, 512
and 256 channels there). Here a block is half as wide as its stage's channels, capped at YOLOv3's width:
resnet50 (2048, 1024, 512 channels) gets YOLOv3's head exactly, resnet18 (512, 256, 128) a half-width one.
``widths`` sets them explicitly (finest first), e.g. a narrower head that a CPU can train in minutes.

Outputs: one class, so each anchor predicts ``(tx, ty, tw, th, objectness)``; YOLOv3's class scores are
dropped, since a single class's score would only repeat the objectness. The objectness bias starts at
the logit of :data:`OBJECTNESS_PRIOR` (not in YOLOv3; as RetinaNet and later YOLOs do): nearly every anchor
is background, and starting near 0.5 would spend the first epochs learning that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from imitate.models.frozen import FrozenStages

YOLOV3_WIDTHS = (128, 256, 512)  # detection block widths at strides 8, 16, 32
BOX_OUTPUTS = 5  # tx, ty, tw, th, objectness
OBJECTNESS_PRIOR = 0.01
HEAD_STAGES = (2, 3, 4)  # the encoder outputs the head takes: layer2, layer3, layer4 (0 is the stem)


def _conv(in_channels: int, out_channels: int, kernel: int) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + LeakyReLU(0.1), size-preserving."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(0.1),
    )


class _Level(nn.Module):
    """One YOLOv3 level: the detection block, then its 3x3 conv and 1x1 output conv."""

    def __init__(self, in_channels: int, width: int, outputs: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            _conv(in_channels, width, 1), _conv(width, 2 * width, 3),
            _conv(2 * width, width, 1), _conv(width, 2 * width, 3),
            _conv(2 * width, width, 1),
        )
        self.output = nn.Sequential(_conv(width, 2 * width, 3), nn.Conv2d(2 * width, outputs, 1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The block's features (for the finer level) and the raw output map."""
        features = self.block(x)
        return features, self.output(features)


class YoloHead(nn.Module):
    """YOLOv3's single-class head on three stages (strides 8, 16, 32; ``in_channels`` in that order).

    ``forward`` takes the three stage outputs and returns one raw map per level, finest first, each
    ``B x anchors_per_level x 5 x H x W`` with ``(tx, ty, tw, th, objectness)`` on the third axis.
    """

    def __init__(
        self, in_channels: Sequence[int], anchors_per_level: int = 3, widths: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        if len(in_channels) != 3 or min(in_channels) < 2 or anchors_per_level < 1:
            raise ValueError(f"YoloHead needs three stages' channels (>= 2 each) and >= 1 anchor per level, "
                             f"got {list(in_channels)} and {anchors_per_level}")
        if widths is not None and (len(widths) != 3 or min(widths) < 1):
            raise ValueError(f"YoloHead widths must be three positive block widths, got {list(widths)}")
        self.anchors_per_level = anchors_per_level
        if widths is None:
            widths = [min(c // 2, cap) for c, cap in zip(in_channels, YOLOV3_WIDTHS, strict=True)]
        outputs = anchors_per_level * BOX_OUTPUTS
        # built coarsest first, as they run: level i > 0 also takes the upsampled features of level i - 1
        self.levels = nn.ModuleList([_Level(in_channels[2], widths[2], outputs)])
        self.laterals = nn.ModuleList()
        for coarse, fine in ((2, 1), (1, 0)):
            self.laterals.append(_conv(widths[coarse], widths[fine], 1))
            self.levels.append(_Level(in_channels[fine] + widths[fine], widths[fine], outputs))
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        for level in self.levels:
            bias = level.output[-1].bias.detach().view(anchors_per_level, BOX_OUTPUTS)
            bias[:, 4] = math.log(OBJECTNESS_PRIOR / (1 - OBJECTNESS_PRIOR))

    def forward(self, stages: Sequence[Tensor]) -> list[Tensor]:
        """Raw maps (B x A x 5 x H x W) at strides 8, 16, 32 from ``layer2``, ``layer3``, ``layer4``."""
        features, output = self.levels[0](stages[2])
        maps = [output]
        for lateral, level, stage in zip(self.laterals, self.levels[1:], (stages[1], stages[0]), strict=True):
            features, output = level(_concat(self.upsample(lateral(features)), stage))
            maps.append(output)
        return [m.unflatten(1, (self.anchors_per_level, BOX_OUTPUTS)) for m in reversed(maps)]


def _concat(upsampled: Tensor, stage: Tensor) -> Tensor:
    """The upsampled coarse features beside the finer stage (channels), or a clear error on a size mismatch."""
    if upsampled.shape[-2:] != stage.shape[-2:]:
        raise ValueError(f"YoloHead: stage maps of {tuple(stage.shape[-2:])} and {tuple(upsampled.shape[-2:])} "
                         f"after upsampling do not line up (the input side must be a multiple of 32)")
    return torch.cat([upsampled, stage], dim=1)


class DetectionModel(nn.Module):
    """A frozen encoder and a trainable :class:`YoloHead`: normalised images -> the head's raw maps."""

    def __init__(self, encoder: FrozenStages, head: YoloHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: Tensor) -> list[Tensor]:
        """Raw maps (B x A x 5 x H x W), finest (stride 8) first."""
        stages = self.encoder(x)
        return self.head([stages[i] for i in HEAD_STAGES])
