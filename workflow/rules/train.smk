rule train:
    input:
        init=init_path,
        mask=f"{CELL}/mask.pt",
        data=data_path,
    output:
        weights=f"{CELL}/final.pt",
        log_table=f"{CELL}/train_log.parquet",
    log:
        "results/logs/train/{dataset}/{arch}/seed{seed}/{method}/r{ratio}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{arch}/seed{seed}/{method}/r{ratio}.tsv"
    conda:
        ENV
    threads: SETTINGS.threads
    resources:
        mem_mb=mem_mb,
        runtime=train_runtime,
    params:
        settings=lambda w: as_json(
            plconfig.train_settings(SETTINGS, int(w.seed), w.dataset)
        ),
        label=cell_label,
    shell:
        "python -m prunelib train --settings {params.settings:q} --init {input.init:q} --mask {input.mask:q} "
        "--data {input.data:q} --out-weights {output.weights:q} --out-log {output.log_table:q} "
        "--threads {threads} --label {params.label:q} 2>&1 | tee {log:q}"
