# Config validation and the helpers the rules share. No logic beyond naming paths lives here.

import json
import os
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")

sys.path.insert(0, workflow.basedir)
from imitate.config import config_hash  # noqa: E402  (this checkout, also under --sdm conda)
from imitate.provenance.code import stage_code_sha256  # noqa: E402

# MIMIC-derived outputs must not be world-readable (data-use agreement): no file or directory this
# workflow creates gets permissions for "other".
os.umask(os.umask(0o027) | 0o027)

# Rules run `python -m imitate <stage>` from this checkout, also inside a `--sdm conda` environment,
# and every provenance record names the sha256 of the whole resolved config of the run.
# (Snakemake formats the prefix like a shell command, hence the quadrupled braces in this f-string.)
shell.prefix(
    "umask 027; "
    f"export PYTHONPATH={shlex.quote(workflow.basedir)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}"
    f" IMITATE_CONFIG_SHA256={config_hash(config)}; "
)

RUN_ID = config["run_id"]
DATA_ROOT = config["data"]["root"]


def raw(key):
    """A raw input of the data block, as a path under data.root."""
    return f"{DATA_ROOT}/{config['data'][key]}"


def code_of(command):
    """Hash of the imitate source a command imports: a rule param, so a code change reruns the rule."""
    return stage_code_sha256(f"imitate.commands.{command}")


def data_root_of(path):
    """data.root, recovered from the path of the metadata CSV under it."""
    depth = len(Path(config["data"]["metadata"]).parts)
    return str(Path(path).parents[depth - 1])


def root_from_input(wildcards, input):
    return data_root_of(input.metadata)


def root_from_output(wildcards, output):
    return data_root_of(output.metadata)


def settings(*keys):
    """The resolved config block at `keys` as JSON: a rule param, so any change reruns the rule."""
    block = config
    for key in keys:
        block = block[key]
    return json.dumps(block, sort_keys=True)


def image_tree_args():
    """--image-tree DIR:EXT arguments for the manifest stage."""
    trees = [f"{t['dir']}:{t['ext']}" for t in config["data"]["image_trees"]]
    return " ".join(f"--image-tree {shlex.quote(tree)}" for tree in trees)


def linear_methods():
    return config["evaluate"]["linear_classification"]["methods"]


def final_tables():
    """The results tables of every task."""
    return [
        "results/tables/linear_classification.csv",
        "results/tables/linear_classification.md",
    ]


def final_outputs():
    """Everything `snakemake` builds by default: the tables and the provenance catalog over them."""
    return [
        *final_tables(),
        "results/pretrain/loss_curve.png",
        "results/embed/section_map.png",
        "results/provenance.duckdb",
    ]


DATASET = "mimic-cxr-demo" if config["data"]["source"] == "demo" else "mimic-cxr"


def method_weights(wildcards):
    """Encoder weights a method is evaluated with ([] for random init)."""
    if wildcards.method == "imitate":
        return [rules.pretrain.output.encoder]
    return []


def weights_arg(wildcards, input):
    """The --weights argument of a method that has encoder weights."""
    return f"--weights {input.weights}" if input.weights else ""


def pretrain_launcher(wildcards, resources):
    """`python` for one process; torchrun (one process per GPU, across `launch.nnodes` machines) otherwise."""
    gpus, nodes = int(resources.gpu), config["launch"]["nnodes"]
    if gpus <= 1 and nodes == 1:
        return "python"
    torchrun = f"python -m torch.distributed.run --nproc_per_node {max(gpus, 1)}"
    if nodes == 1:
        return f"{torchrun} --standalone"
    endpoint = config["launch"]["rdzv_endpoint"]
    if not endpoint:
        raise ValueError("launch.nnodes > 1 needs launch.rdzv_endpoint (host:port reachable from every node)")
    return f"{torchrun} --nnodes {nodes} --rdzv-backend c10d --rdzv-endpoint {endpoint} --rdzv-id {RUN_ID}"
