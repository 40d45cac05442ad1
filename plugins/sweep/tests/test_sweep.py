"""`sslx sweep` with real runs: points and their tags, a failing point among
completing ones, and a sweep killed with SIGKILL then finished by --resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import tiny_overrides
from sslx_sweep import sweep as sw

from sslx.cli import cli
from sslx.errors import UserError
from sslx.records import list_runs

REPO = Path(__file__).resolve().parents[3]
MOCO = REPO / "experiments" / "moco.json"
TINY = tiny_overrides("moco")  # seconds per run on a CPU; a test's own settings follow and win


def sets(*extra: str) -> list[str]:
    return [a for s in [*TINY, *extra] for a in ("--set", s)]


def sweep_runs(runs: Path) -> dict[int, list]:
    by_point: dict[int, list] = {}
    for run in list_runs(runs):
        by_point.setdefault(int(run.info["tags"]["point"]), []).append(run)
    return by_point


def test_points_are_every_combination_of_listed_settings_grid_and_seeds():
    points = sw.make_points(["trainer.lr=0.03,0.1", 'objective.name=["moco"]'], [{"a": 1}, {"a": 2}], [0, 1])
    assert [p.settings for p in points[:3]] == [
        {"a": 1, "trainer.lr": 0.03, "objective.name": "moco", "seed": 0},
        {"a": 1, "trainer.lr": 0.03, "objective.name": "moco", "seed": 1},
        {"a": 1, "trainer.lr": 0.1, "objective.name": "moco", "seed": 0},
    ]
    assert len(points) == 2 * 2 * 1 * 2 and [p.index for p in points] == list(range(8))
    assert points[0].assignments == ["a=1", "trainer.lr=0.03", 'objective.name="moco"', "seed=0"]
    assert sw.make_points([], [], []) == [sw.Point(0, {})]
    assert sw.seed_list("3") == [0, 1, 2] and sw.seed_list("4,7") == [4, 7] and sw.seed_list("5,") == [5]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--grid", "trainer.lr"], ["--grid", "KEY=VALUES"]),
        (["--seeds", "two"], ["--seeds", "a count"]),
        (["--seeds", "0"], ["--seeds", "at least one"]),
        (["--grid", "trainer.lr=0.1,oops"], ["point 1", "trainer.lr", "oops"]),  # checked before anything runs
    ],
)
def test_bad_sweeps_are_refused_before_any_run(tmp_path, args, names):
    result = CliRunner().invoke(cli, ["sweep", str(MOCO), "--runs-dir", str(tmp_path / "runs"), *args])
    assert result.exit_code != 0
    for name in names:
        assert name in result.output
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_sweep_of_two_settings_times_two_seeds_records_four_tagged_runs(tmp_path):
    runs, sweeps = tmp_path / "runs", tmp_path / "sweeps"
    result = CliRunner().invoke(
        cli,
        ["sweep", str(MOCO), *sets("trainer.max_steps=4"), "--grid", "trainer.lr=0.03,0.1", "--seeds", "2"]
        + ["--parallel", "2", "--runs-dir", str(runs), "--sweeps-dir", str(sweeps)],
    )
    assert result.exit_code == 0, result.output
    (folder,) = sweeps.iterdir()
    by_point = sweep_runs(runs)
    assert sorted(by_point) == [0, 1, 2, 3]
    for point, (run,) in by_point.items():
        assert run.status == "COMPLETED"
        assert run.info["tags"] == {"sweep": folder.name, "point": str(point)}
        assert (run.config["trainer"]["lr"], run.config["seed"]) == [(0.03, 0), (0.03, 1), (0.1, 0), (0.1, 1)][point]
        assert run.config["trainer"]["max_steps"] == 4  # the shared --set
        assert "eval.knn_top1" in run.run["result"]
    assert "4 of 4 point(s) completed, 0 failed" in result.output
    assert "2 running" in result.output or "1 running" in result.output  # progress lines as points end


def _wait_for(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_rerunning_finished_points_and_a_failed_point_stays_failed(tmp_path):
    runs, sweeps = tmp_path / "runs", tmp_path / "sweeps"
    points = tmp_path / "points.json"
    points.write_text(json.dumps([{"trainer.lr": 0.03}, {"trainer.lr": 1e30}, {"trainer.lr": 0.1}]))
    command = [
        sys.executable,
        "-m",
        "sslx",
        "sweep",
        str(MOCO),
        *sets("trainer.max_steps=40", "trainer.checkpoint_every=3"),
    ]
    command += ["--points", str(points), "--runs-dir", str(runs), "--sweeps-dir", str(sweeps), "--parallel", "1"]
    log = (tmp_path / "sweep.txt").open("w")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:

        def third_point_checkpointed() -> bool:
            return any((r.path / "last.pt").exists() for r in sweep_runs(runs).get(2, [])) if runs.is_dir() else False

        _wait_for(third_point_checkpointed, 240, "point 2's first checkpoint")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (folder,) = sweeps.iterdir()
    _wait_for(lambda: sweep_runs(runs)[2][-1].status == "INTERRUPTED", 60, "point 2 recording its stop")
    before = sweep_runs(runs)
    assert [r.status for r in before[0]] == ["COMPLETED"]
    assert [r.status for r in before[1]] == ["FAILED"] and "became nan" in before[1][0].info["failure"]
    finished = before[0][0].path / "run.json"
    stamp = finished.stat().st_mtime_ns

    result = CliRunner().invoke(cli, ["sweep", "--resume", str(folder)])
    assert result.exit_code == 1, result.output  # point 1 still failed: said, with how to retry it
    assert "point(s) 1 failed" in result.output and "--retry-failed" in result.output
    after = sweep_runs(runs)
    assert len(after[0]) == 1 and finished.stat().st_mtime_ns == stamp  # the finished point was not touched
    assert len(after[1]) == 1  # the failed point was not retried
    assert [r.status for r in after[2]] == ["INTERRUPTED", "COMPLETED"]
    resumed = after[2][1]
    assert resumed.info["resumed_from"].startswith(str(after[2][0].path))
    assert resumed.info["tags"] == {"sweep": folder.name, "point": "2"}
    assert "point 2 resumes" in result.output


def test_resume_refuses_a_folder_that_is_not_a_sweep(tmp_path):
    with pytest.raises(UserError, match="not a sweep folder"):
        sw.Plan.load(tmp_path)
    (tmp_path / "sweep.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot read this sweep's plan"):
        sw.Plan.load(tmp_path)
