# Downstream evaluation of frozen encoders -> per-method results -> tables with provenance.


rule linear_subsets:
    input:
        shards=rules.shards.output.manifest,
    output:
        subsets="results/evaluate/linear_classification/subsets.parquet",
    log:
        "logs/evaluate/linear_subsets.log",
    params:
        code=code_of("subsets"),
        run_id=RUN_ID,
        fractions=" ".join(str(f) for f in config["evaluate"]["linear_classification"]["fractions"]),
        seed=config["seed"],
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=linear_subsets IMITATE_WILDCARDS={wildcards:q} python -m imitate subsets --shards {input.shards} --fractions {params.fractions} --seed {params.seed}"
        " --out {output.subsets} --run-id {params.run_id} > {log} 2>&1"


rule linear_classification:
    input:
        shards=rules.shards.output.manifest,
        labels=raw("labels"),
        subsets=rules.linear_subsets.output.subsets,
        weights=method_weights,
    output:
        results="results/evaluate/linear_classification/{method}.parquet",
    log:
        "logs/evaluate/linear_classification/{method}.log",
    params:
        code=code_of("evaluate"),
        run_id=RUN_ID,
        settings=settings("evaluate", "linear_classification"),
        weights=weights_arg,
        backbone=config["model"]["backbone"],
        crop=config["evaluate"]["linear_classification"].get("crop_size") or config["pretrain"]["crop_size"],
        dataset=DATASET,
        seed=config["seed"],
    threads: 1
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=linear_classification IMITATE_WILDCARDS={wildcards:q} python -m imitate evaluate --task linear_classification --method {wildcards.method} {params.weights}"
        " --shards {input.shards} --labels {input.labels} --subsets {input.subsets}"
        " --backbone {params.backbone} --crop-size {params.crop} --dataset {params.dataset}"
        " --seed {params.seed} --settings {params.settings:q} --out {output.results} --run-id {params.run_id}"
        " > {log} 2>&1"


rule tables:
    input:
        parts=expand("results/evaluate/{{task}}/{method}.parquet", method=linear_methods()),
    output:
        csv=report("results/tables/{task}.csv", category="Results", caption="../report/tables.rst"),
        md=report("results/tables/{task}.md", category="Results", caption="../report/tables.rst"),
        provenance=report(
            "results/tables/{task}.csv.provenance.json", category="Provenance", caption="../report/provenance.rst"
        ),
    log:
        "logs/tables/{task}.log",
    params:
        code=code_of("tables"),
        run_id=RUN_ID,
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=tables IMITATE_WILDCARDS={wildcards:q} python -m imitate tables {input.parts} --task {wildcards.task} --csv {output.csv} --md {output.md}"
        " --run-id {params.run_id} > {log} 2>&1"


rule provenance_catalog:
    input:
        # every other final output, so that the catalog holds their records
        outputs=[path for path in final_outputs() if path != "results/provenance.duckdb"],
    output:
        catalog="results/provenance.duckdb",
    log:
        "logs/provenance_catalog.log",
    params:
        code=code_of("catalog"),
    conda:
        "../../envs/imitate.yaml"
    shell:
        "python -m imitate catalog results --out {output.catalog} > {log} 2>&1"
