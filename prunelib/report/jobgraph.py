"""The job graph of ``snakemake --report``: one node per rule, as ``snakemake --rulegraph``.

Why it needs us: Snakemake's HTML report (snakemake/report/rulegraph_spec.py, 9.x) draws
its graph from the DAG's topological levels and keeps one job *per rule and level*.  A
dense control has no ``score`` job, so its ``mask``, ``train`` and ``eval`` sit one level
earlier than a pruned cell's, and the report listed each of those rules twice under the
same name (an IMP method or a sanity-check variant shifts them again).  ``rulegraph_spec``
below keeps one node per rule, at the deepest level any of its jobs reaches, and draws an
edge wherever some job of one rule feeds some job of another; ``install`` puts it in
place of Snakemake's before the report is made (the Snakefile calls it; harmless for
every other invocation, which never draws that graph).  Nothing here imports torch or
pandas.
"""

from __future__ import annotations


def rulegraph_spec(dag):
    """The report's graph as Snakemake's own ``rulegraph_spec`` returns it: ({nodes,
    links, links_direct}, xmax, ymax); nodes in order of their rule's deepest level
    (then name), one per rule; a link from level i to level i + 1 is "direct"."""
    levels = [list(level) for level in dag.toposorted()]
    depth: dict[str, int] = {}
    for i, level in enumerate(levels):
        for job in level:
            depth[job.rule.name] = i  # (levels ascend: the last seen is the deepest)
    rules = sorted(depth, key=lambda name: (depth[name], name))
    idx = {name: i for i, name in enumerate(rules)}
    nodes = [{"rule": name, "fx": 10, "fy": i * 50} for i, name in enumerate(rules)]
    edges = sorted({(idx[dep.rule.name], idx[job.rule.name])
                    for level in levels for job in level for dep in dag.dependencies[job]})

    def link(source, target):
        return {"target": target, "source": source, "sourcerule": rules[source], "targetrule": rules[target],
                "value": 1}

    spec = {"nodes": nodes,
            "links": [link(s, t) for s, t in edges if t - s != 1],
            "links_direct": [link(s, t) for s, t in edges if t - s == 1]}
    return spec, 100, max((n["fy"] for n in nodes), default=0)


def install() -> bool:
    """Use ``rulegraph_spec`` in Snakemake's HTML report (whether or not its module is
    imported yet); False where this Snakemake has no such function to replace."""
    import sys

    try:
        from snakemake.report import rulegraph_spec as module
    except ImportError:
        return False
    if not hasattr(module, "rulegraph_spec"):
        return False
    module.rulegraph_spec = rulegraph_spec
    reporter = sys.modules.get("snakemake.report.html_reporter")  # (it imported the name itself)
    if reporter is not None and hasattr(reporter, "rulegraph_spec"):
        reporter.rulegraph_spec = rulegraph_spec
    return True
