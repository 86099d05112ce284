rule eval:
    input:
        final=f"{CELL}/final.pt",
        mask=f"{CELL}/mask.pt",
        data=data_path,
    output:
        f"{CELL}/eval.parquet",
    log:
        f"results/logs/eval/{CELL_LOG}.log",
    benchmark:
        f"results/benchmarks/eval/{CELL_LOG}.tsv"
    conda:
        ENV
    threads: SETTINGS.threads
    resources:
        mem_mb=mem_mb,
        runtime=stage_runtime,
    params:
        settings=lambda w: as_json(
            plconfig.eval_settings(
                SETTINGS,
                w.arch,
                w.dataset,
                w.method,
                float(w.ratio),
                int(w.seed),
                variant_of(w),
            )
        ),
        label=cell_label,
    shell:
        "python -m prunelib eval --settings {params.settings:q} --final {input.final:q} --mask {input.mask:q} "
        "--data {input.data:q} --out {output:q} --threads {threads} --label {params.label:q} 2> {log:q}"
