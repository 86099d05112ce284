rule init:
    output:
        weights="results/{dataset}/{arch}/seed{seed}/init_{scheme}.pt",
        table="results/{dataset}/{arch}/seed{seed}/init_{scheme}.parquet",
    log:
        "results/logs/init/{dataset}/{arch}/seed{seed}/init_{scheme}.log",
    benchmark:
        "results/benchmarks/init/{dataset}/{arch}/seed{seed}/init_{scheme}.tsv"
    conda:
        ENV
    params:
        settings=lambda w: as_json(
            plconfig.init_settings(SETTINGS, w.arch, w.dataset, int(w.seed), w.scheme)
        ),
    shell:
        "python -m prunelib init --settings {params.settings:q} --out-weights {output.weights:q} "
        "--out-table {output.table:q} 2> {log:q}"
