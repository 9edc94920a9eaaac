"""Zero-shot classification in the joint space, and loading the exported pretrained model."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file
from sklearn.metrics import accuracy_score, f1_score, precision_recall_curve, roc_auc_score
from torch import nn

from imitate.embed.embeddings import embedding_facts
from imitate.embed.store import EmbeddingMismatchError
from imitate.evaluate.tasks.zero_shot import (
    Prompts,
    ZeroShotScores,
    classification_metrics,
    prompt_texts,
    prompts_from_config,
    score_zero_shot,
    zero_shot_metrics,
)
from imitate.evaluate.vision_language import (
    JointModel,
    TextTower,
    embed_images,
    embed_texts,
    load_vl_model,
    random_vl_model,
    text_settings,
)
from imitate.models.files import MODEL_METADATA_KEY, export_model
from imitate.shards.reader import shard_paths
from tests.helpers.joint_space import CROP, TINY, align, eval_dataset, one_hot, write_dataset_shards

REPO = Path(__file__).resolve().parents[1]
BINARY = ("Pneumothorax", "Pleural_Thickening")


def test_prompts_follow_the_templates_and_display_names():
    prompts = prompts_from_config({"names": {"Pleural_Thickening": "pleural thickening"}})
    assert prompt_texts("binary", BINARY, prompts) == [
        "Pneumothorax", "pleural thickening", "No Pneumothorax", "No pleural thickening"
    ]
    assert prompt_texts("multiclass", ("Edema", "Atelectasis"), prompts) == ["Edema", "Atelectasis"]
    with pytest.raises(ValueError, match=r"negative prompt 'No disease' lacks the \{label\} placeholder"):
        Prompts(negative="No disease")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['negatives'\]"):
        prompts_from_config({"negatives": "No {label}"})


def test_text_settings_come_from_the_embed_block_of_config_yaml():
    block = yaml.safe_load((REPO / "config.yaml").read_text())["embed"]
    settings = text_settings(block)
    assert settings.encoder == block["encoder"] and settings.trust_remote_code == block["trust_remote_code"]
    assert (settings.embed.pooling, settings.embed.max_length) == (block["pooling"], block["max_length"])
    assert settings.embed.dtype == block["dtype"]


def test_multilabel_metrics_equal_scikit_learns_and_use_the_test_split_only(tmp_path: Path, text: TextTower):
    test_labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0], [1, 0], [0, 1]], dtype=np.float32)
    manifest = write_dataset_shards(tmp_path, {"train": [0, 1], "test": [0, 1, 2, 0, 1, 2]})
    dataset = eval_dataset("multilabel", BINARY, {"train": np.ones((2, 2)), "test": test_labels})
    joint = random_vl_model(TINY, seed=0)
    scores = score_zero_shot(joint, dataset, manifest, prompts=Prompts(), text=text, crop_size=CROP)
    assert scores.keys == dataset.keys_of("test")
    np.testing.assert_array_equal(scores.labels, test_labels)
    np.testing.assert_array_equal(scores.predictions, scores.probabilities > 0.5)
    metrics = classification_metrics(scores)
    y, p, pred = scores.labels, scores.probabilities, scores.predictions
    for k, label in enumerate(BINARY):
        assert metrics[f"auc:{label}"] == pytest.approx(roc_auc_score(y[:, k], p[:, k]))
        assert metrics[f"f1:{label}"] == pytest.approx(f1_score(y[:, k], pred[:, k], zero_division=0))
        assert metrics[f"acc:{label}"] == pytest.approx(accuracy_score(y[:, k], pred[:, k]))
    assert metrics["auc_macro"] == pytest.approx(roc_auc_score(y, p, average="macro"))
    assert metrics["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    assert metrics["acc_macro"] == pytest.approx(np.mean([accuracy_score(y[:, k], pred[:, k]) for k in range(2)]))
    assert "acc" not in metrics
    again = zero_shot_metrics(random_vl_model(TINY, seed=0), dataset, manifest, prompts=Prompts(), text=text,
                              crop_size=CROP)
    assert json.dumps(again) == json.dumps(metrics)  # same seed, same values, same order


def test_multiclass_metrics_equal_scikit_learns(tmp_path: Path, text: TextTower):
    classes = [0, 1, 2, 0, 1, 2, 2]
    manifest = write_dataset_shards(tmp_path, {"test": classes})
    dataset = eval_dataset("multiclass", ("Edema", "Atelectasis", "Cardiomegaly"), {"test": one_hot(classes, 3)})
    scores = score_zero_shot(random_vl_model(TINY, seed=1), dataset, manifest, prompts=Prompts(), text=text,
                             crop_size=CROP)
    np.testing.assert_allclose(scores.probabilities.sum(axis=1), 1.0)
    assert (scores.predictions.sum(axis=1) == 1).all()
    metrics = classification_metrics(scores)
    truth, pred = np.array(classes), scores.predictions.argmax(axis=1)
    assert metrics["acc"] == pytest.approx(accuracy_score(truth, pred))
    assert metrics["auc_macro"] == pytest.approx(roc_auc_score(truth, scores.probabilities, multi_class="ovr"))
    assert metrics["f1_macro"] == pytest.approx(f1_score(truth, pred, average="macro", labels=[0, 1, 2],
                                                         zero_division=0))
    assert metrics["acc_macro"] == pytest.approx(1 - 2 * (1 - metrics["acc"]) / 3)


def _medklip_f1_acc(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """MedKLIP's test script, restated: the first F1 maximum on scikit-learn's curve, ACC of p > threshold."""
    precision, recall, thresholds = precision_recall_curve(y, p)
    numerator, denom = 2 * recall * precision, recall + precision
    f1s = np.divide(numerator, denom, out=np.zeros_like(denom), where=(denom != 0))
    return float(np.max(f1s)), float(accuracy_score(y, p > thresholds[np.argmax(f1s)]))


def test_best_threshold_f1_and_acc_are_medklips_beside_the_argmax_ones():
    # label 0: prompts' argmax (p > 0.5) gives F1 2/5, the best threshold (0.4) gives 6/7 (P 3/4, R 1);
    # label 1: F1 2/3 at both 0.1 and 0.6, MedKLIP takes the lower, where ACC (of p > 0.1) is 2/6, not 3/6
    p = np.array([[0.9, 0.1], [0.45, 0.6], [0.6, 0.8], [0.4, 0.7], [0.3, 0.2], [0.2, 0.3]])
    y = np.array([[1, 1], [1, 1], [0, 0], [1, 1], [0, 0], [0, 0]], dtype=np.float64)
    scores = ZeroShotScores("multilabel", BINARY, [f"k{i}" for i in range(6)], y, p, (p > 0.5).astype(np.float64))
    metrics = classification_metrics(scores)
    expected = [_medklip_f1_acc(y[:, k], p[:, k]) for k in range(2)]
    assert expected == [pytest.approx((6 / 7, 4 / 6)), pytest.approx((2 / 3, 2 / 6))]  # the hand derivation
    for k, label in enumerate(BINARY):
        assert metrics[f"f1:{label}"] == pytest.approx(f1_score(y[:, k], p[:, k] > 0.5))
        assert metrics[f"acc:{label}"] == pytest.approx(accuracy_score(y[:, k], p[:, k] > 0.5))
        assert (metrics[f"f1_best:{label}"], metrics[f"acc_best:{label}"]) == pytest.approx(expected[k])
    assert metrics["f1:Pneumothorax"] == pytest.approx(2 / 5)
    assert metrics["f1_best_macro"] == pytest.approx(np.mean([e[0] for e in expected]))
    assert metrics["acc_best_macro"] == pytest.approx(np.mean([e[1] for e in expected]))
    no_positive = replace(scores, labels=np.zeros_like(y))
    assert np.isnan(classification_metrics(no_positive)["f1_best_macro"])


@pytest.mark.parametrize("swapped", [False, True], ids=["paper-prompts", "prompts-swapped"])
def test_images_aligned_to_their_prompts_score_perfectly(tmp_path: Path, text: TextTower, swapped: bool):
    test_labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.float32)
    manifest = write_dataset_shards(tmp_path, {"test": [0, 1, 2, 3]})
    dataset = eval_dataset("binary", BINARY, {"test": test_labels})
    joint = random_vl_model(TINY, seed=0)
    axes = np.eye(4, dtype=np.float32)  # label k: positive along axis 2k, negative along 2k + 1
    targets = {key: axes[[int(1 - y[0]), int(3 - y[1])]].sum(0)
               for key, y in zip(dataset.keys, test_labels, strict=True)}
    prompts = {"Pneumothorax": axes[0], "No Pneumothorax": axes[1],
               "Pleural_Thickening": axes[2], "No Pleural_Thickening": axes[3]}
    align(joint, manifest, targets, text, prompts)
    templates = Prompts(positive="No {label}", negative="{label}") if swapped else Prompts()
    metrics = zero_shot_metrics(joint, dataset, manifest, prompts=templates, text=text, crop_size=CROP)
    expected = 0.0 if swapped else 1.0
    assert metrics["auc_macro"] == expected and metrics["acc_macro"] == expected
    assert metrics["f1:Pneumothorax"] == expected and metrics["acc:Pleural_Thickening"] == expected


def perturbed(joint: JointModel) -> JointModel:
    """Random BatchNorm statistics, so that a round trip that dropped them would show."""
    generator = torch.Generator().manual_seed(0)
    for module in joint.model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator))
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
    return joint


def test_the_exported_model_loads_with_identical_outputs_and_bytes(tmp_path: Path, text: TextTower):
    manifest = write_dataset_shards(tmp_path, {"test": [0, 1, 2]})
    joint = perturbed(random_vl_model(TINY, seed=2))
    facts = embedding_facts(text.encoder, text.settings)
    paths = [tmp_path / "a/model.safetensors", tmp_path / "b/model.safetensors"]
    for path in paths:
        path.parent.mkdir()
        export_model(path, joint.model.state_dict(), replace(TINY, init="imagenet"), 4, facts)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    loaded = load_vl_model(paths[0])  # init imagenet is recorded but not read: no weights file needed
    assert not loaded.model.training and loaded.epoch == 4 and loaded.text_facts == json.loads(json.dumps(facts))
    shards = shard_paths(manifest, "test")
    ours, theirs = (embed_images(j, shards, crop_size=CROP).values for j in (joint, loaded))
    np.testing.assert_array_equal(ours, theirs)
    reports = ["Small left pneumothorax.", "No acute process."]
    np.testing.assert_array_equal(embed_texts(joint, reports, text), embed_texts(loaded, reports, text))
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, rtol=1e-5)


def test_a_model_trained_on_another_text_encoder_is_refused(tmp_path: Path, text: TextTower):
    manifest = write_dataset_shards(tmp_path, {"test": [0, 1]})
    dataset = eval_dataset("binary", BINARY[:1], {"test": np.array([[1], [0]])})
    facts = {**embedding_facts(text.encoder, text.settings), "encoder": "emilyalsentzer/Bio_ClinicalBERT"}
    export_model(tmp_path / "model.safetensors", random_vl_model(TINY, 0).model.state_dict(), TINY, 0, facts)
    joint = load_vl_model(tmp_path / "model.safetensors")
    with pytest.raises(EmbeddingMismatchError, match=r"model\.safetensors was trained on .*differ in encoder"):
        zero_shot_metrics(joint, dataset, manifest, prompts=Prompts(), text=text, crop_size=CROP)
    narrow = random_vl_model(replace(TINY, text_dim=16), seed=0)
    with pytest.raises(ValueError, match=r"takes 16-d text embeddings but text encoder .* gives 384-d"):
        zero_shot_metrics(narrow, dataset, manifest, prompts=Prompts(), text=text, crop_size=CROP)


def test_model_files_that_cannot_be_loaded_fail_naming_the_file(tmp_path: Path):
    state = random_vl_model(TINY, 0).model.state_dict()
    with pytest.raises(FileNotFoundError, match=r"absent\.safetensors: model file not found"):
        load_vl_model(tmp_path / "absent.safetensors")
    encoder_only = tmp_path / "encoder.safetensors"
    save_file({"conv1.weight": state["backbone.conv1.weight"]}, encoder_only, metadata={"imitate.encoder": "{}"})
    with pytest.raises(ValueError, match=rf"encoder\.safetensors: no {MODEL_METADATA_KEY} metadata"):
        load_vl_model(encoder_only)
    wider = tmp_path / "wider.safetensors"
    export_model(wider, state, replace(TINY, proj_dim=16), 0, {})
    with pytest.raises(ValueError, match=r"wider\.safetensors: weights do not fit the model config it records"):
        load_vl_model(wider)
    partial = tmp_path / "partial.safetensors"
    export_model(partial, {k: v for k, v in state.items() if not k.startswith("text_proj.")}, TINY, 0, {})
    with pytest.raises(ValueError, match=r"partial\.safetensors: .*missing \['text_proj"):
        load_vl_model(partial)


def test_shards_holding_images_outside_the_test_records_are_refused(tmp_path: Path, text: TextTower):
    manifest = write_dataset_shards(tmp_path, {"test": [0, 1, 0]})
    dataset = eval_dataset("binary", BINARY[:1], {"test": np.array([[1], [0]])})  # test02 is not a record
    with pytest.raises(ValueError, match=r"manifest\.parquet: its test shards hold images \['test02'\]"):
        zero_shot_metrics(random_vl_model(TINY, 0), dataset, manifest, prompts=Prompts(), text=text, crop_size=CROP)
