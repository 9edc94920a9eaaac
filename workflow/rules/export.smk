# The pretrained model as a release: a Hugging Face-style folder (encoder and whole-model safetensors, a timm
# config.json, a model card with the results tables and provenance hashes), once the results tables exist.


rule export:
    input:
        model=pretrain_output(BASE, "model.safetensors"),
        encoder=pretrain_output(BASE, "encoder.safetensors"),
        card=pretrain_output(BASE, "model_card.json"),
        shards=rules.shards.output.manifest,
        tables=final_tables(),
    output:
        encoder=f"{EXPORT_DIR}/model.safetensors",
        model=f"{EXPORT_DIR}/open_clip_model.safetensors",
        config=f"{EXPORT_DIR}/config.json",
        card=report(f"{EXPORT_DIR}/README.md", category="Pretrained model", caption="../report/model_card.rst"),
    log:
        "logs/export.log",
    benchmark:
        "results/benchmarks/export.tsv"
    params:
        code=code_of("export"),
        run_id=RUN_ID,
        run_dir=lambda wildcards, input: os.path.dirname(input.model),
        out_dir=lambda wildcards, output: os.path.dirname(output.config),
        tables=lambda wildcards, input: f"--tables {os.path.dirname(input.tables[0])}" if input.tables else "",
        # a function: the templates' "{label}" must not be read as a wildcard
        prompts=lambda wildcards: zero_shot_prompts(),
    localrule: True
    resources:
        mem_mb=res.TORCH_MB,
        runtime=res.LIGHT_MINUTES,
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=export python -m imitate export {params.run_dir} {params.out_dir} {params.tables}"
        " --prompts {params.prompts:q} --shards {input.shards} --run-id {params.run_id} > {log} 2>&1"
