rule data:
    output:
        plpaths.DATA,
    log:
        plpaths.log("data", "{dataset}"),
    localrule: True
    conda:
        ENV
    params:
        root=SETTINGS.data_dir,
        settings=lambda w: plcontracts.data_contract(w.dataset).to_json(),
    shell:
        "python -m prunelib data --dataset {wildcards.dataset} --root {params.root:q} --out {output:q} "
        "--settings {params.settings:q} 2> {log:q}"
