# Iterative magnitude pruning: a chain of rounds per (dataset, arch, seed, method).
# Round 0 trains the dense network (and keeps the weights at the rewind step); round j
# prunes round j-1's trained weights and retrains. Every round's mask and weights stay
# under results/.../{method}/imp/round{j}/; the cells of the grid take theirs from it.


rule imp_dense:
    input:
        init=init_path,
        data=data_path,
    output:
        weights=f"{IMP_ROUND}/weights.pt".replace("{round}", "0"),
        mask=f"{IMP_ROUND}/mask.pt".replace("{round}", "0"),
        table=f"{IMP_ROUND}/mask.parquet".replace("{round}", "0"),
        log_table=f"{IMP_ROUND}/train_log.parquet".replace("{round}", "0"),
        rewind=f"{IMP_ROUND}/rewind.pt".replace("{round}", "0"),
    log:
        "results/logs/imp/{dataset}/{arch}/seed{seed}/{method}/round0.log",
    benchmark:
        "results/benchmarks/imp/{dataset}/{arch}/seed{seed}/{method}/round0.tsv"
    wildcard_constraints:
        method="|".join(plconfig.IMP_METHODS),
    conda:
        ENV
    threads: SETTINGS.threads
    resources:
        mem_mb=mem_mb,
        runtime=train_runtime,
    params:
        settings=lambda w: as_json(
            plconfig.imp_round_settings(SETTINGS, w.method, int(w.seed), w.dataset, 0)
        ),
        out_dir=lambda w, output: str(Path(output.weights).parent),
        label=imp_round_label,
    shell:
        "python -m prunelib imp-round --settings {params.settings:q} --init {input.init:q} "
        "--data {input.data:q} --out-dir {params.out_dir:q} --threads {threads} "
        "--label {params.label:q} 2>&1 | tee {log:q}"


rule imp_round:
    input:
        unpack(imp_round_inputs),
    output:
        weights=f"{IMP_ROUND}/weights.pt",
        mask=f"{IMP_ROUND}/mask.pt",
        table=f"{IMP_ROUND}/mask.parquet",
        log_table=f"{IMP_ROUND}/train_log.parquet",
    log:
        "results/logs/imp/{dataset}/{arch}/seed{seed}/{method}/round{round}.log",
    benchmark:
        "results/benchmarks/imp/{dataset}/{arch}/seed{seed}/{method}/round{round}.tsv"
    wildcard_constraints:
        method="|".join(plconfig.IMP_METHODS),
        round=r"[1-9][0-9]*",
    conda:
        ENV
    threads: SETTINGS.threads
    resources:
        mem_mb=mem_mb,
        runtime=train_runtime,
    params:
        settings=lambda w: as_json(
            plconfig.imp_round_settings(
                SETTINGS, w.method, int(w.seed), w.dataset, int(w.round)
            )
        ),
        out_dir=lambda w, output: str(Path(output.weights).parent),
        prev=lambda w, input: str(Path(input.prev_weights).parent),
        rewind=rewind_arg,
        label=imp_round_label,
    shell:
        "python -m prunelib imp-round --settings {params.settings:q} --prev {params.prev:q} {params.rewind} "
        "--data {input.data:q} --out-dir {params.out_dir:q} --threads {threads} "
        "--label {params.label:q} 2>&1 | tee {log:q}"


rule imp_rounds:
    input:
        imp_chain_weights,
    output:
        "results/{dataset}/{arch}/seed{seed}/{method}/imp/rounds.parquet",
    log:
        "results/logs/imp/{dataset}/{arch}/seed{seed}/{method}/rounds.log",
    wildcard_constraints:
        method="|".join(plconfig.IMP_METHODS),
    conda:
        ENV
    shell:
        "python -m prunelib imp-rounds --out {output:q} {input:q} 2> {log:q}"
