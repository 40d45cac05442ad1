"""Many runs at once on one machine: does the machine's training throughput
hold up when 1, 2 or 4 runs of one experiment share it?

Each setup starts its runs together, as `sslx sweep --parallel N` (N seeds)
or as N plain `sslx run` processes started by hand at the same moment, and
reads the times at which every run logged its first and last training
window (`train.views_per_s`, every `log_every` steps). The setup's
throughput is the views its runs trained between those logs, over the time
from the earliest first log to the latest last one (so runs that do not
overlap well are not counted as concurrent), reported as a ratio to one run
alone, measured the same way right before each setup (this machine's speed
drifts over minutes). One more setup shows the old defaults
side by side: plain runs with torch's default threads and one loader worker
each (`trainer.threads=null`, `trainer.num_workers=1`), as every run had
before the trainer shared the cores. Targets on the 2-core machine: at least
0.95 through `sslx sweep`, at least 0.9 for plain runs. Prints JSON; writes a
dated table into docs/benchmarks.md.

    .venv/bin/python benchmarks/concurrency.py [--experiment experiments/simclr.json] [--steps 60]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchutil import REPO, hardware, write_section

from sslx.records import list_runs

SSLX = [sys.executable, "-m", "sslx"]
ENV = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "SSLX_LOAD_PLUGINS")}
OLD_DEFAULTS = ["trainer.threads=null", "trainer.num_workers=1"]


def _sets(assignments: list[str]) -> list[str]:
    return [a for s in assignments for a in ("--set", s)]


def throughput(runs: Path) -> tuple[float, list[float]]:
    """Views per second of the runs in ``runs`` together, between their first
    and last logged windows; and each run's own rate over its span."""
    first, last, views, each = [], [], 0.0, []
    for run in list_runs(runs):
        assert run.status == "COMPLETED", f"{run.path} is {run.status}: {run.info.get('failure')}"
        series = run.metrics["train.views_per_s"]
        t = [dt.datetime.fromisoformat(s).timestamp() for s in series["timestamps"]]
        trainer = run.config["trainer"]
        n = trainer["batch_size"] * run.config["sampler"].get("views", 2) * (series["steps"][-1] - series["steps"][0])
        first.append(t[0])
        last.append(t[-1])
        views += n
        each.append(n / (t[-1] - t[0]))
    return views / (max(last) - min(first)), each


def plain(n: int, experiment: Path, sets: list[str], runs: Path) -> tuple[float, list[float]]:
    procs = [
        subprocess.Popen(
            [*SSLX, "run", str(experiment), *_sets([*sets, f"seed={i}"]), "--runs-dir", str(runs)],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(n)
    ]
    for p in procs:
        _, err = p.communicate()
        assert p.returncode == 0, err.decode()[-2000:]
    return throughput(runs)


def swept(n: int, experiment: Path, sets: list[str], runs: Path) -> tuple[float, list[float]]:
    command = [*SSLX, "sweep", str(experiment), *_sets(sets), "--seeds", str(n), "--parallel", str(n)]
    subprocess.run(
        [*command, "--runs-dir", str(runs), "--sweeps-dir", str(runs.parent / "sweeps")],
        env=ENV,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return throughput(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", type=Path, default=REPO / "experiments" / "simclr.json")
    parser.add_argument("--steps", type=int, default=60, help="Training steps of every run.")
    parser.add_argument("--counts", type=int, nargs="+", default=[2, 4])
    args = parser.parse_args()
    sets = [f"trainer.max_steps={args.steps}", "trainer.log_every=10", "trainer.progress=false", "evaluators=[]"]
    sets += ["trainer.checkpoint_every=100000"]
    started = time.perf_counter()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.counts:
            for how, fn, extra in [
                ("sslx sweep", swept, []),
                ("plain sslx run", plain, []),
                ("plain sslx run, old defaults", plain, OLD_DEFAULTS),
            ]:
                name = f"{how}-{n}".replace(" ", "_").replace(",", "")
                alone, _ = plain(1, args.experiment, sets, Path(tmp) / f"alone-{name}" / "runs")
                together, each = fn(n, args.experiment, sets + extra, Path(tmp) / name / "runs")
                row = {"runs": n, "how": how, "alone": round(alone), "together": round(together)}
                row |= {"each": [round(v) for v in each], "ratio": round(together / alone, 3)}
                print(json.dumps(row), file=sys.stderr)
                rows.append(row)
    report = {
        "experiment": str(
            args.experiment.relative_to(REPO) if args.experiment.is_relative_to(REPO) else args.experiment
        ),
        "steps": args.steps,
        "rows": rows,
        "hardware": hardware(),
        "seconds": round(time.perf_counter() - started, 1),
        "command": "python benchmarks/concurrency.py " + " ".join(sys.argv[1:]),
    }
    print(json.dumps(report, indent=2))
    write_table(report)


def write_table(report: dict) -> None:
    table = "\n".join(
        f"| {r['runs']} | {r['how']} | {r['alone']} | {r['together']} ({', '.join(map(str, r['each']))}) | "
        f"{r['ratio']:.2f} |"
        for r in report["rows"]
    )
    section = f"""### Many runs at once, {time.strftime("%Y-%m-%d")}

`{report["command"]}` on {report["hardware"]}, {report["seconds"]:.0f} s in all: `{report["experiment"]}`
({report["steps"]} steps, no evaluators), every run started at the same moment; before each setup, one run
alone. Views/s are counted from each run's first logged training window to its last; together: all the
setup's views over the time from the earliest first log to the latest last one (each run's own rate in
brackets). The ratio is that over the run alone before them (targets: at least 0.95 through `sslx sweep`,
0.9 for plain runs). "old defaults" are torch's own thread count
and one loader worker per run, as before runs shared the cores (`trainer.threads: auto`).

| runs at once | started by | views/s of one run alone | views/s together (each run) | together / one alone |
| --- | --- | --- | --- | --- |
{table}
"""
    write_section(REPO / "docs" / "benchmarks.md", "concurrency", section)


if __name__ == "__main__":
    main()
