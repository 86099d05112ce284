# Measured speed-ups (prunelib/stages/measure.py): every cell's, timed one after another
# by one job that runs alone. It needs every eval row and every other input of aggregate
# (so it starts after every other job of the grid) and aggregate needs it (so aggregate
# waits): no other job of the grid is left to run beside it (tests/test_measure.py checks
# this on the job graph). Its threads are all of Snakemake's cores as well, so that nothing
# else is scheduled beside it even when a run targets something else too. The timing
# itself uses the config's `threads` torch threads, as the eval rows did. On SLURM it is
# one submission; the slurm profile asks for its node exclusively (set-resources).


rule measure:
    input:
        **measure_inputs(),
    output:
        plpaths.SPEEDUPS,
    log:
        plpaths.MEASURE_LOG,
    benchmark:
        plpaths.MEASURE_BENCHMARK
    conda:
        ENV
    threads: all_cores()
    resources:
        mem_mb=lambda w: int(2000 * max(plregistry.arch(c.arch).cost for c in CELLS)),
        runtime=lambda w: max(10, len(CELLS)),
    params:
        settings=plcontracts.measure_contract(SETTINGS).to_json(),
        threads=SETTINGS.threads,
    shell:
        "python -m prunelib measure --settings {params.settings:q} --data {input.data:q} --out {output:q} "
        "--threads {params.threads} -- {input.evals:q} 2> {log:q}"
