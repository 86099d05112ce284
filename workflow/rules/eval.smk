rule eval:
    input:
        final=plpaths.FINAL,
        mask=plpaths.MASK,
        data=data_path,
    output:
        plpaths.EVAL,
    log:
        plpaths.log("eval", CELL_LOG),
    benchmark:
        plpaths.benchmark("eval", CELL_LOG)
    conda:
        ENV
    threads: SETTINGS.threads
    resources:
        mem_mb=mem_mb,
        runtime=stage_runtime,
    params:
        settings=lambda w: plcontracts.eval_contract(
            SETTINGS,
            w.arch,
            w.dataset,
            w.method,
            float(w.ratio),
            int(w.seed),
            variant_of(w),
        ).to_json(),
        label=cell_label,
    shell:
        "python -m prunelib eval --settings {params.settings:q} --final {input.final:q} --mask {input.mask:q} "
        "--data {input.data:q} --out {output:q} --threads {threads} --label {params.label:q} 2> {log:q}"
