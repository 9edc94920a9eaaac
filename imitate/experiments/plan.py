"""Experiments: named variants of one run, each a set of overrides of the embed, model and pretrain blocks.

The run's own configuration is the experiment ``base``. Every other experiment is the base configuration
with its overrides merged in (mappings key by key, as Snakemake merges config files) and validated against
the schema as a whole, so an experiment cannot hold a value the base could not. What an experiment does not
change is shared: the sections, manifest and shards always; the embeddings whenever the embed settings
that make them are the base's. Each experiment is evaluated on the columns of the ablation tables that
list it (only those fractions), or, when no table lists it, on everything the base is evaluated on.

This module reads configuration only (no torch): the workflow imports it at load time.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imitate.config import ConfigError, config_hash, merge_config, validate_config

BASE = "base"
OVERRIDDEN_BLOCKS = ("embed", "model", "pretrain")
# embed keys that only the Fig. 3 map reads: they never change an embeddings file
EMBED_MAP_KEYS = ("map",)
# the metric an ablation column shows unless it names one: the paper's headline metric of the task
DEFAULT_METRIC = {
    "linear_classification": "auc_macro",
    "finetune_classification": "auc_macro",
    "segmentation": "dice",
    "detection": "map_mgca",
}
Evaluation = tuple[str, str]  # (task, dataset)


@dataclass(frozen=True)
class Experiment:
    """One experiment: its overrides, the resolved blocks they give, and what it is evaluated on.

    ``evaluations`` maps (task, dataset) to the fractions evaluated there (``None``: every fraction).
    """

    name: str
    label: str
    overrides: Mapping[str, Any]
    overrides_sha256: str
    blocks: Mapping[str, Mapping[str, Any]]
    evaluations: Mapping[Evaluation, tuple[float, ...] | None]

    @property
    def embed_settings(self) -> dict[str, Any]:
        """What makes this experiment's embeddings file: the embed block (less the map's keys) and which
        texts and token ids pretraining needs from it."""
        embed = {k: v for k, v in self.blocks["embed"].items() if k not in EMBED_MAP_KEYS}
        pretrain = self.blocks["pretrain"]
        return {
            **embed,
            "report": pretrain.get("alignment") == "concat",
            "token_ids": pretrain.get("text_unfreeze", 0) > 0,
        }


def embed_key(experiment: Experiment, base: Experiment) -> str:
    """``base`` when the experiment's embeddings are the base's, else a short hash of their settings."""
    if experiment.embed_settings == base.embed_settings:
        return BASE
    return config_hash(experiment.embed_settings)[:12]


def _evaluated_by_base(config: Mapping[str, Any], tasks: tuple[str, ...]) -> dict[Evaluation, None]:
    return {(task, dataset): None for task in tasks for dataset in config["evaluate"][task]["datasets"]}


def ablation_columns(config: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each ablation table's columns with their metric filled in (the task's headline metric by default)."""
    return {
        name: [{"metric": DEFAULT_METRIC[column["task"]], **column} for column in table["columns"]]
        for name, table in config.get("ablations", {}).items()
    }


def _ablation_evaluations(config: Mapping[str, Any]) -> dict[str, dict[Evaluation, set[float]]]:
    """Experiment -> (task, dataset) -> fractions, over every ablation table that lists the experiment."""
    out: dict[str, dict[Evaluation, set[float]]] = {}
    for table in config.get("ablations", {}).values():
        for row in table["rows"]:
            for column in table["columns"]:
                key = (column["task"], column["dataset"])
                out.setdefault(row, {}).setdefault(key, set()).add(float(column["fraction"]))
    return out


def _check_ablations(config: Mapping[str, Any], base_evaluations: Mapping[Evaluation, None]) -> None:
    names = {BASE, *config.get("experiments", {})}
    for table_name, table in config.get("ablations", {}).items():
        unknown = [row for row in table["rows"] if row not in names]
        if unknown:
            raise ConfigError(f"ablations.{table_name}.rows names {unknown}, which are not experiments "
                              f"(declared: {sorted(names)})")
        for column in table["columns"]:
            key = (column["task"], column["dataset"])
            if key not in base_evaluations:
                raise ConfigError(
                    f"ablations.{table_name} has a column on {key[1]} for {key[0]}, which the base run does not "
                    f"evaluate: add {key[1]!r} to evaluate.{key[0]}.datasets"
                )
            if float(column["fraction"]) not in {float(f) for f in config["evaluate"]["fractions"]}:
                raise ConfigError(f"ablations.{table_name}: fraction {column['fraction']} is not one of "
                                  f"evaluate.fractions {config['evaluate']['fractions']}")


def _resolved_blocks(config: Mapping[str, Any], name: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    if not overrides:
        return {block: config[block] for block in OVERRIDDEN_BLOCKS}
    merged = copy.deepcopy(dict(config))
    merged.pop("experiments", None)
    merge_config(merged, copy.deepcopy(dict(overrides)))
    validate_config(merged, f"experiments.{name} (the base config with its overrides)")
    return {block: merged[block] for block in OVERRIDDEN_BLOCKS}


def resolve_experiments(config: Mapping[str, Any], tasks: tuple[str, ...]) -> dict[str, Experiment]:
    """Every experiment of ``config``, ``base`` first, resolved and checked (``tasks``: the evaluation tasks)."""
    base_evaluations = _evaluated_by_base(config, tasks)
    _check_ablations(config, base_evaluations)
    listed = _ablation_evaluations(config)
    declared = {BASE: {}, **config.get("experiments", {})}
    experiments = {}
    for name, entry in declared.items():
        overrides = {block: entry[block] for block in OVERRIDDEN_BLOCKS if block in entry}
        evaluations = base_evaluations if name == BASE or name not in listed else {
            key: tuple(sorted(fractions)) for key, fractions in sorted(listed[name].items())
        }
        blocks = _resolved_blocks(config, name, overrides)
        if name != BASE and blocks["pretrain"].get("text_unfreeze", 0) > 0:
            # zero-shot and retrieval embed prompts with the frozen encoder, which no longer fits its projector
            evaluations = {key: f for key, f in evaluations.items() if key[0] in DEFAULT_METRIC}
        experiments[name] = Experiment(
            name=name,
            label=entry.get("label", "IMITATE" if name == BASE else name),
            overrides=overrides,
            overrides_sha256=config_hash(overrides),
            blocks=blocks,
            evaluations=evaluations,
        )
    return experiments
