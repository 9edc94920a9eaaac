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
        ablation="|".join(config["ablations"]) or "no-ablation",
    log:
        "logs/tables/ablations/{ablation}.log",
    benchmark:
        "results/benchmarks/tables/ablations/{ablation}.tsv",
    params:
        code=code_of("ablation"),
        run_id=RUN_ID,
        spec=lambda wildcards: ablation_spec(wildcards.ablation),
        cards=lambda wildcards: " ".join(["--cards", *(f"{e}={c}" for e, c in ablation_cards(wildcards.ablation).items())])
        if ablation_cards(wildcards.ablation) else "",
        real=lambda wildcards: " ".join(
            f"{d}={config['datasets'][d]['adapter']}"
            for d in dict.fromkeys(c["dataset"] for c in config["ablations"][wildcards.ablation]["columns"])
            if not is_demo_dataset(d)
        ),
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=ablation IMITATE_WILDCARDS={wildcards:q} python -m imitate ablation {input.parts}"
        " --spec {params.spec:q} --real-datasets {params.real} {params.cards} --csv {output.csv} --md {output.md}"
        " --png {output.png} --run-id {params.run_id} > {log} 2>&1"
