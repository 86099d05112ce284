"""Atomic artifact I/O: write to a temp file in the same folder, then rename.

A killed job therefore leaves either the complete previous file or nothing, never a
truncated one (``os.replace`` is atomic within one file system).  Parquet tables are
written with pyarrow directly, so stages that write tables need not import pandas.

Checksums.  Every ``.pt`` and Parquet artifact gets a sidecar ``<name>.sha256`` in
``sha256sum`` format (``<64 hex>  <name>``, so ``sha256sum -c x.pt.sha256`` checks it
without prunelib), written atomically just before the artifact is renamed into place.  ``prunelib audit``
compares it with the file to detect a file changed or truncated since it was written,
and every stage's reads (``load_pt``, ``read_parquet_rows``) check it before using a
byte: a mismatch or a missing sidecar raises ``ChecksumError`` (one line: the file,
the recorded and the actual digest, and the command that rebuilds it), so a damaged
artifact never flows downstream.

Why sidecars and not a per-folder manifest: a seed folder is written by several jobs
at once (init, one score job per method), so a shared manifest would need a lock and a
read-modify-write per job; a sidecar belongs to exactly one writer.  The cost per
artifact is one SHA-256 pass over bytes just written (still in the page cache):
about 2 ms per MB on one core, i.e. ~1 ms for a LeNet-300 ``final.pt``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from prunelib.foundations.errors import PrunelibError


_UMASK = os.umask(0)
os.umask(_UMASK)


CHECKSUM_SUFFIX = ".sha256"


def checksum_path(path) -> Path:
    """The sidecar that records ``path``'s SHA-256: ``<path>.sha256``."""
    path = Path(path)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def _write_checksum(digest: str, path: Path) -> None:
    side = checksum_path(path)
    tmp = side.with_name(f".{side.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{digest}  {path.name}\n")
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, side)


def read_checksum(path) -> str | None:
    """The SHA-256 recorded for ``path`` when it was written, or None (no sidecar:
    written before checksums existed, or by something else)."""
    side = checksum_path(path)
    try:
        text = side.read_text().split()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return text[0].lower() if text and len(text[0]) == 64 else None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, checksum: bool = False) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it over ``path``.

    With ``checksum=True`` the complete file's SHA-256 is also recorded in the sidecar
    ``<path>.sha256`` (hashed from the temp file, so the digest is of exactly the bytes
    that get renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A job killed by SIGKILL cannot clean up; its rerun removes what it left.
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts are for everyone to audit
    try:
        yield Path(tmp)
        # The sidecar goes first: a job killed between the two renames leaves a sidecar
        # that disagrees with the old file, which audit reports, rather than a new file
        # that silently carries the old digest.  Snakemake reruns such a job anyway.
        if checksum:
            _write_checksum(sha256_file(tmp), path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_pt(obj, path) -> None:
    import torch

    with atomic_path(path, checksum=True) as tmp:
        torch.save(obj, tmp)


def load_pt(path, map_location="cpu", verify: bool = True):
    """A ``.pt`` artifact, after checking its bytes against the sidecar digest
    (``verify=False``: no check, for the audit, which reports rather than refuses).

    The file is read once: the bytes that are hashed are the bytes that are loaded, so
    a file changed between check and load cannot slip through."""
    import io

    import torch

    if not verify:
        return torch.load(path, map_location=map_location, weights_only=True)
    data = verified_bytes(path)
    return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)


def write_parquet(rows: list[dict] | dict[str, list], path, metadata: dict | None = None) -> None:
    """Write a table (list of row dicts, or dict of columns) atomically as Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows) if isinstance(rows, list) else pa.table(rows)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               **{k: str(v) for k, v in metadata.items()}})
    with atomic_path(path, checksum=True) as tmp:
        pq.write_table(table, tmp)


def read_parquet_rows(path, verify: bool = True) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not verify:
        return pq.read_table(path).to_pylist()
    return pq.read_table(pa.BufferReader(verified_bytes(path))).to_pylist()


def write_text(text: str, path) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def md5_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


# --- verified reads ---------------------------------------------------------------------

class ChecksumError(PrunelibError):
    """An artifact's bytes differ from the digest recorded when it was written, or no
    digest was recorded.  The message is one line: the file, both digests, and the
    command that rebuilds it."""


def recovery_hint(path) -> str:
    from prunelib.foundations.paths import producing_rule

    name = str(path)
    rule = producing_rule(name[:-len(CHECKSUM_SUFFIX)] if name.endswith(CHECKSUM_SUFFIX) else name)
    how = f"rerun the job that wrote it: snakemake --cores 1 --force {path}"
    return f"{how} (rule {rule}), then run the workflow again" if rule else how


def verified_bytes(path) -> bytes:
    """The bytes of ``path``, or ChecksumError when they do not hash to the SHA-256
    recorded in ``<path>.sha256`` at write time (or when none was recorded).

    Cost: one SHA-256 pass over bytes read anyway, ~2 ms per MB on one core (0.1 s for
    the 55 MB prepared MNIST file; see docs/trust.md)."""
    path = Path(path)
    recorded = read_checksum(path)
    data = path.read_bytes()  # a missing file raises FileNotFoundError, as it did before
    if recorded is None:
        raise ChecksumError(f"{path}: no checksum recorded ({checksum_path(path).name} missing or unreadable), "
                            f"so its bytes cannot be trusted; recover: {recovery_hint(path)}")
    actual = hashlib.sha256(data).hexdigest()
    if actual != recorded:
        raise ChecksumError(f"{path}: checksum mismatch: recorded sha256 {recorded}, actual {actual} "
                            f"(changed or truncated since it was written); recover: {recovery_hint(path)}")
    return data


def verify_file(path) -> str:
    """The verified SHA-256 of ``path`` (ChecksumError as ``verified_bytes``), hashed in chunks."""
    path = Path(path)
    recorded = read_checksum(path)
    if recorded is None:
        verified_bytes(path)  # raises the one-line error
    actual = sha256_file(path)
    if actual != recorded:
        raise ChecksumError(f"{path}: checksum mismatch: recorded sha256 {recorded}, actual {actual} "
                            f"(changed or truncated since it was written); recover: {recovery_hint(path)}")
    return actual


def record_checksum(path) -> str:
    """Write the sidecar of a file made by other means (a table written with pandas, a
    file copied in by hand), so that verified reads accept it; returns its digest."""
    digest = sha256_file(path)
    _write_checksum(digest, Path(path))
    return digest


def input_record(path) -> dict:
    """Lineage of one input: its path as given and the SHA-256 recorded for it (which a
    verified read has just checked against its bytes)."""
    return {"path": str(path), "sha256": read_checksum(path)}
