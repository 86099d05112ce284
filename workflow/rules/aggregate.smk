PAIRS = sorted({(c.dataset, c.arch) for c in CELLS})


rule aggregate:
    input:
        evals=eval_paths(),
    output:
        all="results/all.parquet",
        tables=[f"reports/tables/{d}_{a}.md" for d, a in PAIRS],
        figures=[f"reports/figures/{d}_{a}_accuracy.png" for d, a in PAIRS],
    log:
        "results/logs/aggregate.log",
    localrule: True
    conda:
        ENV
    shell:
        "python -m prunelib aggregate --all {output.all:q} --reports reports {input.evals:q} 2>&1 | tee {log:q}"
