# Findings and Impression -> frozen text embeddings (computed once; pretraining never runs the encoder).


rule embed:
    input:
        studies=rules.manifest.output.studies,
    output:
        embeddings="results/embed/embeddings.parquet",
    log:
        "logs/embed.log",
    benchmark:
        "results/benchmarks/embed.tsv"
    params:
        code=code_of("embed"),
        run_id=RUN_ID,
        cfg=embed_settings,
        # the Find&Imp alignment (Table IX) trains on whole-report embeddings
        report=lambda wildcards: "--report" if embed_settings(wildcards)["report"] else "",
        # an unfrozen text encoder (Table XI) tokenises in the training step
        token_ids=lambda wildcards: "--token-ids" if embed_settings(wildcards)["token_ids"] else "",
        remote_code=lambda wildcards: "--trust-remote-code" if embed_settings(wildcards)["trust_remote_code"] else "",
    threads: 2
    resources:
        gpu=lambda wildcards: res.gpus(embed_settings(wildcards)["device"]),
        mem_mb=lambda wildcards, attempt: res.torch_mb(0, attempt),
        runtime=lambda wildcards, input, threads, attempt: res.embed_minutes(
            res.rows(input.studies), embed_settings(wildcards)["device"], threads, attempt
        ),
    priority: 10  # the chain to pretraining runs first: every imitate result waits for it
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=embed IMITATE_WILDCARDS={wildcards:q} python -m imitate embed {input.studies} --out {output.embeddings} --encoder {params.cfg[encoder]}"
        " --pooling {params.cfg[pooling]} --max-length {params.cfg[max_length]}"
        " --batch-size {params.cfg[batch_size]} --dtype {params.cfg[dtype]} --device {params.cfg[device]}"
        " {params.remote_code} {params.report} {params.token_ids} --run-id {params.run_id} > {log} 2>&1"


# Embeddings an experiment needs beyond the base's (another encoder, whole reports, token ids): one file per
# distinct setting, shared by every experiment that has it.
use rule embed as embed_variant with:
    output:
        embeddings="results/embed/{embed_key}/embeddings.parquet",
    log:
        "logs/embed/{embed_key}.log",
    benchmark:
        "results/benchmarks/embed/{embed_key}.tsv"
    wildcard_constraints:
        embed_key="|".join(EMBED_VARIANTS) or "no-variant",


rule embed_map:
    input:
        embeddings=rules.embed.output.embeddings,
    output:
        png=report("results/embed/section_map.png", category="Text embeddings", caption="../report/section_map.rst"),
        stats="results/embed/section_map.json",
    log:
        "logs/embed_map.log",
    benchmark:
        "results/benchmarks/embed_map.tsv"
    params:
        code=code_of("embed_map"),
        run_id=RUN_ID,
        cfg=config["embed"]["map"],
        seed=config["seed"],
    localrule: True
    resources:
        mem_mb=res.LIGHT_MB,
        runtime=res.LIGHT_MINUTES,
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=embed_map IMITATE_WILDCARDS={wildcards:q} python -m imitate embed-map {input.embeddings}"
        " --out {output.png} --stats {output.stats} --studies {params.cfg[studies]}"
        " --perplexity {params.cfg[perplexity]} --seed {params.seed} --run-id {params.run_id} > {log} 2>&1"
