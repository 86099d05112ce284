"""Are two runs' results the same?  ``prunelib audit rows A.parquet B.parquet``.

Compares two tables of eval rows (``results/all.parquet``, or single ``eval.parquet``
files) cell by cell, matched on (dataset, arch, method, ratio, seed, variant), column
by column.  Timing columns always differ between runs, and provenance columns (versions,
device, the settings hash) may differ legitimately; both are reported apart and do not
count as a difference.  Exact equality: on CPU the same config and seed give
bit-identical results, so any difference is real.
"""

from __future__ import annotations

import math

from prunelib.foundations.artifacts import read_parquet_rows

from prunelib.foundations.eval_row import (KEY, LINEAGE_COLUMNS, PROVENANCE, RERUN_VARYING_COLUMNS,  # noqa: F401
                                           TIMING_COLUMNS)


def _same(x, y) -> bool:
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    return x == y


def compare(path_a, path_b) -> dict:
    # (a comparison of any two tables, e.g. an old run's copy: no sidecar needed)
    rows_a, rows_b = read_parquet_rows(path_a, verify=False), read_parquet_rows(path_b, verify=False)

    def keyed(rows):
        return {tuple(r.get(k, "none") for k in KEY): r for r in rows}

    a, b = keyed(rows_a), keyed(rows_b)
    columns = sorted(({c for r in rows_a for c in r} & {c for r in rows_b for c in r}) - set(TIMING_COLUMNS))
    differing: dict[str, int] = {}
    for key in sorted(set(a) & set(b), key=str):
        for c in columns:
            if not _same(a[key].get(c), b[key].get(c)):
                differing[c] = differing.get(c, 0) + 1
    results = {c: n for c, n in differing.items() if c not in PROVENANCE}
    return {"a": str(path_a), "b": str(path_b), "rows_a": len(a), "rows_b": len(b),
            "only_in_a": len(set(a) - set(b)), "only_in_b": len(set(b) - set(a)),
            "columns_compared": len([c for c in columns if c not in PROVENANCE]),
            "differing_columns": results,
            "differing_provenance": {c: n for c, n in differing.items() if c in PROVENANCE},
            "identical": not results and set(a) == set(b)}


def render(rep: dict) -> str:
    verdict = ("identical" if rep["identical"] else "DIFFERENT")
    lines = [f"A = {rep['a']} ({rep['rows_a']} rows)", f"B = {rep['b']} ({rep['rows_b']} rows)",
             f"rows only in A: {rep['only_in_a']}, only in B: {rep['only_in_b']}",
             f"{rep['columns_compared']} result columns compared (timing and provenance aside): {verdict}"]
    lines += [f"  {c}: differs in {n} rows" for c, n in sorted(rep["differing_columns"].items())]
    if rep["differing_provenance"]:
        lines.append("provenance that differs (not a result): " + ", ".join(
            f"{c} ({n} rows)" for c, n in sorted(rep["differing_provenance"].items())))
    return "\n".join(lines)
