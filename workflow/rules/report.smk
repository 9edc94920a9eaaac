# The report's own pages (snakemake --report; its front page is workflow/report/workflow.rst): the results
# tables rendered, the counts and rejects of every data stage, the provenance of the results tables, and every
# job's run time and memory.

REPORT_PAGES = [f"results/report/{page}.html" for page in ("results", "counts", "provenance", "benchmarks")]


rule report_results:
    input:
        tables=[path for path in final_tables() if path.endswith(".md")],
    output:
        html=report(
            "results/report/results.html",
            category="Results",
            labels={"task": "all tasks", "content": "tables"},
            caption="../report/results_page.rst",
        ),
    log:
        "logs/report/results.log",
    benchmark:
        "results/benchmarks/report/results.tsv"
    params:
        code=code_of("report_page"),
    localrule: True
    resources:
        mem_mb=res.LIGHT_MB,
        runtime=res.LIGHT_MINUTES,
    conda:
        "../../envs/imitate.yaml"
    shell:
        "python -m imitate report-page results {input.tables} --out {output.html} > {log} 2>&1"


rule report_counts:
    input:
        source=rules.source_table.output.counts if TABLE_SOURCE else [],
        sections=rules.sections.output.sections,
        sections_rejects=rules.sections.output.rejects,
        manifest=rules.manifest.output.counts,
        images=rules.manifest.output.images,
        shards=rules.shards.output.manifest,
        shards_rejects=rules.shards.output.rejects,
        datasets=expand(
            "results/datasets/{dataset}/{file}",
            dataset=used_datasets(),
            file=("counts.json", "records.parquet", "shards/manifest.parquet", "shards/rejects.parquet"),
        ),
    output:
        html=report("results/report/counts.html", category="Data", caption="../report/counts.rst"),
    log:
        "logs/report/counts.log",
    benchmark:
        "results/benchmarks/report/counts.tsv"
    params:
        code=code_of("report_page"),
        datasets=" ".join(used_datasets()),
    localrule: True
    resources:
        mem_mb=res.LIGHT_MB,
        runtime=res.LIGHT_MINUTES,
    conda:
        "../../envs/imitate.yaml"
    shell:
        "python -m imitate report-page counts results --datasets {params.datasets} --out {output.html} > {log} 2>&1"


rule report_provenance:
    input:
        tables=[path for path in [*final_tables(), *ablation_outputs()] if path.endswith(".csv")],
    output:
        html=report("results/report/provenance.html", category="Provenance", caption="../report/provenance_page.rst"),
    log:
        "logs/report/provenance.log",
    benchmark:
        "results/benchmarks/report/provenance.tsv"
    params:
        code=code_of("report_page"),
    localrule: True
    resources:
        mem_mb=res.LIGHT_MB,
        runtime=res.LIGHT_MINUTES,
    conda:
        "../../envs/imitate.yaml"
    shell:
        "python -m imitate report-page provenance {input.tables} --out {output.html} > {log} 2>&1"


rule report_benchmarks:
    input:
        # every other job has finished, and written its benchmark, before this one runs
        outputs=final_outputs(),
        pages=[page for page in REPORT_PAGES if not page.endswith("benchmarks.html")],
    output:
        html=report(
            "results/report/benchmarks.html", category="Run time and memory", caption="../report/benchmarks.rst"
        ),
    log:
        "logs/report/benchmarks.log",
    benchmark:
        "results/benchmarks/report/benchmarks.tsv"
    params:
        code=code_of("report_page"),
    localrule: True
    resources:
        mem_mb=res.LIGHT_MB,
        runtime=res.LIGHT_MINUTES,
    conda:
        "../../envs/imitate.yaml"
    shell:
        "python -m imitate report-page benchmarks results/benchmarks --out {output.html} > {log} 2>&1"
