# imitate: MIMIC-CXR reports and images -> IMITATE pretraining -> downstream evaluation tables.
# This file is the table of contents; each stage is a rule file under workflow/rules/, and every rule
# is a thin call of `python -m imitate <stage>` (all logic lives in the imitate package).

from snakemake.utils import min_version

min_version("9.0")


# The demo's config.yaml is read only when no --configfile is given: a real config (config/mimic.yaml
# and copies of it) is complete on its own and never inherits a demo value.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/preflight.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/source.smk"
include: "workflow/rules/sections.smk"
include: "workflow/rules/manifest.smk"
include: "workflow/rules/shards.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/datasets.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/ablations.smk"
include: "workflow/rules/report.smk"


check_raw_data_untouched()


report: "workflow/report/workflow.rst"


rule all:
    input:
        final_outputs(),
        REPORT_PAGES,
    default_target: True
