"""Training that survives preemption: periodic atomic checkpoints of the step loop.

A train or IMP-round job killed by a time limit, a preemption or ``kill -9`` would
otherwise start again from step 0.  ``training.run_steps`` instead writes, every
``train.checkpoint_minutes`` minutes of training (and when the job is asked to stop with
SIGTERM or SIGUSR1), the whole state of the loop before step p:

* the weights and buffers, the optimizer state (momentum, Adam moments), the global
  torch random-generator states (CPU and CUDA);
* p, the log rows of the finished epochs, the running sums of the epoch in progress
  (loss, correct, seen, its first learning rate and elapsed seconds), and the weight
  snapshots taken so far (an IMP chain's rewind point).

Every batch is a function of its position and the seed alone (``run_steps``), so a job
rerun from that state takes exactly the steps an uninterrupted run takes from p on: on
the CPU its final weights and its log (less the ``seconds`` column) are bit-identical.

Where: ``<output>.ckpt`` beside the job's main output (``final.pt.ckpt``,
``imp/round3/weights.pt.ckpt``), written atomically with its own SHA-256 on its first
line (checked before it is resumed).  It is not a declared output, so Snakemake leaves it in place when it
deletes a failed job's outputs before the rerun (``--rerun-incomplete``, ``--retries``,
a SLURM requeue); the job removes it once its outputs are written.

A checkpoint is resumed only if its key matches the job: the stage's settings hash, the
SHA-256 of each input, the positions and the torch version; a stale one (settings or
inputs changed), a damaged one (checksum) or an unreadable one is deleted with a log
line and training starts from step 0 -- it costs time, never correctness.

The interval is not part of any settings hash: it cannot change a result, so changing it
reruns no stage job (only ``aggregate``, which records the resolved config).  It comes from the job's environment ``PRUNELIB_CHECKPOINT_MINUTES``
(the workflow exports ``train.checkpoint_minutes`` there), else the settings' own
``train.checkpoint_minutes``, else ``DEFAULT_MINUTES``; 0 turns writing them off (one
already on disk for the same job is still resumed).  A job shorter than the interval
never writes one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import threading
import time
from pathlib import Path

from prunelib.foundations.errors import PrunelibError

log = logging.getLogger("prunelib.train.resume")

ENV_VAR = "PRUNELIB_CHECKPOINT_MINUTES"
DEFAULT_MINUTES = 5.0
SUFFIX = ".ckpt"
#: SIGTERM: SLURM's time limit and preemption, ``scancel``, Snakemake cancelling a job;
#: SIGUSR1: what the SLURM profile asks for before the time limit (``--signal``).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class JobInterrupted(PrunelibError):
    """The job was asked to stop; its checkpoint is on disk and a rerun resumes it."""


def checkpoint_path(output) -> Path:
    """Where the job writing ``output`` keeps its checkpoint: ``<output>.ckpt``."""
    output = Path(output)
    return output.with_name(output.name + SUFFIX)


def interval_minutes(contract=None) -> float:
    """The checkpoint interval of a job (see the module docstring for the precedence);
    ``contract``: a train or IMP-round contract (its ``train.checkpoint_minutes``)."""
    text = os.environ.get(ENV_VAR, "").strip()
    if text:
        try:
            value = float(text)
        except ValueError:
            raise PrunelibError(f"{ENV_VAR} = {text!r} is not a number; allowed: minutes >= 0 "
                                "(0 = no checkpoints)") from None
    else:
        value = float(getattr(getattr(contract, "train", None), "checkpoint_minutes", DEFAULT_MINUTES))
    if value < 0 or value != value:
        raise PrunelibError(f"train.checkpoint_minutes = {value} is not allowed; allowed: minutes >= 0 "
                            "(0 = no checkpoints)")
    return value


def job_key(contract, inputs: dict) -> dict:
    """What a checkpoint must match to be resumed: the contract's hash (which leaves out
    the interval: it changes no result) and the digests of the job's inputs."""
    import torch

    return {"settings_hash": contract.hash(),
            "inputs": {k: (v or {}).get("sha256") for k, v in sorted(inputs.items())},
            "torch": str(torch.__version__)}


class Checkpointer:
    """The checkpoint of one job: ``load`` at the start, ``due``/``save`` between steps,
    ``remove`` once the job's outputs are written.  Between ``catch_signals`` and
    ``release_signals`` (or as a context manager) SIGTERM/SIGUSR1 mean "checkpoint at
    the next step, then stop"."""

    def __init__(self, output, key: dict, minutes: float):
        self.path = checkpoint_path(output)
        self.key = dict(key)
        self.interval = 60.0 * minutes
        self.last = time.monotonic()
        self.signalled: int | None = None
        self._previous: dict = {}
        self._born = time.perf_counter()
        #: Seconds the job had run before the checkpoint it resumed from (0 when fresh), so
        #: that a resumed job reports the time it cost in all.
        self.seconds_before = 0.0

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def bind(self, positions: range) -> None:
        """Tie the key to the loop's positions (a round's schedule is part of its identity)."""
        self.key["positions"] = [positions.start, positions.stop]

    # --- signals ---------------------------------------------------------------------

    def __enter__(self) -> "Checkpointer":
        return self.catch_signals()

    def __exit__(self, *exc) -> None:
        self.release_signals()

    def catch_signals(self) -> "Checkpointer":
        """From now on SIGTERM/SIGUSR1 mean: checkpoint before the next step, then stop
        (``JobInterrupted``).  Undo with ``release_signals``."""
        self.last = time.monotonic()
        # signal handlers can only be set from the main thread (a stage run from a thread
        # simply keeps the default: the signal ends it, the last checkpoint stays)
        if self.enabled and threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def release_signals(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _on_signal(self, signum, _frame) -> None:
        # only a flag: the loop writes the checkpoint between two steps, where the state
        # is consistent
        self.signalled = signum

    # --- the file ----------------------------------------------------------------------

    def due(self) -> bool:
        return self.enabled and (self.signalled is not None or time.monotonic() - self.last >= self.interval)

    def save(self, state: dict) -> None:
        import io

        import torch

        from prunelib.foundations.artifacts import atomic_path

        buf = io.BytesIO()
        job_seconds = self.seconds_before + time.perf_counter() - self._born
        torch.save({"key": self.key, "job_seconds": job_seconds, **state}, buf)
        body = buf.getvalue()
        # the digest travels inside the file: one rename replaces both at once, so a job
        # killed while saving leaves the previous checkpoint whole (a sidecar written
        # beside it would disagree with it for a moment)
        with atomic_path(self.path) as tmp:
            tmp.write_bytes(hashlib.sha256(body).hexdigest().encode() + b"\n" + body)
        self.last = time.monotonic()

    def stop_if_signalled(self, position: int, positions: range) -> None:
        if self.signalled is not None:
            name = signal.Signals(self.signalled).name
            raise JobInterrupted(f"stopped by {name} before step {position} of {positions.start}..{positions.stop}; "
                                 f"checkpoint written to {self.path}; rerun the job to resume from it")

    def load(self) -> dict | None:
        """The checkpoint's state if it belongs to this job, else None (a stale or damaged
        one is removed, with a log line saying why).  Read even with checkpoints turned
        off: an earlier attempt's checkpoint of this very job is as good as the steps it saves."""
        if not self.path.exists():
            return None
        try:
            blob = read_checkpoint(self.path)
        except Exception as exc:  # noqa: BLE001 - damaged or cut: start over, it is only a cache
            return self._discard(f"unreadable ({exc})")
        if not isinstance(blob, dict) or blob.get("key") != self.key:
            return self._discard("made by other settings, inputs or torch version")
        log.info("resuming from %s at step %d", self.path, blob["position"])
        self.seconds_before, self._born = float(blob.get("job_seconds", 0.0)), time.perf_counter()
        return blob

    def _discard(self, why: str) -> None:
        log.warning("ignoring checkpoint %s: %s; training starts from step 0", self.path, why)
        self.remove()
        return None

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def read_checkpoint(path) -> dict:
    """A checkpoint file's state, after checking the SHA-256 on its first line against
    the rest (ValueError when they differ)."""
    import io

    import torch

    data = Path(path).read_bytes()
    recorded, _, body = data.partition(b"\n")
    actual = hashlib.sha256(body).hexdigest()
    if recorded.decode(errors="replace") != actual:
        raise ValueError(f"{path}: checksum mismatch: recorded sha256 {recorded[:64].decode(errors='replace')}, "
                         f"actual {actual}")
    return torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)


def for_job(output, contract, inputs: dict) -> Checkpointer:
    """The checkpointer of the job whose main output is ``output`` (``contract``: its
    train or IMP-round contract)."""
    return Checkpointer(output, job_key(contract, inputs), interval_minutes(contract))
