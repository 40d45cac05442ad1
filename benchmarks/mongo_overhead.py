"""What recording to MongoDB costs a run: steps/s of the same small SimCLR run
recorded to the file store only, with ``--mongo`` (journaled writes, sslx's
only mode), and with the server's default write concern (no journal wait; a
measurement only, through :class:`sslx_mongo.target.MongoTarget`'s
``journal=False``), side by side against a SecantusDB server in its own process.

Each variant runs ``--repeats`` times, the variants interleaved and their order
rotated each round so that a slow moment of a shared machine, or a place in
the order, does not land on one of them; the best and the median run of each
are reported. Steps/s is the training loop's (``info.train_seconds``); wall
seconds are the whole recorded run, with the final evaluation, the artifact
upload and the final read-back check. Also times one metric point appended as
the observer appends them, with and without the journal wait. Prints JSON;
appends a dated table to docs/reliability.md (one per date and heartbeat).

    .venv/bin/python benchmarks/mongo_overhead.py --steps 120 --beat 10 --repeats 3
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchutil import REPO, hardware, write_section
from sslx_mongo.server import ServerProcess

import sslx
from sslx.config import apply_overrides, read_experiment, resolve
from sslx.plugins import load_plugins
from sslx.records import RunFolder, record_run, sacred_module

VARIANTS = {
    "file store only": {},
    "--mongo (journaled, j=true)": {"mongo_url": "URL"},
    "--mongo, default write concern": {"bench_unjournaled": "URL"},
}
SETS = [
    "dataset.train_size=2048",
    "dataset.test_size=512",
    "encoder.width=8",
    "encoder.blocks=2",
    "trainer.batch_size=32",
    "trainer.num_workers=0",
    "trainer.progress=false",
    "trainer.log_every=2",
    "trainer.warmup_steps=10",
    "evaluators.0.k=20",
]


class Unjournaled:
    """The MongoDB observer with the default write concern, for the measurement only."""

    @sslx.hookimpl
    def sslx_run_observers(self, run):
        url = run.options.get("bench_unjournaled")
        if not url:
            return None
        from sslx_mongo.observer import SafeMongoObserver
        from sslx_mongo.target import MongoTarget

        return [SafeMongoObserver(MongoTarget(url, journal=False), run.uid, Path(run.runs_dir))]


def write_latency(uri: str, journal: bool, writes: int = 200) -> float:
    """Milliseconds per metric point appended as the observer appends them
    (``$push`` to one metric document), with or without the journal wait."""
    from sslx_mongo.target import MongoTarget

    client = MongoTarget(uri, "bench_latency", journal=journal).client()
    metrics = client["bench_latency"]["metrics"]
    doc = metrics.insert_one({"name": "train.loss", "steps": [], "values": []}).inserted_id
    start = time.perf_counter()
    for step in range(writes):
        metrics.update_one({"_id": doc}, {"$push": {"steps": step, "values": 1.0 / (step + 1)}})
    elapsed = time.perf_counter() - start
    client.close()
    return 1000 * elapsed / writes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=120, help="Training steps per run.")
    parser.add_argument(
        "--beat",
        type=float,
        default=10.0,
        help="Sacred's heartbeat interval in seconds (10: Sacred's default); the database gets the "
        "metrics logged since the last heartbeat at each.",
    )
    parser.add_argument("--repeats", type=int, default=2, help="Runs of each variant (the best is reported).")
    args = parser.parse_args()

    sacred_module().SETTINGS["DEFAULT_BEAT_INTERVAL"] = args.beat
    host = load_plugins(strict=True)
    host.add_plugin(Unjournaled(), "bench-unjournaled")
    experiment = REPO / "experiments" / "simclr.json"
    raw = apply_overrides(
        read_experiment(experiment),
        SETS + [f"trainer.max_steps={args.steps}", f"trainer.checkpoint_every={args.steps // 3}"],
    )
    exp = resolve(raw, host, source=str(experiment))
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "db")
        server.start()
        uri = server.uri
        try:
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
            names = list(VARIANTS)
            for r in range(args.repeats):
                for name in names[r % len(names) :] + names[: r % len(names)]:  # each variant in each position
                    options = VARIANTS[name]
                    start = time.perf_counter()
                    record = record_run(
                        exp, host, runs_dir=Path(tmp) / "runs", name=name, options={k: uri for k in options}
                    )
                    wall = time.perf_counter() - start
                    info = RunFolder(record.run_dir).info
                    runs[name].append(
                        {
                            "steps_per_s": args.steps / info["train_seconds"],
                            "wall_s": wall,
                            "complete": all(r.complete for r in record.reports),
                        }
                    )
                    print(f"{name}: {runs[name][-1]}", file=sys.stderr)
                    for r in record.reports:
                        if not r.complete:
                            print(f"  {r.message}", file=sys.stderr)
            latency = {"journaled (j=true)": write_latency(uri, True), "default": write_latency(uri, False)}
        finally:
            server.kill()
    best = {name: max(rs, key=lambda r: r["steps_per_s"]) for name, rs in runs.items()}
    base = best["file store only"]["steps_per_s"]
    report = {
        "date": datetime.date.today().isoformat(),
        "hardware": hardware(),
        "steps": args.steps,
        "beat_s": args.beat,
        "repeats": args.repeats,
        "server": "SecantusDB 0.7.0b3, own process, loopback",
        "ms_per_metric_write": latency,
        "variants": {
            name: {
                **b,
                "relative": b["steps_per_s"] / base,
                "median_steps_per_s": statistics.median(r["steps_per_s"] for r in runs[name]),
                "all_runs": runs[name],
            }
            for name, b in best.items()
        },
    }
    print(json.dumps(report, indent=2))
    rows = "\n".join(
        f"| {name} | {b['steps_per_s']:.2f} | {v['median_steps_per_s']:.2f} | {v['relative']:.3f} | {b['wall_s']:.1f} |"
        for (name, b), v in zip(best.items(), report["variants"].values())
    )
    write_section(
        REPO / "docs" / "reliability.md",
        f"mongo-overhead-{report['date']}-beat-{args.beat:g}",
        f"""
### {report["date"]}: {args.steps} steps, heartbeat every {args.beat:g} s

SimCLR on Fashion-MNIST ({", ".join(SETS[:5])};
every metric logged every 2 steps), {args.repeats} interleaved runs each, on {report["hardware"]};
SecantusDB in its own process on the loopback address.

| recorded to | steps/s, best | steps/s, median | best, relative | wall s of the best (evaluation, final check) |
| --- | --- | --- | --- | --- |
{rows}

One metric point appended as the observer appends them: {latency["journaled (j=true)"]:.2f} ms journaled,
{latency["default"]:.2f} ms with the default write concern.
""",
    )


if __name__ == "__main__":
    main()
