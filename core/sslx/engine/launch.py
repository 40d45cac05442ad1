"""``sslx run --nproc N``: the command again in N local processes, started by
torch.distributed's elastic launcher (the machinery behind ``torchrun``).

Each process runs ``python -m sslx run ...`` with torchrun's ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE``; rank 0 records the run. If a process
fails, torchrun stops the others; rank 0 then records the run as failed
(:class:`sslx.errors.ProcessStopped`), and if rank 0 itself died without a
word, the launcher marks its record failed. Multi-node runs use ``torchrun``
itself (``torchrun --nnodes 2 ... -m sslx run EXP.json``), which works the
same way.
"""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path
from typing import Any

from sslx.errors import ProcessStopped, UserError

STATE_ENV = "SSLX_LAUNCH_STATE"  # a file where rank 0 writes its run folder


def note_run_dir(run_dir: Path) -> None:
    """Called by rank 0 when its run has a folder: the launcher reads it if
    the run ends without rank 0 recording why."""
    path = os.environ.get(STATE_ENV)
    if path:
        Path(path).write_text(str(Path(run_dir).resolve()))


def launch(nproc: int, argv: list[str]) -> None:
    """Run ``sslx <argv>`` in ``nproc`` local processes; raise
    :class:`ProcessStopped` describing the failure when a process fails, and
    ``KeyboardInterrupt`` after a Ctrl-C (rank 0 has recorded the run as
    interrupted and said how to resume it)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from sslx.records import RunFolder

    if nproc < 1:
        raise UserError(f"--nproc is {nproc}: give the number of processes to start, 1 or more.")
    cores = os.cpu_count() or 1
    # torchrun gives each process 1 thread; on the CPU the processes share the cores instead
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, cores // nproc)))
    with tempfile.TemporaryDirectory(prefix="sslx-launch-") as tmp:
        state = Path(tmp) / "run_dir"
        os.environ[STATE_ENV] = str(state)
        args = get_args_parser().parse_args(
            ["--standalone", "--nnodes=1", f"--nproc-per-node={nproc}", "--monitor-interval=0.2", "--module", "sslx"]
        )
        args.training_script_args = list(argv)  # as given: torchrun's parser would read `--nproc` as its own option
        try:
            run(args)
        except SignalException:  # Ctrl-C (or a SIGTERM): torchrun has passed it on to the processes
            raise KeyboardInterrupt from None
        except ChildFailedError as exc:
            run_dir = Path(state.read_text()) if state.exists() else None
            summary = _summary(exc)
            marked = RunFolder(run_dir).mark_failed(summary, "the sslx launcher") if run_dir else False
            where = (
                f" The run is recorded as FAILED in {run_dir}{' (marked by the launcher)' if marked else ''}."
                if run_dir
                else " No run was recorded."
            )
            raise ProcessStopped(
                f"the distributed run stopped: {summary}.{where} The failing process's own error, if it could print "
                f"one, is above (a process killed by SIGKILL was often out of memory). Fix the cause and start "
                f"again, or continue with `sslx run --resume {run_dir or 'RUN_DIR'} --nproc {nproc}`."
            ) from None
        finally:
            os.environ.pop(STATE_ENV, None)


def _summary(exc: Any) -> str:
    """'process 1 exited with code 1' for each failed process, first failure first."""
    parts = []
    for rank, failure in sorted(exc.failures.items(), key=lambda kv: kv[1].timestamp):
        code = failure.exitcode
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        parts.append(f"process {rank} {how}")
    return "; ".join(parts) or "a process failed"
