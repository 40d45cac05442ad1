"""A fair share of the machine's cores for every sslx training running on it.

Each training process notes itself in a folder of the user's
(``$SSLX_SHARE_DIR``, default ``<tmp>/sslx-share-<uid>``) while it runs.
``trainer.threads: auto`` divides the cores by the number of noted trainings
that still run, and re-divides them as training goes (at most every
``RECHECK_S``): a run started alone gives threads back when a second one
starts and takes them again when it ends. ``trainer.num_workers: auto`` divides the same way, once, when the
loader starts. Without this, two runs started together each spin a full
thread pool against the other's (benchmarks/concurrency.py measures it).

The cores are the process's CPU affinity; ``OMP_NUM_THREADS``, when set,
caps the threads (under a launch: per local process, as torchrun sets it).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from sslx.records import process_start

RECHECK_S = 0.5  # how often a training counts the others (a directory listing and a /proc read each)


def _folder() -> Path:
    return Path(os.environ.get("SSLX_SHARE_DIR") or Path(tempfile.gettempdir()) / f"sslx-share-{os.getuid()}")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def trainings() -> int:
    """How many sslx trainings run on this machine now (at least 1: this
    one), forgetting the notes of processes that died without removing them."""
    live = 0
    for note in _folder().glob("*.pid"):
        try:
            pid, start = (int(v) for v in note.read_text().split())
        except (OSError, ValueError):
            continue  # being written, or removed meanwhile
        if process_start(pid) == start:
            live += 1
        else:
            note.unlink(missing_ok=True)
    return max(1, live)


class CoreShare:
    """This process's note, and its share of threads and loader workers."""

    def __init__(self, threads: int | str | None):
        self.requested = threads
        self.note = _folder() / f"{os.getpid()}.pid"
        self.checked = 0.0

    def __enter__(self) -> CoreShare:
        self.note.parent.mkdir(parents=True, exist_ok=True)
        partial = self.note.with_suffix(".partial")
        partial.write_text(f"{os.getpid()} {process_start(os.getpid())}")
        partial.replace(self.note)
        return self

    def __exit__(self, *exc: object) -> None:
        self.note.unlink(missing_ok=True)

    def threads(self) -> int | None:
        """The intra-op threads this process should use (None: torch's default)."""
        if self.requested != "auto":
            return None if self.requested is None else int(self.requested)
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        omp = os.environ.get("OMP_NUM_THREADS", "")
        cap = int(omp) * local if omp.isdigit() and int(omp) > 0 else _cores()
        return max(1, min(cap, _cores()) // trainings())

    def apply(self) -> None:
        """Set torch's threads to this process's share, if it changed."""
        import torch

        self.checked = time.monotonic()
        if (n := self.threads()) is not None and n != torch.get_num_threads():
            torch.set_num_threads(n)

    def recheck(self) -> None:
        """:meth:`apply`, unless it ran less than ``RECHECK_S`` ago (cheap enough to call every step)."""
        if self.requested == "auto" and time.monotonic() - self.checked >= RECHECK_S:
            self.apply()


def auto_workers(requested: int | str) -> int:
    """``auto``: one loader worker per core of this training's share but one
    (at most 8); the share counts the other trainings noted on this machine,
    the processes of a launch included."""
    if requested != "auto":
        return int(requested)
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(0, min(8, _cores() // max(local, trainings()) - 1))
