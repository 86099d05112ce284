"""Command line: ``python -m prunelib <command>`` (also installed as ``prunelib``).

The stage commands are what the Snakemake rules run; each takes its settings as one
JSON object (``--settings``) and explicit input and output paths.  Heavy modules are
imported inside each command so that a job pays only for what its stage uses.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys


def _contract(stage: str, text: str):
    """The stage's contract from ``--settings`` (JSON: the process boundary's one way in;
    prunelib/config/contracts.py), after importing the plugins it names."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"prunelib: --settings is not valid JSON: {exc}")
    if not isinstance(value, dict):
        raise SystemExit("prunelib: --settings must be a JSON object")
    from prunelib.catalogue import plugins
    from prunelib.config.contracts import BY_STAGE

    plugins.load_records(value.get("plugins"))  # a plugin's method, network or dataset
    try:
        return BY_STAGE[stage].from_dict(value)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"prunelib {stage}: --settings does not fit its contract: {exc}")


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def cmd_data(a) -> None:
    from prunelib.data import datasets

    if a.settings:  # (a plugin's dataset: its loader)
        _contract("data", a.settings)
    datasets.prepare(a.dataset, a.root, a.out)


def cmd_init(a) -> None:
    from prunelib import stages

    stages.run_init(_contract("init", a.settings), a.out_weights, a.out_table)


def cmd_score(a) -> None:
    _threads(a.threads)
    from prunelib import stages

    stages.run_score(_contract("score", a.settings), a.init, a.data, a.out)


def cmd_mask(a) -> None:
    _threads(a.threads)
    from prunelib import stages

    stages.run_mask(_contract("mask", a.settings), a.init, a.scores, a.out_mask, a.out_table,
                    data_path=a.data or None, out_weights=a.out_weights or None)


def cmd_train(a) -> None:
    _threads(a.threads)
    from prunelib import stages

    stages.run_train(_contract("train", a.settings), a.init, a.mask, a.data, a.out_weights, a.out_log, a.label,
                     reuse_log=a.reuse_log or None)


def cmd_imp_round(a) -> None:
    _threads(a.threads)
    from prunelib import stages

    from prunelib.foundations.paths import IMP_FILES, imp_round_files

    out = imp_round_files(a.out_dir) if a.out_dir else {}
    out.update({role: path for role in IMP_FILES if (path := getattr(a, f"out_{role}"))})
    prev = imp_round_files(a.prev) if a.prev else {}
    stages.run_imp_round(_contract("imp-round", a.settings), a.data, out, init_path=a.init or None,
                         prev_weights=a.prev_weights or prev.get("weights"), prev_mask=a.prev_mask or prev.get("mask"),
                         rewind_path=a.rewind or None, label=a.label)


def cmd_eval(a) -> None:
    _threads(a.threads)
    from prunelib import stages

    row = stages.run_eval(_contract("eval", a.settings), a.final, a.mask, a.data, a.out)
    print(f"[{a.label}] top1 {100 * row['top1']:.2f}% top5 {100 * row['top5']:.2f}% "
          f"r_e {row['empirical_ratio']:.3f}", file=sys.stderr)


def cmd_measure(a) -> None:
    _threads(a.threads)
    from prunelib import stages

    rows = stages.run_measure(_contract("measure", a.settings), a.evals, a.data, a.out, log=sys.stderr)
    print(f"measured {len(rows)} cells -> {a.out}", file=sys.stderr)


def cmd_imp_rounds(a) -> None:
    from prunelib import stages

    stages.run_imp_rounds(a.weights, a.out)


def cmd_aggregate(a) -> None:
    from prunelib.report import aggregate

    config = json.loads(a.config_json) if a.config_json else None
    if config:  # (a plugin's entries: names, order and classes in the tables)
        from prunelib.catalogue import plugins

        plugins.load(config.get("plugins") or [])
    aggregate.run(a.evals, a.all, a.reports, config=config, imp_rounds=a.imp_rounds, mask_tables=a.masks,
                  train_logs=a.curves, speedups=a.speedups or None)


def _json_safe(obj):
    """inf/NaN become null so that --json output is strict JSON."""
    import math

    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def cmd_audit(a) -> None:
    from prunelib.audit import checks as audit

    if a.what == "mask":
        rep, text = audit.audit_mask(a.path), audit.render_mask
        ok = not rep["problems"]
    elif a.what == "run":
        rep, text = audit.audit_run(a.path), audit.render_run
        ok = rep["ok"]
    elif a.what == "compare":
        rep, text, ok = audit.audit_compare(a.mask_a, a.mask_b), audit.render_compare, True
    elif a.what == "rows":
        from prunelib.audit import rows as compare_rows

        rep, text = compare_rows.compare(a.rows_a, a.rows_b), compare_rows.render
        ok = rep["identical"]
    else:
        rep, text = audit.audit_grid(a.config, a.root, fast=a.fast), audit.render_grid
        counts = rep["counts"]
        ok = counts["failed"] == counts["corrupted"] == 0
        if a.complete:  # every cell, not only no bad one
            ok = ok and counts["complete"] == sum(counts.values())
    print(json.dumps(_json_safe(rep), indent=2, default=str) if a.json else text(rep))
    if not ok:
        raise SystemExit(1)


def cmd_check_config(a) -> None:
    from prunelib import config

    from prunelib.methods import bounds

    s = config.load(a.config)
    bounds.check_ratios(s)
    print(f"{a.config}: ok ({len(config.cells(s))} cells)")


def cmd_catalogue(a) -> None:
    from prunelib.catalogue import listing as catalogue

    if a.config:  # its plugins' entries too
        from prunelib import config

        config.load(a.config)
    if a.write:
        changed = catalogue.write_docs(a.write)
        print(f"{a.write}: {'updated' if changed else 'up to date'}")
        return
    print(catalogue.render(a.table) if a.table else catalogue.render_all())


def cmd_reproductions(a) -> None:
    from prunelib.report import reproductions

    if a.action == "list":
        for rep in reproductions.RUNS:
            print(f"{rep.name}: preset {rep.preset}, {rep.arch}, {rep.method} at r = "
                  f"{', '.join(str(r) for r in rep.ratios)}, seeds {', '.join(map(str, rep.seeds))}")
    elif a.action == "run":
        if not a.names:
            raise SystemExit("prunelib reproductions run: name one or more runs (prunelib reproductions list)")
        for name in a.names:
            rc = reproductions.run(name, a.cores, a.snakemake_args, None if a.no_ledger else a.ledger)
            if rc:
                raise SystemExit(rc)
    elif a.action == "study":
        from prunelib.report import study

        rc = study.run(a.cores, a.snakemake_args, None if a.no_ledger else a.ledger)
        if rc:
            raise SystemExit(rc)
    elif a.action == "keep":
        from prunelib.report import ledger

        c = ledger.keep(a.root, a.ledger, reproductions.page_paths())
        for reason in c["refused"]:
            print(f"prunelib reproductions keep: refused {reason}")
        print(f"{a.ledger}: {c['new']} artifacts added, {c['replaced']} replaced, {c['same']} already kept "
              f"(from {a.root}/results); {c['total']} in all")
        if c["refused"]:
            raise SystemExit(1)
    else:
        out = a.out or reproductions.DOC
        reproductions.write(a.root, out, ledger=None if a.no_ledger else a.ledger)
        print(f"{out}: written from the eval rows under {a.root}/results"
              + ("" if a.no_ledger else f" and the kept rows in {a.ledger}"))


def cmd_worker(a) -> None:
    from prunelib.cli import worker

    worker.serve(a.socket, main, a.parent, a.idle_seconds)


STAGE_COMMANDS = ("init", "score", "mask", "train", "eval", "imp-round", "imp-rounds")


def build_parser() -> argparse.ArgumentParser:
    from prunelib.catalogue.listing import TABLES as catalogue_tables
    from prunelib.foundations.paths import IMP_FILES, IMP_ROUND0_ONLY

    p = argparse.ArgumentParser(prog="prunelib", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("data", help="fetch a dataset and write its prepared tensor file")
    s.add_argument("--dataset", required=True)
    s.add_argument("--root", required=True, help="raw data folder (torchvision layout)")
    s.add_argument("--out", required=True)
    s.add_argument("--settings", default="", help="its DataContract as JSON (plugins)")
    s.set_defaults(func=cmd_data)

    s = sub.add_parser("init", help="build a network from the seed and save its initial weights")
    s.add_argument("--settings", required=True)
    s.add_argument("--out-weights", required=True)
    s.add_argument("--out-table", required=True)
    s.set_defaults(func=cmd_init)

    for name, func, extra in (("score", cmd_score, ("init", "data", "out")),
                              ("mask", cmd_mask, ("init", "scores", "out_mask", "out_table")),
                              ("train", cmd_train, ("init", "mask", "data", "out_weights", "out_log")),
                              ("eval", cmd_eval, ("final", "mask", "data", "out"))):
        s = sub.add_parser(name, help=f"the {name} stage of one cell")
        if name == "train":
            train_parser = s
        if name == "mask":
            mask_parser = s
        s.add_argument("--settings", required=True)
        for arg in extra:
            s.add_argument("--" + arg.replace("_", "-"), required=arg != "scores", default="")
        s.add_argument("--threads", type=int, default=1)
        s.add_argument("--label", default="", help="prefix of progress lines")
        s.set_defaults(func=func)
    mask_parser.add_argument("--data", default="", help="methods that update the weights they keep: the "
                             "prepared dataset (their scoring data)")
    mask_parser.add_argument("--out-weights", default="", help="methods that update the weights they keep: "
                             "where the updated weights go (paths.UPDATED)")
    train_parser.add_argument("--reuse-log", default="", help="IMP cells: the chain round's train_log.parquet "
                              "(the round's trained weights are --init; nothing is trained)")

    s = sub.add_parser("imp-round", help="one round of an iterative-magnitude-pruning chain")
    s.add_argument("--settings", required=True)
    s.add_argument("--data", required=True)
    for role in IMP_FILES:
        s.add_argument(f"--out-{role.replace('_', '-')}", default="",
                       help=f"the round's {role.replace('_', ' ')} file" + (" (round 0 only)" if role in IMP_ROUND0_ONLY
                                                                            else ""))
    s.add_argument("--out-dir", default="", help="or: the round's folder (paths.IMP_FILES names its files)")
    s.add_argument("--init", default="", help="round 0: the init artifact")
    s.add_argument("--prev-weights", default="", help="round j >= 1: the previous round's weights.pt")
    s.add_argument("--prev-mask", default="", help="round j >= 1: the previous round's mask.pt")
    s.add_argument("--prev", default="", help="or: the previous round's folder")
    s.add_argument("--rewind", default="", help="round j >= 1: round 0's rewind.pt")
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--label", default="", help="prefix of progress lines")
    s.set_defaults(func=cmd_imp_round)

    s = sub.add_parser("aggregate", help="collect eval rows into results/all.parquet and report tables")
    s.add_argument("--all", required=True, help="output Parquet with every eval row")
    s.add_argument("--reports", required=True, help="reports folder")
    s.add_argument("--config-json", default="", help="the resolved config as JSON (its report: section "
                   "picks the heat-map ratio and curves cell; written to <reports>/config.yaml)")
    s.add_argument("--imp-rounds", nargs="*", default=[], help="rounds.parquet of every IMP chain")
    s.add_argument("--masks", nargs="*", default=None, help="mask.parquet files of the density heat map")
    s.add_argument("--curves", nargs="*", default=None, help="train_log.parquet files of the training curves")
    s.add_argument("--speedups", default="", help="the measure rule's speed-ups (results/speedups.parquet): "
                   "replace the eval rows' measured columns")
    s.add_argument("evals", nargs="+", help="eval.parquet files")
    s.set_defaults(func=cmd_aggregate)

    s = sub.add_parser("measure", help="time every cell's speed-ups, one after another (after the grid, alone)")
    s.add_argument("--settings", required=True, help="its MeasureContract as JSON")
    s.add_argument("--data", nargs="+", required=True, help="prepared dataset files (results/data/<dataset>.pt)")
    s.add_argument("--out", required=True, help="output Parquet, one row per cell")
    s.add_argument("--threads", type=int, default=1, help="torch threads while timing")
    s.add_argument("evals", nargs="+", help="eval.parquet files (final.pt and mask.pt lie beside each)")
    s.set_defaults(func=cmd_measure)

    s = sub.add_parser("imp-rounds", help="one table row per round of an IMP chain (from its weights.pt files)")
    s.add_argument("--out", required=True)
    s.add_argument("weights", nargs="+", help="round0/weights.pt ... roundN/weights.pt")
    s.set_defaults(func=cmd_imp_rounds)

    s = sub.add_parser("catalogue", help="list the methods, networks, datasets, init schemes and variants")
    s.add_argument("table", nargs="?", choices=catalogue_tables)
    s.add_argument("--config", default="", help="also list the plugins this config names")
    s.add_argument("--write", default="", help="rewrite the generated section of this Markdown file")
    s.set_defaults(func=cmd_catalogue)

    s = sub.add_parser("worker", help="serve stage commands from one pre-imported process (see prunelib.cli.worker)")
    s.add_argument("--socket", required=True)
    s.add_argument("--parent", type=int, default=None, help="exit when this process is gone")
    s.add_argument("--idle-seconds", type=float, default=600.0)
    s.set_defaults(func=cmd_worker)

    s = sub.add_parser("audit", help="check artifacts: a mask, a cell folder, two masks' overlap, the grid")
    audit_sub = s.add_subparsers(dest="what", required=True)
    a = audit_sub.add_parser("mask", help="per-tensor counts of a mask.pt, cross-checked with its mask.parquet")
    a.add_argument("path")
    a = audit_sub.add_parser("run", help="provenance and consistency of one cell folder")
    a.add_argument("path", help="e.g. results/mnist/lenet300/seed0/snip/r16")
    a = audit_sub.add_parser("compare", help="overlap of two masks (Jaccard, fraction of A kept by B)")
    a.add_argument("mask_a")
    a.add_argument("mask_b")
    a = audit_sub.add_parser("rows", help="whether two runs' eval rows are identical, column by column")
    a.add_argument("rows_a", help="results/all.parquet (or an eval.parquet) of run A")
    a.add_argument("rows_b")
    a = audit_sub.add_parser("grid", help="which cells of the config are complete, stale, failed or missing")
    a.add_argument("--config", default="config.yaml")
    a.add_argument("--root", default=".", help="folder holding results/")
    a.add_argument("--fast", action="store_true", help="skip hashing the files (no corrupted cells reported)")
    a.add_argument("--complete", action="store_true", help="exit 1 unless every cell is complete (missing or "
                   "stale cells too, not only failed or corrupted ones)")
    for a in audit_sub.choices.values():
        a.add_argument("--json", action="store_true", help="JSON instead of a table")
        a.set_defaults(func=cmd_audit)

    s = sub.add_parser("reproductions", help="run the reproduction presets' cells (run), the 2022 study's MNIST "
                       "cells (study), keep finished cells' rows in the tracked ledger (keep), or write "
                       "docs/reproductions.md (write)")
    from prunelib.foundations import paths

    s.add_argument("action", choices=("list", "run", "study", "keep", "write"))
    s.add_argument("names", nargs="*", help="run: the reproductions to run (see list)")
    s.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    s.add_argument("--root", default=".", help="keep, write: the folder holding results/")
    s.add_argument("--out", default=None, help="write: the Markdown file (default docs/reproductions.md)")
    s.add_argument("--ledger", default=paths.REPRODUCTION_LEDGER, help="the kept rows of finished cells "
                   "(default %(default)s): keep adds the page's artifacts under --root to it; write reads "
                   "it for the cells not on disk; run and study leave out the cells it keeps")
    s.add_argument("--no-ledger", action="store_true", help="write: read --root/results only; run, study: "
                   "run every cell, kept or not")
    s.add_argument("--snakemake-args", nargs=argparse.REMAINDER, default=[],
                   help="run, study: further Snakemake options (last)")
    s.set_defaults(func=cmd_reproductions)

    s = sub.add_parser("check-config", help="resolve and validate a config file")
    s.add_argument("config", nargs="?", default="config.yaml")
    s.set_defaults(func=cmd_check_config)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in STAGE_COMMANDS and os.environ.get("PRUNELIB_WORKER"):
        from prunelib.cli.worker_client import try_forward

        rc = try_forward(argv)
        if rc is not None:
            return rc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    from prunelib.foundations.errors import PrunelibError

    try:
        args.func(args)
    except PrunelibError as exc:
        print(f"prunelib {args.command}: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a bug (often a plugin's): the traceback, then one line
        if args.command not in STAGE_COMMANDS:
            raise
        import traceback

        traceback.print_exc()
        print(f"prunelib {args.command}: {one_line(exc)}", file=sys.stderr)
        return 1
    return 0


def one_line(exc: BaseException) -> str:
    """An exception as one line, naming where it came from outside prunelib and the
    libraries (a plugin's file and line), so that the console shows the user's mistake
    rather than Snakemake's ``message: None``; the job log keeps the whole traceback."""
    import traceback
    from pathlib import Path

    import prunelib

    ours = str(Path(prunelib.__file__).parent)
    libs = (sys.base_prefix, sys.prefix, "site-packages", "<frozen")
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith(ours) and not any(lib in f.filename for lib in libs)]
    text = (str(exc).strip().splitlines() or [""])[0]
    where = f" (at {frames[-1].filename}:{frames[-1].lineno}, in {frames[-1].name})" if frames else ""
    return f"{type(exc).__name__}: {text}{where}"
