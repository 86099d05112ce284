"""A pre-imported stage runner, so that small jobs do not each pay for ``import torch``.

Every Snakemake job is a process, and importing torch costs ~2 s here, more than the work
of most mask, score and eval jobs.  When Snakemake runs locally (no conda, no cluster),
the workflow starts one ``prunelib worker`` that imports torch and the stages once and
listens on a Unix socket.  A job still runs ``python -m prunelib <stage> ...``; that
command (which imports no torch before this point) connects to the socket, hands over its
argv, working folder, environment and its stdin/stdout/stderr file descriptors, and the
worker *forks* a child that runs the stage with exactly those streams and returns the exit
code.  Each job is still its own process (a fork of a pristine, never-used parent), so
jobs stay isolated and their results are identical to a cold start; only the imports are
shared.

Robustness:
* no worker, a refused connection, or ``PRUNELIB_WORKER`` unset: the command runs the stage
  itself, so the worker is purely an optimisation (and clusters and conda never use it);
* the client dying (Snakemake cancelling a job) closes the connection and the worker sends
  that child SIGTERM, which a training child answers by writing its checkpoint before it
  exits (prunelib.train.resume), and SIGKILL ``KILL_GRACE_SECONDS`` later if it is still there;
  artifacts are written atomically, so nothing partial remains;
* the worker exits when the Snakemake process that started it is gone, or when idle.

The server is single-threaded (``select`` + ``fork``): forking from a multi-threaded process
could deadlock the child on a lock held by another thread.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import select
import signal
import socket
import sys
import time
import traceback

from prunelib.cli.worker_client import ENV_VAR, HEADER, recv_exact, try_forward  # noqa: F401 (the client half)

#: Seconds a cancelled child gets between SIGTERM and SIGKILL (a checkpoint is written
#: between two training steps, well within this).
KILL_GRACE_SECONDS = 30.0


# --- server ---------------------------------------------------------------------------

def _preload() -> None:
    import pyarrow.parquet  # noqa: F401
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401  - torch.optim imports it on first use: ~2.5 s per train job

    import prunelib.stages.eval  # noqa: F401  - each stage module (the package itself loads them lazily)
    import prunelib.stages.imp  # noqa: F401
    import prunelib.stages.init  # noqa: F401
    import prunelib.stages.mask  # noqa: F401
    import prunelib.stages.score  # noqa: F401
    import prunelib.stages.train  # noqa: F401
    from prunelib.catalogue import registry

    for entry in registry.METHODS.values():  # the built-in scorers' modules, resolved lazily elsewhere
        if entry.scorer is not None:
            entry.scorer_class()
    try:  # pyarrow imports pandas on first use; pay for it once, here
        import pandas  # noqa: F401
    except ImportError:
        pass


def _run_child(conn: socket.socket, listener: socket.socket, others: list[socket.socket], run) -> None:
    """In the forked child: adopt the client's streams, folder and environment; run; exit."""
    code = 1
    try:
        listener.close()
        for s in others:
            s.close()
        msg, fds, _, _ = socket.recv_fds(conn, HEADER.size, 3)
        (length,) = HEADER.unpack(msg)
        req = json.loads(recv_exact(conn, length))
        for target, fd in zip((0, 1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False, buffering=1)
        sys.stderr = open(2, "w", closefd=False, buffering=1)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        os.environ.pop(ENV_VAR, None)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        code = run(req["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - report like an uncaught exception would
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            conn.sendall(HEADER.pack(code & 0xFF))
        finally:
            os._exit(code & 0xFF)


def serve(path: str, run, parent_pid: int | None = None, idle_seconds: float = 600.0) -> None:
    """Serve stage commands on the Unix socket ``path``: each connection's argv runs as
    ``run(argv) -> exit code`` (the command line's ``main``, handed down so that this
    module imports nothing above it) in a forked child."""
    _preload()
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(128)
    children: dict[int, socket.socket] = {}   # pid -> connection of its client
    dying: dict[int, float] = {}   # pid -> when to SIGKILL it (its client is gone)
    last_active = time.monotonic()
    stop = False

    def _stop(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"prunelib worker {os.getpid()} listening on {path}", file=sys.stderr, flush=True)
    try:
        while not stop:
            conns = list(children.values())
            watched = [c for p, c in children.items() if p not in dying]  # a dead client's EOF stays readable
            ready, _, _ = select.select([listener, *watched], [], [], 0.05)
            if listener in ready:
                conn, _ = listener.accept()
                pid = os.fork()
                if pid == 0:
                    _run_child(conn, listener, conns, run)
                children[pid] = conn
                last_active = time.monotonic()
            for conn in ready:
                if conn is listener:
                    continue
                # a client's only message is consumed by its child; EOF means the client died
                try:
                    eof = conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
                except (BlockingIOError, InterruptedError):
                    continue  # the child took the message in the meantime
                except OSError:
                    eof = True
                if eof:
                    pid = next(p for p, c in children.items() if c is conn)
                    if pid not in dying:
                        _signal(pid, signal.SIGTERM)
                        dying[pid] = time.monotonic() + KILL_GRACE_SECONDS
            for pid, deadline in list(dying.items()):
                if time.monotonic() > deadline:
                    _signal(pid, signal.SIGKILL)
                    dying[pid] = float("inf")
            while children:
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                conn = children.pop(pid, None)
                dying.pop(pid, None)
                if conn is not None:
                    conn.close()
                last_active = time.monotonic()
            if children:
                continue
            if parent_pid is not None and not _alive(parent_pid):
                break
            if time.monotonic() - last_active > idle_seconds:
                break
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        listener.close()
        if os.path.exists(path):
            os.unlink(path)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- used by the Snakefile --------------------------------------------------------------

_STARTED: list = []


def start(path: str, log_path: str, parent_pid: int, timeout: float = 60.0):
    """Start a worker in the background; return its Popen once it listens (or None)."""
    import subprocess

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)
    log = open(log_path, "a")
    # The worker imports the prunelib this process runs (the Snakefile's checkout), not
    # whichever one the interpreter would find first (an installed copy of another one).
    here = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.Popen([sys.executable, "-m", "prunelib", "worker", "--socket", path,
                             "--parent", str(parent_pid)], stdout=log, stderr=log,
                            start_new_session=True, cwd=os.getcwd(), env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            _STARTED.append(proc)
            return proc
        if proc.poll() is not None:
            return None
        time.sleep(0.05)
    proc.kill()
    return None


def stop_started() -> None:
    """Stop every worker this process started."""
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except Exception:  # noqa: BLE001
                proc.kill()
