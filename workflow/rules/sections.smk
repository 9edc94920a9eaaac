# Reports (a tree of files, or a table source's texts) -> Findings / Impression per study, and a reason for every
# report that yields neither.


rule sections:
    input:
        reports="results/source/reports.parquet" if TABLE_SOURCE else raw("reports"),
    output:
        sections="results/sections/sections.parquet",
        rejects="results/sections/rejects.parquet",
    log:
        "logs/sections.log",
    benchmark:
        "results/benchmarks/sections.tsv"
    params:
        code=code_of("sections"),
        run_id=RUN_ID,
        texts="--texts" if TABLE_SOURCE else "",
        mode=config["sections"]["mode"],
        overrides=(
            f"--overrides {shlex.quote(config['sections']['overrides'])}"
            if config["sections"].get("overrides")
            else ""
        ),
    threads: 8
    resources:
        # 227,835 reports take 6.5 s on 2 processes (docs/benchmarks.md): the start-up allowance is the time
        mem_mb=lambda wildcards, threads, attempt: res.pool_mb(threads, attempt),
        runtime=lambda wildcards, attempt: res.minutes(0, attempt),
    priority: 10  # the chain to pretraining runs first: every imitate result waits for it
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=sections IMITATE_WILDCARDS={wildcards:q} python -m imitate sections {params.texts} {input.reports} --out {output.sections} --rejects {output.rejects}"
        " --mode {params.mode} {params.overrides} --workers {threads} --run-id {params.run_id} > {log} 2>&1"
