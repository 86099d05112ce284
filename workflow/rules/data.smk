rule data:
    output:
        "results/data/{dataset}.pt",
    log:
        "results/logs/data/{dataset}.log",
    localrule: True
    conda:
        ENV
    params:
        root=SETTINGS.data_dir,
    shell:
        "python -m prunelib data --dataset {wildcards.dataset} --root {params.root:q} --out {output:q} 2> {log:q}"
