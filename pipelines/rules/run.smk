# Fallback (pipeline: run): one `a0verify run` job per case, all stages in one process.


rule run_case:
    input:
        pre=lambda w: _path(w.case, "pre"),
        post=lambda w: _path(w.case, "post"),
        masks=lambda w: [p for p in (_path(w.case, "tumor"), _path(w.case, "ablation")) if p],
    output:
        report=f"{OUT}/{{case}}/report.json",
    log:
        f"{OUT}/logs/{{case}}/run.log",
    conda:
        "../envs/a0verify.yaml"
    threads: RES["run"]["threads"]
    resources:
        mem_mb=RES["run"]["mem_mb"],
        runtime=RES["run"]["runtime"],
    params:
        a0=A0,
        masks=mask_args,
        registration=lambda w: registration_of(w.case),
        threshold=lambda w: threshold_of(w.case),
        outdir=lambda w, output: os.path.dirname(output.report),
    shell:
        "NUMBA_NUM_THREADS={threads} {params.a0} run --pre {input.pre:q} --post {input.post:q} "
        "{params.masks} --registration {params.registration} --threshold {params.threshold} "
        "--threads {threads} --out {params.outdir:q} --quiet > {log:q} 2>&1"
