rule init:
    output:
        weights=plpaths.INIT,
        table=plpaths.INIT_TABLE,
    log:
        plpaths.log("init", plpaths.INIT_ID),
    benchmark:
        plpaths.benchmark("init", plpaths.INIT_ID)
    conda:
        ENV
    params:
        settings=lambda w: plcontracts.init_contract(
            SETTINGS, w.arch, w.dataset, int(w.seed), w.scheme
        ).to_json(),
    shell:
        "python -m prunelib init --settings {params.settings:q} --out-weights {output.weights:q} "
        "--out-table {output.table:q} 2> {log:q}"
