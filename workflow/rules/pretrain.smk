# Image shards x text embeddings -> IMITATE pretraining: one process on the CPU or one GPU, torchrun with one
# process per GPU when the job gets several (--set-resources pretrain:gpu=N).
# --resume: a rerun after a preemption continues from <out-dir>/resume.pt (not an output, so a failed job
# does not delete it).
# Outputs not protected(): for a user other than root, a write-protected output turns every rerun trigger
# (the code hash and settings params) into a ProtectedOutputException that stops the whole workflow, dry
# runs included; for root (containers, CI) Snakemake's check never fires. Shards: the same.


rule pretrain:
    input:
        shards=rules.shards.output.manifest,
        embeddings=lambda wildcards: embeddings_path(experiment_of(wildcards)),
    output:
        encoder="results/pretrain/encoder.safetensors",
        model="results/pretrain/model.safetensors",
        checkpoint="results/pretrain/checkpoint.pt",
        metrics="results/pretrain/metrics.jsonl",
        card="results/pretrain/model_card.json",
    log:
        "logs/pretrain.log",
    benchmark:
        "results/benchmarks/pretrain.tsv"
    params:
        code=code_of("pretrain"),
        run_id=RUN_ID,
        experiment=lambda wildcards: experiment_of(wildcards).name,
        model=lambda wildcards: settings(experiment_of(wildcards).blocks, "model"),
        pretrain=lambda wildcards: settings(
            experiment_of(wildcards).blocks, "pretrain", scheduling=PRETRAIN_SCHEDULING_KEYS
        ),
        # an unfrozen text encoder (Table XI) is loaded in the training step: it needs the embed settings
        text=lambda wildcards: text_settings_arg(experiment_of(wildcards)),
        seed=config["seed"],
        launcher=pretrain_launcher,
        out_dir=lambda wildcards, output: os.path.dirname(output.encoder),
    threads: lambda wildcards: experiment_of(wildcards).blocks["pretrain"]["threads"]
    resources:
        # one GPU on cuda; more with --set-resources pretrain:gpu=N (the launcher then runs torchrun)
        gpu=lambda wildcards: res.gpus(experiment_of(wildcards).blocks["pretrain"]["device"]),
        mem_mb=lambda wildcards, attempt: res.torch_mb(experiment_of(wildcards).blocks["pretrain"]["workers"], attempt),
        runtime=pretrain_runtime,
    priority: 10  # the chain to pretraining runs first: every imitate result waits for it
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=pretrain IMITATE_WILDCARDS={wildcards:q} IMITATE_EXPERIMENT={params.experiment}"
        " {params.launcher} -m imitate pretrain --shards {input.shards} --embeddings {input.embeddings}"
        " --model-settings {params.model:q} --settings {params.pretrain:q} {params.text}"
        " --seed {params.seed} --out-dir {params.out_dir} --resume --run-id {params.run_id} > {log} 2>&1"


rule loss_curve:
    input:
        metrics=rules.pretrain.output.metrics,
    output:
        png=report("results/pretrain/loss_curve.png", category="Pretraining", caption="../report/loss_curve.rst"),
    log:
        "logs/loss_curve.log",
    benchmark:
        "results/benchmarks/loss_curve.tsv"
    params:
        code=code_of("loss_curve"),
        run_id=RUN_ID,
        experiment=lambda wildcards: experiment_of(wildcards).name,
    localrule: True
    resources:
        mem_mb=res.LIGHT_MB,
        runtime=res.LIGHT_MINUTES,
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=loss_curve IMITATE_WILDCARDS={wildcards:q} IMITATE_EXPERIMENT={params.experiment}"
        " python -m imitate loss-curve {input.metrics} --out {output.png} --run-id {params.run_id} > {log} 2>&1"


# Each experiment pretrains in its own folder, on the embeddings its embed settings make.
use rule pretrain as pretrain_experiment with:
    output:
        encoder="results/experiments/{experiment}/pretrain/encoder.safetensors",
        model="results/experiments/{experiment}/pretrain/model.safetensors",
        checkpoint="results/experiments/{experiment}/pretrain/checkpoint.pt",
        metrics="results/experiments/{experiment}/pretrain/metrics.jsonl",
        card="results/experiments/{experiment}/pretrain/model_card.json",
    log:
        "logs/experiments/{experiment}/pretrain.log",
    benchmark:
        "results/benchmarks/experiments/{experiment}/pretrain.tsv"


use rule loss_curve as loss_curve_experiment with:
    input:
        metrics=rules.pretrain_experiment.output.metrics,
    output:
        png=report(
            "results/experiments/{experiment}/pretrain/loss_curve.png",
            category="Pretraining",
            labels={"experiment": "{experiment}"},
            caption="../report/loss_curve.rst",
        ),
    log:
        "logs/experiments/{experiment}/loss_curve.log",
    localrule: True  # `use rule` does not carry it over
    benchmark:
        "results/benchmarks/experiments/{experiment}/loss_curve.tsv"
