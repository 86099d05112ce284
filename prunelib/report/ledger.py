"""The reproduction ledger: the rows of finished reproduction cells, kept in the repository.

A reproduction cell costs minutes to hours of CPU (SNIP's LeNet-5-Caffe: about an hour a
seed; the study's 255 cells: about 8 core-hours), more than one working session or CI run
has, and ``results/`` is scratch: gitignored, empty in every fresh clone.  So the rows that
``docs/reproductions.md`` is made from are kept in one tracked file,
``docs/reproductions/ledger.parquet``, and seeds add up across machines and sessions
instead of being run again.

* ``prunelib reproductions keep --root DIR`` copies into the ledger every row the page
  reads that exists under ``DIR/results/``: each reproduction's eval rows, the study's eval
  rows and mask tables, and the Snakemake benchmarks that give a seed's time.  Each
  artifact is read verified (its ``.sha256`` sidecar) and kept whole, as JSON, with its
  path and its recorded SHA-256 (the lineage back to the run that made it).  An artifact
  already kept with the same digest is skipped; one with another digest replaces it, and
  is counted as replaced.
* ``prunelib reproductions write`` reads ``results/`` first and the ledger for what is
  not on disk (``Cells``).  The rows' settings hashes are checked against the presets as
  before, so a kept row made with other settings shows as stale, never as a result.

The ledger is itself an artifact: written atomically with its sidecar, refused when a byte
of it changes.  A few KB per cell (one JSON row of ~70 fields, zstd-compressed).
"""

from __future__ import annotations

import json
from pathlib import Path

from prunelib.foundations import paths

LEDGER = Path(paths.REPRODUCTION_LEDGER)
_COLUMNS = ("path", "sha256", "rows")


def read(ledger: str | Path = LEDGER) -> dict[str, tuple[str, str]]:
    """{artifact path: (its recorded SHA-256, its rows as JSON)}; empty when there is no
    ledger yet.  The file is read verified."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from prunelib.foundations.artifacts import verified_bytes

    ledger = Path(ledger)
    if not ledger.exists():
        return {}
    table = pq.read_table(pa.BufferReader(verified_bytes(ledger))).to_pydict()
    return {p: (d, r) for p, d, r in zip(table["path"], table["sha256"], table["rows"])}


def _write(entries: dict[str, tuple[str, str]], ledger: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from prunelib.foundations.artifacts import atomic_path, record_checksum

    keys = sorted(entries)  # sorted: the same entries give the same bytes
    table = pa.table({"path": keys, "sha256": [entries[k][0] for k in keys], "rows": [entries[k][1] for k in keys]})
    ledger.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(ledger) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    record_checksum(ledger)


def _artifact(full: Path) -> tuple[str, str]:
    """(recorded SHA-256, rows as JSON) of one artifact: a Parquet table read verified, or a
    Snakemake benchmark (TSV, which Snakemake writes without a sidecar: its text)."""
    from prunelib.foundations.artifacts import read_checksum, read_parquet_rows, sha256_file

    if full.suffix == ".tsv":
        return sha256_file(full), json.dumps([{"text": full.read_text()}])
    rows = read_parquet_rows(full)  # ChecksumError when its bytes changed since it was written
    return read_checksum(full), json.dumps(rows, default=str)


def keep(root: str | Path, ledger: str | Path, wanted) -> dict:
    """Copy the artifacts ``wanted`` (paths relative to a root: what the page reads,
    ``reproductions.page_paths()``) found under ``root`` into the ledger; returns the
    counts (new, same, replaced, refused: an artifact whose bytes fail their checksum,
    with its one-line reason)."""
    from prunelib.foundations.artifacts import ChecksumError

    entries = read(ledger)
    counts = {"new": 0, "same": 0, "replaced": 0, "refused": []}
    for rel in wanted:
        full = Path(root) / rel
        if not full.exists():
            continue
        try:
            digest, rows = _artifact(full)
        except ChecksumError as e:
            counts["refused"].append(str(e))
            continue
        if rel not in entries:
            counts["new"] += 1
        elif entries[rel][0] == digest:
            counts["same"] += 1
            continue
        else:
            counts["replaced"] += 1
        entries[rel] = (digest, rows)
    if counts["new"] or counts["replaced"] or not Path(ledger).exists():
        _write(entries, Path(ledger))
    counts["total"] = len(entries)
    return counts


class Cells:
    """The artifacts the page reads: ``root``/results first, then the ledger (``None``: disk
    only).  Counts where each came from (``used``), for the page's provenance line."""

    def __init__(self, root: str | Path = ".", ledger: str | Path | None = None):
        self.root = Path(root)
        self.ledger = Path(ledger) if ledger is not None else None
        self._kept = read(self.ledger) if self.ledger is not None else {}
        self.used = {"disk": set(), "ledger": set()}
        #: Where each artifact read by ``rows`` came from ("disk" or "ledger").
        self.source: dict[str, str] = {}

    def exists(self, rel) -> bool:
        return (self.root / rel).exists() or str(rel) in self._kept

    def rows(self, rel, current=None) -> list[dict] | None:
        """The rows of the Parquet artifact at ``rel`` (verified), or None when neither the
        disk nor the ledger has it.  ``current(rows)`` says whether rows were made with the
        settings the page asks for: disk rows that are not give way to kept rows that are
        (a results/ folder of other runs must not hide kept results)."""
        from prunelib.foundations.artifacts import read_parquet_rows

        full, key = self.root / rel, str(rel)
        disk = read_parquet_rows(full) if full.exists() else None
        kept = json.loads(self._kept[key][1]) if key in self._kept else None
        if disk is not None and (kept is None or current is None or current(disk) or not current(kept)):
            self.used["disk"].add(key)
            self.source[key] = "disk"
            return disk
        if kept is not None:
            self.used["ledger"].add(key)
            self.source[key] = "ledger"
        return kept

    def kept(self, rel, settings_hash: str) -> bool:
        """Whether the ledger holds a finished (status ok) eval row at ``rel`` made with
        ``settings_hash``: a cell that need not be run again."""
        key = str(rel)
        if key not in self._kept:
            return False
        row = json.loads(self._kept[key][1])[0]
        return row.get("settings_hash") == settings_hash and row.get("status") == "ok"

    def text(self, rel, source: str | None = None) -> str | None:
        """The text of a Snakemake benchmark at ``rel``, or None; ``source`` ("disk",
        "ledger") first when given: a cell's time comes from where its row came from."""
        full, key = self.root / rel, str(rel)
        order = ("ledger", "disk") if source == "ledger" else ("disk", "ledger")
        for where in order:
            if where == "disk" and full.exists():
                return full.read_text()
            if where == "ledger" and key in self._kept:
                return json.loads(self._kept[key][1])[0]["text"]
        return None

    def provenance(self) -> str:
        kept = f" and {len(self.used['ledger'])} from the ledger `{self.ledger}`" if self.ledger else ""
        return f"{len(self.used['disk'])} artifacts read from `{self.root / paths.RESULTS}`{kept}"


def cells_of(root) -> Cells:
    """``root`` as a ``Cells``: a Cells is returned as is; a folder reads its disk only."""
    return root if isinstance(root, Cells) else Cells(root)


def not_kept(targets, ledger: str | Path | None, label: str) -> list:
    """The (eval path, settings hash) ``targets`` whose finished rows the ledger lacks, as
    paths (all of them when ``ledger`` is None); says how many it leaves out."""
    if ledger is None:
        return [p for p, _ in targets]
    cells = Cells(".", ledger)
    todo = [p for p, h in targets if not cells.kept(p, h)]
    if len(todo) < len(targets):
        print(f"{label}: {len(targets) - len(todo)} of {len(targets)} cells are kept in {ledger} and are not run "
              f"again (--no-ledger runs them)", flush=True)
    return todo
