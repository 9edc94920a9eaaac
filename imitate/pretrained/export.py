"""A pretraining run -> the exported folder (:mod:`imitate.pretrained.layout`) with its model card.

Everything the folder states is read from the run's own records, never from the config a user edits
afterwards: the model and text-encoder facts from ``model.safetensors``'s header, the training facts from
``model_card.json``, the preprocessing from the shard manifest pretraining read (its sha256 must be the
one its provenance recorded), the training data, code and config hashes from the provenance records
(the lineage of ``model.safetensors`` down to the raw files; data the demo generator drew is marked
synthetic), and the results from the tables whose rows name this model's sha256. Run it from the
workflow's directory: the records name their files relative to it.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from imitate import __version__
from imitate.evaluate.tasks import TASKS
from imitate.evaluate.tasks.zero_shot import Settings as ZeroShotSettings
from imitate.io.files import atomic_write
from imitate.io.parquet import read_metadata
from imitate.models.backbone import ResNetBackbone
from imitate.models.files import ENCODER_FILE, MODEL_FILE, read_model_facts
from imitate.pretrained.card import license_id, render_card
from imitate.pretrained.layout import (
    CARD,
    CONFIG,
    ENCODER_WEIGHTS,
    MODEL_WEIGHTS,
    weight_files,
    write_config,
)
from imitate.pretrained.preprocess import Preprocess
from imitate.provenance.lineage import lineage, read_record
from imitate.provenance.record import entry_digest, file_sha256
from imitate.shards.writer import METADATA_KEY as SHARDS_METADATA_KEY

log = logging.getLogger(__name__)

RUN_CARD = "model_card.json"
DEMO_STAGE = "demo-data"


@dataclass(frozen=True)
class Exported:
    """What :func:`export_run` wrote: the folder, its files and the results tables it took."""

    folder: Path
    files: tuple[Path, ...]
    tables: tuple[str, ...]


def export_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    tables_dir: str | Path | None = None,
    prompts: Mapping[str, Any] | None = None,
    shards_manifest: str | Path | None = None,
) -> Exported:
    """Export the pretraining output folder ``run_dir`` to ``out`` (see the module doc).

    ``tables_dir``: the results tables (``<task>.csv`` and ``.md``); ``prompts``: the run's zero-shot
    ``templates`` and ``names`` (the paper's by default); ``shards_manifest``: where the shard manifest
    pretraining read is now, if it moved.
    """
    run_dir, out = Path(run_dir), Path(out)
    weights = {name: _required(run_dir / name) for name in (MODEL_FILE, ENCODER_FILE, RUN_CARD)}
    record = read_record(weights[MODEL_FILE])
    if record is None or record.get("stage") != "pretrain":
        raise ValueError(f"{weights[MODEL_FILE]}: no pretraining provenance record beside it; export needs a run "
                         "that `imitate pretrain` (or the workflow) wrote")
    _check_unchanged(record, weights)
    model_facts = read_model_facts(weights[MODEL_FILE])
    run_card = json.loads(weights[RUN_CARD].read_text())
    preprocess = _preprocess(record, run_card, shards_manifest)
    tree = lineage(weights[MODEL_FILE])
    facts = {
        "run_id": record.get("run_id"),
        "experiment": record.get("experiment") or "base",
        "model": model_facts["config"],
        "text_encoder": model_facts["text_embeddings"],
        "preprocess": preprocess.facts(),
        "zero_shot": _prompts(prompts),
        "training": _training(run_card, tree),
        "provenance": _provenance(record, run_card, tree),
    }
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights[ENCODER_FILE], out / ENCODER_WEIGHTS)
    shutil.copyfile(weights[MODEL_FILE], out / MODEL_WEIGHTS)
    facts["files"] = weight_files(out)
    tables = list(_results_tables(tables_dir, {e["sha256"] for e in facts["files"].values()}))
    datasets = [_training_dataset(facts["training"]), *sorted({d for _, _, names in tables for d in names})]
    backbone = model_facts["config"]["backbone"]
    with torch.random.fork_rng(devices=[]):
        num_features = ResNetBackbone(backbone, "none").num_features
    write_config(out, backbone, num_features, facts, license_id(facts))
    card = render_card(facts, [(task, markdown) for task, markdown, _ in tables], datasets, out.name)
    atomic_write(out / CARD, lambda tmp: tmp.write_text(card))
    log.info("exported %s (%s, epoch %s) to %s with %d results table(s)", run_dir, backbone,
             facts["training"]["best_epoch"], out, len(tables))
    files = tuple(out / name for name in (ENCODER_WEIGHTS, MODEL_WEIGHTS, CONFIG, CARD))
    return Exported(out, files, tuple(task for task, _, _ in tables))


def _required(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; export reads a pretraining output folder "
                                f"({MODEL_FILE}, {ENCODER_FILE}, {RUN_CARD})")
    return path


def _check_unchanged(record: Mapping[str, Any], files: Mapping[str, Path]) -> None:
    """Each weight file must still be the one pretraining recorded."""
    recorded = {Path(o["path"]).name: o.get("sha256") for o in record.get("outputs", [])}
    for name in (MODEL_FILE, ENCODER_FILE):
        actual = file_sha256(files[name])
        if recorded.get(name) != actual:
            raise ValueError(f"{files[name]}: sha256 {actual} is not the {recorded.get(name)} its pretraining "
                             "provenance recorded: it was changed after pretraining")


def _preprocess(record: Mapping[str, Any], run_card: Mapping[str, Any], manifest: str | Path | None) -> Preprocess:
    """The shard geometry pretraining saw, from the shard manifest it read, and its crop size."""
    entry = record["inputs"]["shards"]
    path = Path(manifest or entry["path"])
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the shard manifest pretraining read is not there; run export from the "
                                "workflow's directory, or give its new place (--shards)")
    if file_sha256(path) != entry["sha256"]:
        raise ValueError(f"{path}: not the shard manifest pretraining read (sha256 differs from {entry['sha256']})")
    shards = json.loads(read_metadata(path)[SHARDS_METADATA_KEY])
    return Preprocess(
        image_size=shards["image_size"],
        resize=shards["resize"],
        crop_nonzero=shards["crop_nonzero"],
        crop_size=run_card["config"]["crop_size"],
        image_format=shards["image_format"],
        jpeg_quality=shards["jpeg_quality"],
    )


def _prompts(block: Mapping[str, Any] | None) -> dict[str, Any]:
    """The zero-shot prompts of an ``evaluate.zero_shot`` block, read (and checked) as the evaluation reads it."""
    block = block or {}
    prompts = ZeroShotSettings.from_block({k: block[k] for k in ("templates", "names") if k in block}).prompts()
    return {"positive": prompts.positive, "negative": prompts.negative, "names": dict(prompts.names)}


def _nodes(tree: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    yield tree
    for child in tree.get("inputs", {}).values():
        yield from _nodes(child)


def _training(run_card: Mapping[str, Any], tree: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("train_images", "val_images", "epochs_run", "steps", "skipped_steps", "best_epoch", "best_val_loss",
            "stopped_early_after_epoch", "text_unfreeze")
    config = run_card["config"]
    return {
        **{k: run_card[k] for k in keys},
        "synthetic_data": any(node.get("stage") == DEMO_STAGE for node in _nodes(tree)),
        "config": {"model": config["model"], "pretrain": {k: v for k, v in config.items() if k != "model"}},
    }


def _training_dataset(training: Mapping[str, Any]) -> str:
    return "imitate-demo-synthetic-mimic-cxr" if training["synthetic_data"] else "mimic-cxr"


def _provenance(record: Mapping[str, Any], run_card: Mapping[str, Any], tree: Mapping[str, Any]) -> dict[str, Any]:
    """The hashes of the data (pretraining's inputs and the raw files under them), code and config."""
    raw = {node["path"]: entry_digest(node) for node in _nodes(tree) if "stage" not in node and entry_digest(node)}
    git = record.get("git") or {}
    return {
        "data": {**run_card.get("data_sha256", {}), **raw},
        "code": {"sha256": record["code_sha256"], "version": __version__, "git_commit": git.get("commit"),
                 "git_dirty": git.get("dirty")},
        "config": {"workflow": (record.get("run") or {}).get("config_sha256"), "pretrain_settings":
                   record["settings_sha256"]},
    }


def _results_tables(tables_dir: str | Path | None, shas: set[str]) -> Iterator[tuple[str, str, list[str]]]:
    """(task, Markdown, datasets) of each table in ``tables_dir`` with rows of this model, in task order."""
    if tables_dir is None:
        return
    found = False
    for task in TASKS:
        csv_path, md_path = Path(tables_dir) / f"{task}.csv", Path(tables_dir) / f"{task}.md"
        if not (csv_path.is_file() and md_path.is_file()):
            continue
        with open(csv_path, newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("checkpoint_sha256") in shas]
        if not rows:
            log.warning("%s: no row was made with this model's weights; left out of the card", csv_path)
            continue
        found = True
        yield task, md_path.read_text(), sorted({r["dataset"] for r in rows})
    if not found:
        raise ValueError(f"{tables_dir}: no results table has a row made with this model's weights (sha256 "
                         f"{', '.join(sorted(s[:12] for s in shas))}…): the tables are from another run")


def push_to_hub(folder: str | Path, repo_id: str) -> str:
    """Upload an exported folder to a private Hugging Face repository (created if missing); its URL.

    Always private: weights learnt from MIMIC-CXR may only go to credentialed users (the card's terms).
    Needs a token (``huggingface-cli login`` or ``HF_TOKEN``) and network access.
    """
    from huggingface_hub import HfApi  # only here: nothing else in imitate talks to the hub

    api = HfApi()
    url = api.create_repo(repo_id, private=True, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=url.repo_id, commit_message=f"imitate {__version__} export")
    return str(url)
