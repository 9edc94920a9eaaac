# Preflight: the config's raw files, CSV headers, text encoder, weights, device and free disk, checked
# before any stage starts. Not part of `all`: `snakemake preflight --configfile my-run.yaml` (with
# --forcerun preflight to check again once results/preflight.tsv exists). A FAIL fails the rule; the
# table is in the log.


rule preflight:
    output:
        "results/preflight.tsv",
    log:
        "logs/preflight.log",
    benchmark:
        "results/benchmarks/preflight.tsv"
    params:
        code=code_of("preflight"),
        configfiles=" ".join(f"--configfile {shlex.quote(str(f))}" for f in workflow.overwrite_configfiles),
    localrule: True
    resources:
        mem_mb=res.TORCH_MB,  # loads the text encoder
        runtime=res.LIGHT_MINUTES,
    conda:
        "../../envs/imitate.yaml"
    shell:
        "IMITATE_RULE=preflight python -m imitate preflight {params.configfiles} --out {output} > {log} 2>&1"
