# The pruning grid: archs x datasets x methods x ratios x seeds, one job per stage.
#   data -> init -> score -> mask -> train -> eval -> measure (once, alone) -> aggregate
#   (iterative methods: data -> init -> imp rounds -> mask -> train -> eval -> measure -> aggregate)
# Settings: config.yaml (over the preset it names); schema: workflow/schemas/;
# methods, networks, datasets: prunelib/catalogue/registry.py and the plugins config.yaml names.


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/init.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/imp.smk"
include: "workflow/rules/mask.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/measure.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    default_target: True
    input:
        rules.aggregate.output,


onstart:
    # A SLURM run: the profile against the cluster, before the first sbatch.
    _slurm_problems = plslurm.check_run(workflow, SETTINGS.threads)
    if _slurm_problems:
        sys.exit("\n".join(f"prunelib: {p}" for p in _slurm_problems))
    # (cluster jobs run each stage in a process of their own, on another machine)
    if USE_WORKER and workflow.local_exec:
        plworker.start(WORKER_SOCKET, plpaths.WORKER_LOG, os.getpid())


onsuccess:
    plworker.stop_started()
    print(
        "Done. Tables: reports/tables/*.md (+ .csv, .tex); figures: reports/figures/; "
        "every eval row: results/all.parquet"
    )


onerror:
    plworker.stop_started()
    plconsole.report(log)
