# Downstream datasets: raw files (real, or a demo copy) -> records + rejects + frozen splits/subsets -> shards.


wildcard_constraints:
    dataset="|".join(config["datasets"]) or "no-dataset",


for _name in used_datasets():
    if "demo" in config["datasets"][_name]:

        rule:
            name:
                f"dataset_demo_{_name}"
            output:
                dataset_raw_files(_name),
            log:
                f"logs/datasets/{_name}/demo.log",
            benchmark:
                f"results/benchmarks/datasets/{_name}/demo.tsv"
            params:
                code=code_of("dataset_demo"),
                name=_name,
                entry=config["datasets"][_name],
                options=json.dumps(config["datasets"][_name].get("options", {}), sort_keys=True),
                seed=config["demo"]["seed"],
            localrule: True
            resources:
                mem_mb=res.LIGHT_MB,
                runtime=res.LIGHT_MINUTES,
            conda:
                "../../envs/imitate.yaml"
            shell:
                "IMITATE_RULE=dataset_demo python -m imitate dataset-demo {params.name}"
                " --adapter {params.entry[adapter]} --root {params.entry[root]} --options {params.options:q}"
                " --n-images {params.entry[demo][n_images]} --image-size {params.entry[demo][image_size]}"
                " --seed {params.seed} > {log} 2>&1"


rule dataset:
    input:
        raw=lambda wildcards: dataset_raw_files(wildcards.dataset),
    output:
        records="results/datasets/{dataset}/records.parquet",
        rejects="results/datasets/{dataset}/rejects.parquet",
        subsets="results/datasets/{dataset}/subsets.parquet",
        counts="results/datasets/{dataset}/counts.json",
    log:
        "logs/datasets/{dataset}/dataset.log",
    benchmark:
        "results/benchmarks/datasets/{dataset}/dataset.tsv"
    params:
        code=code_of("dataset"),
        run_id=RUN_ID,
        entry=dataset_params,
        fractions=" ".join(str(f) for f in config["evaluate"]["fractions"]),
        seed=config["seed"],
        # evaluate.subsets_per_seed: one draw of the subsets per evaluation seed
        subset_seeds=(
            " --subset-seeds " + " ".join(str(s) for s in config["evaluate"]["seeds"])
            if config["evaluate"]["subsets_per_seed"]
            else ""
        ),
    resources:
        # reads label lists and checks every image file (the manifest checks 454k in 4.7 s); 180 MB in the tiny run
        mem_mb=lambda wildcards, attempt: res.megabytes(res.LIGHT_MB, attempt),
        runtime=lambda wildcards, attempt: res.minutes(0, attempt),
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=dataset IMITATE_WILDCARDS={wildcards:q} python -m imitate dataset {wildcards.dataset}"
        " --adapter {params.entry[adapter]} --root {params.entry[root]} --options {params.entry[options]:q}"
        " {params.entry[split]} --fractions {params.fractions} --seed {params.seed}{params.subset_seeds}"
        " --out-dir results/datasets/{wildcards.dataset} --run-id {params.run_id} > {log} 2>&1"


rule dataset_shards:
    input:
        records=rules.dataset.output.records,
    output:
        manifest="results/datasets/{dataset}/shards/manifest.parquet",
        rejects="results/datasets/{dataset}/shards/rejects.parquet",
    log:
        "logs/datasets/{dataset}/shards.log",
    benchmark:
        "results/benchmarks/datasets/{dataset}/shards.tsv"
    params:
        code=code_of("shards"),
        run_id=RUN_ID,
        entry=dataset_params,
        cfg=config["shards"],
    # a demo copy is a few hundred images: one process, so that it fits beside a one-thread pretraining job
    threads: lambda wildcards: 1 if is_demo_dataset(wildcards.dataset) else 8
    resources:
        mem_mb=lambda wildcards, threads, attempt: res.pool_mb(threads, attempt),
        runtime=lambda wildcards, input, threads, attempt: res.shards_minutes(res.rows(input.records), threads, attempt),
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=dataset_shards IMITATE_WILDCARDS={wildcards:q} python -m imitate shards {input.records}"
        " --root {params.entry[root]} --out results/datasets/{wildcards.dataset}/shards"
        " --image-size {params.entry[image_size]} --resize {params.entry[resize]}"
        " --samples-per-shard {params.cfg[samples_per_shard]}"
        " --format {params.cfg[format]} --jpeg-quality {params.cfg[jpeg_quality]}"
        " --workers {threads} --run-id {params.run_id} > {log} 2>&1"
