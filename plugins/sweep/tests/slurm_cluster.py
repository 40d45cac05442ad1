"""A real one-node SLURM cluster for tests, started and stopped by the test itself.

``with slurm_cluster(workdir) as cluster:`` runs Debian's munged, slurmctld and slurmd
(packages ``munge`` and ``slurm-wlm``; ``make slurm`` installs them) as child processes,
everything under ``workdir``, and gives ``cluster.env``: the environment in which
``sbatch``/``squeue``/``scontrol``/``srun`` (and so submitit) talk to this cluster.

What it configures, and why:

- munged: its own key (1 KiB random, 0400), socket, pid, log and seed files under
  ``workdir``, run in the foreground with ``--force`` (root, and a socket outside
  /run/munge), so it clashes with no system munged. slurm.conf points slurm at that
  socket with ``AuthInfo=socket=...`` (auth/munge and cred/munge both read it).
- slurm.conf, found by every client through ``SLURM_CONF`` (``cluster.env``):
  ``SlurmctldHost`` and ``NodeName`` are this host's short name, addressed as
  127.0.0.1 (no DNS needed); CPUs, sockets, cores and RealMemory are what ``slurmd -C``
  detects, so the node registers without being drained for "low memory/CPUs".
  SlurmctldPort and SlurmdPort are ports free at start, so two clusters (or a real
  installation) do not clash. One partition ``debug``: Default, MaxTime=INFINITE, UP.
- No cgroups (proctrack/linuxproc, task/none, jobacct_gather/none): containers and
  sandboxes seldom give a writable cgroup tree. select/cons_tres with CR_Core: jobs get
  cores as on a real cluster, memory is not consumed (with CR_Core_Memory a job without
  --mem would take the whole node). SchedulerParameters=batch_sched_delay=0: a job starts
  when it is submitted or a core frees, not up to 3 s later (measured: 6 one-second jobs
  on 2 cores took 9.6 s with the default, 3.6 s without).
- No accounting: ``AccountingStorageType=accounting_storage/none`` (slurmdbd would need a
  MySQL server), so ``sacct`` exits with an error. submitit calls sacct for job states,
  logs "Bypassing sacct error" and reads the state as UNKNOWN, but a job's result comes
  from its result file, so ``job.result()`` works (a cancelled job is another story: see
  test_slurm_cluster.py). ``squeue --states=all`` and ``scontrol show job`` keep a finished
  job for MinJobAge (300 s): that is where a test reads COMPLETED (``cluster.job_state``).
- SlurmUser=root, ReturnToService=2 (the node comes back UP by itself after a restart),
  state, spool, logs and pid files under ``workdir``, an empty plugstack.conf (no site
  SPANK plugins), MailProg=/bin/true (Debian has no mail program by default).

Start-up waits (polling, no fixed sleeps) for munged to answer, then for ``sinfo`` to show
the node idle; a daemon that exits, a node refused (drained, invalid) or a timeout raises
SlurmStartError with the daemons' logs. On exit every job is cancelled, the three daemons
are stopped (SIGTERM, then SIGKILL), and any slurmstepd or job process still carrying this
cluster's SLURM_CONF is killed: nothing is left running. Should the test process itself be
killed, the daemons get SIGTERM from the kernel (PR_SET_PDEATHSIG) rather than live on.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PARTITION = "debug"
DAEMONS = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "scontrol", "sinfo", "scancel")
REFUSED = {"drain", "drained", "draining", "inval", "fail", "failing"}  # sinfo states a node does not leave alone
INSTALL_HINT = "`make test-slurm` installs Debian's slurm-wlm and munge"


class SlurmUnavailable(RuntimeError):
    """SLURM or munge is not installed, or this process cannot run them (not root)."""


class SlurmStartError(RuntimeError):
    """The cluster did not come up; the message holds the daemons' logs."""


def missing() -> str | None:
    """Why a cluster cannot be started here, or None when it can."""
    absent = [name for name in DAEMONS if shutil.which(name) is None]
    if absent:
        return f"not installed: {', '.join(absent)} ({INSTALL_HINT})"
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs"
    return None


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free now (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def detect_node() -> dict[str, str]:
    """The node line ``slurmd -C`` prints (NodeName, CPUs, ..., RealMemory) as a dict."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True, timeout=30).stdout
    line = out.splitlines()[0]
    return dict(item.split("=", 1) for item in line.split())


@dataclass
class SlurmCluster:
    """A running cluster: ``env`` for its clients, ``run`` to call them, the daemons' logs."""

    workdir: Path
    conf: Path
    node: str
    partition: str
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A slurm client command (``sinfo``, ``squeue``...) against this cluster."""
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout, check=check)

    def job_state(self, job_id: str) -> str:
        """``JobState`` from ``scontrol show job`` (finished jobs stay there MinJobAge seconds)."""
        out = self.run("scontrol", "show", "job", "--oneliner", str(job_id)).stdout
        fields = dict(item.split("=", 1) for item in out.split() if "=" in item)
        return fields["JobState"]

    def node_state(self) -> str:
        result = self.run("sinfo", "--noheader", "--Node", "--format=%T", check=False, timeout=10)
        return result.stdout.strip() if result.returncode == 0 else f"sinfo failed: {result.stderr.strip()}"

    def logs(self, tail: int = 40) -> str:
        parts = []
        folder = self.workdir / "log"
        logs = [path for path in sorted(folder.glob("*.log")) if path.stat().st_size]
        # a daemon's stdout repeats its log file, but holds what it said before it could open that file
        logs += [path for path in sorted(folder.glob("*.out")) if path.with_suffix(".log") not in logs]
        for path in logs:
            lines = path.read_text(errors="replace").splitlines()[-tail:]
            parts.append(f"--- {path.name} (last {len(lines)} lines) ---\n" + "\n".join(lines))
        return "\n".join(parts)

    def wait_idle(self, timeout: float) -> None:
        """Wait until the node is idle; raise SlurmStartError with the logs if a daemon died, the node was
        refused (drained, invalid: its reason is in the message) or time ran out."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            self.check_daemons()
            state = self.node_state()
            if state == "idle":
                return
            if state.rstrip("*~#!%$@^-") in REFUSED:
                node = self.run("scontrol", "show", "node", self.node, check=False).stdout
                raise SlurmStartError(f"node {self.node} is {state}:\n{node}\n{self.logs()}")
            time.sleep(0.2)
        raise SlurmStartError(f"node {self.node} not idle after {timeout:.0f} s (sinfo: {state!r})\n{self.logs()}")

    def check_daemons(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise SlurmStartError(f"{name} exited with {process.returncode}\n{self.logs()}")


def _write_slurm_conf(workdir: Path, node: dict[str, str], munge_socket: Path, spool: Path) -> Path:
    name = node["NodeName"]
    ctld_port, slurmd_port = free_ports(2)
    hardware = " ".join(
        f"{key}={node[key]}"
        for key in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
        if key in node
    )
    plugstack = workdir / "plugstack.conf"
    plugstack.write_text("")
    conf = workdir / "slurm.conf"
    conf.write_text(
        f"""\
ClusterName=sslxtest
SlurmctldHost={name}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
PlugStackConfig={plugstack}
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation={workdir}/state
SlurmdSpoolDir={spool}
SlurmctldPidFile={workdir}/run/slurmctld.pid
SlurmdPidFile={workdir}/run/slurmd.pid
SlurmctldLogFile={workdir}/log/slurmctld.log
SlurmdLogFile={workdir}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName={name} NodeAddr=127.0.0.1 {hardware} State=UNKNOWN
PartitionName={PARTITION} Nodes={name} Default=YES MaxTime=INFINITE State=UP
"""
    )
    return conf


def _wait_for(condition, timeout: float, what: str, cluster: SlurmCluster) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        cluster.check_daemons()
        if time.monotonic() > deadline:
            raise SlurmStartError(f"{what} not ready after {timeout:.0f} s\n{cluster.logs()}")
        time.sleep(0.1)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when this process dies, even by SIGKILL (no orphaned daemons)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG; exec keeps it (the daemons are not set-uid)


def _processes_of(conf: Path) -> list[int]:
    """Processes whose environment names this cluster's slurm.conf (slurmstepd, job steps)."""
    marker = f"SLURM_CONF={conf}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
    return pids


def _stop(cluster: SlurmCluster) -> None:
    """Cancel every job, stop the daemons (slurmd, slurmctld, then munged), kill leftovers."""
    if cluster.processes.get("slurmctld") and cluster.processes["slurmctld"].poll() is None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            cluster.run("scancel", "--full", "--partition", cluster.partition, timeout=10, check=False)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if not cluster.run("squeue", "--noheader", timeout=10, check=False).stdout.strip():
                    break
                time.sleep(0.2)
    for name in ("slurmd", "slurmctld", "munged"):
        process = cluster.processes.get(name)
        if process is None or process.poll() is not None:
            continue
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
    for pid in _processes_of(cluster.conf):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def slurm_cluster(workdir: Path, start_timeout: float = 120) -> Iterator[SlurmCluster]:
    """A one-node cluster under ``workdir`` (created), up and idle while the block runs.

    Raises SlurmUnavailable where slurm/munge are not installed or this is not root,
    SlurmStartError (with the daemons' logs) when it does not come up in ``start_timeout``.
    """
    reason = missing()
    if reason:
        raise SlurmUnavailable(reason)
    workdir = Path(workdir).resolve()
    node = detect_node()
    # munged's socket and slurmd's step sockets (<spool>/<node>_<job>.<step>) are Unix sockets, whose paths hold at
    # most 107 bytes: under a long workdir they go to a short folder of their own.
    short = Path(tempfile.mkdtemp(prefix="sslx-slurm-")) if len(str(workdir)) + len(node["NodeName"]) > 60 else None
    cluster = None
    try:
        cluster = _start(workdir, node, short or workdir, start_timeout)
        yield cluster
    finally:
        if cluster:
            _stop(cluster)
        if short:
            shutil.rmtree(short, ignore_errors=True)


def _start(workdir: Path, node: dict[str, str], sockets: Path, timeout: float) -> SlurmCluster:
    """Write the key and slurm.conf, start munged, slurmctld and slurmd, wait for the node to be idle.
    A failure stops what was started (and raises)."""
    for folder in (workdir / "state", workdir / "log", workdir / "run", sockets / "spool", sockets / "munge"):
        folder.mkdir(parents=True, exist_ok=True)
    for folder in {workdir, sockets}:  # munged checks the folders of its key and socket: writable by root alone
        folder.chmod(0o755)
    m = sockets / "munge"
    m.chmod(0o700)
    key = m / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o400)
    munge_socket = m / "munge.socket"

    conf = _write_slurm_conf(workdir, node, munge_socket, sockets / "spool")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    for variable in list(env):  # a job's own SLURM_* (a test run inside SLURM) would confuse the clients
        if variable.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "SQUEUE_")) and variable != "SLURM_CONF":
            del env[variable]
    cluster = SlurmCluster(workdir=workdir, conf=conf, node=node["NodeName"], partition=PARTITION, env=env)

    def start(name: str, *args: str) -> None:
        with open(workdir / "log" / f"{name}.out", "wb") as log:
            cluster.processes[name] = subprocess.Popen(
                list(args),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    try:
        start(
            "munged",
            "munged",
            "--foreground",
            "--force",
            f"--socket={munge_socket}",
            f"--key-file={key}",
            f"--pid-file={m / 'munged.pid'}",
            f"--seed-file={m / 'munged.seed'}",
            f"--log-file={workdir / 'log' / 'munged.log'}",
        )
        _wait_for(
            lambda: subprocess.run(["munge", "-n", f"--socket={munge_socket}"], capture_output=True).returncode == 0,
            timeout,
            "munged",
            cluster,
        )
        start("slurmctld", "slurmctld", "-D", "-i", "-f", str(conf))
        start("slurmd", "slurmd", "-D", "-f", str(conf), "-N", cluster.node)
        cluster.wait_idle(timeout)
    except BaseException:
        _stop(cluster)
        raise
    return cluster
