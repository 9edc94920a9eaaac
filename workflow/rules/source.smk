# A lab's table of images and reports (data.source: table) -> the sections stage's texts and the manifest's rows.

if TABLE_SOURCE:

    rule source_table:
        input:
            table=data_table(),
        output:
            metadata="results/source/metadata.parquet",
            reports="results/source/reports.parquet",
            rejects="results/source/rejects.parquet",
            ids="results/source/ids.parquet",
            counts="results/source/counts.json",
        log:
            "logs/source_table.log",
        benchmark:
            "results/benchmarks/source_table.tsv"
        params:
            code=code_of("source_table"),
            run_id=RUN_ID,
            root=table_root,
            columns=json.dumps(config["data"]["columns"], sort_keys=True),
            seed=config["seed"],
            fractions=(
                f"--split-fractions {shlex.quote(json.dumps(config['data']['split_fractions'], sort_keys=True))}"
                if "split_fractions" in config["data"]
                else ""
            ),
        priority: 10  # the chain to pretraining runs first: every imitate result waits for it
        threads: 1
        resources:
            # one pass over the table in DuckDB and Python (a 378k-row table: seconds)
            mem_mb=lambda wildcards, attempt: res.megabytes(res.LIGHT_MB, attempt),
            runtime=lambda wildcards, attempt: res.minutes(0, attempt),
        conda:
            "../../envs/imitate.yaml"
        shell:
            "IMITATE_RULE=source_table IMITATE_WILDCARDS={wildcards:q} python -m imitate source-table {input.table:q} --root {params.root:q}"
            " --columns {params.columns:q} --seed {params.seed} {params.fractions} --out-dir results/source"
            " --run-id {params.run_id} > {log} 2>&1"
