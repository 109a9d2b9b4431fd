# a0verify batch workflow: thin entry point. Stage logic lives in the a0verify package; rules call
# its CLI. Run: snakemake --cores 2   (or: a0verify batch CASES.tsv --out DIR)
configfile: "pipelines/config/config.yaml"


include: "pipelines/rules/common.smk"
include: "pipelines/rules/case.smk"


rule all:
    input:
        expand(f"{OUT}/{{case}}/report.json", case=CASES.index),
