"""Training-step throughput of the Table V heads on a frozen encoder, on in-memory tensors.

Times the step the dense tasks repeat (:func:`imitate.evaluate.heads.fit_head`): the frozen
encoder's forward pass, the head's forward and backward pass with the task's loss, and the AdamW step,
on random images already on the device (no decoding: the model's ceiling, not the pipeline's). Prints
images/s and, on CUDA, the peak memory, for segmentation (smp's U-Net decoder, focal + Dice) and detection
(YOLOv3 head, its loss on one random box per image).

    python benchmarks/bench_dense.py --backbone resnet50 --size 512 --batch-size 16 --device cuda
"""

from __future__ import annotations

import argparse
import datetime
import time

import torch
from common import machine

from imitate.evaluate.device import autocast
from imitate.losses.segmentation import segmentation_loss
from imitate.losses.yolo import detection_loss, yolo_anchors
from imitate.models.backbone import ResNetBackbone
from imitate.models.frozen import FrozenStages
from imitate.models.unet import DECODER_CHANNELS, SegmentationModel, UNetHead
from imitate.models.yolo import HEAD_STAGES, DetectionModel, YoloHead


def images_per_second(task: str, args: argparse.Namespace) -> tuple[float, float]:
    """Images/s of ``args.steps`` training steps after ``args.warmup``, and the peak GPU memory in GiB."""
    device = torch.device(args.device)
    encoder = FrozenStages(ResNetBackbone(args.backbone))
    if task == "segmentation":
        model = SegmentationModel(encoder, UNetHead(args.backbone, encoder.channels, args.decoder_channels))
    else:
        model = DetectionModel(encoder, YoloHead([encoder.channels[i] for i in HEAD_STAGES]))
    model = model.to(device).train()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        torch.cuda.reset_peak_memory_stats()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4, weight_decay=1e-6)
    n, size = args.batch_size, args.size
    x = torch.randn(n, 3, size, size, device=device)
    masks = (torch.rand(n, 1, size, size, device=device) > 0.9).float()
    side = size / 4
    boxes = [torch.tensor([[side, side, 2 * side, 2.5 * side]], device=device) for _ in range(n)]
    anchors = yolo_anchors(size).to(device)

    def step() -> None:
        with autocast(device):
            out = model(x)
            if task == "segmentation":
                loss = segmentation_loss(out, masks)
            else:
                loss = detection_loss(out, boxes, anchors, size)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    rate = args.steps * n / (time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return rate, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["segmentation", "detection"])
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--size", type=int, default=224, help="square input size (paper: 512 seg, 224 det)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--decoder-channels", type=int, nargs=5, default=list(DECODER_CHANNELS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if args.device == "cuda" else machine()
    print(f"{datetime.date.today()} {where}; {args.backbone}, input {args.size}, batch {args.batch_size}")
    for task in args.tasks:
        rate, peak = images_per_second(task, args)
        memory = f", peak {peak:.1f} GiB" if peak == peak else ""
        print(f"{task}: {rate:.1f} images/s{memory}")


if __name__ == "__main__":
    main()
