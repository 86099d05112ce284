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


# A method that updates the weights it keeps (OBS, WoodFisher, L-OBS): the same mask
# stage, which also reads the scoring data and writes the updated weights beside the
# mask (prunelib/stages/mask.py); only these methods' cells use this rule.
ruleorder: mask_updated > mask


rule mask_updated:
    input:
        unpack(mask_updated_inputs),
    output:
        mask=plpaths.MASK,
        table=plpaths.MASK_TABLE,
        weights=plpaths.UPDATED,
    log:
        plpaths.log("mask", CELL_LOG),
    benchmark:
        plpaths.benchmark("mask", CELL_LOG)
    wildcard_constraints:
        method=_alternatives(UPDATING_METHODS) if UPDATING_METHODS else "(?!)",
    conda:
        ENV
    threads: SETTINGS.threads
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
        "{params.scores} --data {input.data:q} --out-mask {output.mask:q} --out-table {output.table:q} "
        "--out-weights {output.weights:q} --threads {threads} 2> {log:q}"
