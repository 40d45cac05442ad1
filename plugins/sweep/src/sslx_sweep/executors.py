"""Where a sweep's points run: here (the default), or on a SLURM cluster.

Local points are child processes of ``sslx sweep``, each in its own session
(a Ctrl-C reaches the sweep, which stops each point once, so that every one
records itself INTERRUPTED and resumable) and each stopped the same way if
the sweep dies. On the CPU the running points share the cores through the
trainer's own fair share (``trainer.threads: auto``); with GPUs each point
gets its own (``--gpus-per-run``; more than one trains under ``--nproc``).
"""

from __future__ import annotations

import ctypes
import datetime as dt
import os
import shlex
import signal
import subprocess
from pathlib import Path
from typing import IO

from sslx.errors import UserError
from sslx_sweep.sweep import Executor, Handle, Plan, Point

PR_SET_PDEATHSIG = 1


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES``, else every
    NVIDIA GPU the driver lists (read without importing torch)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    gpus = Path("/proc/driver/nvidia/gpus")
    return [str(i) for i in range(len(list(gpus.iterdir())))] if gpus.is_dir() else []


def _stop_with_parent() -> None:
    """In the child: be sent SIGINT when the sweep's process ends, however it
    ends, and act on it (a sweep started in the background of a
    non-interactive shell would hand its points SIGINT ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT)
    except OSError:
        pass  # not Linux: a killed sweep leaves its points running; they finish and are found by --resume


def _header(log: IO[str], command: list[str], where: str) -> None:
    stamp = dt.datetime.now().isoformat(timespec="seconds")
    log.write(f"\n=== {stamp} {where}: {shlex.join(command)}\n")
    log.flush()


class LocalHandle(Handle):
    def __init__(self, proc: subprocess.Popen[bytes], log: IO[str], gpus: list[str]):
        self.proc, self.log, self.gpus = proc, log, gpus

    def poll(self) -> int | None:
        code = self.proc.poll()
        if code is not None:
            self.log.close()
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)

    def wait(self) -> None:
        try:
            self.proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class LocalExecutor(Executor):
    """``slots`` points at a time on this machine."""

    def __init__(self, parallel: int | None, gpus_per_run: int | None):
        self.gpus = visible_gpus()
        self.gpus_per_run = (gpus_per_run if gpus_per_run is not None else 1) if self.gpus else 0
        if self.gpus_per_run > len(self.gpus):
            raise UserError(
                f"--gpus-per-run {self.gpus_per_run}: this machine shows {len(self.gpus)} GPU(s) "
                f"({', '.join(self.gpus) or 'none'}); give at most that many."
            )
        most = len(self.gpus) // self.gpus_per_run if self.gpus_per_run else None
        self.slots = min(parallel or most or 1, most or parallel or 1)
        self.free = list(self.gpus)

    def start(self, point: Point, command: list[str], log: Path) -> Handle:
        env = dict(os.environ)
        mine: list[str] = []
        if self.gpus_per_run:
            mine, self.free = self.free[: self.gpus_per_run], self.free[self.gpus_per_run :]
            env["CUDA_VISIBLE_DEVICES"] = ",".join(mine)
            if self.gpus_per_run > 1:
                command = [*command, "--nproc", str(self.gpus_per_run)]
        out = open(log, "a")  # noqa: SIM115 - closed by the handle when the point ends
        _header(out, command, f"point {point.index} on this machine" + (f", GPUs {','.join(mine)}" if mine else ""))
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=_stop_with_parent,
        )
        return LocalHandle(proc, out, mine)

    def release(self, handle: Handle) -> None:
        assert isinstance(handle, LocalHandle)
        self.free.extend(handle.gpus)


def make_executor(plan: Plan, folder: Path) -> Executor:
    """The executor the sweep's plan names."""
    ex = plan.executor
    if ex["kind"] == "local":
        return LocalExecutor(plan.parallel or None, ex.get("gpus_per_run"))
    from sslx_sweep.slurm import SlurmExecutor

    settings = ex.get("slurm") or {}
    return SlurmExecutor(plan.id, folder / "slurm", plan.parallel or None, ex.get("gpus_per_run"), settings)
