"""What a failed run shows where the user started Snakemake: each failed job's one-line
error, read from its log.

A stage writes its one-line error (a plugin's exception included, named with its file
and line; prunelib/cli/main.py) as the last line of its job log, which also keeps the
whole traceback.  Snakemake's console only says ``Error in rule score`` and points at
the log; the Snakefile's ``onerror`` calls ``report`` with Snakemake's own log, so the
console ends with one line per failed job.  Nothing here imports torch.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_ERROR = re.compile(r"^Error in rule (\S+):\s*$")
_LOG = re.compile(r"^\s+log: (.+?)(?: \(check log file\(s\) for error details\))?\s*$")


def failed_jobs(snakemake_log) -> list[tuple[str, str]]:
    """(rule, job log path) of every failed job Snakemake's log names, in order, once
    (``snakemake_log``: its path, or the list of them ``onerror`` gets)."""
    out, rule = [], None
    lines = []
    for path in ([snakemake_log] if isinstance(snakemake_log, (str, Path)) else list(snakemake_log or ())):
        try:
            lines += Path(path).read_text(errors="replace").splitlines()
        except OSError:
            continue
    for line in lines:
        m = _ERROR.match(line)
        if m:
            rule = m.group(1)
            continue
        m = _LOG.match(line)
        if rule and m:
            for path in m.group(1).split(", "):
                if (rule, path) not in out:
                    out.append((rule, path))
            rule = None
    return out


def last_line(path) -> str:
    """The last non-empty line of a job log ('' if none)."""
    try:
        lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def report(snakemake_log, stream=None) -> list[str]:
    """Print, and return, one line per failed job: its rule, its log, its error."""
    stream = stream or sys.stderr
    lines = []
    for rule, path in failed_jobs(snakemake_log):
        lines.append(f"prunelib: {rule} failed: {last_line(path) or '(empty log)'}   [log: {path}]")
    if lines:
        print("\n".join(["", f"prunelib: {len(lines)} job(s) failed; each one's error (full traceback in its log):",
                         *lines]), file=stream, flush=True)
    return lines
