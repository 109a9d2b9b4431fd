# One `a0verify run` job per case: the whole stage sequence (read inputs, segment, register,
# transfer, margin, verdict, outputs) in one process, exactly as on the command line.


rule run_case:
    input:
        case_inputs,
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
        pre=lambda w: _path(w.case, "pre"),
        post=lambda w: _path(w.case, "post"),
        masks=run_args,
        registration=lambda w: registration_of(w.case),
        threshold=lambda w: threshold_of(w.case),
        outdir=lambda w, output: os.path.dirname(output.report),
    shell:
        "NUMBA_NUM_THREADS={threads} {params.a0} run --pre {params.pre:q} "
        "--post {params.post:q} {params.masks} --registration {params.registration} "
        "--threshold {params.threshold} --threads {threads} --out {params.outdir:q} "
        "--quiet > {log:q} 2>&1"
