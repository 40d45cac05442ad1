"""A sweep: one experiment run at many points, each an ordinary sslx run.

The points are every combination of the grid's values (``--grid``), of the
listed settings (``--points``) and of the seeds. A sweep lives in
``sweeps/<id>/``:

``sweep.json``
    the plan, written once before any point starts: the experiment, the
    ``--set`` all points share, each point's own settings, where the runs are
    recorded and how they are executed.
``logs/<point>.txt``
    what the point's ``sslx run`` printed, every attempt appended.

A sweep's progress is not stored anywhere else: each point's run is tagged
``sweep=<id>`` and ``point=<k>`` in its own records, and the state of a point
is the state of its latest run. A sweep killed at any moment therefore loses
nothing, and ``sslx sweep --resume`` finds the finished, failed, stopped and
unstarted points exactly where their runs left them.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sslx.config import parse_value
from sslx.errors import UserError
from sslx.records import RunFolder, list_runs, write_json

PLAN = "sweep.json"
DONE, FAILED, STOPPED, RUNNING, NEW = "COMPLETED", "FAILED", "STOPPED", "RUNNING", "NEW"


@dataclass
class Point:
    index: int
    settings: dict[str, Any]  # this point's own values (grid, listed settings, seed) by dotted key

    @property
    def assignments(self) -> list[str]:
        return [f"{k}={json.dumps(v)}" for k, v in self.settings.items()]

    @property
    def label(self) -> str:
        return " ".join(f"{k}={json.dumps(v)}" for k, v in self.settings.items()) or "(the experiment as it is)"


@dataclass
class Plan:
    id: str
    experiment: str  # absolute path of the experiment file
    fixed: list[str]  # --set assignments every point shares
    points: list[Point]
    runs_dir: str  # absolute path of the file store the runs are recorded in
    parallel: int
    executor: dict[str, Any]  # {"kind": "local", "gpus_per_run": ...} or {"kind": "slurm", ...}
    run_args: list[str] = field(default_factory=list)  # more `sslx run` options, e.g. --mongo
    created: str = ""

    @property
    def name(self) -> str:
        return Path(self.experiment).stem

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / PLAN, asdict(self))

    @classmethod
    def load(cls, folder: Path) -> Plan:
        try:
            raw = json.loads((Path(folder) / PLAN).read_text())
        except FileNotFoundError:
            raise UserError(
                f"{folder}: not a sweep folder (no {PLAN}). Give the folder `sslx sweep` printed, such as "
                "sweeps/3f2a9c01."
            ) from None
        except ValueError as exc:
            raise UserError(f"{Path(folder) / PLAN}: cannot read this sweep's plan ({exc}).") from None
        raw["points"] = [Point(**p) for p in raw["points"]]
        return cls(**raw)


def new_id() -> str:
    return uuid.uuid4().hex[:8]


def _values(option: str, text: str) -> tuple[str, list[Any]]:
    """``KEY=[v1,v2]`` (JSON) or ``KEY=v1,v2`` (each value JSON when it parses)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"{option} {text!r}: expected KEY=VALUES, for example {option} trainer.lr=0.03,0.1.")
    values = parse_value(raw)
    if not isinstance(values, list):
        values = [parse_value(v) for v in raw.split(",")]
    if not values:
        raise UserError(f"{option} {text!r}: no values; give at least one, for example {key}=0.03,0.1.")
    return key.strip(), values


def seed_list(text: str | None) -> list[int]:
    """``--seeds 3``: seeds 0, 1, 2; ``--seeds 4,7``: those."""
    if text is None:
        return []
    try:
        items = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds {text!r}: expected a count (3: seeds 0, 1, 2) or a list of seeds (4,7,9).") from None
    if len(items) == 1 and "," not in text:
        if items[0] < 1:
            raise UserError(f"--seeds {text}: give at least one seed.")
        return list(range(items[0]))
    return items


def read_points_file(path: Path) -> list[dict[str, Any]]:
    """A JSON list of objects, each a point's settings by dotted key."""
    try:
        points = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"--points {path}: cannot read it as JSON ({exc}).") from None
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points) or not points:
        raise UserError(
            f'--points {path}: expected a non-empty JSON list of objects such as [{{"trainer.lr": 0.1}}, '
            '{"trainer.lr": 0.3, "objective.temperature": 0.2}].'
        )
    return points


def make_points(grid: Iterable[str], listed: list[dict[str, Any]], seeds: list[int]) -> list[Point]:
    """Every combination of the listed settings, the grid's values and the seeds."""
    axes = [[{key: v} for v in values] for key, values in (_values("--grid", g) for g in grid)]
    if listed:
        axes.insert(0, listed)
    if seeds:
        axes.append([{"seed": s} for s in seeds])
    combos = itertools.product(*axes) if axes else [()]
    return [Point(i, {k: v for part in combo for k, v in part.items()}) for i, combo in enumerate(combos)]


# ----------------------------------------------------------------------------
# the state of each point, read from the runs' records


@dataclass
class PointState:
    status: str  # COMPLETED, FAILED, STOPPED (died or interrupted: resumable), RUNNING, NEW
    run: RunFolder | None = None
    attempts: int = 0

    @property
    def reason(self) -> str:
        return str((self.run.info.get("failure") if self.run else None) or "")


def point_states(plan: Plan) -> dict[int, PointState]:
    """Each point's state: that of its latest tagged run in the file store."""
    runs: dict[int, list[RunFolder]] = {}
    store = Path(plan.runs_dir)
    for run in list_runs(store) if store.is_dir() else []:
        tags = run.info.get("tags") or {}
        if tags.get("sweep") == plan.id and str(tags.get("point", "")).isdigit():
            runs.setdefault(int(tags["point"]), []).append(run)
    states = {}
    for point in plan.points:
        mine = runs.get(point.index, [])
        if not mine:
            states[point.index] = PointState(NEW)
            continue
        latest = mine[-1]  # list_runs is in run-number order: the newest last
        status = latest.status
        state = {"COMPLETED": DONE, "FAILED": FAILED, "RUNNING": RUNNING, "QUEUED": RUNNING}.get(status or "", STOPPED)
        states[point.index] = PointState(state, latest, len(mine))
    return states


def _resumable(run: RunFolder | None) -> bool:
    return run is not None and any((run.path / name).exists() for name in ("last.pt", "checkpoint.pt"))


def point_command(plan: Plan, point: Point, state: PointState) -> list[str]:
    """The ``sslx run`` of a point: continued from its stopped run's last
    checkpoint when it has one, else from the start."""
    tags = ["--tag", f"sweep={plan.id}", "--tag", f"point={point.index}"]
    base = [sys.executable, "-m", "sslx", "run"]
    common = ["--runs-dir", plan.runs_dir, *tags, *plan.run_args]
    if state.status in (STOPPED, FAILED) and _resumable(state.run):
        assert state.run is not None
        return [*base, "--resume", str(state.run.path), *common]
    sets = [a for s in [*plan.fixed, *point.assignments] for a in ("--set", s)]
    return [*base, plan.experiment, *sets, "--name", f"{plan.name}.{plan.id}.{point.index}", *common]


# ----------------------------------------------------------------------------
# running


class Handle:
    """A started point: ``poll()`` gives its exit code once it ended, else None."""

    def poll(self) -> int | None:
        raise NotImplementedError

    def stop(self) -> None:
        """Ask the point to stop (it records itself as interrupted)."""
        raise NotImplementedError

    def wait(self) -> None:
        """Wait until a stopped point has ended."""


class Executor:
    """Where points run: ``start`` one, get a :class:`Handle`."""

    slots: int

    def start(self, point: Point, command: list[str], log: Path) -> Handle:
        raise NotImplementedError

    def release(self, handle: Handle) -> None:
        """The point ended: its slot (its GPUs) may go to the next one."""

    def busy(self) -> set[int]:
        """Points still running from an earlier start of this sweep (queued SLURM jobs)."""
        return set()


@dataclass
class Progress:
    done: int = 0
    failed: int = 0
    durations: list[float] = field(default_factory=list)

    def line(self, running: dict[int, float], waiting: int, slots: int) -> str:
        """Points done, running, failed (or stopped) and waiting; the time left from the mean point so far."""
        text = f"{self.done} done, {len(running)} running, {self.failed} failed, {waiting} waiting"
        if self.durations:
            mean = sum(self.durations) / len(self.durations)
            now = time.monotonic()
            left = sum(max(0.0, mean - (now - t0)) for t0 in running.values()) + waiting * mean
            text += f" · about {_duration(left / max(1, min(slots, len(running) + waiting)))} left"
        return text


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def run_sweep(
    plan: Plan,
    folder: Path,
    executor: Executor,
    echo: Callable[[str], None],
    retry_failed: bool = False,
    poll_s: float = 0.5,
) -> dict[int, PointState]:
    """Run every point that is not finished (nor failed, unless
    ``retry_failed``), ``executor.slots`` at a time; a failing point never
    stops the others. Returns the final state of every point."""
    states = point_states(plan)
    again = {NEW, STOPPED, FAILED} if retry_failed else {NEW, STOPPED}
    elsewhere = executor.busy()
    todo = [p for p in plan.points if states[p.index].status in again and p.index not in elsewhere]
    busy = [p.index for p in plan.points if states[p.index].status == RUNNING or p.index in elsewhere]
    if busy:
        echo(f"points {', '.join(map(str, busy))} are running in another process; this sweep leaves them be.")
    progress = Progress(
        done=sum(s.status == DONE for s in states.values()),
        failed=sum(states[p.index].status == FAILED for p in plan.points if p not in todo),
    )
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    running: dict[int, tuple[Handle, float]] = {}
    try:
        while todo or running:
            while todo and len(running) < executor.slots:
                point = todo.pop(0)
                state = states[point.index]
                command = point_command(plan, point, state)
                how = "resumes" if "--resume" in command else "starts"
                handle = executor.start(point, command, folder / "logs" / f"{point.index}.txt")
                running[point.index] = (handle, time.monotonic())
                echo(f"point {point.index} {how}: {point.label}")
            time.sleep(poll_s)
            for index, (handle, t0) in list(running.items()):
                code = handle.poll()
                if code is None:
                    continue
                del running[index]
                executor.release(handle)
                states[index] = point_states(plan)[index]
                state = states[index]
                if code == 0 and state.status == DONE:
                    progress.done += 1
                    progress.durations.append(time.monotonic() - t0)
                    what = (
                        f"COMPLETED in {_duration(time.monotonic() - t0)} (run {state.run.path if state.run else '?'})"
                    )
                else:  # failed, or stopped by someone else (then resumable): its own records say which
                    progress.failed += 1
                    if state.status != STOPPED:
                        states[index] = PointState(FAILED, state.run, state.attempts)
                    why = state.reason or _last_line(folder / "logs" / f"{index}.txt") or f"exit code {code}"
                    what = f"{'STOPPED' if state.status == STOPPED else 'FAILED'}: {why}"
                started = {i: t for i, (_, t) in running.items()}
                echo(f"point {index} {what} · {progress.line(started, len(todo), executor.slots)}")
    except BaseException:  # Ctrl-C, SIGTERM, or a bug: stop the running points, recorded as stopped
        for handle, _ in running.values():
            handle.stop()
        for handle, _ in running.values():
            handle.wait()
        raise
    return states


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
