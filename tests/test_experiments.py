"""Experiments: named overrides resolved against the base config, what they share, and how they are planned."""

from __future__ import annotations

import copy
import hashlib
import json
import re

import pytest
import yaml

from imitate.config import ConfigError, load_run_config
from imitate.evaluate.tasks import TASKS
from imitate.experiments.plan import BASE, embed_key, resolve_experiments
from tests.helpers.real_tree import TEMPLATE, snakemake, write_placeholder_world
from tests.helpers.workflow import ROOT, TINY

ABLATIONS = ROOT / "config" / "ablations.yaml"


@pytest.fixture(scope="module")
def tiny() -> dict:
    return load_run_config([TINY])


def _with(config: dict, **blocks) -> dict:
    out = copy.deepcopy(config)
    out.update(blocks)
    return out


def test_without_experiments_there_is_only_the_base_with_the_config_s_own_blocks(tiny):
    experiments = resolve_experiments(tiny, TASKS)
    assert list(experiments) == [BASE]
    base = experiments[BASE]
    assert base.overrides == {} and base.blocks["pretrain"] == tiny["pretrain"]
    assert base.overrides_sha256 == hashlib.sha256(b"{}").hexdigest()
    assert set(base.evaluations) == {(t, d) for t in TASKS for d in tiny["evaluate"][t]["datasets"]}


def test_an_experiment_merges_its_overrides_key_by_key_and_leaves_the_base_alone(tiny):
    config = _with(tiny, experiments={"strong": {"pretrain": {"lambda": 0.6}, "model": {"keep_ratios": [0.5] * 4}}})
    experiments = resolve_experiments(config, TASKS)
    strong = experiments["strong"]
    assert strong.blocks["pretrain"] == {**tiny["pretrain"], "lambda": 0.6}
    assert strong.blocks["model"] == {**tiny["model"], "keep_ratios": [0.5] * 4}
    assert strong.blocks["embed"] == tiny["embed"]
    assert experiments[BASE].blocks["pretrain"] == tiny["pretrain"]
    canonical = json.dumps(strong.overrides, sort_keys=True, separators=(",", ":")).encode()
    assert strong.overrides_sha256 == hashlib.sha256(canonical).hexdigest()


def test_an_override_the_schema_refuses_names_the_experiment(tiny):
    config = _with(tiny, experiments={"odd": {"pretrain": {"kernel": "cosine"}}})
    with pytest.raises(ConfigError, match=r"(?s)experiments\.odd .*pretrain/kernel: .cosine"):
        resolve_experiments(config, TASKS)


def test_embeddings_are_shared_unless_what_makes_them_changes(tiny):
    config = _with(tiny, experiments={
        "prior": {"pretrain": {"lambda": 0.6}},
        "mapped": {"embed": {"map": {"studies": 70}}},  # only the Fig. 3 map reads it
        "mean": {"embed": {"pooling": "mean"}},
        "mean_too": {"embed": {"pooling": "mean"}, "pretrain": {"lambda": 0.3}},
        "concat": {"pretrain": {"alignment": "concat"}},  # whole-report embeddings
        "unfrozen": {"pretrain": {"text_unfreeze": 1}},  # token ids beside the vectors
    })
    experiments = resolve_experiments(config, TASKS)
    keys = {name: embed_key(e, experiments[BASE]) for name, e in experiments.items()}
    assert keys["prior"] == keys["mapped"] == BASE
    assert keys["mean"] == keys["mean_too"] != BASE
    assert len({keys["mean"], keys["concat"], keys["unfrozen"], BASE}) == 4


def test_an_ablation_table_limits_its_experiments_to_its_columns(tiny):
    config = _with(tiny, experiments={"listed": {"pretrain": {"lambda": 0.6}}, "free": {"pretrain": {"lambda": 0.3}}},
                   ablations={"t": {"title": "t", "rows": ["listed", "base"], "columns": [
                       {"task": "linear_classification", "dataset": "toy", "fraction": 100},
                       {"task": "segmentation", "dataset": "rsna", "fraction": 50},
                       {"task": "linear_classification", "dataset": "toy", "fraction": 50}]}})
    experiments = resolve_experiments(config, TASKS)
    assert experiments["listed"].evaluations == {("linear_classification", "toy"): (50.0, 100.0),
                                                 ("segmentation", "rsna"): (50.0,)}
    assert experiments["free"].evaluations == experiments[BASE].evaluations


@pytest.mark.parametrize(("ablation", "message"), [
    ({"rows": ["nobody"], "columns": [{"task": "segmentation", "dataset": "rsna", "fraction": 50}]},
     r"rows names \['nobody'\]"),
    ({"rows": ["base"], "columns": [{"task": "segmentation", "dataset": "toy", "fraction": 50}]},
     r"add 'toy' to evaluate\.segmentation\.datasets"),
    ({"rows": ["base"], "columns": [{"task": "segmentation", "dataset": "rsna", "fraction": 1}]},
     r"fraction 1 is not one of evaluate\.fractions"),
])
def test_an_ablation_table_must_name_what_the_run_has(tiny, ablation, message):
    with pytest.raises(ConfigError, match=message):
        resolve_experiments(_with(tiny, ablations={"t": {"title": "t", **ablation}}), TASKS)


def test_the_paper_ablations_resolve_on_the_real_template():
    config = load_run_config([TEMPLATE, ABLATIONS])
    experiments = resolve_experiments(config, TASKS)
    assert len(experiments) == 1 + 32
    tables = yaml.safe_load(ABLATIONS.read_text())["ablations"]
    assert {t["paper"] for name, t in tables.items() if name != "fig_4"} == {"VIII", "IX", "X", "XI", "XII", "XIII"}
    lambdas = sorted(experiments[row].blocks["pretrain"]["lambda"] for row in tables["fig_4"]["rows"])
    assert lambdas == pytest.approx([0.1 * i for i in range(1, 11)])
    assert experiments["unfreeze_6"].blocks["pretrain"]["text_unfreeze"] == 6
    assert experiments["drop_0.25"].blocks["model"]["keep_ratios"] == [0.75] * 4


def _planned(stdout: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job a dry run lists."""
    jobs = []
    for block in re.split(r"\n(?=rule \w+:)", stdout):
        rule = re.match(r"rule (\w+):", block)
        if rule:
            wildcards = re.search(r"^\s+wildcards: (.+)$", block, flags=re.MULTILINE)
            pairs = dict(p.split("=", 1) for p in wildcards.group(1).split(", ")) if wildcards else {}
            jobs.append((rule.group(1), pairs))
    return jobs


def test_the_paper_ablations_dry_run_against_a_scratch_tree_fans_out_per_table(tmp_path):
    config = write_placeholder_world(tmp_path)
    run = snakemake(tmp_path / "work", "--dry-run", "--printshellcmds", "--configfile", str(tmp_path / "my-run.yaml"),
                    str(ABLATIONS), env={"TORCH_HOME": str(tmp_path / "torch")})
    assert run.returncode == 0, run.stderr[-3000:]
    jobs = _planned(run.stdout)
    tables = yaml.safe_load(ABLATIONS.read_text())["ablations"]
    table_of = {row: name for name, t in tables.items() for row in t["rows"] if row != BASE}
    for name, table in tables.items():
        mine = [(rule, w) for rule, w in jobs if table_of.get(w.get("experiment")) == name]
        variants = len(table["rows"]) - 1
        assert sum(rule == "pretrain_experiment" for rule, _ in mine) == variants, name
        evaluations = [w for rule, w in mine if rule.startswith("evaluate")]
        assert len(evaluations) == variants * len(table["columns"]), name
        assert {(w["task"], w["dataset"]) for w in evaluations} == {(c["task"], c["dataset"]) for c in table["columns"]}
    counts = {rule: sum(r == rule for r, _ in jobs) for rule, _ in jobs}
    # Find&Imp (whole reports), Table XI (token ids, shared by its six rows), ClinicalBERT, RadBERT
    assert counts["embed_variant"] == 4 and counts["embed"] == 1
    assert counts["ablation"] == len(tables) and counts["pretrain"] == 1 and counts["shards"] == 1
    cards = re.search(r"imitate ablation .*--cards (.*?) --csv results/tables/ablations/table_xi\.csv", run.stdout)
    assert cards.group(1).split() == [f"{row}={'results' if row == BASE else f'results/experiments/{row}'}"
                                      f"/pretrain/model_card.json" for row in tables["table_xi"]["rows"]]
    fractions = set(re.findall(r"imitate evaluate .*?--experiment (\S+) .*?--fractions (\S+)", run.stdout))
    assert {fraction for _, fraction in fractions} == {"1"}
    # the base run is planned as without experiments: every fraction, every dataset of the template
    assert counts["evaluate"] + counts["evaluate_dense"] == sum(
        len(config["evaluate"][t]["datasets"]) * len(config["evaluate"]["methods"]) for t in TASKS
        if t not in ("zero_shot", "retrieval")) + 2 * sum(
        len(config["evaluate"][t]["datasets"]) for t in ("zero_shot", "retrieval"))


def test_an_experiment_training_text_layers_skips_the_tasks_that_embed_prompts_with_the_frozen_encoder(tiny):
    config = _with(tiny, experiments={"unfrozen": {"pretrain": {"text_unfreeze": 1}}})
    experiments = resolve_experiments(config, TASKS)
    tasks = {task for task, _ in experiments["unfrozen"].evaluations}
    assert tasks == {"linear_classification", "finetune_classification", "segmentation", "detection"}
    assert {task for task, _ in experiments[BASE].evaluations} == set(TASKS)


def test_an_evaluation_limited_to_some_fractions_trains_on_those_subsets_only(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from imitate.evaluate.encoders import Method
    from imitate.evaluate.request import EvalRequest

    subsets = tmp_path / "subsets.parquet"
    pq.write_table(pa.table({"fraction": [1.0, 10.0, 10.0, 100.0, 100.0, 100.0], "key": list("aabccc")}), subsets)

    def request(fractions):
        return EvalRequest(task="linear_classification", records=tmp_path, subsets=subsets, shards=tmp_path,
                           method=Method("imitate", "random"), weights_file=None, backbone="resnet18", crop_size=32,
                           batch_size=8, device="cpu", seeds=(0,), settings={}, model_settings={}, text_settings={},
                           run_id="t", fractions=fractions)

    assert request(()).training_subsets() == {1.0: ["a"], 10.0: ["a", "b"], 100.0: ["c", "c", "c"]}
    assert request((10.0,)).training_subsets() == {10.0: ["a", "b"]}
    with pytest.raises(ValueError, match=r"subsets\.parquet: no training subset for fraction\(s\) \[50\.0\]"):
        request((10.0, 50.0)).training_subsets()
