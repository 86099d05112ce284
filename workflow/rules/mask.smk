rule mask:
    input:
        unpack(mask_inputs),
    output:
        mask=plpaths.MASK,
        table=plpaths.MASK_TABLE,
    log:
        plpaths.log("mask", CELL_LOG),
    benchmark:
        plpaths.benchmark("mask", CELL_LOG)
    conda:
        ENV
    resources:
        mem_mb=mem_mb,
        runtime=stage_runtime,
    params:
        settings=lambda w: plcontracts.mask_contract(
            SETTINGS,
            w.method,
            float(w.ratio),
            int(w.seed),
            variant_of(w),
            w.arch,
            w.dataset,
        ).to_json(),
        scores=scores_arg,
    shell:
        "python -m prunelib mask --settings {params.settings:q} --init {input.init:q} "
        "{params.scores} --out-mask {output.mask:q} --out-table {output.table:q} 2> {log:q}"
