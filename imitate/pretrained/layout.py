"""The exported folder's files and its ``config.json``: what timm reads, and what imitate checks.

``model.safetensors`` is the vision encoder E_v under torchvision ResNet keys (no ``fc``): the file
timm's ``local-dir:`` loader, torchvision's ``resnet*`` and smp's encoders read. ``open_clip_model.safetensors``
is the whole :class:`~imitate.models.ImitateModel` (E_v, P(·) and the three projectors), named as
open_clip names its weights. Both are byte-for-byte the files pretraining wrote, so their sha256 are
the ``checkpoint_sha256`` of the results tables.

``config.json`` is timm's format (``architecture``, ``num_classes``, ``num_features``, ``pretrained_cfg``)
with one more top-level key, ``imitate`` (timm ignores it): the sha256 of both weight files, which
loading checks, the model config, the text encoder the joint space was trained with, the preprocessing,
the zero-shot prompts, the training facts and the provenance hashes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imitate.images.transforms import IMAGENET_MEAN, IMAGENET_STD
from imitate.io.files import write_json
from imitate.provenance.record import file_sha256

ENCODER_WEIGHTS = "model.safetensors"
MODEL_WEIGHTS = "open_clip_model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
FORMAT_VERSION = 1
PAPER = "IMITATE: Clinical Prior Guided Hierarchical Vision-Language Pre-training"
ARXIV = "arXiv:2310.07355"
# the timm crop mode that resizes as each shard resize mode does (timm's "border" pads with the mean, not black)
TIMM_CROP_MODES = {"square": "squash", "shorter_side": "center", "pad": "border"}
GREY_TO_RGB = "one grey channel repeated to three (torchvision Grayscale(3)), then the ImageNet mean/std"


def crop_pct(crop_size: int, image_size: int) -> float:
    """timm's ``crop_pct``: the fraction whose ``floor(crop / pct)`` gives back ``image_size``."""
    pct = crop_size / image_size
    if math.floor(crop_size / pct) != image_size:  # float rounding: step just below the exact ratio
        pct = math.nextafter(pct, 0.0)
    return pct


def pretrained_cfg(backbone: str, preprocess: Mapping[str, Any], license_id: str) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` for the encoder: input size, crop, interpolation and normalisation."""
    crop, size = preprocess["crop_size"], preprocess["image_size"]
    return {
        "architecture": backbone,
        "tag": "imitate",
        "custom_load": False,
        "input_size": [3, crop, crop],
        "fixed_input_size": False,
        "interpolation": "lanczos",
        "crop_pct": crop_pct(crop, size),
        "crop_mode": TIMM_CROP_MODES[preprocess["resize"]],
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "num_classes": 0,
        "pool_size": [math.ceil(crop / 32)] * 2,
        "first_conv": "conv1",
        "classifier": "fc",
        "license": license_id,
        "paper_name": PAPER,
        "paper_ids": ARXIV,
        "notes": [f"chest radiographs, {GREY_TO_RGB}", "imitate.load(folder) preprocesses exactly as in training"],
    }


def weight_files(folder: Path) -> dict[str, dict[str, Any]]:
    """The sha256 and size of both weight files of ``folder``, as ``config.json`` records them."""
    return {
        name: {"sha256": file_sha256(folder / name), "bytes": (folder / name).stat().st_size}
        for name in (ENCODER_WEIGHTS, MODEL_WEIGHTS)
    }


def write_config(folder: Path, backbone: str, num_features: int, facts: Mapping[str, Any], license_id: str) -> Path:
    """``config.json``: timm's keys, and ``facts`` (with ``files``: :func:`weight_files`) under ``imitate``."""
    config = {
        "architecture": backbone,
        "num_classes": 0,
        "num_features": num_features,
        "pretrained_cfg": pretrained_cfg(backbone, facts["preprocess"], license_id),
        "imitate": {"format_version": FORMAT_VERSION, **facts},
    }
    return write_json(folder / CONFIG, config)


def read_config(folder: str | Path) -> dict[str, Any]:
    """The ``imitate`` part of an exported folder's ``config.json`` (ValueError if it is not one)."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; an exported IMITATE model folder has one (imitate export)")
    try:
        config = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from exc
    facts = config.get("imitate") if isinstance(config, dict) else None
    if not isinstance(facts, dict) or facts.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: no 'imitate' block of format version {FORMAT_VERSION}: not an IMITATE export")
    return facts


def verified_file(folder: str | Path, name: str, facts: Mapping[str, Any]) -> Path:
    """``folder/name`` once its sha256 is the one ``config.json`` records (ValueError otherwise)."""
    path = Path(folder) / name
    recorded = facts["files"].get(name, {}).get("sha256")
    if recorded is None:
        raise ValueError(f"{Path(folder) / CONFIG}: records no sha256 for {name}")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the exported folder")
    actual = file_sha256(path)
    if actual != recorded:
        raise ValueError(
            f"{path}: sha256 {actual} is not the {recorded} that {CONFIG} records: the file was changed or "
            "replaced after export; refusing to load it"
        )
    return path
