# One rule per stage; each calls the a0verify command line (stage logic lives in the package).


rule segment_tumor:
    input:
        pre=lambda w: _path(w.case, "pre"),
    output:
        mask=f"{OUT}/{{case}}/work/tumor_mask.nii.gz",
    log:
        f"{OUT}/logs/{{case}}/segment_tumor.log",
    conda:
        "../envs/a0verify.yaml"
    threads: RES["segment"]["threads"]
    resources:
        mem_mb=RES["segment"]["mem_mb"],
        runtime=RES["segment"]["runtime"],
    params:
        a0=A0,
        seeds=lambda w: seeds_of(w.case, "tumor"),
    shell:
        "{params.a0} segment tumor --image {input.pre:q} {params.seeds} --out {output.mask:q} "
        "> {log:q} 2>&1"


rule segment_ablation:
    input:
        post=lambda w: _path(w.case, "post"),
    output:
        mask=f"{OUT}/{{case}}/work/ablation_mask.nii.gz",
    log:
        f"{OUT}/logs/{{case}}/segment_ablation.log",
    conda:
        "../envs/a0verify.yaml"
    threads: RES["segment"]["threads"]
    resources:
        mem_mb=RES["segment"]["mem_mb"],
        runtime=RES["segment"]["runtime"],
    params:
        a0=A0,
        seeds=lambda w: seeds_of(w.case, "ablation"),
    shell:
        "{params.a0} segment ablation --image {input.post:q} {params.seeds} "
        "--out {output.mask:q} > {log:q} 2>&1"


rule register:
    input:
        pre=lambda w: _path(w.case, "pre"),
        post=lambda w: _path(w.case, "post"),
        ablation=ablation_input,
        tumor=tumor_input,
    output:
        transform=f"{OUT}/{{case}}/work/registration/transform.h5",
        record=f"{OUT}/{{case}}/work/registration/registration.json",
    log:
        f"{OUT}/logs/{{case}}/register.log",
    conda:
        "../envs/a0verify.yaml"
    threads: RES["register"]["threads"]
    resources:
        mem_mb=RES["register"]["mem_mb"],
        runtime=RES["register"]["runtime"],
    params:
        a0=A0,
        method=lambda w: registration_of(w.case),
        outdir=lambda w, output: os.path.dirname(output.transform),
    shell:
        "{params.a0} register --fixed {input.post:q} --moving {input.pre:q} "
        "--ablation {input.ablation:q} --tumor {input.tumor:q} --method {params.method} "
        "--threads {threads} "
        "--out {params.outdir:q} > {log:q} 2>&1"


rule margin:
    input:
        unpack(registration_inputs),
        tumor=tumor_input,
        ablation=ablation_input,
        post=lambda w: _path(w.case, "post"),
    output:
        report=f"{OUT}/{{case}}/report.json",
    log:
        f"{OUT}/logs/{{case}}/margin.log",
    conda:
        "../envs/a0verify.yaml"
    threads: RES["margin"]["threads"]
    resources:
        mem_mb=RES["margin"]["mem_mb"],
        runtime=RES["margin"]["runtime"],
    params:
        a0=A0,
        registration=registration_args,
        threshold=lambda w: threshold_of(w.case),
        outdir=lambda w, output: os.path.dirname(output.report),
    shell:
        "NUMBA_NUM_THREADS={threads} {params.a0} margin --tumor {input.tumor:q} "
        "--ablation {input.ablation:q} --post {input.post:q} {params.registration} "
        "--threshold {params.threshold} --out {params.outdir:q} --quiet > {log:q} 2>&1"


rule report:
    input:
        report=f"{OUT}/{{case}}/report.json",
    output:
        html=f"{OUT}/{{case}}/report.html",
    log:
        f"{OUT}/logs/{{case}}/report.log",
    conda:
        "../envs/a0verify.yaml"
    threads: RES["report"]["threads"]
    resources:
        mem_mb=RES["report"]["mem_mb"],
        runtime=RES["report"]["runtime"],
    params:
        a0=A0,
        outdir=lambda w, input: os.path.dirname(input.report),
    shell:
        "{params.a0} report {params.outdir:q} --quiet > {log:q} 2>&1"
