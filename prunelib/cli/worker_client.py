"""The client half of the pre-imported worker (prunelib/cli/worker.py): a stage command
hands its argv, working directory, environment and standard streams to the worker's
socket and waits for the exit code.  Kept apart from the server so that ``prunelib.cli.main``
imports no server code (and the server, which runs ``cli.main``, no cycle)."""

from __future__ import annotations

import json
import os
import socket
import struct
import sys

ENV_VAR = "PRUNELIB_WORKER"
HEADER = struct.Struct("!I")


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("worker closed the connection")
        buf += chunk
    return buf


def try_forward(argv: list[str]) -> int | None:
    """Run ``argv`` in the worker named by $PRUNELIB_WORKER; None when there is none."""
    path = os.environ.get(ENV_VAR)
    if not path or not os.path.exists(path):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    payload = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    try:
        socket.send_fds(sock, [HEADER.pack(len(payload)) + payload], [0, 1, 2])
        (rc,) = HEADER.unpack(recv_exact(sock, HEADER.size))
    except (OSError, ConnectionError) as exc:
        print(f"prunelib: lost the worker while running {' '.join(argv[:1])}: {exc}", file=sys.stderr)
        return 1
    finally:
        sock.close()
    return rc
