"""A table quoted in the docs is made by a script from a run kept in the repo, not typed:
every ``<!-- run_table FILE ... -->`` block in ``docs/*.md`` must be exactly
``benchmarks/run_table.py FILE``'s output, and the script must put on the page what the
rows say (collapse, empirical ratio, the seeds' mean)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks/run_table.py"
BLOCK = re.compile(r"<!-- run_table (\S+) [^\n]*-->\n(.*?)<!-- /run_table -->", re.DOTALL)


def _made(parquet: str, *args: str) -> str:
    return subprocess.run([sys.executable, str(SCRIPT), parquet, *args], cwd=REPO, capture_output=True, text=True,
                          check=True).stdout


def _blocks():
    return [(doc.name, m.group(1), m.group(2)) for doc in sorted((REPO / "docs").glob("*.md"))
            for m in BLOCK.finditer(doc.read_text())]


def test_the_docs_hold_at_least_one_made_table():
    assert any(src == "docs/runs/second_order.parquet" for _, src, _ in _blocks())


@pytest.mark.parametrize("doc,src,text", _blocks(), ids=lambda v: str(v)[:40])
def test_every_made_table_in_the_docs_is_the_scripts_output(doc, src, text):
    assert text == _made(src), f"{doc}: the table from {src} was edited by hand or its run changed"


def _row(method, ratio, top1, seed=0, arch="lenet300", r_e=None, collapsed=0):
    return {"dataset": "mnist", "arch": arch, "method": method, "ratio": float(ratio), "seed": seed, "variant": "none",
                "status": "ok", "top1": top1, "empirical_ratio": float(r_e if r_e is not None else ratio),
                "collapsed_layers": collapsed}


def test_the_table_says_what_the_rows_say(tmp_path):
    rows = [_row("dense", 1, 0.98), _row("snip", 10, 0.95), _row("snip", 10, 0.93, seed=1),
            _row("kron_obd", 10, 0.90, r_e=12.5), _row("global_magnitude", 10, 0.1135, collapsed=1),
            _row("snip", 10, 0.5, arch="lenet5")]
    path = tmp_path / "all.parquet"
    pd.DataFrame(rows).to_parquet(path)
    out = _made(str(path), "--archs", "lenet300", "--ratios", "10")
    lines = out.splitlines()
    assert "| dense (r = 1) | 98.00 |" in lines
    assert "| snip | 94.00 |" in lines  # the mean of the two seeds, lenet5 left out
    assert "| kron_obd | 90.00 (r_e 12.50) |" in lines
    assert "| global_magnitude | 11.35 † |" in lines
    assert "seeds 0, 1 (n = 2)" in out
