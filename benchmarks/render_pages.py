"""Render a finished run's report pages to PNG in a headless browser, to look at them
as a reader would (issue 27: the tables page must not overflow sideways, the Snakemake
report's job graph must list each rule once).

    python benchmarks/render_pages.py --reports reports --out docs/renders

writes ``tables.png`` (the aggregate's HTML tables, ``reports/tables/*.html``) and, where
``reports/report.html`` exists (``snakemake --report reports/report.html``), ``report.png``;
it also prints each page's width against the window's, the overflow check the test
``tests/test_figures.py::test_wide_html_table_scrolls_inside_the_page`` makes.  Needs
Debian's ``chromium`` (``apt-get install chromium``); the figures themselves are PNGs
already (``reports/figures/``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

WINDOW = (1400, 1000)


def chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                           f"--window-size={WINDOW[0]},{WINDOW[1]}", *args],
                          capture_output=True, text=True, timeout=300)


def page_width(page: Path) -> tuple[int, int]:
    """(document width, window width) of ``page`` once laid out."""
    probe = ("<script>window.addEventListener('load', () => {document.title = 'page ' + "
             "document.documentElement.scrollWidth + ' window ' + window.innerWidth;});</script>")
    tmp = page.with_name(page.stem + ".probe.html")
    tmp.write_text(page.read_text().replace("</body>", probe + "</body>"))
    try:
        out = chromium("--virtual-time-budget=5000", "--dump-dom", tmp.resolve().as_uri())
    finally:
        tmp.unlink()
    found = re.search(r"<title>page (\d+) window (\d+)</title>", out.stdout)
    if not found:
        raise SystemExit(f"render_pages: could not lay out {page}: {out.stderr[-500:]}")
    return int(found.group(1)), int(found.group(2))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", default="reports")
    ap.add_argument("--out", default="docs/renders")
    args = ap.parse_args(argv)
    if shutil.which("chromium") is None:
        raise SystemExit("render_pages: no chromium on PATH (apt-get install chromium)")
    reports, out = Path(args.reports), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pages = sorted((reports / "tables").glob("*.html"))
    report = reports / "report.html"
    for name, page in [("tables", p) for p in pages[:1]] + ([("report", report)] if report.exists() else []):
        png = out / f"{name}.png"
        chromium("--virtual-time-budget=5000", f"--screenshot={png.resolve()}", page.resolve().as_uri())
        if name == "tables":
            doc, window = page_width(page)
            print(f"{page}: page {doc} px wide in a {window} px window "
                  f"({'fits' if doc <= window else 'overflows sideways'})")
        print(f"render_pages: wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
