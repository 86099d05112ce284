rule score:
    input:
        init=init_path,
        data=data_path,
    output:
        plpaths.SCORES,
    log:
        plpaths.log("score", plpaths.SCORES_ID),
    benchmark:
        plpaths.benchmark("score", plpaths.SCORES_ID)
    conda:
        ENV
    threads: SETTINGS.threads
    resources:
        mem_mb=mem_mb,
        runtime=stage_runtime,
    params:
        settings=lambda w: plcontracts.score_contract(
            SETTINGS, w.method, int(w.seed), w.arch, w.dataset
        ).to_json(),
    shell:
        "python -m prunelib score --settings {params.settings:q} --init {input.init:q} "
        "--data {input.data:q} --out {output:q} --threads {threads} 2> {log:q}"
