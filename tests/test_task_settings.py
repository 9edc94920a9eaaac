"""Every task reads its config block into typed settings, for the demo config and the real template alike."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from imitate.evaluate.settings import task_settings
from imitate.evaluate.tasks import TASKS, task_module

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ("config.yaml", "config/mimic.yaml")
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


def _flatten(settings: object) -> dict[str, object]:
    """A settings dataclass as one flat dict: a nested ``head`` is merged in, tuples become lists."""
    out: dict[str, object] = {}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if dataclasses.is_dataclass(value):
            out.update(_flatten(value))
        else:
            out[field.name] = list(value) if isinstance(value, tuple) else value
    return out


def _parse(task: str, block: dict) -> object:
    settings = task_module(task).Settings
    if task in ("segmentation", "detection"):
        return settings.from_block(block, device="cpu", seed=7)
    if task == "finetune_classification":
        return settings.from_block(block, crop_size=64, device="cpu", seed=7)
    if task == "linear_classification":
        return settings.from_block(block, seed=7)
    return settings.from_block(block)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("task", TASKS)
def test_each_dataset_block_becomes_the_task_settings_it_says(task, config):
    values = yaml.safe_load((ROOT / config).read_text())
    validate(values, str(SCHEMA), set_default=True)  # as the workflow loads it: the schema's defaults filled in
    block = values["evaluate"][task]
    for dataset in block["datasets"]:
        raw = {k: v for k, v in block.items() if k not in ("datasets", "per_dataset")}
        raw.update(block.get("per_dataset", {}).get(dataset, {}))
        parsed = _flatten(_parse(task, task_settings(block, dataset)))
        assert {k: parsed[k] for k in raw} == raw, f"{config} evaluate.{task} for {dataset}"


@pytest.mark.parametrize("task", TASKS)
def test_an_unknown_setting_is_refused_with_its_block_named(task):
    with pytest.raises(ValueError, match=rf"evaluate\.{task}: unknown setting\(s\) epochz"):
        _parse(task, {"epochz": 3})


def test_every_task_module_has_settings_and_a_run():
    for task in TASKS:
        module = task_module(task)
        assert callable(module.run) and dataclasses.is_dataclass(module.Settings)
        assert module.__name__ == f"imitate.evaluate.tasks.{task}"
    with pytest.raises(ValueError, match="unknown task 'linear'"):
        task_module("linear")
