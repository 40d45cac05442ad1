"""Kill -9 trials: does a killed run lose anything, and does `--resume` end
exactly where a run that never stopped ends?

Each trial starts the demo method (MoCo, shrunk to seconds) with the real
`sslx run` command, kills its process with SIGKILL at a random moment, then
continues it with `sslx run --resume` (or starts it again if it had written
no checkpoint yet) and compares the result with an uninterrupted run of the
same experiment:

- **identical**: the final checkpoint's tensors are equal bit for bit, and
  every logged metric of the resumed run (all of them but the timed
  `train.views_per_s`) has the uninterrupted run's steps and values;
- **points lost**: metric points of the uninterrupted run missing from the
  resumed run's records, plus points logged before the killed run's last
  checkpoint missing from the killed run's own records;
- **duplicates**: steps logged twice in one metric of either record;
- **shown dead**: the killed run reads as DIED (not RUNNING) before the resume.

Kinds: `train` kills at a uniformly random time of the training phase,
`eval` at a uniformly random time of the final evaluation (after the final
checkpoint). `db` kills the MongoDB-wire server (a real SecantusDB process) a
run records to (`--mongo`) at a random moment of the run and starts it again
on the same port after a random pause; then, if the run said the database
does not hold all of it, `sslx sync` completes it, and a second sync must
change nothing: points lost and duplicates are counted in the database
against the run's file store. `python benchmarks/faults.py --trials 10` prints JSON and writes
a dated table into docs/reliability.md. The test suite drives the same
harness with kills at chosen steps (`tests/test_faults.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXPERIMENT = REPO / "experiments" / "moco.json"
SSLX = str(Path(sys.executable).parent / "sslx")
# The demo method, shrunk to a few seconds of training with checkpoints, logs and an evaluation worth killing in.
SETS = [
    "dataset.train_size=1024",
    "dataset.test_size=2048",
    "encoder.width=8",
    "encoder.blocks=2",
    "objective.queue_size=256",
    "trainer.batch_size=64",
    "trainer.max_steps=40",
    "trainer.warmup_steps=4",
    "trainer.num_workers=0",
    "trainer.progress=false",
    "trainer.log_every=2",
    "trainer.checkpoint_every=5",
    "trainer.threads=1",
    "evaluators.0.k=20",
]
TIMED = {"train.views_per_s"}  # measurements of speed: never equal between two runs
NOT_LANDED = "the kill did not land in the run"


@dataclass
class Outcome:
    """One trial."""

    kind: str
    killed_at: str  # where the kill landed, as the killed run's records tell
    resumed: bool  # continued from a checkpoint (False: started again)
    identical: bool
    points_lost: int
    duplicates: int
    shown_dead: bool
    problems: list[str] = field(default_factory=list)


def sslx(args: list[str], env: dict[str, str] | None = None, wait: bool = True) -> subprocess.Popen:
    """The real command line; its output goes to a file (``proc.log``), never
    to a pipe that could fill while nobody reads it."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SSLX_MONGO")}
    fd, log = tempfile.mkstemp(prefix="sslx-faults-", suffix=".log")
    with os.fdopen(fd, "w") as out:
        proc = subprocess.Popen([SSLX, *args], stdout=out, stderr=subprocess.STDOUT, env={**environ, **(env or {})})
    proc.log = Path(log)  # type: ignore[attr-defined]
    if wait:
        proc.wait(timeout=600)
    return proc


def output(proc: subprocess.Popen) -> str:
    """What the process printed."""
    return proc.log.read_text(errors="replace")  # type: ignore[attr-defined]


def newest_run(runs: Path) -> Path | None:
    from sslx.records import list_runs

    found = list_runs(runs) if runs.is_dir() else []
    return found[-1].path if found else None


def start(runs: Path, sets: list[str], env: dict[str, str] | None = None, wait: bool = True) -> subprocess.Popen:
    return sslx(["run", str(EXPERIMENT), "--runs-dir", str(runs), *[a for s in sets for a in ("--set", s)]], env, wait)


def resume(run_dir: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return sslx(["run", "--resume", str(run_dir), "--runs-dir", str(run_dir.parent)], env)


def compare(reference: Path, resumed: Path, killed: Path | None) -> tuple[bool, int, int, list[str]]:
    """(identical, points lost, duplicates, what differs) of a resumed run
    against the uninterrupted one, and of the killed run's own records."""
    import torch

    from sslx.engine import checkpoint as ckpt
    from sslx.records import RunFolder

    problems: list[str] = []
    ref, res = RunFolder(reference), RunFolder(resumed)
    if res.status != "COMPLETED":
        return False, 0, 0, [f"the resumed run is {res.status}"]
    a, b = ckpt.load(reference / ckpt.FINAL), ckpt.load(resumed / ckpt.FINAL)
    differ = [k for k in a["objective"] if not torch.equal(a["objective"][k], b["objective"].get(k, torch.empty(0)))]
    if differ:
        problems.append(f"weights differ in {len(differ)} tensors, e.g. {differ[0]}")
    lost, dups = 0, 0
    ours, theirs = res.metrics, ref.metrics
    for name, series in theirs.items():
        if name in TIMED:
            continue
        mine = ours.get(name, {"steps": [], "values": []})
        lost += len(set(series["steps"]) - set(mine["steps"]))
        if mine["steps"] != series["steps"] or mine["values"] != series["values"]:
            problems.append(f"{name} differs: steps {mine['steps'][:8]}... values {mine['values'][:3]}...")
    records = [ours]
    if killed is not None:  # the killed run's own records hold every point logged before its last checkpoint
        before = RunFolder(killed)
        last = [p for p in (killed / ckpt.LAST, killed / ckpt.FINAL) if p.exists()]
        logged = ckpt.load(last[0]).get("metrics", {}) if last else {}  # what the run had logged at the checkpoint
        for name, points in logged.items():
            kept = set(before.metrics.get(name, {}).get("steps", []))
            missing = {int(s) for s, _ in points} - kept
            lost += len(missing)
            if missing:
                problems.append(f"the killed run's records lack {name} at steps {sorted(missing)[:5]}")
        records.append(before.metrics)
    for record in records:
        for series in record.values():
            dups += len(series["steps"]) - len(set(series["steps"]))
    return not problems, lost, dups, problems


def trial(
    kind: str,
    reference: Path,
    workdir: Path,
    kill: Callable[[subprocess.Popen, Path], None],
    sets: list[str] = SETS,
    env: dict[str, str] | None = None,
    resume_env: dict[str, str] | None = None,
) -> Outcome:
    """Start the run, let ``kill(process, runs_dir)`` kill it, resume, compare."""
    from sslx.engine import checkpoint as ckpt
    from sslx.records import RunFolder

    runs = workdir / "runs"
    proc = start(runs, sets, env, wait=False)
    kill(proc, runs)
    proc.wait(timeout=600)
    killed = newest_run(runs)
    if killed is None or proc.returncode != -signal.SIGKILL:  # killed before the run had a folder, or never
        note = "before the run was recorded" if killed is None else f"never: the run ended ({proc.returncode})"
        return Outcome(kind, note, False, False, 0, 0, False, [NOT_LANDED])
    if RunFolder(killed).status == "COMPLETED":  # the kill came as the process exited, after the run's end
        return Outcome(kind, "never: the run had completed", False, False, 0, 0, False, [NOT_LANDED])
    shown_dead = RunFolder(killed).status == "DIED"
    checkpoints = [p for p in (killed / ckpt.LAST, killed / ckpt.FINAL) if p.exists()]
    step = ckpt.load(checkpoints[0])["step"] if checkpoints else None
    where = (f"after step {step}'s checkpoint" if step is not None else "before the first checkpoint") + (
        ", during the final evaluation" if (killed / ckpt.FINAL).exists() else ""
    )
    if checkpoints:
        proc = resume(killed, resume_env)
    else:
        proc = start(runs, sets, resume_env)
    out = output(proc)
    resumed = newest_run(runs)
    if proc.returncode != 0 or resumed is None or resumed == killed:
        return Outcome(kind, where, bool(checkpoints), False, 0, 0, shown_dead, [f"the resume failed: {out[-500:]}"])
    identical, lost, dups, problems = compare(reference, resumed, killed)
    if checkpoints and RunFolder(killed).status != "FAILED":
        problems.append(f"the killed run stays {RunFolder(killed).status} after the resume")
    return Outcome(kind, where, bool(checkpoints), identical and not problems, lost, dups, shown_dead, problems)


def wait_for_run(proc: subprocess.Popen, runs: Path, final_checkpoint: bool = False) -> None:
    """Return once the run was recorded as started (the file store has begun
    it), or once its final checkpoint was kept (the final evaluation began)."""
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        run = newest_run(runs)
        if run is not None and (not final_checkpoint or (run / "checkpoint.pt").exists()):
            return
        time.sleep(0.01)


def kill_after(delay: float, final_checkpoint: bool = False) -> Callable[[subprocess.Popen, Path], None]:
    """A kill of the run's process ``delay`` seconds after :func:`wait_for_run`."""

    def kill(proc: subprocess.Popen, runs: Path) -> None:
        wait_for_run(proc, runs, final_checkpoint)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)

    return kill


def db_trial(workdir: Path, delay: float, pause: float) -> Outcome:
    """One run recorded to a database that is killed ``delay`` seconds into
    the run and back ``pause`` seconds later; then synced if the run says so."""
    from sslx_mongo.database import SacredDatabase, missing_parts
    from sslx_mongo.server import ServerProcess
    from sslx_mongo.target import MongoTarget

    from sslx.records import RunFolder

    workdir.mkdir(parents=True, exist_ok=True)
    db = ServerProcess(workdir / "db")
    db.start()
    runs = workdir / "runs"
    try:
        proc = start(runs, SETS, {"SSLX_MONGO_URL": db.uri}, wait=False)
        wait_for_run(proc, runs)
        time.sleep(delay)
        db.kill()
        time.sleep(pause)
        db.start()
        proc.wait(timeout=600)
        run = newest_run(runs)
        if proc.returncode != 0 or run is None:
            return Outcome(
                "db",
                f"{delay:.1f} s into the run",
                False,
                False,
                0,
                0,
                False,
                [f"the run failed: {output(proc)[-500:]}"],
            )
        folder = RunFolder(run)
        note = folder.info.get("mongo", {})
        synced = note.get("status") != "ok"
        if synced:
            sslx(["sync", str(run), "--mongo", db.uri])
        again = sslx(["sync", str(run), "--mongo", db.uri])
        target = MongoTarget(db.uri)
        database = SacredDatabase(target)
        try:
            run_id = database.run_id_for(folder.uid())
            missing = missing_parts(database, run_id, folder)
            stored = database.series(run_id) if run_id is not None else {}
            lost = sum(
                len(set(s["steps"]) - {p for d in stored.get(n, []) for p in d["steps"]})
                for n, s in folder.metrics.items()
            )
            copies = database.runs.count_documents({"info.sslx_uid": folder.uid()})
            dups = (
                max(0, copies - 1)
                + sum(len(d) - 1 for d in stored.values())
                + sum(len(doc["steps"]) - len(set(doc["steps"])) for docs in stored.values() for doc in docs)
            )
        finally:
            database.close()
        problems = list(missing)
        if "0 metric series and 0 artifacts written" not in output(again):
            problems.append(f"a second sync wrote something: {output(again)[-300:]}")
        where = f"{delay:.1f} s into the run, back after {pause:.1f} s" + (", then synced" if synced else "")
        return Outcome("db", where, synced, not problems, lost, dups, True, problems)
    finally:
        db.kill()


def reference_run(workdir: Path, sets: list[str] = SETS, env: dict[str, str] | None = None) -> Path:
    proc = start(workdir / "reference", sets, env)
    run = newest_run(workdir / "reference")
    if proc.returncode != 0 or run is None:
        raise RuntimeError(f"the uninterrupted run failed: {output(proc)[-2000:]}")
    return run


def phases(reference: Path) -> tuple[float, float]:
    """Seconds of training and of the final evaluation in the uninterrupted run."""
    import datetime as dt

    from sslx.records import RunFolder

    folder = RunFolder(reference)
    start_time = dt.datetime.fromisoformat(folder.run["start_time"]).replace(tzinfo=dt.UTC)
    stop_time = dt.datetime.fromisoformat(folder.run["stop_time"]).replace(tzinfo=dt.UTC)
    final = dt.datetime.fromtimestamp((reference / "checkpoint.pt").stat().st_mtime, dt.UTC)
    return (final - start_time).total_seconds(), max(0.2, (stop_time - final).total_seconds())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--trials", type=int, default=6, help="Landed kills of each kind (the default fits 15 minutes on 2 cores)."
    )
    parser.add_argument("--kinds", nargs="+", default=["train", "eval", "db"], choices=["train", "eval", "db"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="Keep the runs in this folder (default: a temporary one).")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(args.keep or tempfile.mkdtemp(prefix="sslx-faults-"))
    started = time.monotonic()
    reference = reference_run(root)
    train_s, eval_s = phases(reference)
    outcomes: list[Outcome] = []
    landed = dict.fromkeys(args.kinds, 0)
    for i in range(2 * args.trials):  # until each kind has its trials of kills that landed (at most twice as many)
        for kind in [k for k in args.kinds if landed[k] < args.trials]:
            workdir = root / f"{kind}-{i}"
            if kind == "db":
                outcome = db_trial(workdir, rng.uniform(0, train_s + eval_s), rng.uniform(0.5, 5))
            else:  # timed from the run's start (the process's own start-up, its imports, comes before) or the
                # final checkpoint
                delay = rng.uniform(0, train_s if kind == "train" else eval_s)
                outcome = trial(kind, reference, workdir, kill_after(delay, final_checkpoint=kind == "eval"))
            landed[kind] += outcome.problems != [NOT_LANDED]
            outcomes.append(outcome)
            print(json.dumps(asdict(outcome)), flush=True)
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
    report = summarize(outcomes, train_s, eval_s, time.monotonic() - started)
    print(json.dumps(report, indent=2))
    write_table(report)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


def summarize(outcomes: list[Outcome], train_s: float, eval_s: float, seconds: float) -> dict:
    kinds: dict[str, dict] = {}
    for o in outcomes:
        k = kinds.setdefault(
            o.kind,
            {
                "trials": 0,
                "landed": 0,
                "resumed": 0,
                "identical": 0,
                "points_lost": 0,
                "duplicates": 0,
                "shown_dead": 0,
                "problems": [],
            },
        )
        k["trials"] += 1
        landed = o.problems != [NOT_LANDED]
        k["landed"] += landed
        k["resumed"] += o.resumed
        k["identical"] += o.identical
        k["points_lost"] += o.points_lost
        k["duplicates"] += o.duplicates
        k["shown_dead"] += o.shown_dead
        k["problems"] += [f"{o.killed_at}: {p}" for p in o.problems if landed]
    return {
        "kinds": kinds,
        "train_seconds": round(train_s, 2),
        "eval_seconds": round(eval_s, 2),
        "seconds": round(seconds, 1),
        "command": "python benchmarks/faults.py " + " ".join(sys.argv[1:]),
    }


def write_table(report: dict) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchutil import hardware, write_section

    rows = "\n".join(
        f"| {kind} | {k['trials']} | {k['landed']} | {k['resumed']} | {k['identical']} | {k['points_lost']} | "
        f"{k['duplicates']} | {'-' if kind == 'db' else k['shown_dead']} |"
        for kind, k in report["kinds"].items()
    )
    problems = [p for k in report["kinds"].values() for p in k["problems"]]
    section = f"""### Kill -9 of the training process, {time.strftime("%Y-%m-%d")}

`{report["command"]}` on {hardware()}, {report["seconds"]:.0f} s in all. The demo method (MoCo) shrunk to
{report["train_seconds"]:.1f} s of training (40 steps, a checkpoint every 5) and {report["eval_seconds"]:.1f} s of
final evaluation. `train` kills the training process at a uniformly random moment of the training, `eval` of
the final evaluation, and both resume it (from its checkpoint, "resumed", or from the start when the kill came
before the first checkpoint); `db` kills the
MongoDB-wire server the run records to (SecantusDB, SIGKILL) at a random moment and restarts it after 0.5-5 s.
A landed kill is one that hit the run (not its start-up before it was recorded, nor after it ended). For `db`,
"resumed" counts the runs that said they were not fully recorded and were completed with `sslx sync`, and
"identical" the runs whose database record equals the file store after that (a second sync writing nothing).

| kind | trials | kills landed | resumed (db: synced) | identical | points lost | duplicate points | killed run shown DIED (db: not killed) |
| --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

{"Problems: " + "; ".join(problems) if problems else "No trial lost a point, logged a point twice, or ended differently."}
"""
    write_section(REPO / "docs" / "reliability.md", "faults-process", section)


if __name__ == "__main__":
    main()
