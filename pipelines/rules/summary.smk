# Cohort summary: summary.tsv (one row per case and lesion) and summary.html.


localrules:
    summary,


rule summary:
    input:
        sheet=config["cases"],
        reports=all_reports(),
    output:
        tsv=f"{OUT}/summary.tsv",
        html=f"{OUT}/summary.html",
    log:
        f"{OUT}/logs/summary.log",
    conda:
        "../envs/a0verify.yaml"
    threads: RES["summary"]["threads"]
    resources:
        mem_mb=RES["summary"]["mem_mb"],
        runtime=RES["summary"]["runtime"],
    params:
        py=PY,
        results=lambda w, output: os.path.dirname(output.tsv) or ".",
        base=lambda w: BASE,
    shell:
        "{params.py} -m a0verify.summary --cases {input.sheet:q} --results {params.results:q} "
        "--base-dir={params.base:q} --tsv {output.tsv:q} --html {output.html:q} > {log:q} 2>&1"
