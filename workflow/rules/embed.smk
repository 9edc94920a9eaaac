# Findings and Impression -> frozen text embeddings (computed once; pretraining never runs the encoder).


rule embed:
    input:
        studies=rules.manifest.output.studies,
    output:
        embeddings="results/embed/embeddings.parquet",
    log:
        "logs/embed.log",
    benchmark:
        "results/benchmarks/embed.tsv",
    params:
        code=code_of("embed"),
        run_id=RUN_ID,
        cfg=config["embed"],
        remote_code="--trust-remote-code" if config["embed"]["trust_remote_code"] else "",
        # the Find&Imp alignment (Table IX) trains on whole-report embeddings
        report="--report" if config["pretrain"]["alignment"] == "concat" else "",
    threads: 2
    priority: 10  # the chain to pretraining runs first: every imitate result waits for it
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=embed IMITATE_WILDCARDS={wildcards:q} python -m imitate embed {input.studies} --out {output.embeddings} --encoder {params.cfg[encoder]}"
        " --pooling {params.cfg[pooling]} --max-length {params.cfg[max_length]}"
        " --batch-size {params.cfg[batch_size]} --dtype {params.cfg[dtype]} --device {params.cfg[device]}"
        " {params.remote_code} {params.report} --run-id {params.run_id} > {log} 2>&1"


rule embed_map:
    input:
        embeddings=rules.embed.output.embeddings,
    output:
        png=report("results/embed/section_map.png", category="Text embeddings", caption="../report/section_map.rst"),
        stats="results/embed/section_map.json",
    log:
        "logs/embed_map.log",
    benchmark:
        "results/benchmarks/embed_map.tsv",
    params:
        code=code_of("embed_map"),
        run_id=RUN_ID,
        cfg=config["embed"]["map"],
        seed=config["seed"],
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=embed_map IMITATE_WILDCARDS={wildcards:q} python -m imitate embed-map {input.embeddings}"
        " --out {output.png} --stats {output.stats} --studies {params.cfg[studies]}"
        " --perplexity {params.cfg[perplexity]} --seed {params.seed} --run-id {params.run_id} > {log} 2>&1"
