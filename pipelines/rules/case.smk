rule run_case:
    input:
        pre=lambda w: CASES[w.case]["pre"],
        post=lambda w: CASES[w.case]["post"],
        tumor=lambda w: CASES[w.case]["tumor"],
        ablation=lambda w: CASES[w.case]["ablation"],
    output:
        report=f"{OUT}/{{case}}/report.json",
    log:
        f"{OUT}/logs/{{case}}.log",
    threads: config.get("threads_per_case", 1)
    params:
        threshold=config.get("threshold_mm", 5.0),
        registration=config.get("registration", "deformable"),
        outdir=lambda w: f"{OUT}/{w.case}",
    shell:
        "a0verify run --pre {input.pre} --post {input.post} --tumor {input.tumor} "
        "--ablation {input.ablation} --out {params.outdir} --threshold {params.threshold} "
        "--registration {params.registration} --threads {threads} > {log} 2>&1"
