"""Pretraining protocol switches: early stopping on the validation loss, and which parameters decay."""

from __future__ import annotations

import copy
import json
import math
import os
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from imitate.config import load_schema
from imitate.models import ModelConfig
from imitate.train.checkpoint import load_checkpoint
from imitate.train.interrupt import InterruptedRunError
from imitate.train.pretrain import ShardSplit, pretrain
from imitate.train.progress import RESUME_NAME, Progress
from imitate.train.settings import PretrainConfig, config_from_settings
from imitate.train.study_text import StudyText
from imitate.train.trainer import Trainer, param_groups

DIM = 12
TINY = ModelConfig(backbone="resnet18", attn_dim=32, attn_heads=2, token_size=4, proj_dim=16)
TRAIN = ShardSplit((Path("train-000000.tar"),), 8)
VAL = ShardSplit((Path("validate-000000.tar"),), 4)
EMBEDDINGS = {i: StudyText(np.ones(DIM, np.float32), None) for i in range(4)}
STEPS_PER_EPOCH = 2  # 8 images, batch 4
pytestmark = pytest.mark.usefixtures("one_torch_thread")
# validation losses by epoch: best at epoch 1, then three epochs without a strictly lower one
VAL_LOSSES = [3.0, 2.0, 2.5, 2.0, 2.1, 1.0, 0.5, 0.4]


def loader(shards, embeddings, *, crop_size, batch_size, num_samples, seed, epoch, **_) -> list[dict]:
    """Random batches with the loader's keys; a function of (seed, epoch, split) like the real one."""
    g = torch.Generator().manual_seed(1000 * seed + 10 * epoch + len(shards))
    batches = []
    for _ in range(num_samples // batch_size):
        has_findings = torch.rand(batch_size, generator=g) > 0.25
        batches.append({
            "view1": torch.randn(batch_size, 3, crop_size, crop_size, generator=g),
            "view2": torch.randn(batch_size, 3, crop_size, crop_size, generator=g),
            "findings_emb": torch.randn(batch_size, DIM, generator=g) * has_findings[:, None],
            "impression_emb": torch.randn(batch_size, DIM, generator=g),
            "has_findings": has_findings,
        })
    return batches


@pytest.fixture
def scripted_validation(monkeypatch: pytest.MonkeyPatch) -> dict[int, dict]:
    """Validation returns ``VAL_LOSSES[epoch]``; the weights validated at each epoch are kept by epoch."""
    weights: dict[int, dict] = {}

    def validate(self: Trainer, batches) -> dict[str, float]:
        epoch = self.step // STEPS_PER_EPOCH - 1
        weights[epoch] = copy.deepcopy(self.model.state_dict())
        return {"total_loss": VAL_LOSSES[epoch]}

    monkeypatch.setattr(Trainer, "validate", validate)
    return weights


def run(out: Path, *, patience: int | None, build_loader=loader, resume: bool = False):
    cfg = PretrainConfig(model=TINY, crop_size=32, batch_size=4, epochs=len(VAL_LOSSES), lr=1e-3, patience=patience)
    return pretrain(cfg, shards=TRAIN, val_shards=VAL, embeddings=EMBEDDINGS, out_dir=out,
                    text_facts={"encoder": "test", "dim": DIM}, build_loader=build_loader, resume=resume)


def _stop_epoch(losses: list[float], patience: int | None) -> int | None:
    progress = Progress()
    for epoch, loss in enumerate(losses):
        progress.note_validation(epoch, loss)
        if progress.out_of_patience(patience):
            return epoch
    return None


def test_the_decision_on_hand_made_sequences():
    # best 4.0 at epoch 1; an equal loss is no improvement: epochs 2 and 3 are stale
    assert _stop_epoch([5.0, 4.0, 4.5, 4.0, 3.0], patience=2) == 3
    assert _stop_epoch([5.0, 4.0, 4.5, 4.0, 3.0], patience=3) is None  # epoch 4 improves in time
    assert _stop_epoch([math.nan, math.nan, 1.0], patience=2) == 1  # non-finite losses never improve
    assert _stop_epoch([5.0, 6.0, 7.0, 8.0], patience=None) is None
    assert _stop_epoch([5.0, 6.0], patience=1) == 1


def test_a_run_stops_after_patience_epochs_and_exports_the_best(tmp_path: Path, scripted_validation: dict):
    result = run(tmp_path, patience=3)
    assert result.epochs == 5 and result.best_epoch == 1 and result.steps == 5 * STEPS_PER_EPOCH
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["epochs_run"] == 5 and card["stopped_early_after_epoch"] == 4 and card["best_epoch"] == 1
    epochs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in epochs if r["type"] == "epoch"] == [0, 1, 2, 3, 4]
    exported = load_file(tmp_path / "model.safetensors")
    assert all(torch.equal(exported[k], v) for k, v in scripted_validation[1].items())
    assert not all(torch.equal(exported[k], v) for k, v in scripted_validation[4].items())
    # the schedule still spans the 8 configured epochs
    assert load_checkpoint(tmp_path / "checkpoint.pt")["scheduler"]["lr_lambdas"][0]["total_steps"] == 16
    never = run(tmp_path / "never", patience=None)
    assert never.epochs == 8 and never.best_epoch == 7
    assert json.loads((tmp_path / "never/model_card.json").read_text())["stopped_early_after_epoch"] is None


def _sigterm_before(epoch: int, index: int):
    def build(*args, **kwargs):
        for i, batch in enumerate(loader(*args, **kwargs)):
            if (kwargs["epoch"], i, len(args[0])) == (epoch, index, len(TRAIN.paths)):
                os.kill(os.getpid(), signal.SIGTERM)
            yield batch

    return build


def test_a_resumed_run_keeps_counting_the_epochs_without_improvement(tmp_path: Path, scripted_validation: dict):
    with pytest.raises(InterruptedRunError):
        run(tmp_path, patience=3, build_loader=_sigterm_before(epoch=3, index=1))
    assert load_checkpoint(tmp_path / RESUME_NAME)["stale_epochs"] == 1  # epoch 2 did not improve
    result = run(tmp_path, patience=3, resume=True)  # a counter started afresh would run to epoch 5
    assert result.epochs == 5 and result.best_epoch == 1
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["epochs_run"] == 5 and card["stopped_early_after_epoch"] == 4


def test_decay_1d_switches_the_weight_decay_of_biases_and_norm_scales():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    model[0].bias.requires_grad_(False)  # frozen: in no group
    # by hand: conv weight (2,1,3,3) and linear weight (3,8) are matrices; BN weight, BN bias, linear bias 1-D
    for decay_1d, decayed, plain in ((True, 18 + 24 + 2 + 2 + 3, 0), (False, 18 + 24, 2 + 2 + 3)):
        groups = param_groups(model, 0.05, decay_1d)
        numel = {0.05: 0, 0.0: 0}
        for group in groups:
            numel[group["weight_decay"]] += sum(p.numel() for p in group["params"])
        assert numel == {0.05: decayed, 0.0: plain}, decay_1d
    cfg = PretrainConfig(model=replace(TINY, text_dim=DIM), crop_size=32, batch_size=4)
    for decay_1d in (True, False):
        trainer = Trainer(replace(cfg, decay_1d=decay_1d), torch.device("cpu"), total_steps=2)
        one_d = {id(p) for p in trainer.model.parameters() if p.requires_grad and p.ndim == 1}
        rates = {id(p): g["weight_decay"] for g in trainer.optimizer.param_groups for p in g["params"]}
        assert {rates[i] for i in one_d} == {0.05 if decay_1d else 0.0}


def test_the_switches_come_from_the_pretrain_block_with_the_schema_defaults():
    schema = load_schema()["properties"]["pretrain"]["properties"]
    defaults = {key: schema[key]["default"] for key in ("gather", "vv_prior", "decay_1d", "patience")}
    assert defaults == {"gather": "local", "vv_prior": "official", "decay_1d": True, "patience": 10}
    cfg = config_from_settings({}, {}, 0)
    assert (cfg.loss.gather, cfg.loss.vv_prior, cfg.decay_1d, cfg.patience) == ("local", "official", True, 10)
    cfg = config_from_settings({}, {"gather": "global", "vv_prior": "all", "decay_1d": False, "patience": None}, 0)
    assert (cfg.loss.gather, cfg.loss.vv_prior, cfg.decay_1d, cfg.patience) == ("global", "all", False, None)
    with pytest.raises(ValueError, match="patience"):
        PretrainConfig(patience=0)
