rule init:
    output:
        weights=plpaths.INIT,
        table=plpaths.INIT_TABLE,
    log:
        plpaths.log("init", "{dataset}/{arch}/seed{seed}/init_{scheme}"),
    benchmark:
        plpaths.benchmark("init", "{dataset}/{arch}/seed{seed}/init_{scheme}")
    conda:
        ENV
    params:
        settings=lambda w: as_json(
            plconfig.init_settings(SETTINGS, w.arch, w.dataset, int(w.seed), w.scheme)
        ),
    shell:
        "python -m prunelib init --settings {params.settings:q} --out-weights {output.weights:q} "
        "--out-table {output.table:q} 2> {log:q}"
