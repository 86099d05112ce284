# Tables, figures and the resolved config of the whole grid (the eval rows, with the
# measure rule's speed-ups merged in: its new input reruns aggregate, and only aggregate,
# so its shell string gained --speedups at no extra cost); `snakemake --report
# reports/report.html` shows every output flagged report() with its caption.
from prunelib.report import jobgraph as pljobgraph
from prunelib.report import layout as plreport

# snakemake --report: one node per rule in its job graph (prunelib/report/jobgraph.py)
pljobgraph.install()

PAIRS = sorted({(c.dataset, c.arch) for c in CELLS})
REPORT_CHOICES = plreport.report_choices(
    RESOLVED["report"],
    [plconfig.DENSE, *SETTINGS.grid.methods],
    [1, *SETTINGS.grid.ratios],
)
REPORT_FILES = {
    kind: [plpaths.report(p) for p in paths]
    for kind, paths in plreport.output_names(
        PAIRS,
        sorted({a for _, a in PAIRS}),
        RESOLVED["report"],
        [plconfig.DENSE, *SETTINGS.grid.methods],
        [1, *SETTINGS.grid.ratios],
        SETTINGS.grid.variants,
        any(m in plconfig.IMP_METHODS for m in SETTINGS.grid.methods),
        plreport.writes_checkpoints(RESOLVED),
        plreport.writes_spectra(RESOLVED),
    ).items()
}

# per-layer densities of the heat map, and the training logs of the curves' small
# multiples: every method at report.curves.ratio, and the dense control
HEATMAP_MASKS = [
    plpaths.MASK_TABLE.format(**c.wildcards())
    for c in CELLS
    if float(c.ratio) == REPORT_CHOICES["heatmap_ratio"]
]
CURVE_LOGS = [
    plpaths.TRAIN_LOG.format(**c.wildcards())
    for c in CELLS
    if c.variant == "none"
    and (
        float(c.ratio) == REPORT_CHOICES["curves"]["ratio"]
        or c.method == plconfig.DENSE
    )
]


rule aggregate:
    input:
        evals=eval_paths(),
        masks=HEATMAP_MASKS,
        curves=CURVE_LOGS,
        imp_rounds=imp_rounds_paths(),
        speedups=plpaths.SPEEDUPS,
    output:
        all=plpaths.ALL_ROWS,
        tables=REPORT_FILES["md"],
        html=[
            report(
                p,
                caption=f"../report/{plreport.caption_name(p)}.rst",
                category="Tables",
            )
            for p in REPORT_FILES["html"]
        ],
        csv=[
            report(
                p,
                caption=f"../report/{plreport.caption_name(p)}.rst",
                category="Tables (CSV)",
            )
            for p in REPORT_FILES["csv"]
        ],
        figures=[
            report(
                p,
                caption=f"../report/{plreport.caption_name(p)}.rst",
                category="Figures",
            )
            for p in REPORT_FILES["figures"]
        ],
        config=report(
            plpaths.REPORT_CONFIG,
            caption="../report/config.rst",
            category="Configuration",
        ),
    log:
        plpaths.AGGREGATE_LOG,
    localrule: True
    conda:
        ENV
    params:
        config=as_json(RESOLVED),
        reports=lambda w, output: str(Path(output.config).parent),
    shell:
        "python -m prunelib aggregate --all {output.all:q} --reports {params.reports:q} --config-json {params.config:q} "
        "--imp-rounds {input.imp_rounds:q} --masks {input.masks:q} --curves {input.curves:q} "
        "--speedups {input.speedups:q} -- {input.evals:q} 2>&1 | tee {log:q}"
