# Frontal images -> resized, lossless WebDataset shards per split, byte-identical on rerun.


rule shards:
    input:
        images=rules.manifest.output.images,
    output:
        manifest="results/shards/manifest.parquet",
        rejects="results/shards/rejects.parquet",
    log:
        "logs/shards.log",
    benchmark:
        "results/benchmarks/shards.tsv"
    params:
        code=code_of("shards"),
        root=DATA_ROOT,
        cfg=config["shards"],
        crop="--crop-nonzero" if config["shards"]["crop_nonzero"] else "",
        run_id=RUN_ID,
    threads: 8
    resources:
        mem_mb=lambda wildcards, threads, attempt: res.pool_mb(threads, attempt),
        runtime=lambda wildcards, input, threads, attempt: res.shards_minutes(res.rows(input.images), threads, attempt),
    priority: 10  # the chain to pretraining runs first: every imitate result waits for it
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=shards IMITATE_WILDCARDS={wildcards:q} python -m imitate shards {input.images} --root {params.root} --out results/shards"
        " --image-size {params.cfg[image_size]} --resize {params.cfg[resize]}"
        " --samples-per-shard {params.cfg[samples_per_shard]}"
        " --format {params.cfg[format]} --jpeg-quality {params.cfg[jpeg_quality]} {params.crop}"
        " --workers {threads} --run-id {params.run_id} > {log} 2>&1"
