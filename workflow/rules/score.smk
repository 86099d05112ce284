rule score:
    input:
        init=init_path,
        data=data_path,
    output:
        plpaths.SCORES,
    log:
        plpaths.log("score", "{dataset}/{arch}/seed{seed}/{method}"),
    benchmark:
        plpaths.benchmark("score", "{dataset}/{arch}/seed{seed}/{method}")
    conda:
        ENV
    threads: SETTINGS.threads
    resources:
        mem_mb=mem_mb,
        runtime=stage_runtime,
    params:
        settings=lambda w: as_json(
            plconfig.score_settings(SETTINGS, w.method, int(w.seed), w.arch, w.dataset)
        ),
    shell:
        "python -m prunelib score --settings {params.settings:q} --init {input.init:q} "
        "--data {input.data:q} --out {output:q} --threads {threads} 2> {log:q}"
