rule mask:
    input:
        unpack(mask_inputs),
    output:
        mask=f"{CELL}/mask.pt",
        table=f"{CELL}/mask.parquet",
    log:
        "results/logs/mask/{dataset}/{arch}/seed{seed}/{method}/r{ratio}.log",
    benchmark:
        "results/benchmarks/mask/{dataset}/{arch}/seed{seed}/{method}/r{ratio}.tsv"
    conda:
        ENV
    resources:
        mem_mb=mem_mb,
        runtime=stage_runtime,
    params:
        settings=lambda w: as_json(
            plconfig.mask_settings(SETTINGS, w.method, float(w.ratio), int(w.seed))
        ),
        scores=scores_arg,
    shell:
        "python -m prunelib mask --settings {params.settings:q} --init {input.init:q} "
        "{params.scores} --out-mask {output.mask:q} --out-table {output.table:q} 2> {log:q}"
