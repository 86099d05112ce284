"""Time a whole grid from scratch and split each job's time into compute and start-up.

For every job, Snakemake's ``benchmark:`` file records its wall time ``s`` (process start,
imports, I/O and work).  The stages record their own compute time in their artifacts
(scoring, mask selection, training epochs, evaluation), so

    start-up + I/O of a job = job wall time - compute recorded by the job

The grid runs in a separate work folder (default: a temp folder) with a copy of the config,
so the user's results/ is untouched; real MNIST comes from the config's data_dir.

    python benchmarks/startup_overhead.py --cores 2            # the default config.yaml
    python benchmarks/startup_overhead.py --config my.yaml --workdir /tmp/bench

Prints a Markdown table and writes it with the raw figures (JSON) into reports/benchmarks/.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prunelib.foundations.artifacts import load_pt, read_parquet_rows  # noqa: E402

STAGES = ("data", "init", "score", "mask", "train", "eval", "aggregate")


def job_seconds(workdir: Path) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {s: [] for s in STAGES}
    for stage in STAGES:
        for tsv in (workdir / "results" / "benchmarks" / stage).rglob("*.tsv"):
            with open(tsv) as fh:
                rows = list(csv.DictReader(fh, delimiter="\t"))
            out[stage] += [float(r["s"]) for r in rows]
    return out


def compute_seconds(workdir: Path) -> dict[str, float]:
    """Compute time the stages recorded inside their artifacts."""
    res = workdir / "results"
    total = {s: 0.0 for s in STAGES}
    for p in res.rglob("scores.pt"):
        total["score"] += load_pt(p)["meta"]["seconds"]
    for p in res.rglob("mask.pt"):
        total["mask"] += load_pt(p)["meta"]["seconds"]
    for p in res.rglob("init_*.pt"):
        total["init"] += load_pt(p)["meta"].get("seconds", 0.0)
    for p in res.rglob("eval.parquet"):
        row = read_parquet_rows(p)[0]
        total["train"] += row["train_seconds"]
        total["eval"] += row["eval_seconds"]
    return total


def bare_import_seconds(repeats: int = 5) -> dict[str, float]:
    """Median wall time of a Python process that only imports (what every job pays)."""
    out = {}
    for label, code in (("python", "pass"), ("import torch", "import torch"),
                        ("import prunelib.stages", "import prunelib.stages")):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
            times.append(time.perf_counter() - t)
        out[label] = statistics.median(times)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config.yaml"))
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--workdir", default=None, help="work folder (default: a new temp folder)")
    ap.add_argument("--out", default=str(REPO / "reports" / "benchmarks"))
    args = ap.parse_args()

    cfg = yaml.safe_load(Path(args.config).read_text())
    cfg["data_dir"] = str((Path(args.config).parent / cfg.get("data_dir", "data")).resolve())
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="prunelib-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    snakemake = Path(sys.executable).parent / "snakemake"
    cmd = [str(snakemake), "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", str(args.cores), "--quiet", "progress"]
    print("running:", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - start

    jobs = job_seconds(workdir)
    compute = compute_seconds(workdir)
    imports = bare_import_seconds()
    rows = []
    for stage in STAGES:
        if not jobs[stage]:
            continue
        js = sum(jobs[stage])
        rows.append({"stage": stage, "jobs": len(jobs[stage]), "job_seconds": js,
                     "compute_seconds": compute[stage], "startup_io_seconds": js - compute[stage]})
    tot_jobs = sum(r["jobs"] for r in rows)
    tot_js = sum(r["job_seconds"] for r in rows)
    tot_c = sum(r["compute_seconds"] for r in rows)
    summary = {
        "config": args.config, "cores": args.cores, "wall_seconds": wall, "jobs": tot_jobs,
        "job_seconds": tot_js, "compute_seconds": tot_c, "compute_fraction_of_job_time": tot_c / tot_js,
        "compute_fraction_of_wall_x_cores": tot_c / (wall * args.cores),
        "mean_startup_io_per_job": (tot_js - tot_c) / tot_jobs, "bare_process_seconds": imports,
        "stages": rows,
    }
    lines = [
        f"Grid `{Path(args.config).name}` on {args.cores} cores: **{wall / 60:.1f} min wall**, {tot_jobs} jobs.",
        "",
        "| stage | jobs | job time (s) | compute (s) | start-up + I/O (s) | compute share |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        share = r["compute_seconds"] / r["job_seconds"] if r["job_seconds"] else 0
        lines.append(f"| {r['stage']} | {r['jobs']} | {r['job_seconds']:.1f} | {r['compute_seconds']:.1f} "
                     f"| {r['startup_io_seconds']:.1f} | {100 * share:.0f}% |")
    lines += [f"| **all** | {tot_jobs} | {tot_js:.1f} | {tot_c:.1f} | {tot_js - tot_c:.1f} "
              f"| {100 * tot_c / tot_js:.0f}% |", "",
              f"Compute is {100 * tot_c / tot_js:.0f}% of job time and {100 * tot_c / (wall * args.cores):.0f}% "
              f"of wall x cores; start-up + I/O averages {(tot_js - tot_c) / tot_jobs:.2f} s per job. "
              "A bare process costs " + ", ".join(f"{k}: {v:.2f} s" for k, v in imports.items()) + "."]
    text = "\n".join(lines)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "startup_overhead.md").write_text(text + "\n")
    (out / "startup_overhead.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
