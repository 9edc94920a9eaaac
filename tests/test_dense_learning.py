"""The demo's dense heads learn: its segmentation and detection settings, on its own synthetic datasets.

The demo (``config.yaml``) must show a pipeline that learns (issue 17): a decoder that predicts empty
masks scores 0 Dice on the images with a lesion, and a detector that finds nothing scores mAP 0. This
runs each dense job of the demo the way the workflow does (adapter demo files -> records -> shards ->
``imitate.evaluate.request.evaluate``) with the demo's settings, on smaller copies of its datasets, one
seed, the random-init encoder (no pretraining needed; the demo's tables hold it to the same bar) and
the 100 % subset only. The floors are about half of what these reduced runs reach (``FLOORS``), far
above the 0 of a head that learnt nothing, so a change to the demo's data, settings or heads that stops
them learning fails here. (RSNA's detection is not checked here; the demo's detection table shows it.)
"""

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from snakemake.utils import validate

from imitate.config import DEMO_CONFIG, SCHEMA_PATH
from imitate.datasets import load_adapter
from imitate.datasets.base import DemoSpec
from imitate.datasets.dataset import prepare_dataset, write_prepared
from imitate.evaluate.encoders import Method
from imitate.evaluate.request import EvalRequest, evaluate
from imitate.evaluate.settings import task_settings
from imitate.shards.writer import write_shards

# (task, dataset): (images drawn, metric, floor); these runs reached 0.61, 0.34 and 0.09 on 2026-12-02
FLOORS = {
    ("segmentation", "siim"): (160, "dice_positive", 0.3),
    ("segmentation", "rsna"): (200, "dice_positive", 0.15),
    ("detection", "object_cxr"): (400, "map", 0.04),
}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def demo_config() -> dict:
    """The demo's config with the schema's defaults filled in, as the workflow resolves it."""
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    validate(config, str(SCHEMA_PATH))
    return config


def _prepared(config: dict, name: str, n_images: int, where: Path) -> Path:
    """Write a demo copy of dataset ``name`` with ``n_images`` images, prepare and shard it; its directory."""
    entry = config["datasets"][name]
    adapter = load_adapter(name, {**entry, "root": where / "raw"})
    adapter.write_demo(DemoSpec(n_images=n_images, seed=config["demo"]["seed"],
                                image_size=entry["demo"]["image_size"]))
    out = where / "prepared"
    write_prepared(prepare_dataset(adapter, seed=config["seed"], fractions=[100], split_draw=entry.get("split")),
                   out)
    write_shards(pq.read_table(out / "records.parquet"), where / "raw", out / "shards",
                 image_size=entry["image_size"], samples_per_shard=config["shards"]["samples_per_shard"])
    return out


@pytest.mark.parametrize(("task", "name"), list(FLOORS))
def test_the_demo_dense_heads_learn(demo_config, tmp_path, task, name):
    n_images, metric, floor = FLOORS[(task, name)]
    assert name in demo_config["evaluate"][task]["datasets"]
    out = _prepared(demo_config, name, n_images, tmp_path)
    rows = evaluate(EvalRequest(
        task=task, records=out / "records.parquet", subsets=out / "subsets.parquet",
        shards=out / "shards" / "manifest.parquet", method=Method("random_init", "random"), weights_file=None,
        backbone=demo_config["model"]["backbone"], crop_size=demo_config["pretrain"]["crop_size"], batch_size=64,
        device="cpu", seeds=(0,), settings=task_settings(demo_config["evaluate"][task], name),
        model_settings=demo_config["model"], text_settings=demo_config["embed"], run_id="dense-learning",
    ))
    (score,) = [row["value"] for row in rows if row["metric"] == metric]
    assert score >= floor, f"{task} on the demo's {name}: {metric} {score:.3f} < {floor}"
