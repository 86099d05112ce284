# Iterative magnitude pruning: a chain of rounds per (dataset, arch, seed, method).
# Round 0 trains the dense network (and keeps the weights at the rewind step); round j
# prunes round j-1's trained weights and retrains. Every round's mask and weights stay
# under results/.../{method}/imp/round{j}/; the cells of the grid take theirs from it.
ROUND0 = {
    role: str(path).replace("{round}", "0")
    for role, path in plpaths.imp_round_files(plpaths.IMP_ROUND).items()
}


rule imp_dense:
    input:
        init=init_path,
        data=data_path,
    output:
        weights=ROUND0["weights"],
        mask=ROUND0["mask"],
        table=ROUND0["mask_table"],
        log_table=ROUND0["train_log"],
        rewind=ROUND0["rewind"],
    log:
        plpaths.log("imp", plpaths.imp_round_id(0)),
    benchmark:
        plpaths.benchmark("imp", plpaths.imp_round_id(0))
    wildcard_constraints:
        method="|".join(plconfig.IMP_METHODS),
    conda:
        ENV
    threads: SETTINGS.threads
    resources:
        mem_mb=mem_mb,
        runtime=train_runtime,
    params:
        settings=lambda w: plcontracts.imp_round_contract(
            SETTINGS, w.method, int(w.seed), w.dataset, 0, w.arch
        ).to_json(),
        label=imp_round_label,
    shell:
        "python -m prunelib imp-round --settings {params.settings:q} --init {input.init:q} "
        "--data {input.data:q} --out-weights {output.weights:q} --out-mask {output.mask:q} "
        "--out-mask-table {output.table:q} --out-train-log {output.log_table:q} "
        "--out-rewind {output.rewind:q} --threads {threads} --label {params.label:q} 2>&1 | "
        + TEE_LOG


rule imp_round:
    input:
        unpack(imp_round_inputs),
    output:
        weights=plpaths.IMP_WEIGHTS,
        mask=plpaths.IMP_MASK,
        table=plpaths.IMP_MASK_TABLE,
        log_table=plpaths.IMP_TRAIN_LOG,
    log:
        plpaths.log("imp", plpaths.imp_round_id()),
    benchmark:
        plpaths.benchmark("imp", plpaths.imp_round_id())
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
        settings=lambda w: plcontracts.imp_round_contract(
            SETTINGS, w.method, int(w.seed), w.dataset, int(w.round), w.arch
        ).to_json(),
        rewind=rewind_arg,
        label=imp_round_label,
    shell:
        "python -m prunelib imp-round --settings {params.settings:q} --prev-weights {input.prev_weights:q} "
        "--prev-mask {input.prev_mask:q} {params.rewind} --data {input.data:q} "
        "--out-weights {output.weights:q} --out-mask {output.mask:q} --out-mask-table {output.table:q} "
        "--out-train-log {output.log_table:q} --threads {threads} --label {params.label:q} 2>&1 | "
        + TEE_LOG


rule imp_rounds:
    input:
        imp_chain_weights,
    output:
        plpaths.IMP_ROUNDS_TABLE,
    log:
        plpaths.log("imp", plpaths.IMP_ROUNDS_ID),
    wildcard_constraints:
        method="|".join(plconfig.IMP_METHODS),
    conda:
        ENV
    shell:
        "python -m prunelib imp-rounds --out {output:q} {input:q} 2> {log:q}"
