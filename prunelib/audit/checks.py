"""Audit artifacts after the fact: masks, cells, mask overlap, and the grid's state.

``prunelib audit mask PATH``      per tensor: shape, numel, kept, density = kept / numel,
                                  collapsed (kept = 0); totals n_prunable, kept,
                                  r_e = n_prunable / kept, error (r_e - r) / r; cross-checked
                                  against the ``mask.parquet`` beside it and its checksum,
                                  and kept = round(n / r) (per tensor for layer scope).
``prunelib audit run CELL``       provenance of one cell folder and a check that every
                                  artifact is present, unchanged since written (SHA-256
                                  sidecar, see ``prunelib.foundations.artifacts``), loads, and agrees
                                  with the others; and its lineage: every input an
                                  artifact records (``meta["inputs"]``: path and SHA-256)
                                  still hashes to that digest on disk, back through init,
                                  scores and an IMP chain's rounds, and the eval row's
                                  digests are those of the files.
``prunelib audit compare A B``    overlap of two masks per tensor and overall:
                                  Jaccard J = |A ∩ B| / |A ∪ B| and |A ∩ B| / |A| (the
                                  fraction of A's kept weights that B also keeps).
``prunelib audit grid``           each cell of config.yaml: complete, stale (its eval
                                  row's settings hash differs from what the current config
                                  gives), failed (a job of the cell started, its log
                                  exists, but the eval row is absent or not ok; also what
                                  a running job looks like), corrupted (a file of the cell
                                  or one it was made from fails its checksum; ``--fast``
                                  skips this hashing), or missing.

Problems the user can fix (bad path, wrong file type, truncated or changed file) are
``AuditError``: the command line prints one line and exits 2; a finished audit that
found a failed check exits 1.  Nothing here runs during the stage jobs; they verify
each artifact they read themselves (``prunelib.foundations.artifacts.load_pt``), and the audit
reports what they would refuse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from prunelib.foundations import paths

from prunelib.catalogue import registry
from prunelib.foundations.artifacts import read_checksum, sha256_file
from prunelib.foundations.errors import PrunelibError


class AuditError(PrunelibError):
    """One line naming the file and what is wrong with it."""


CELL_FILES = tuple(paths.CELL_FILES.values())


# --- loading with one-line errors -------------------------------------------------------

def verify_checksum(path: Path) -> str:
    """'ok', 'none' (no sidecar recorded) or raise AuditError (file changed since written)."""
    recorded = read_checksum(path)
    if recorded is None:
        return "none"
    actual = sha256_file(path)
    if actual != recorded:
        raise AuditError(f"{path}: checksum mismatch: changed or truncated since it was written "
                         f"(recorded sha256 {recorded[:12]}…, now {actual[:12]}…)")
    return "ok"


def _existing_file(path, kind: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise AuditError(f"{path}: no such file")
    if path.is_dir():
        raise AuditError(f"{path}: is a folder, expected {kind}")
    return path


def load_pt_checked(path) -> dict:
    """A ``.pt`` artifact as a dict, or AuditError saying why it cannot be read."""
    path = _existing_file(path, "a .pt file")
    verify_checksum(path)
    from prunelib.foundations.artifacts import load_pt

    try:
        blob = load_pt(path, verify=False)  # verified above, with the audit's own wording
    except Exception as exc:  # torch raises many types for non-torch or cut files
        size = path.stat().st_size
        with open(path, "rb") as fh:
            if fh.read(4) == b"PAR1":
                raise AuditError(f"{path}: is a Parquet table, expected a .pt artifact (e.g. mask.pt)") from None
        raise AuditError(f"{path}: not a readable torch file ({size} bytes; truncated or not a .pt artifact: "
                         f"{type(exc).__name__})") from None
    if not isinstance(blob, dict) or "meta" not in blob:
        raise AuditError(f"{path}: not a prunelib artifact (no meta)")
    return blob


def load_mask(path) -> dict:
    blob = load_pt_checked(path)
    if "masks" not in blob:
        raise AuditError(f"{path}: not a mask artifact (keys: {', '.join(sorted(blob))})")
    return blob


def read_table(path) -> list[dict]:
    path = _existing_file(path, "a Parquet file")
    verify_checksum(path)
    from prunelib.foundations.artifacts import read_parquet_rows

    try:
        return read_parquet_rows(path, verify=False)
    except Exception as exc:
        raise AuditError(f"{path}: not a readable Parquet file (truncated or wrong type: {type(exc).__name__})") \
            from None


# --- audit mask -------------------------------------------------------------------------

def mask_rows(masks: dict) -> list[dict]:
    rows = []
    for name, m in masks.items():
        kept = int(m.sum())
        rows.append({"name": name, "shape": "x".join(map(str, m.shape)), "numel": m.numel(), "kept": kept,
                     "density": kept / m.numel() if m.numel() else math.nan, "collapsed": kept == 0})
    return rows


def kept_count_problems(masks: dict, meta: dict) -> list[str]:
    """Where the masks do not keep round(n / r) of the mask's ratio: over all its weights
    (global scope), per tensor (layer), or everything (the dense control, r = 1).
    Recomputed from the masks and the ratio, not read from the recorded target."""
    from prunelib.methods.masking import kept_count

    if meta.get("ratio") is None:
        return []
    ratio, scope = float(meta["ratio"]), meta.get("scope", "global")
    if scope == "layer":
        return [f"{n} keeps {int(m.sum())} of {m.numel()}, round(n / r) = {kept_count(m.numel(), ratio)}"
                for n, m in masks.items() if int(m.sum()) != kept_count(m.numel(), ratio)]
    n, kept = sum(m.numel() for m in masks.values()), sum(int(m.sum()) for m in masks.values())
    want = kept_count(n, ratio)
    return [] if kept == want else [f"keeps {kept} of {n}, round(n / r) = {want} at r = {ratio:g}"]


def audit_mask(path) -> dict:
    """Per-tensor and total counts of a mask.pt, cross-checked against its mask.parquet."""
    path = Path(path)
    blob = load_mask(path)
    rows = mask_rows(blob["masks"])
    norms = (blob["meta"].get("update") or {}).get("norms") or {}
    if norms:  # a method that updates the weights it keeps: the update's norm per tensor
        for r in rows:
            rec = norms.get(r["name"], {})
            r["update_norm"] = rec.get("update_norm", math.nan)
            r["removed_norm"] = rec.get("removed_norm", math.nan)
    n = sum(r["numel"] for r in rows)
    kept = sum(r["kept"] for r in rows)
    meta = blob["meta"]
    ratio = float(meta.get("ratio", math.nan))
    r_e = n / kept if kept else math.inf
    problems = []
    table_path = path.with_name("mask.parquet") if path.name == "mask.pt" else path.with_suffix(".parquet")
    if table_path.exists():
        table = {r["name"]: r for r in read_table(table_path)}
        if set(table) != {r["name"] for r in rows}:
            problems.append(f"{table_path}: tensors differ from {path.name}")
        for r in rows:
            t = table.get(r["name"])
            if t and (t["kept"], t["numel"], bool(t["collapsed"])) != (r["kept"], r["numel"], r["collapsed"]):
                problems.append(f"{table_path}: {r['name']} says kept {t['kept']} of {t['numel']}, "
                                f"{path.name} keeps {r['kept']} of {r['numel']}")
        cross = "ok" if not problems else "MISMATCH"
    else:
        cross = "no mask.parquet beside it"
    if "n_kept" in meta and meta["n_kept"] != kept:
        problems.append(f"{path}: meta n_kept {meta['n_kept']} but the masks keep {kept}")
    problems += [f"{path}: {p}" for p in kept_count_problems(blob["masks"], meta)]
    return {"path": str(path), "method": meta.get("method"), "ratio": ratio, "seed": meta.get("seed"),
            "allocation": meta.get("allocation") or meta.get("scope"), "tied_at_cut": meta.get("tied_at_cut"),
            "tensors": rows, "n_prunable": n, "kept": kept, "r_e": r_e,
            "compression_error": (r_e - ratio) / ratio if ratio and not math.isnan(ratio) else math.nan,
            "checksum": verify_checksum(path), "parquet_check": cross, "problems": problems}


# --- audit compare ----------------------------------------------------------------------

def audit_compare(path_a, path_b) -> dict:
    """Per tensor and overall: |A∩B|, |A∪B|, Jaccard = |A∩B|/|A∪B|, and |A∩B|/|A|."""
    a, b = load_mask(path_a)["masks"], load_mask(path_b)["masks"]
    if set(a) != set(b):
        only = sorted(set(a) ^ set(b))
        raise AuditError(f"{path_a} and {path_b} mask different tensors (e.g. {only[0]}); not comparable")
    rows, tot = [], {"a": 0, "b": 0, "both": 0, "either": 0}
    for name in a:
        if a[name].shape != b[name].shape:
            raise AuditError(f"{name}: shape {tuple(a[name].shape)} in {path_a} but {tuple(b[name].shape)} "
                             f"in {path_b}; not comparable")
        ka, kb = a[name].bool(), b[name].bool()
        c = {"a": int(ka.sum()), "b": int(kb.sum()), "both": int((ka & kb).sum()), "either": int((ka | kb).sum())}
        rows.append({"name": name, "kept_a": c["a"], "kept_b": c["b"], "both": c["both"],
                     "jaccard": _ratio(c["both"], c["either"]), "a_kept_by_b": _ratio(c["both"], c["a"])})
        tot = {k: tot[k] + c[k] for k in tot}
    return {"a": str(path_a), "b": str(path_b), "tensors": rows,
            "total": {"name": "(all)", "kept_a": tot["a"], "kept_b": tot["b"], "both": tot["both"],
                      "jaccard": _ratio(tot["both"], tot["either"]), "a_kept_by_b": _ratio(tot["both"], tot["a"])}}


def _ratio(num: int, den: int) -> float:
    # two empty sets agree perfectly
    return num / den if den else 1.0


# --- audit run --------------------------------------------------------------------------

@dataclass
class Checks:
    rows: list = field(default_factory=list)

    def add(self, what: str, ok: bool | None, detail: str = "") -> bool:
        """ok: True pass, False fail, None not applicable / could not check."""
        self.rows.append({"check": what, "status": {True: "ok", False: "FAIL", None: "-"}[ok], "detail": detail})
        return bool(ok)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "FAIL"]


def audit_run(cell) -> dict:
    """Provenance and consistency of one cell folder (results/<d>/<a>/seed<s>/<m>/r<r>)."""
    cell = Path(cell)
    if not cell.exists():
        raise AuditError(f"{cell}: no such folder")
    if not cell.is_dir():
        raise AuditError(f"{cell}: not a folder; audit run takes a cell folder such as "
                         "results/mnist/lenet300/seed0/snip/r16 (audit mask takes a mask.pt)")
    if not any((cell / f).exists() for f in CELL_FILES):
        raise AuditError(f"{cell}: not a cell folder (none of {', '.join(CELL_FILES)})")
    checks = Checks()
    loaded = {}
    for name in CELL_FILES:
        path = cell / name
        if not checks.add(f"{name} present", path.exists(), "" if path.exists() else "missing"):
            continue
        try:
            state = verify_checksum(path)
            checks.add(f"{name} checksum", True if state == "ok" else None,
                       "sha256 matches the one recorded at write time" if state == "ok" else "none recorded")
            loaded[name] = load_pt_checked(path) if name.endswith(".pt") else read_table(path)
            checks.add(f"{name} loads", True)
        except AuditError as exc:
            checks.add(f"{name} intact", False, str(exc))
    mask = loaded.get("mask.pt")
    final = loaded.get("final.pt")
    row = (loaded.get("eval.parquet") or [None])[0]
    _updated_checks(checks, cell, loaded, mask)
    if mask:
        bad_count = kept_count_problems(mask["masks"], mask["meta"])
        checks.add("mask.pt keeps round(n / r)", not bad_count,
                   "; ".join(bad_count) or f"{mask['meta'].get('scope', 'global')} scope")
    if mask and "mask.parquet" in loaded:
        table = {r["name"]: r for r in loaded["mask.parquet"]}
        bad = [r["name"] for r in mask_rows(mask["masks"]) if table.get(r["name"], {}).get("kept") != r["kept"]]
        checks.add("mask.parquet agrees with mask.pt", not bad and set(table) == set(mask["masks"]),
                   f"differs for {', '.join(bad)}" if bad else "kept per tensor")
    if mask and final:
        state = final["state_dict"]
        nonzero_pruned = {}
        for n, m in mask["masks"].items():
            if n not in state or state[n].shape != m.shape:
                nonzero_pruned[n] = "missing or wrong shape"
                continue
            k = int((state[n][~m.bool()] != 0).sum())
            if k:
                nonzero_pruned[n] = k
        checks.add("every pruned weight of final.pt is exactly zero", not nonzero_pruned,
                   "; ".join(f"{n}: {k} non-zero" for n, k in nonzero_pruned.items()) or
                   f"{len(mask['masks'])} tensors")
        same = final["meta"].get("mask") == mask["meta"]
        checks.add("final.pt was trained with this mask.pt (meta)", same, "" if same else "mask meta differs")
    if row and mask:
        kept = sum(int(m.sum()) for m in mask["masks"].values())
        n = sum(m.numel() for m in mask["masks"].values())
        ok = row.get("n_kept") == kept and row.get("n_prunable") == n
        checks.add("eval row counts match mask.pt", ok, f"n_kept {row.get('n_kept')} vs {kept}, "
                   f"n_prunable {row.get('n_prunable')} vs {n}")
        meta = mask["meta"]
        ok = (row.get("method"), float(row.get("ratio")), int(row.get("seed"))) == \
             (meta.get("method"), float(meta.get("ratio")), int(meta.get("seed")))
        checks.add("eval row method/ratio/seed match mask.pt", ok,
                   f"{row.get('method')} r{row.get('ratio')} seed{row.get('seed')}")
        if final:
            nz = sum(int((final["state_dict"][n] != 0).sum()) for n in mask["masks"] if n in final["state_dict"])
            checks.add("eval row n_nonzero_prunable matches final.pt", row.get("n_nonzero_prunable") == nz,
                       f"{row.get('n_nonzero_prunable')} vs {nz}")
    _lineage_checks(checks, cell, loaded, row)
    if row and "train_log.parquet" in loaded:
        log = loaded["train_log.parquet"]
        checks.add("train_log.parquet has one row per epoch", bool(log) and
                   [r["epoch"] for r in log] == sorted(r["epoch"] for r in log), f"{len(log)} epochs")
    provenance = {}
    if row:
        provenance = {k: row.get(k) for k in ("dataset", "arch", "method", "ratio", "seed", "settings_hash",
                                              "status", "prunelib_version", "torch_version", "device",
                                              "score_seconds", "train_seconds", "eval_seconds",
                                              "top1", "top5", "empirical_ratio", "speedup")}
    if mask:
        provenance["mask_seconds"] = mask["meta"].get("seconds")
        provenance["mask_settings_hash"] = mask["meta"].get("settings_hash")
    if final:
        provenance["train_settings_hash"] = final["meta"].get("settings_hash")
    for name in CELL_FILES:
        if (cell / name).exists():
            import datetime

            ts = (cell / name).stat().st_mtime
            provenance[f"written {name}"] = datetime.datetime.fromtimestamp(ts).isoformat(timespec="seconds")
    return {"cell": str(cell), "provenance": provenance, "checks": checks.rows, "ok": not checks.failed}


def _updated_checks(checks: Checks, cell: Path, loaded: dict, mask: dict | None) -> None:
    """A method that updates the weights it keeps (``Pruning.updates_weights``): its
    updated weights (``paths.UPDATED_FILE``) present, intact, pruned exactly where the
    mask prunes, and their update per tensor as the mask records it."""
    path = cell / paths.UPDATED_FILE
    method = (mask or {}).get("meta", {}).get("method")
    expected = False
    if method:
        try:
            expected = registry.method(method).pruning.updates_weights
        except PrunelibError:
            expected = False
    if not expected and not path.exists():
        return
    name = paths.UPDATED_FILE
    if not checks.add(f"{name} present", path.exists(), "" if path.exists() else "missing"):
        return
    try:
        state = verify_checksum(path)
        checks.add(f"{name} checksum", True if state == "ok" else None,
                   "sha256 matches the one recorded at write time" if state == "ok" else "none recorded")
        loaded[name] = load_pt_checked(path)
        checks.add(f"{name} loads", True)
    except AuditError as exc:
        checks.add(f"{name} intact", False, str(exc))
        return
    if mask:
        weights = loaded[name]["state_dict"]
        bad = {n: int((weights[n][~m.bool()] != 0).sum()) for n, m in mask["masks"].items() if n in weights}
        bad = {n: k for n, k in bad.items() if k}
        checks.add(f"every pruned weight of {name} is exactly zero", not bad,
                   "; ".join(f"{n}: {k} non-zero" for n, k in bad.items()) or f"{len(mask['masks'])} tensors")
        norms = (loaded[name]["meta"].get("update") or {}).get("norms", {})
        same = norms == ((mask["meta"].get("update") or {}).get("norms", {}))
        listed = ", ".join(f"{n} {v['update_norm']:.3g}" for n, v in norms.items())
        checks.add(f"{name} records the update mask.pt records", same and bool(norms),
                   f"update norm per tensor: {listed}" if same else "update records differ")


def _lineage_checks(checks: Checks, cell: Path, loaded: dict, row: dict | None) -> None:
    """Each recorded input of final.pt and mask.pt, and of their inputs in turn, against
    the file on disk; the eval row's digests against the files they name."""
    digests: dict[Path, str] = {}

    def on_disk(path: Path) -> str:
        if path not in digests:
            digests[path] = sha256_file(path)
        return digests[path]

    todo = [(name, cell / name, loaded[name]["meta"]) for name in ("final.pt", "mask.pt") if name in loaded]
    if todo and not any("inputs" in meta for _, _, meta in todo):
        checks.add("lineage recorded", None, "artifacts made before lineage was recorded")
        return
    visited = {path.resolve() for _, path, _ in todo}
    base = run_folder(cell)
    while todo:
        label, _, meta = todo.pop(0)
        for role, rec in (meta.get("inputs") or {}).items():
            path = Path(rec["path"])
            if not path.is_absolute():  # (never the current folder's file of that name: another run's)
                path = base / path
            what = f"lineage: {label} <- {role}"
            if not path.is_file():
                checks.add(what, None, f"{path}: not on disk")
                continue
            actual = on_disk(path)
            ok = actual == rec.get("sha256")
            checks.add(what, ok, str(path) if ok else f"{path}: recorded sha256 {str(rec.get('sha256'))[:12]}…, "
                       f"on disk {actual[:12]}… (changed or rebuilt since {label} was made from it)")
            # walk up the chain (init, scores, IMP rounds); the prepared data records no inputs
            if ok and role != "data" and path.suffix == ".pt" and path.resolve() not in visited:
                visited.add(path.resolve())
                try:
                    todo.append((rec["path"], path, load_pt_checked(path)["meta"]))  # (named as recorded)
                except AuditError as exc:
                    checks.add(f"lineage: {path} loads", False, str(exc))
    if row and "mask_sha256" in row:
        inputs = (loaded.get("final.pt") or {}).get("meta", {}).get("inputs", {})
        expected = {"mask_sha256": cell / "mask.pt", "final_sha256": cell / "final.pt",
                    **{f"{k}_sha256": base / inputs[k]["path"] for k in ("data", "init") if k in inputs}}
        for col, path in expected.items():
            if path.is_file():
                ok = row.get(col) == on_disk(path)
                checks.add(f"eval row {col} is {path.name} on disk", ok,
                           "" if ok else f"row {str(row.get(col))[:12]}…, on disk {on_disk(path)[:12]}…")


def run_folder(cell: Path) -> Path:
    """The folder of the run that made ``cell``: the one holding its ``results/``, which
    every relative path its lineage records is relative to (the workflow's folder), from
    wherever the audit is started.  A cell outside any ``results/`` folder (made by hand
    from Python) recorded its paths relative to where it ran: the current folder."""
    return next((p.parent for p in Path(cell).resolve().parents if p.name == "results"), Path.cwd())


# --- audit grid -------------------------------------------------------------------------

def _grid_files(plconfig, s, root: Path, c) -> list[Path]:
    """The files a cell was made from: its own, its data, init and scores, and for an IMP
    method every round of its chain up to the cell's (``prunelib.foundations.paths`` names them)."""
    w = c.wildcards()
    files = [root / p for p in paths.cell_files(**vars(c)).values()]
    files += [root / paths.DATA.format(**w), root / paths.INIT.format(**w, scheme=s.init.scheme_for(c.method)),
              root / paths.SCORES.format(**w)]
    if registry.method(c.method).pruning.chain and float(c.ratio) > 1:
        last = plconfig.imp_round_of(s.grid.ratios, s.iterative.round_factor, float(c.ratio))
        for j in range(last + 1):
            files += paths.imp_round_files(root / paths.IMP_ROUND.format(**w, round=j)).values()
    return [f for f in files if f.is_file()]


def _corruption(files: list[Path], cache: dict) -> str:
    """'' when every file matches its recorded SHA-256, else what is wrong with the first
    that does not (digests cached across cells: a seed's init is shared by many)."""
    for f in files:
        if f not in cache:
            recorded = read_checksum(f)
            if recorded is None:
                cache[f] = "no checksum recorded"
            else:
                actual = sha256_file(f)
                cache[f] = "" if actual == recorded else \
                    f"checksum mismatch (recorded {recorded[:12]}…, actual {actual[:12]}…)"
        if cache[f]:
            from prunelib.foundations.paths import producing_rule

            return f"{f}: {cache[f]}; rebuild: snakemake --cores 1 --force {f} (rule {producing_rule(f)})"
    return ""


def audit_grid(config_path="config.yaml", root=".", fast: bool = False) -> dict:
    """State of every cell of ``config_path``'s grid under ``root``/results.  Unless
    ``fast``, every file of each cell and every file it was made from is hashed against
    its recorded SHA-256 (each shared file once)."""
    from prunelib import config as plconfig

    config_path, root = Path(config_path), Path(root)
    if not config_path.is_file():
        raise AuditError(f"{config_path}: no such config file")
    s = plconfig.load(config_path)
    results = root / paths.RESULTS
    if not results.is_dir():
        raise AuditError(f"{results}: no results folder (run the workflow first, or pass --root)")
    cells = []
    counts = {"complete": 0, "stale": 0, "failed": 0, "corrupted": 0, "missing": 0}
    hashed: dict = {}
    for c in plconfig.cells(s):
        rel = paths.CELL_ID.format(**c.wildcards())
        expected = plconfig.contracts.eval_contract(s, c.arch, c.dataset, c.method, float(c.ratio), c.seed,
                                                    c.variant).cell_hash
        detail = ""
        eval_path = root / paths.EVAL.format(**c.wildcards())
        row = None
        if eval_path.exists():
            try:
                row = read_table(eval_path)[0]
            except (AuditError, IndexError) as exc:
                state, detail = "failed", str(exc) or "empty eval.parquet"
        if row is not None:
            if row.get("status") != "ok":
                state, detail = "failed", f"status {row.get('status')}"
            elif row.get("settings_hash") != expected:
                state, detail = "stale", f"hash {row.get('settings_hash')} != {expected} from config"
            else:
                state = "complete"
        elif not detail:
            logs = [root / paths.log(stage, rel) for stage in ("mask", "train", "eval")]
            started = [p for p in logs if p.exists()]
            if started:
                last = started[-1]
                tail = [ln for ln in last.read_text(errors="replace").splitlines() if ln.strip()][-1:]
                stage = last.relative_to(results / "logs").parts[0]  # (parent.name is the method folder)
                state, detail = "failed", f"{stage} job left no output" + (f": {tail[0][:120]}" if tail else "")
            else:
                state = "missing"
        if not fast and state != "missing":
            bad = _corruption(_grid_files(plconfig, s, root, c), hashed)
            if bad:
                state, detail = "corrupted", bad
        counts[state] += 1
        cells.append({"cell": rel, "state": state, "detail": detail})
    rep = {"config": str(config_path), "results": str(results), "counts": counts, "cells": cells,
           "checksums": "skipped (--fast)" if fast else f"{len(hashed)} files verified"}
    ours = {r["cell"] for r in cells}
    foreign = sorted(str(p.parent.relative_to(results)) for p in results.glob("*/*/seed*/*/r*/eval.parquet")
                     if str(p.parent.relative_to(results)) not in ours)
    if foreign and counts["missing"] == len(cells):
        made = root / paths.REPORT_CONFIG
        rep["note"] = (f"none of the {len(cells)} cells of {config_path} is under {results}, which holds "
                       f"{len(foreign)} cells of another grid (e.g. {foreign[0]}): those results were made with "
                       "another config; audit them with --config <that config>"
                       + (f" (the resolved config of the run that made them is {made})" if made.is_file() else ""))
    return rep


# --- rendering --------------------------------------------------------------------------

def format_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Plain fixed-width table; floats with 4 significant decimals."""
    if not rows:
        return "(none)"
    columns = columns or list(rows[0])

    def fmt(v):
        if isinstance(v, float):
            return "inf" if math.isinf(v) else f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def render_mask(rep: dict) -> str:
    alloc = f", allocation {rep['allocation']}" if rep.get("allocation") else ""
    ties = (f", {rep['tied_at_cut']:,} weights left to the tie-break draw" if rep.get("tied_at_cut") else "")
    head = f"{rep['path']}: method {rep['method']}{alloc}, r = {rep['ratio']:g}, seed {rep['seed']}{ties}\n"
    totals = (f"\nn_prunable {rep['n_prunable']:,}  kept {rep['kept']:,}  r_e {rep['r_e']:.4f}  "
              f"compression error {100 * rep['compression_error']:+.4f}%\n"
              f"checksum: {rep['checksum']}; mask.parquet cross-check: {rep['parquet_check']}")
    problems = "".join(f"\nPROBLEM: {p}" for p in rep["problems"])
    return head + format_table(rep["tensors"]) + totals + problems


def render_compare(rep: dict) -> str:
    return (f"A = {rep['a']}\nB = {rep['b']}\n"
            + format_table(rep["tensors"] + [rep["total"]])
            + "\njaccard = |A∩B| / |A∪B|;  a_kept_by_b = |A∩B| / |A|")


def render_run(rep: dict) -> str:
    prov = "\n".join(f"  {k}: {v}" for k, v in rep["provenance"].items())
    verdict = "all checks passed" if rep["ok"] else f"{sum(r['status'] == 'FAIL' for r in rep['checks'])} FAILED"
    return f"{rep['cell']}\nprovenance:\n{prov}\n\n{format_table(rep['checks'])}\n\n{verdict}"


def render_grid(rep: dict) -> str:
    c = rep["counts"]
    summary = (f"auditing the grid of {rep['config']} against {rep['results']}: {sum(c.values())} cells: "
               f"{c['complete']} complete, {c['stale']} stale, {c['failed']} failed, {c['missing']} missing, "
               f"{c.get('corrupted', 0)} corrupted"
               + (f"; checksums: {rep['checksums']}" if "checksums" in rep else ""))
    if rep.get("note"):  # (results of another grid: no list of false "missing" cells)
        return f"{summary}\n{rep['note']}"
    not_done = [r for r in rep["cells"] if r["state"] != "complete"]
    return summary + ("\n\n" + format_table(not_done) if not_done else "")
