rule train:
    input:
        unpack(train_inputs),
    output:
        weights=plpaths.FINAL,
        log_table=plpaths.TRAIN_LOG,
    log:
        plpaths.log("train", CELL_LOG),
    benchmark:
        plpaths.benchmark("train", CELL_LOG)
    conda:
        ENV
    threads: SETTINGS.threads
    resources:
        mem_mb=mem_mb,
        runtime=train_runtime,
    params:
        settings=lambda w: plcontracts.train_contract(
            SETTINGS,
            w.method,
            float(w.ratio),
            int(w.seed),
            w.dataset,
            variant_of(w),
            w.arch,
        ).to_json(),
        label=cell_label,
        reuse=reuse_arg,
    shell:
        "python -m prunelib train --settings {params.settings:q} --init {input.init:q} --mask {input.mask:q} "
        "--data {input.data:q} --out-weights {output.weights:q} --out-log {output.log_table:q} "
        "--threads {threads} --label {params.label:q} {params.reuse} 2>&1 | " + TEE_LOG
