# Downstream evaluation: one job per (task, dataset, method), all seeds inside -> tables with provenance.


wildcard_constraints:
    task="|".join(TASKS),
    experiment="|".join(map(re.escape, VARIANTS)) or "no-experiment",
    method="|".join(config["evaluate"]["methods"]) or "no-method",


rule evaluate:
    input:
        records="results/datasets/{dataset}/records.parquet",
        subsets="results/datasets/{dataset}/subsets.parquet",
        shards="results/datasets/{dataset}/shards/manifest.parquet",
        weights=method_weights,
    output:
        results="results/evaluate/{task}/{dataset}/{method}.parquet",
    wildcard_constraints:
        task="|".join(t for t in TASKS if t not in DENSE_TASKS),
    log:
        "logs/evaluate/{task}/{dataset}/{method}.log",
    benchmark:
        "results/benchmarks/evaluate/{task}/{dataset}/{method}.tsv"
    params:
        rule_name="evaluate",
        code=code_of("evaluate"),
        run_id=RUN_ID,
        experiment=lambda wildcards: experiment_of(wildcards).name,
        p=evaluate_params,
        backbone=config["model"]["backbone"],
        weights_file=lambda wildcards, input: f"--weights-file {input.weights}" if input.weights else "",
        preview="",
    threads: evaluate_threads
    resources:
        gpu=res.gpus(config["evaluate"].get("device", "cpu")),
        mem_mb=evaluate_mem_mb,
        runtime=evaluate_runtime,
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE={params.rule_name} IMITATE_WILDCARDS={wildcards:q} IMITATE_EXPERIMENT={params.experiment}"
        " python -m imitate evaluate --task {wildcards.task} {params.p[experiment]} {params.p[fractions]}"
        " --records {input.records} --subsets {input.subsets} --shards {input.shards}"
        " --method {wildcards.method} --weights {params.p[weights]} {params.p[prefix]} {params.weights_file}"
        " --backbone {params.backbone} --crop-size {params.p[crop]} --batch-size {params.p[batch_size]}"
        " --device {params.p[device]} --seeds {params.p[seeds]} --settings {params.p[settings]:q}"
        " --model-settings {params.p[model]:q} --text-settings {params.p[text]:q}"
        " --out {output.results} {params.preview} --run-id {params.run_id} > {log} 2>&1"


# Segmentation and detection (Table V) also draw their test predictions for the report.
use rule evaluate as evaluate_dense with:
    output:
        results="results/evaluate/{task}/{dataset}/{method}.parquet",
        preview=report(
            "results/evaluate/{task}/{dataset}/{method}.png",
            category="Segmentation and detection",
            subcategory="{task}",
            labels={"dataset": "{dataset}", "method": "{method}"},
            caption="../report/dense_preview.rst",
        ),
    wildcard_constraints:
        task="|".join(DENSE_TASKS),
    params:
        rule_name="evaluate_dense",
        code=code_of("evaluate"),
        run_id=RUN_ID,
        experiment=lambda wildcards: experiment_of(wildcards).name,
        p=evaluate_params,
        backbone=config["model"]["backbone"],
        weights_file=lambda wildcards, input: f"--weights-file {input.weights}" if input.weights else "",
        preview=lambda wildcards, output: f"--preview {output.preview}",
    priority: 1  # the longest evaluations first, so that no core idles at the end


# An experiment's encoder is evaluated in its own folder, on what its ablation tables show (else on everything
# the base is evaluated on); the random and ImageNet baselines are shared, evaluated once by the base.
use rule evaluate as evaluate_experiment with:
    output:
        results="results/experiments/{experiment}/evaluate/{task}/{dataset}/{method}.parquet",
    wildcard_constraints:
        task="|".join(t for t in TASKS if t not in DENSE_TASKS),
        method="|".join(pretrain_methods()) or "no-method",
    log:
        "logs/experiments/{experiment}/evaluate/{task}/{dataset}/{method}.log",
    benchmark:
        "results/benchmarks/experiments/{experiment}/evaluate/{task}/{dataset}/{method}.tsv"


use rule evaluate_dense as evaluate_dense_experiment with:
    output:
        results="results/experiments/{experiment}/evaluate/{task}/{dataset}/{method}.parquet",
        preview=report(
            "results/experiments/{experiment}/evaluate/{task}/{dataset}/{method}.png",
            category="Segmentation and detection",
            subcategory="{task}",
            labels={"experiment": "{experiment}", "dataset": "{dataset}", "method": "{method}"},
            caption="../report/dense_preview.rst",
        ),
    wildcard_constraints:
        task="|".join(DENSE_TASKS),
        method="|".join(pretrain_methods()) or "no-method",
    log:
        "logs/experiments/{experiment}/evaluate/{task}/{dataset}/{method}.log",
    benchmark:
        "results/benchmarks/experiments/{experiment}/evaluate/{task}/{dataset}/{method}.tsv"


rule tables:
    input:
        parts=lambda wildcards: evaluation_outputs(wildcards.task),
    output:
        csv=report(
            "results/tables/{task}.csv",
            category="Results",
            labels={"task": "{task}", "content": "table (CSV)"},
            caption="../report/tables.rst",
        ),
        md=report(
            "results/tables/{task}.md",
            category="Results",
            labels={"task": "{task}", "content": "table (Markdown)"},
            caption="../report/tables.rst",
        ),
        png=report(
            "results/tables/{task}.png",
            category="Results",
            labels={"task": "{task}", "content": "plot"},
            caption="../report/task_plot.rst",
        ),
        provenance=report(
            "results/tables/{task}.csv.provenance.json", category="Provenance", caption="../report/provenance.rst"
        ),
    log:
        "logs/tables/{task}.log",
    benchmark:
        "results/benchmarks/tables/{task}.tsv"
    params:
        code=code_of("tables"),
        run_id=RUN_ID,
        real=lambda wildcards: real_datasets_arg(task_datasets(wildcards.task)),
    localrule: True
    resources:
        mem_mb=res.LIGHT_MB,
        runtime=res.LIGHT_MINUTES,
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=tables IMITATE_WILDCARDS={wildcards:q} python -m imitate tables {input.parts} --task {wildcards.task}"
        " --real-datasets {params.real} --csv {output.csv} --md {output.md} --png {output.png} --run-id {params.run_id}"
        " > {log} 2>&1"


rule provenance_catalog:
    input:
        # every other final output, so that the catalog holds their records
        outputs=[path for path in final_outputs() if path != "results/provenance.duckdb"],
    output:
        catalog="results/provenance.duckdb",
    log:
        "logs/provenance_catalog.log",
    benchmark:
        "results/benchmarks/provenance_catalog.tsv"
    params:
        code=code_of("catalog"),
    localrule: True
    resources:
        mem_mb=res.LIGHT_MB,
        runtime=res.LIGHT_MINUTES,
    conda:
        "../../envs/imitate.yaml"
    shell:
        "python -m imitate catalog results --out {output.catalog} > {log} 2>&1"
