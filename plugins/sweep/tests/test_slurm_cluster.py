"""submitit against a real one-node SLURM cluster that the test starts and stops
(slurm_cluster.py). Marked ``slurm``: `make test-slurm` installs slurm and munge and runs it."""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import pytest

from plugins.sweep.tests.slurm_cluster import PARTITION, SlurmCluster, SlurmUnavailable, slurm_cluster

submitit = pytest.importorskip("submitit")

pytestmark = pytest.mark.slurm

# What the sweep's executor passes; every one of these is checked here.
EXECUTOR_PARAMETERS = {"slurm_partition": PARTITION, "timeout_min": 10, "cpus_per_task": 1, "mem_gb": 1}
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """The cluster, with SLURM_CONF set in this process: submitit runs sbatch/squeue/sacct with os.environ."""
    started = time.monotonic()
    try:
        with slurm_cluster(tmp_path_factory.mktemp("slurm")) as running, pytest.MonkeyPatch.context() as patch:
            print(f"\nslurm cluster up in {time.monotonic() - started:.1f} s")
            patch.setenv("SLURM_CONF", str(running.conf))
            yield running
            stopping = time.monotonic()
    except SlurmUnavailable as error:
        pytest.skip(f"no SLURM cluster here: {error}")
    print(f"slurm cluster stopped in {time.monotonic() - stopping:.1f} s")


class SqueueFallbackWatcher(submitit.slurm.slurm.SlurmInfoWatcher):
    """submitit's job-state watcher, reading squeue where sacct fails (no slurmdbd, as here).

    submitit asks sacct only; when it fails it logs "Bypassing sacct error" and the state stays UNKNOWN, so a job
    that ends without writing its result file (cancelled, killed, node lost) is never done: ``job.result()`` waits
    forever. squeue --states=all lists a finished job for MinJobAge seconds (default 300). Set per job:
    ``job.watcher = watcher`` (submitit's own is one shared class attribute, and job arrays always get it)."""

    def _make_command(self) -> list[str] | None:
        sacct = super()._make_command()
        if sacct is None:
            return None
        jobs = ",".join(sacct[i + 1] for i, arg in enumerate(sacct) if arg == "-j")
        squeue = f"squeue --noheader --states=all --format='%i|%T|%N' --jobs={jobs}"
        return ["sh", "-c", f"{shlex.join(sacct)} 2>/dev/null || {{ echo 'JobID|State|NodeList' && {squeue}; }}"]


def wait_finished(cluster: SlurmCluster, job_id: str, timeout: float = 60) -> str:
    """The job's final state from ``scontrol show job`` (no accounting, so no sacct)."""
    deadline = time.monotonic() + timeout
    while (state := cluster.job_state(job_id)) not in FINISHED:
        assert time.monotonic() < deadline, f"job {job_id} still {state} after {timeout} s\n{cluster.logs()}"
        time.sleep(0.2)
    return state


def test_cluster_is_up(cluster: SlurmCluster) -> None:
    assert cluster.node_state() == "idle"
    assert cluster.run("sinfo", "--noheader", "--format=%P %a %l").stdout.split() == [f"{PARTITION}*", "up", "infinite"]


def job_facts(x: int) -> dict:
    """Runs in the job: what SLURM and submitit tell it."""
    import socket

    import submitit

    env = submitit.JobEnvironment()
    return {"square": x * x, "job_id": env.job_id, "host": socket.gethostname(), "conf": os.environ["SLURM_CONF"]}


# A job's Python imports what is installed, and from its working folder (where sbatch ran): not this test module
# when pytest runs from elsewhere. So this module's functions travel by value (cloudpickle, as submitit pickles).
cloudpickle = pytest.importorskip("cloudpickle")
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def test_submitit_command_and_function(cluster: SlurmCluster, tmp_path: Path) -> None:
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="slurm")
    assert executor.cluster == "slurm"
    executor.update_parameters(name="sslx-test", **EXECUTOR_PARAMETERS)
    started = time.monotonic()
    command_job = executor.submit(submitit.helpers.CommandFunction(["bash", "-c", "echo out-$SLURM_JOB_ID"]))
    function_job = executor.submit(job_facts, 7)
    assert command_job.result().strip() == f"out-{command_job.job_id}"
    facts = function_job.result()
    print(f"\ntwo submitit jobs (command, function) round trip: {time.monotonic() - started:.1f} s")
    assert facts == {"square": 49, "job_id": function_job.job_id, "host": cluster.node, "conf": str(cluster.conf)}
    for job in (command_job, function_job):
        assert wait_finished(cluster, job.job_id) == "COMPLETED"
        submitted = cluster.run("scontrol", "show", "job", "--oneliner", job.job_id).stdout
        for setting in (
            "JobName=sslx-test",
            f"Partition={PARTITION}",
            "TimeLimit=00:10:00",
            "NumCPUs=1",
            "MinMemoryNode=1G",
        ):
            assert setting in submitted
        assert "Job completed successfully" in job.stdout()  # submitit logs to the job's stdout file


def test_submitit_array_and_failure(cluster: SlurmCluster, tmp_path: Path) -> None:
    """executor.batch() submits one job array (as the sweep will); a failing function is a FAILED job."""
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="slurm")
    executor.update_parameters(slurm_array_parallelism=2, **EXECUTOR_PARAMETERS)
    started = time.monotonic()
    with executor.batch():
        jobs = [executor.submit(pow, base, 2) for base in range(3)]
    assert len({job.job_id.split("_")[0] for job in jobs}) == 1
    assert [job.result() for job in jobs] == [0, 1, 4]
    print(f"\nthree-task job array round trip: {time.monotonic() - started:.1f} s")
    assert {wait_finished(cluster, job.job_id) for job in jobs} == {"COMPLETED"}

    failing = executor.submit(int, "not a number")
    with pytest.raises(submitit.core.utils.FailedJobError, match="invalid literal"):
        failing.result()
    assert wait_finished(cluster, failing.job_id) == "FAILED"


def test_cancelled_job_is_done_only_through_squeue(cluster: SlurmCluster, tmp_path: Path) -> None:
    executor = submitit.AutoExecutor(folder=tmp_path / "jobs", cluster="slurm")
    executor.update_parameters(**EXECUTOR_PARAMETERS)
    job = executor.submit(time.sleep, 300)
    deadline = time.monotonic() + 60
    while cluster.job_state(job.job_id) != "RUNNING":
        assert time.monotonic() < deadline, cluster.logs()
        time.sleep(0.2)
    cluster.run("scancel", job.job_id)
    assert wait_finished(cluster, job.job_id) == "CANCELLED"
    assert not job.done(force_check=True) and job.state == "UNKNOWN"  # sacct fails: submitit alone would wait forever
    job.watcher = SqueueFallbackWatcher(delay_s=600)
    assert job.done(force_check=True) and job.state == "CANCELLED"
    job._results_timeout_s = 0  # it waits that long for a result file that will not come
    with pytest.raises(submitit.core.utils.UncompletedJobError, match="state: CANCELLED"):
        job.result()


def test_a_sweep_runs_and_records_its_points_as_slurm_jobs(cluster: SlurmCluster, tmp_path: Path) -> None:
    """`sslx sweep --executor slurm`: each point a job on the cluster, recorded and tagged like a local one."""
    from click.testing import CliRunner

    from plugins.sweep.tests.test_sweep import MOCO, sets, sweep_runs
    from sslx.cli import cli

    runs, sweeps = tmp_path / "runs", tmp_path / "sweeps"
    args = ["sweep", str(MOCO), *sets("trainer.max_steps=4"), "--seeds", "2", "--executor", "slurm"]
    args += ["--partition", PARTITION, "--time", "10", "--cpus-per-run", "1", "--mem-gb", "1"]
    result = CliRunner().invoke(cli, [*args, "--runs-dir", str(runs), "--sweeps-dir", str(sweeps)])
    assert result.exit_code == 0, result.output + cluster.logs()
    (folder,) = sweeps.iterdir()
    by_point = sweep_runs(runs)
    assert sorted(by_point) == [0, 1]
    for point, (run,) in by_point.items():
        assert run.status == "COMPLETED" and run.config["seed"] == point
        assert run.info["tags"] == {"sweep": folder.name, "point": str(point)}
        log = (folder / "logs" / f"{point}.txt").read_text()
        assert f"as SLURM job sslx-{folder.name}-{point}" in log and "COMPLETED" in log

    def jobs() -> list[str]:
        listed = cluster.run("squeue", "--noheader", "--states=all", "--format=%j %T").stdout.split("\n")
        return sorted(j.strip() for j in listed if folder.name in j)

    deadline = time.monotonic() + 60  # SLURM marks a job COMPLETED a moment after its command has ended
    while jobs() != [f"sslx-{folder.name}-{p} COMPLETED" for p in (0, 1)]:
        assert time.monotonic() < deadline, f"{jobs()}\n{cluster.logs()}"
        time.sleep(0.2)
    submitted = list((folder / "slurm").glob("*_submission.sh"))
    assert len(submitted) == 2 and all(f"--partition={PARTITION}" in s.read_text() for s in submitted)
