rule mask:
    input:
        unpack(mask_inputs),
    output:
        mask=f"{CELL}/mask.pt",
        table=f"{CELL}/mask.parquet",
    log:
        f"results/logs/mask/{CELL_LOG}.log",
    benchmark:
        f"results/benchmarks/mask/{CELL_LOG}.tsv"
    conda:
        ENV
    resources:
        mem_mb=mem_mb,
        runtime=stage_runtime,
    params:
        settings=lambda w: as_json(
            plconfig.mask_settings(
                SETTINGS, w.method, float(w.ratio), int(w.seed), variant_of(w)
            )
        ),
        scores=scores_arg,
    shell:
        "python -m prunelib mask --settings {params.settings:q} --init {input.init:q} "
        "{params.scores} --out-mask {output.mask:q} --out-table {output.table:q} 2> {log:q}"
