# Experiments (README, "Experiments"): the base config is the experiment "base"; every other experiment is it
# with its overrides. The paths and settings of each experiment's jobs, and of the ablation tables over them.

EXPERIMENTS = resolve_experiments(config, TASKS)
VARIANTS = [name for name in EXPERIMENTS if name != BASE]
# embeddings other than the base's, by the short hash of their settings: one file per distinct setting
EMBED_VARIANTS = {}
for _experiment in EXPERIMENTS.values():
    if (_key := embed_key(_experiment, EXPERIMENTS[BASE])) != BASE:
        EMBED_VARIANTS.setdefault(_key, _experiment)


def experiment_of(wildcards):
    """The experiment a job belongs to: its `experiment` wildcard, else the base."""
    return EXPERIMENTS[wildcards.get("experiment", BASE)]


def experiment_dir(name):
    """Where an experiment's own outputs go (the base's: results/ itself, as without experiments)."""
    return "results" if name == BASE else f"results/experiments/{name}"


def embeddings_path(experiment):
    """The embeddings file an experiment pretrains on (shared by every experiment with its embed settings)."""
    key = embed_key(experiment, EXPERIMENTS[BASE])
    return "results/embed/embeddings.parquet" if key == BASE else f"results/embed/{key}/embeddings.parquet"


def pretrain_output(name, file):
    """One of an experiment's pretraining outputs."""
    return f"{experiment_dir(name)}/pretrain/{file}"


def pretrain_methods():
    """The methods that evaluate a pretrained encoder: the ones each experiment is evaluated as."""
    return [name for name, m in config["evaluate"]["methods"].items() if m["weights"] == "pretrain"]


def ablation_outputs():
    """The ablation tables (CSV, Markdown, plot) of the `ablations:` block."""
    return [f"results/tables/ablations/{name}.{ext}" for name in config["ablations"] for ext in ("csv", "md", "png")]


def embed_settings(wildcards):
    """What an embed job computes: the base's embed settings, or those of the variant its wildcard names."""
    key = wildcards.get("embed_key", BASE)
    return (EXPERIMENTS[BASE] if key == BASE else EMBED_VARIANTS[key]).embed_settings


def text_settings_arg(experiment):
    """--text-settings for a pretraining that trains text layers (Table XI), else nothing."""
    if experiment.blocks["pretrain"]["text_unfreeze"] == 0:
        return ""
    return f"--text-settings {shlex.quote(json.dumps(experiment.blocks['embed'], sort_keys=True))}"


def ablation_method():
    """The method that evaluates each experiment's own encoder in the ablation tables."""
    methods = pretrain_methods()
    if not methods:
        raise ValueError("ablations: need a method with weights: pretrain under evaluate.methods")
    return methods[0]


def setting_of(experiment, dotted):
    """The value of a setting such as pretrain.lambda in an experiment's resolved blocks."""
    value = experiment.blocks
    for key in dotted.split("."):
        value = value[key]
    return value


def ablation_spec(name):
    """The table's spec as JSON (see imitate.tables.ablation): its rows resolved to experiments."""
    table = config["ablations"][name]
    rows = []
    for row in table["rows"]:
        experiment = EXPERIMENTS[row]
        rows.append(
            {
                "experiment": row,
                "label": experiment.label,
                "x": setting_of(experiment, table["plot"]) if table["plot"] else None,
            }
        )
    spec = {
        "title": table["title"],
        "paper": table["paper"],
        "plot": table["plot"],
        "method": ablation_method(),
        "trainable_parameters": table["trainable_parameters"],
        "rows": rows,
        "columns": ablation_columns(config)[name],
    }
    return json.dumps(spec, sort_keys=True)


def ablation_parts(wildcards):
    """The evaluation files an ablation table reads: each row's method on each column's task and dataset."""
    table = config["ablations"][wildcards.ablation]
    pairs = dict.fromkeys((c["task"], c["dataset"]) for c in table["columns"])
    return [
        f"{experiment_dir(row)}/evaluate/{task}/{dataset}/{ablation_method()}.parquet"
        for row in table["rows"]
        for task, dataset in pairs
    ]


def ablation_cards_arg(name):
    """--cards EXPERIMENT=MODEL_CARD ... of a table that shows trainable parameters, else nothing."""
    cards = ablation_cards(name)
    return " ".join(["--cards", *(f"{e}={c}" for e, c in cards.items())]) if cards else ""


def ablation_cards(name):
    """Experiment -> its model card, for a table that shows trainable parameters (Table XI); else empty."""
    table = config["ablations"][name]
    if not table["trainable_parameters"]:
        return {}
    return {row: pretrain_output(row, "model_card.json") for row in table["rows"]}
