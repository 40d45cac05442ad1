"""The sweep's SLURM executor: every point a job, submitted through submitit.

submitit writes the batch script (``sbatch`` with the partition, time, GPUs,
CPUs and memory asked for) and starts the point's ``sslx run`` inside the
allocation through ``srun``; a point with several GPUs runs there under
``--nproc`` (torchrun on the node). How a point ended is read, as for local
points, from its run's records; whether its job ended is asked from
``squeue``, which works on clusters without an accounting database too (where
``sacct``, which submitit relies on, fails and a cancelled job would look
unfinished forever). Jobs are named ``sslx-<sweep>-<point>``, so
``--resume`` leaves alone the points whose jobs are still queued or running.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

from sslx.errors import UserError
from sslx_sweep.executors import _header
from sslx_sweep.sweep import Executor, Handle, Point

ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL"}


def _squeue(*args: str) -> list[str]:
    try:
        out = subprocess.run(["squeue", "--noheader", *args], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(
            f"--executor slurm: cannot ask SLURM for the sweep's jobs ({exc}); is squeue on PATH?"
        ) from None
    return out.stdout.split() if out.returncode == 0 else []


class SlurmHandle(Handle):
    ASK_EVERY_S = 5.0

    def __init__(self, job: Any):
        self.job = job
        self.asked = 0.0

    def poll(self) -> int | None:
        if self.job.paths.result_pickle.exists():  # the command ended (job.done() would also ask sacct)
            try:
                self.job.result()
                return 0
            except Exception:  # noqa: BLE001 - a failed point: its records say why
                return 1
        if time.monotonic() - self.asked < self.ASK_EVERY_S:
            return None
        self.asked = time.monotonic()
        states = _squeue("--states=all", f"--jobs={self.job.job_id}", "--format=%T")
        return 1 if not states or states[0] in ENDED else None  # gone from squeue: ended long ago

    def stop(self) -> None:
        self.job.cancel(check=False)

    def wait(self) -> None:
        """A cancelled job's run is recorded as died; --resume continues it."""


class SlurmExecutor(Executor):
    def __init__(
        self, sweep_id: str, folder: Path, parallel: int | None, gpus_per_run: int | None, settings: dict[str, Any]
    ):
        try:
            import submitit
        except ImportError:
            raise UserError("--executor slurm needs submitit: pip install submitit (sslx-sweep requires it).") from None
        self.submitit = submitit
        self.prefix = f"sslx-{sweep_id}-"
        self.executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
        self.gpus = gpus_per_run or 0
        params: dict[str, Any] = {"timeout_min": settings.get("time_min") or 240, "nodes": 1, "tasks_per_node": 1}
        for ours, theirs in [("partition", "slurm_partition"), ("cpus_per_run", "cpus_per_task"), ("mem_gb", "mem_gb")]:
            if settings.get(ours):
                params[theirs] = settings[ours]
        if self.gpus:
            params["gpus_per_node"] = self.gpus
        if settings.get("extra"):
            params["slurm_additional_parameters"] = dict(settings["extra"])
        self.executor.update_parameters(**params)
        self.slots = parallel or 1_000_000  # all points queued at once unless --parallel

    def busy(self) -> set[int]:
        """Points whose jobs (named by an earlier start of this sweep) are still queued or running."""
        prefix = self.prefix
        names = _squeue("--states=PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED", "--format=%j")
        return {int(n[len(prefix) :]) for n in names if n.startswith(prefix) and n[len(prefix) :].isdigit()}

    def start(self, point: Point, command: list[str], log: Path) -> Handle:
        if self.gpus > 1:
            command = [*command, "--nproc", str(self.gpus)]
        self.executor.update_parameters(name=f"{self.prefix}{point.index}")
        with open(log, "a") as out:
            _header(out, command, f"point {point.index} as SLURM job {self.prefix}{point.index}")
        shell = f"exec {shlex.join(command)} >> {shlex.quote(str(log))} 2>&1"
        return SlurmHandle(self.executor.submit(self.submitit.helpers.CommandFunction(["sh", "-c", shell])))
