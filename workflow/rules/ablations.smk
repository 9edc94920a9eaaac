# Ablation tables (the paper's Tables VIII-XIII, Fig. 4): experiments as rows, from their evaluations.


rule ablation:
    input:
        parts=ablation_parts,
        # Table XI's trainable parameters come from each row's model card
        cards=lambda wildcards: ablation_cards(wildcards.ablation).values(),
    output:
        csv=report("results/tables/ablations/{ablation}.csv", category="Ablations", caption="../report/ablation.rst"),
        md=report("results/tables/ablations/{ablation}.md", category="Ablations", caption="../report/ablation.rst"),
        png=report("results/tables/ablations/{ablation}.png", category="Ablations", caption="../report/ablation.rst"),
    wildcard_constraints:
        ablation="|".join(map(re.escape, config["ablations"])) or "no-ablation",
    log:
        "logs/tables/ablations/{ablation}.log",
    benchmark:
        "results/benchmarks/tables/ablations/{ablation}.tsv"
    params:
        code=code_of("ablation"),
        run_id=RUN_ID,
        spec=lambda wildcards: ablation_spec(wildcards.ablation),
        cards=lambda wildcards: ablation_cards_arg(wildcards.ablation),
        real=lambda wildcards: real_datasets_arg(
            c["dataset"] for c in config["ablations"][wildcards.ablation]["columns"]
        ),
    localrule: True
    resources:
        mem_mb=res.LIGHT_MB,
        runtime=res.LIGHT_MINUTES,
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=ablation IMITATE_WILDCARDS={wildcards:q} python -m imitate ablation {input.parts}"
        " --spec {params.spec:q} --real-datasets {params.real} {params.cards} --csv {output.csv} --md {output.md}"
        " --png {output.png} --run-id {params.run_id} > {log} 2>&1"
