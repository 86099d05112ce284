"""How much a measured speed-up means: its spread across the seeds of one cell, and its
agreement between two runs of the same grid (issue 27, item 4).

    python benchmarks/speedup_agreement.py RUN_A/results/all.parquet RUN_B/results/all.parquet \
        [--column measured_speedup_infer_sparse] [--cell snip:64] [--out docs/...md]

For every cell (dataset, arch, method, ratio, variant) with the column measured in both
runs:

* **seed spread** (per run): max / min of the column over the cell's seeds (1.00 = the
  seeds agree exactly); the table gives its median and maximum over cells, and the value
  of ``--cell``;
* **run agreement**: per (cell, seed), the larger of value_A / value_B and its inverse
  (1.00 = the two runs agree exactly); median, 90th percentile and maximum over all
  (cell, seed) pairs, and the largest for ``--cell``;
* where the rows record them (the ``measure`` rule's rows): the median IQR / median over
  repeats, and how many rows reached the repeat cap.

The same models give the same speed-up up to noise (the artifacts are bit-identical
between runs on CPU), so both numbers measure the measurement.  Reads Parquet only (no
torch); prints Markdown (and writes it to ``--out``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

CELL = ["dataset", "arch", "method", "ratio", "variant"]


def _rows(path: str, column: str) -> pd.DataFrame:
    df = pd.read_parquet(path)
    if "variant" not in df:
        df["variant"] = "none"
    df["variant"] = df["variant"].fillna("none")
    df["ratio"] = df["ratio"].astype(float)
    return df[df[column].notna() & np.isfinite(df[column])][[*CELL, "seed", column]]


def seed_spread(df: pd.DataFrame, column: str) -> pd.Series:
    """max / min over the seeds of each cell (cells with >= 2 seeds)."""
    g = df.groupby(CELL)[column]
    out = (g.max() / g.min())[g.count() >= 2]
    return out


def run_agreement(a: pd.DataFrame, b: pd.DataFrame, column: str) -> pd.Series:
    """max(A/B, B/A) per (cell, seed) measured in both runs."""
    m = a.merge(b, on=[*CELL, "seed"], suffixes=("_a", "_b"))
    r = m[f"{column}_a"] / m[f"{column}_b"]
    return pd.Series(np.maximum(r, 1 / r).to_numpy(), index=pd.MultiIndex.from_frame(m[[*CELL, "seed"]]))


def _cell_key(spec: str) -> tuple[str, float]:
    method, ratio = spec.split(":")
    return method, float(ratio)


def report(path_a: str, path_b: str, column: str, cell: str) -> str:
    a, b = _rows(path_a, column), _rows(path_b, column)
    method, ratio = _cell_key(cell)
    lines = [f"`{column}`: A = `{path_a}`, B = `{path_b}`", "",
             "| | cells | median | max | " + f"{method} r={ratio:g} |", "|---|---|---|---|---|"]
    for name, df in (("A", a), ("B", b)):
        s = seed_spread(df, column)
        at = s[(s.index.get_level_values("method") == method) & (s.index.get_level_values("ratio") == ratio)]
        vals = df[(df["method"] == method) & (df["ratio"] == ratio)].sort_values("seed")[column]
        shown = f"{at.max():.2f} ({', '.join(f'{v:.2f}×' for v in vals)})" if len(at) else "—"
        lines.append(f"| seed spread max/min, run {name} | {len(s)} | {s.median():.2f} | {s.max():.2f} | {shown} |")
    agree = run_agreement(a, b, column)
    at = agree[(agree.index.get_level_values("method") == method) & (agree.index.get_level_values("ratio") == ratio)]
    lines += ["", "| run agreement max(A/B, B/A) | (cell, seed) pairs | median | 90th pct | max | "
              f"{method} r={ratio:g} (max over seeds) |", "|---|---|---|---|---|---|",
              f"| A vs B | {len(agree)} | {agree.median():.2f} | {agree.quantile(0.9):.2f} | {agree.max():.2f} | "
              f"{at.max():.2f} |" if len(agree) else "| A vs B | 0 | — | — | — | — |"]
    for name, path in (("A", path_a), ("B", path_b)):
        df = pd.read_parquet(path)
        iqr, reps = column + "_iqr", column + "_repeats"
        if iqr in df and df[iqr].notna().any():
            d = df[df[column].notna()]
            lines.append(f"\nrun {name}: IQR / median over repeats: median {(d[iqr] / d[column]).median():.2f}; "
                         f"repeats: median {d[reps].median():.0f}, at most {d[reps].max():.0f} "
                         f"({(d[reps] == d[reps].max()).mean():.0%} of the rows at that count)")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--column", default="measured_speedup_infer_sparse")
    p.add_argument("--cell", default="snip:64", help="method:ratio whose numbers are shown on their own")
    p.add_argument("--out", default="", help="also write the Markdown here")
    a = p.parse_args(argv)
    text = report(a.run_a, a.run_b, a.column, a.cell)
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
