"""imitate classify: zero-shot probabilities of labels for your own images, from an exported model.

Prompts are built from the templates the run used (recorded in the folder's ``config.json``): per label
the positive ``"{label}"`` against the negative ``"No {label}"``, whose softmax is the label's
probability, as the zero-shot evaluation scores a binary or multilabel dataset. With ``--exclusive`` the
labels are classes of one image (the 5x200 sets): a softmax over their positive prompts.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

import torch

from imitate.evaluate.tasks.zero_shot import Prompts, decide, prompt_texts
from imitate.images.pixels import ImageError
from imitate.pretrained.layout import read_config
from imitate.pretrained.load import load

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``imitate classify``."""
    parser.add_argument("images", nargs="+", type=Path, help="DICOM, JPG or PNG files")
    parser.add_argument("--model", required=True, type=Path, help="a folder `imitate export` wrote")
    parser.add_argument("--labels", required=True, nargs="+", help='label names, e.g. "Pleural effusion" Pneumonia')
    parser.add_argument("--exclusive", action="store_true", help="one label per image: a softmax over the labels")
    parser.add_argument("--positive", default=None, help="positive template (default: the run's, e.g. '{label}')")
    parser.add_argument("--negative", default=None, help="negative template (default: the run's, 'No {label}')")
    parser.add_argument("--text-encoder", default=None, help="local copy of the text encoder, if not found by name")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")


def main(args: argparse.Namespace) -> int:
    """Print a CSV: one row per image, its probability of each label; exit 1 if an image was unreadable."""
    recorded = read_config(args.model)["zero_shot"]
    prompts = Prompts(args.positive or recorded["positive"], args.negative or recorded["negative"], recorded["names"])
    model, preprocess, _ = load(args.model, text_encoder=args.text_encoder, device=args.device)
    kind = "multiclass" if args.exclusive else "multilabel"
    labels = tuple(args.labels)
    text = model.encode_text(prompt_texts(kind, labels, prompts))
    writer = csv.writer(sys.stdout)
    writer.writerow(["image", *labels])
    failed = 0
    for start in range(0, len(args.images), args.batch_size):
        paths, batch = [], []
        for path in args.images[start:start + args.batch_size]:
            try:
                batch.append(preprocess(path))
                paths.append(path)
            except ImageError as exc:
                print(f"{path}: not classified: {exc}", file=sys.stderr)
                failed += 1
        if not batch:
            continue
        with torch.inference_mode():
            similarities = (model.encode_image(torch.stack(batch)) @ text.T).cpu().numpy()
        probabilities, _ = decide(kind, similarities, len(labels))
        for path, row in zip(paths, probabilities, strict=True):
            writer.writerow([str(path), *(f"{p:.4f}" for p in row)])
    log.info("%d image(s) classified, %d unreadable", len(args.images) - failed, failed)
    return 1 if failed else 0
