# Config validation and the helpers the rules share. No logic beyond naming paths lives here.

import json
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")

sys.path.insert(0, workflow.basedir)
from imitate.config import PRETRAIN_SCHEDULING_KEYS, config_hash  # noqa: E402  (this checkout, also under --sdm conda)
from imitate.datasets import load_adapter  # noqa: E402
from imitate.evaluate.tasks import DENSE_TASKS, TASKS  # noqa: E402
from imitate.evaluate.settings import task_settings  # noqa: E402
from imitate.experiments.plan import BASE, ablation_columns, embed_key, resolve_experiments  # noqa: E402
from imitate.provenance.code import stage_code_sha256  # noqa: E402
from imitate.preflight.raw_roots import check_outputs_outside_raw_roots  # noqa: E402
from imitate.scheduling import resources as res  # noqa: E402

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
# data.source: table reads one table of images and reports instead of the MIMIC-CXR layout
TABLE_SOURCE = config["data"]["source"] == "table"
# the pretrained model's release folder (imitate export), named as users will load it
EXPORT_DIR = f"results/export/imitate-{config['model']['backbone']}-{RUN_ID}"


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


def root_from_output(wildcards, output):
    return data_root_of(output.metadata)


def settings(blocks, *keys, scheduling=()):
    """The block of `blocks` (the config, or an experiment's resolved blocks) at `keys` as JSON, less its
    `scheduling` keys (how many cores, not what is computed): a rule param, so any other change reruns the rule."""
    block = blocks
    for key in keys:
        block = block[key]
    return json.dumps({k: v for k, v in block.items() if k not in scheduling}, sort_keys=True)


def data_table():
    """data.table as a path: relative to data.root, or absolute."""
    return os.path.join(DATA_ROOT, config["data"]["table"])


def table_root(wildcards, input):
    """data.root, recovered from the path of a relative data.table under it."""
    table = config["data"]["table"]
    if os.path.isabs(table):
        return DATA_ROOT
    return str(Path(input.table).parents[len(Path(table).parts) - 1])


def manifest_inputs(wildcards):
    """The manifest's rows: MIMIC-CXR's metadata and split CSVs, or the table source's metadata.parquet."""
    if TABLE_SOURCE:
        return {"rows": "results/source/metadata.parquet"}
    return {"metadata": raw("metadata"), "split": raw("split")}


def manifest_source_args(wildcards, input):
    """--metadata/--split/--root/--image-tree, or --rows/--root for a table source."""
    if TABLE_SOURCE:
        return f"--rows {input.rows} --root {shlex.quote(DATA_ROOT)}"
    return (
        f"--metadata {input.metadata} --split {input.split} --root {data_root_of(input.metadata)} {image_tree_args()}"
    )


def manifest_views():
    """--views of the config, or --all-views for a table source without a view column."""
    if TABLE_SOURCE and "view" not in config["data"]["columns"]:
        return "--all-views"
    return "--views " + " ".join(shlex.quote(v) for v in config["manifest"]["views"])


def image_tree_args():
    """--image-tree DIR:EXT arguments for the manifest stage."""
    trees = [f"{t['dir']}:{t['ext']}" for t in config["data"]["image_trees"]]
    return " ".join(f"--image-tree {shlex.quote(tree)}" for tree in trees)


# zero-shot and retrieval need the projectors too: only methods with a whole IMITATE model qualify
VISION_LANGUAGE_TASKS = ("zero_shot", "retrieval")
VISION_LANGUAGE_WEIGHTS = ("pretrain", "random")


def task_datasets(task):
    """The datasets `task` runs on; each must have an entry under `datasets:`."""
    names = config["evaluate"][task]["datasets"]
    missing = [name for name in names if name not in config["datasets"]]
    if missing:
        raise ValueError(f"evaluate.{task}.datasets names {missing}, which have no entry under datasets:")
    return names


def used_datasets():
    """Every dataset some task runs on, in config order."""
    used = {name for task in TASKS for name in task_datasets(task)}
    return [name for name in config["datasets"] if name in used]


def dataset_adapter(name):
    """The adapter of datasets.<name> (constructing it validates its options)."""
    return load_adapter(name, config["datasets"][name])


def dataset_raw_files(name):
    """The raw label/list files of dataset `name` (what its demo rule writes and its dataset rule reads)."""
    adapter = dataset_adapter(name)
    return [str(adapter.root / rel) for rel in adapter.raw_files().values()]


def is_demo_dataset(name):
    """Whether the dataset's files are synthetic: its own demo, or the pipeline's demo MIMIC-CXR."""
    entry = config["datasets"][name]
    return "demo" in entry or (config["data"]["source"] == "demo" and Path(entry["root"]) == Path(DATA_ROOT))


def real_datasets_arg(datasets):
    """DATASET=ADAPTER for each of `datasets` that holds real data: the tables show the paper's numbers beside them."""
    return " ".join(
        f"{d}={config['datasets'][d]['adapter']}" for d in dict.fromkeys(datasets) if not is_demo_dataset(d)
    )


def task_methods(task):
    """The methods a task compares (the vision-language tasks only those with a whole model)."""
    methods = config["evaluate"]["methods"]
    if task in VISION_LANGUAGE_TASKS:
        return [name for name, m in methods.items() if m["weights"] in VISION_LANGUAGE_WEIGHTS]
    return list(methods)


def evaluation_outputs(task):
    """The per-(dataset, method) result files of `task`: the base's, then each experiment's."""
    parts = [f"results/evaluate/{task}/{d}/{m}.parquet" for d in task_datasets(task) for m in task_methods(task)]
    for name in VARIANTS:
        datasets = [d for (t, d) in EXPERIMENTS[name].evaluations if t == task]
        parts += [
            f"{experiment_dir(name)}/evaluate/{task}/{d}/{m}.parquet" for d in datasets for m in pretrain_methods()
        ]
    return parts


def zero_shot_prompts():
    """The zero-shot templates and label names as JSON: the exported model's card and config record them."""
    block = config["evaluate"]["zero_shot"]
    return json.dumps({k: block[k] for k in ("templates", "names") if k in block}, sort_keys=True)


def final_tables(exts=("csv", "md")):
    """The results tables (with "png": and plots) of every task that runs on at least one dataset."""
    return [
        f"results/tables/{task}.{ext}" for task in TASKS if task_datasets(task) and task_methods(task) for ext in exts
    ]


def final_outputs():
    """Everything `snakemake` builds by default but the report's pages: the tables and their plots, the exported
    model and the provenance catalog."""
    return [
        *final_tables(("csv", "md", "png")),
        f"{EXPORT_DIR}/README.md",
        *ablation_outputs(),
        *[pretrain_output(name, "loss_curve.png") for name in EXPERIMENTS],
        "results/embed/section_map.png",
        "results/provenance.duckdb",
    ]


def method_weights(wildcards):
    """The weights file a method is evaluated with ([] for random init)."""
    weights = config["evaluate"]["methods"][wildcards.method]["weights"]
    if weights == "random":
        return []
    if weights == "pretrain":
        vl = wildcards.task in VISION_LANGUAGE_TASKS
        return [pretrain_output(experiment_of(wildcards).name, "model.safetensors" if vl else "encoder.safetensors")]
    if weights == "imagenet":
        from imitate.models.backbone import imagenet_weights_path  # torch: imported only when asked for

        return [str(imagenet_weights_path(config["model"]["backbone"]))]
    return [weights]


def dataset_params(wildcards):
    """The dataset's config entry, its adapter options and split draw as JSON (reruns on change)."""
    entry = config["datasets"][wildcards.dataset]
    return {
        "adapter": entry["adapter"],
        "root": entry["root"],
        "options": json.dumps(entry.get("options", {}), sort_keys=True),
        "split": f"--split {shlex.quote(json.dumps(entry['split'], sort_keys=True))}" if "split" in entry else "",
        "image_size": entry["image_size"],
        "resize": entry["resize"],
    }


def evaluate_params(wildcards):
    """Everything an evaluation reads from the config, as command-line-ready values (reruns on change)."""
    method = config["evaluate"]["methods"][wildcards.method]
    evaluate = config["evaluate"]
    experiment = experiment_of(wildcards)
    fractions = experiment.evaluations[(wildcards.task, wildcards.dataset)]
    return {
        "settings": json.dumps(
            task_settings(evaluate[wildcards.task], wildcards.dataset, f"evaluate.{wildcards.task}"), sort_keys=True
        ),
        "weights": shlex.quote(method["weights"]),
        "prefix": f"--prefix {shlex.quote(method['prefix'])}" if method.get("prefix") else "",
        "seeds": " ".join(str(s) for s in evaluate["seeds"]),
        "crop": evaluate.get("crop_size") or config["pretrain"]["crop_size"],
        "batch_size": evaluate.get("batch_size", 64),
        "device": evaluate.get("device", "cpu"),
        "model": json.dumps(experiment.blocks["model"], sort_keys=True),
        "text": json.dumps(experiment.blocks["embed"], sort_keys=True),
        "experiment": f"--experiment {experiment.name} --experiment-sha256 {experiment.overrides_sha256}",
        "fractions": f"--fractions {' '.join(f'{f:g}' for f in fractions)}" if fractions else "",
    }


def evaluate_task_settings(wildcards):
    """The settings of the job's task for its dataset (per_dataset merged)."""
    block = config["evaluate"][wildcards.task]
    return task_settings(block, wildcards.dataset, f"evaluate.{wildcards.task}")


def evaluate_threads(wildcards):
    """The evaluation's process and its loader workers, one core each."""
    return 1 + evaluate_task_settings(wildcards).get("workers", 0)


def evaluate_mem_mb(wildcards, attempt):
    """A torch job with the task's loader workers and, for the dense tasks, its cache of encoder outputs."""
    block = evaluate_task_settings(wildcards)
    cache = block.get("cache_gib", 0) if wildcards.task in DENSE_TASKS else 0
    return res.torch_mb(block.get("workers", 0), attempt, cache)


def evaluate_runtime(wildcards, input, attempt):
    """Minutes of the job: its dataset's images, at the task's size, for every seed and training subset."""
    block, evaluate = evaluate_task_settings(wildcards), config["evaluate"]
    fractions = experiment_of(wildcards).evaluations[(wildcards.task, wildcards.dataset)] or evaluate["fractions"]
    size = block.get("input_size") or evaluate.get("crop_size") or config["pretrain"]["crop_size"]
    return res.evaluate_minutes(
        wildcards.task,
        res.rows(input.records),
        block,
        size,
        evaluate["seeds"],
        fractions,
        evaluate.get("device", "cpu"),
        attempt,
    )


def pretrain_runtime(wildcards, input, attempt):
    """Minutes of the experiment's pretraining over the images of the shards."""
    blocks = experiment_of(wildcards).blocks
    gpu = res.gpus(blocks["pretrain"]["device"])
    return res.pretrain_minutes(res.rows(input.shards), blocks["pretrain"], blocks["model"]["backbone"], gpu, attempt)


def pretrain_launcher(wildcards, resources):
    """`python` for one process; torchrun (one process per GPU, across `launch.nnodes` machines) otherwise.

    `launch.always_torchrun` takes torchrun for one process too (the distributed path at world size 1).
    """
    gpus, launch = int(resources.gpu), config["launch"]
    nodes = launch["nnodes"]
    if gpus <= 1 and nodes == 1 and not launch["always_torchrun"]:
        return "python"
    torchrun = f"python -m torch.distributed.run --nproc_per_node {max(gpus, 1)}"
    if nodes == 1:
        return f"{torchrun} --standalone"
    endpoint = launch["rdzv_endpoint"]
    if not endpoint:
        raise ValueError("launch.nnodes > 1 needs launch.rdzv_endpoint (host:port reachable from every node)")
    return f"{torchrun} --nnodes {nodes} --rdzv-backend c10d --rdzv-endpoint {endpoint} --rdzv-id {RUN_ID}"


def check_raw_data_untouched():
    """Stop at load time if any rule's output, log or benchmark could land inside a raw-data root."""
    outputs = []
    for step in workflow.rules:
        files = [*step.output, *step.log, *([step.benchmark] if step.benchmark else [])]
        outputs += [(step.name, str(f)) for f in files]
    check_outputs_outside_raw_roots(outputs, config, Path.cwd())
