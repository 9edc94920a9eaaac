# Metadata (frontal views) x official split x sections, token filter -> the image and study manifests.


rule manifest:
    input:
        unpack(manifest_inputs),
        sections=rules.sections.output.sections,
    output:
        images="results/manifest/images.parquet",
        studies="results/manifest/studies.parquet",
        rejects="results/manifest/rejects.parquet",
        counts="results/manifest/counts.json",
    log:
        "logs/manifest.log",
    benchmark:
        "results/benchmarks/manifest.tsv"
    params:
        code=code_of("manifest"),
        run_id=RUN_ID,
        source=manifest_source_args,
        views=manifest_views(),
        min_tokens=config["manifest"]["min_tokens"],
        text_mode=config["manifest"].get("text_mode", "hierarchical"),
    priority: 10  # the chain to pretraining runs first: every imitate result waits for it
    threads: 2  # DuckDB's; also keeps the chain's jobs from interleaving with shorter ones
    resources:
        # 378k metadata rows and 454k file checks take 4.7 s (docs/benchmarks.md); 210 MB in the tiny run
        mem_mb=lambda wildcards, attempt: res.megabytes(res.LIGHT_MB, attempt),
        runtime=lambda wildcards, attempt: res.minutes(0, attempt),
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=manifest IMITATE_WILDCARDS={wildcards:q} python -m imitate manifest --sections {input.sections} {params.source}"
        " {params.views} --min-tokens {params.min_tokens}"
        " --text-mode {params.text_mode} --out-dir results/manifest --run-id {params.run_id} > {log} 2>&1"
