"""One run's top-1 as one Markdown table: a row per method, a column per (network, r).

    python benchmarks/run_table.py docs/runs/second_order.parquet [--dataset mnist] \
        [--archs lenet300 lenet5] [--ratios 10 50] [--out FILE]

Reads a run's ``results/all.parquet`` (the aggregate rule's rows; a copy of the
``second_order`` preset's run whole is kept in ``docs/runs/``), so the tables quoted in
the docs are made, not typed: ``tests/test_docs_tables.py`` checks that the table in
``docs/methods.md`` is this script's output on that file.

* a cell is top-1 in %, the mean over the seeds present (n is stated under the table;
  with n = 1 no method is marked best);
* ``(r_e X)``: the mask's empirical ratio where it is not the requested one (filter and
  eigenbasis methods land on whole filters; ``target_reached: false`` is a method that
  could not reach r at all);
* ``†``: a layer collapsed (all its weights removed) in at least one seed;
* the dense control (r = 1) sits in the first column of its network.

Reads Parquet only (no torch).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from prunelib.config.grid import DENSE  # the dense control's method name (no torch)

#: r_e is printed where it differs from r by more than this share (an exact mask's r_e
#: differs from r only by the rounding of n / r).
RE_TOLERANCE = 1e-3


def _cell(sub: pd.DataFrame) -> str:
    if sub.empty:
        return ""
    text = f"{100 * sub['top1'].mean():.2f}"
    if (sub["collapsed_layers"] > 0).any():
        text += " †"
    r, r_e = float(sub["ratio"].iloc[0]), float(sub["empirical_ratio"].mean())
    if abs(r_e - r) > RE_TOLERANCE * r:
        text += f" (r_e {r_e:.2f})"
    return text


def table(df: pd.DataFrame, dataset: str, archs: list[str], ratios: list[float]) -> str:
    df = df[(df["dataset"] == dataset) & (df["status"] == "ok")]
    if "variant" in df:
        df = df[df["variant"].fillna("none") == "none"]
    df = df.assign(ratio=df["ratio"].astype(float))
    methods = [DENSE] + sorted(set(df["method"]) - {DENSE})
    head = [f"{arch} r = {r:g}" for arch in archs for r in ratios]
    lines = ["| method | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for m in methods:
        cells = []
        for arch in archs:
            for i, r in enumerate(ratios):
                if m == DENSE:
                    sub = df[(df.arch == arch) & (df.method == m)] if i == 0 else df.iloc[:0]
                else:
                    sub = df[(df.arch == arch) & (df.method == m) & (df.ratio == r)]
                cells.append(_cell(sub))
        if any(cells):
            lines.append(f"| {f'{DENSE} (r = 1)' if m == DENSE else m} | " + " | ".join(cells) + " |")
    seeds = sorted(df["seed"].unique().tolist())
    lines.append("")
    lines.append(f"Top-1 (%) on {dataset}, mean over seeds {', '.join(map(str, seeds))} (n = {len(seeds)}); "
                 "† a layer collapsed; (r_e X) the mask's empirical ratio where it is not r.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("parquet", help="a run's results/all.parquet")
    ap.add_argument("--dataset", default="mnist")
    ap.add_argument("--archs", nargs="+", default=["lenet300", "lenet5"])
    ap.add_argument("--ratios", nargs="+", type=float, default=[10.0, 50.0])
    ap.add_argument("--out", help="also write the table to this file")
    a = ap.parse_args(argv)
    text = table(pd.read_parquet(a.parquet), a.dataset, a.archs, a.ratios)
    print(text, end="")
    if a.out:
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
