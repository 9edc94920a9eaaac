# Config validation and the helpers the rules share. No logic beyond naming paths lives here.

import json
import shlex
import sys

from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")

# Rules run `python -m imitate` from this checkout, also inside a `--sdm conda` environment.
shell.prefix(f"export PYTHONPATH={shlex.quote(workflow.basedir)}${{PYTHONPATH:+:$PYTHONPATH}}; ")

IMITATE = "python -m imitate"
RUN_ID = config["run_id"]
DATA_ROOT = config["data"]["root"]


def raw(key):
    """A raw input of the data block, as a path under data.root."""
    return f"{DATA_ROOT}/{config['data'][key]}"


def settings(*keys):
    """The resolved config block at `keys` as JSON: a rule param, so any change reruns the rule."""
    block = config
    for key in keys:
        block = block[key]
    return json.dumps(block, sort_keys=True)


def image_tree_args():
    """--image-tree DIR:EXT arguments for the manifest stage."""
    return " ".join(f"--image-tree {shlex.quote(t['dir'] + ':' + t['ext'])}" for t in config["data"]["image_trees"])


def linear_methods():
    return config["evaluate"]["linear_classification"]["methods"]


def final_outputs():
    """Everything `snakemake` builds by default."""
    return [
        "results/tables/linear_classification.csv",
        "results/tables/linear_classification.md",
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
