# Findings and Impression -> frozen text embeddings (computed once; pretraining never runs the encoder).


rule embed:
    input:
        studies=rules.manifest.output.studies,
    output:
        embeddings="results/embed/embeddings.parquet",
    log:
        "logs/embed.log",
    params:
        code=code_of("embed"),
        run_id=RUN_ID,
        cfg=config["embed"],
    threads: 2
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=embed IMITATE_WILDCARDS={wildcards:q} python -m imitate embed {input.studies} --out {output.embeddings} --encoder {params.cfg[encoder]}"
        " --pooling {params.cfg[pooling]} --max-length {params.cfg[max_length]}"
        " --batch-size {params.cfg[batch_size]} --dtype {params.cfg[dtype]} --device {params.cfg[device]}"
        " --run-id {params.run_id} > {log} 2>&1"
