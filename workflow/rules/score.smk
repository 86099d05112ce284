rule score:
    input:
        init=init_path,
        data=data_path,
    output:
        "results/{dataset}/{arch}/seed{seed}/{method}/scores.pt",
    log:
        "results/logs/score/{dataset}/{arch}/seed{seed}/{method}.log",
    benchmark:
        "results/benchmarks/score/{dataset}/{arch}/seed{seed}/{method}.tsv"
    conda:
        ENV
    threads: SETTINGS.threads
    resources:
        mem_mb=mem_mb,
        runtime=stage_runtime,
    params:
        settings=lambda w: as_json(
            plconfig.score_settings(SETTINGS, w.method, int(w.seed))
        ),
    shell:
        "python -m prunelib score --settings {params.settings:q} --init {input.init:q} "
        "--data {input.data:q} --out {output:q} --threads {threads} 2> {log:q}"
