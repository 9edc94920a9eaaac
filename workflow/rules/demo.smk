# The embedded demo: a synthetic MIMIC-CXR written in the real on-disk layout (data.source: demo).

if config["data"]["source"] == "demo":

    rule demo_data:
        output:
            metadata=raw("metadata"),
            split=raw("split"),
            labels=raw("labels"),
            reports=directory(raw("reports")),
            label_table=f"{DATA_ROOT}/exports/labels.csv",
            reports_table=f"{DATA_ROOT}/exports/reports.csv",  # the demo as a table source (data.source: table)
        log:
            "logs/demo_data.log",
        benchmark:
            "results/benchmarks/demo_data.tsv"
        params:
            code=code_of("demo_data"),
            demo=config["demo"],
            root=root_from_output,
            fractions=",".join(str(config["demo"]["split_fractions"][s]) for s in ("train", "validate", "test")),
        threads: 8
        localrule: True
        resources:
            mem_mb=lambda wildcards, threads, attempt: res.pool_mb(threads, attempt),
            runtime=res.LIGHT_MINUTES,
        priority: 10  # the chain to pretraining runs first: every imitate result waits for it
        conda:
            "../../envs/imitate.yaml"
        shell:
            "IMITATE_RULE=demo_data IMITATE_WILDCARDS={wildcards:q} python -m imitate demo-data {params.root} --n-studies {params.demo[n_studies]}"
            " --seed {params.demo[seed]} --image-size {params.demo[image_size]}"
            " --dicom-fraction {params.demo[dicom_fraction]} --split-fractions {params.fractions}"
            " --workers {threads} --overwrite > {log} 2>&1"
