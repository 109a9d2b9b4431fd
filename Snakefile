# a0verify cohort workflow: thin entry point. Stage logic lives in the a0verify package and every
# rule calls its command line (one `a0verify run` job per case). Run:
#   snakemake --cores 2 [--profile pipelines/profiles/local]
# or, without knowing Snakemake:  a0verify batch CASES.tsv --out DIR
# Config: pipelines/config/config.yaml (schema pipelines/schemas/config.schema.yaml); sample
# sheet columns: pipelines/schemas/samples.schema.yaml.
import os


configfile: os.path.join(workflow.basedir, "pipelines", "config", "config.yaml")


include: "pipelines/rules/common.smk"
include: "pipelines/rules/run.smk"
include: "pipelines/rules/summary.smk"


rule all:
    input:
        f"{OUT}/summary.tsv",
        f"{OUT}/summary.html",
    default_target: True
