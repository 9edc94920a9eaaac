# Image shards x text embeddings -> IMITATE pretraining: one process on the CPU or one GPU, torchrun with one
# process per GPU when the job gets several (--set-resources pretrain:gpu=N).
# --resume: a rerun after a preemption continues from results/pretrain/resume.pt (not an output, so a
# failed job does not delete it).


rule pretrain:
    input:
        shards=rules.shards.output.manifest,
        embeddings=rules.embed.output.embeddings,
    output:
        encoder="results/pretrain/encoder.safetensors",
        model="results/pretrain/model.safetensors",
        checkpoint="results/pretrain/checkpoint.pt",
        metrics="results/pretrain/metrics.jsonl",
        card="results/pretrain/model_card.json",
    log:
        "logs/pretrain.log",
    benchmark:
        "results/benchmarks/pretrain.tsv",
    params:
        code=code_of("pretrain"),
        run_id=RUN_ID,
        model=settings("model"),
        pretrain=settings("pretrain", scheduling=PRETRAIN_SCHEDULING_KEYS),
        seed=config["seed"],
        launcher=pretrain_launcher,
    threads: config["pretrain"]["threads"]
    resources:
        gpu=0,
    priority: 10  # the chain to pretraining runs first: every imitate result waits for it
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=pretrain IMITATE_WILDCARDS={wildcards:q} {params.launcher} -m imitate pretrain --shards {input.shards} --embeddings {input.embeddings}"
        " --model-settings {params.model:q} --settings {params.pretrain:q}"
        " --seed {params.seed} --out-dir results/pretrain --resume --run-id {params.run_id} > {log} 2>&1"


rule loss_curve:
    input:
        metrics=rules.pretrain.output.metrics,
    output:
        png=report("results/pretrain/loss_curve.png", category="Pretraining", caption="../report/loss_curve.rst"),
    log:
        "logs/loss_curve.log",
    benchmark:
        "results/benchmarks/loss_curve.tsv",
    params:
        code=code_of("loss_curve"),
        run_id=RUN_ID,
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=loss_curve IMITATE_WILDCARDS={wildcards:q} python -m imitate loss-curve {input.metrics}"
        " --out {output.png} --run-id {params.run_id} > {log} 2>&1"
