"""Training throughput in one process and in several, side by side.

Trains experiments/simclr.json (its encoder, batch and augmentations) for
--steps steps in each configuration and measures views per second over the
steps after --warmup, as rank 0 sees them (so waiting for the other
processes counts):

* ``1 process``: the plain single-process path;
* ``1 process, distributed path``: the same process inside a one-process
  process group, so DDP's gradient all-reduce and the objectives' collectives
  run: their overhead, the number that matters on one GPU;
* ``N processes``: N processes started by torchrun's launcher, each with 1/N
  of the same global batch (CPU: the cores are split between them; GPU: one
  device each).

On the CPU the processes share the machine's cores, so the N-process ratio
shows what the communication costs, not a speed-up; on GPUs each process has
its own device. Prints JSON; writes a dated table into docs/benchmarks.md and
a plot into docs/scaling.png.

    .venv/bin/python benchmarks/scaling.py                     # CPU: 1 and 2 processes
    .venv/bin/python benchmarks/scaling.py --device cuda --nproc 1 8
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from benchutil import REPO, hardware, write_section

from sslx.engine.bench import StepClock

EXPERIMENT = REPO / "experiments" / "simclr.json"


def worker(args: argparse.Namespace) -> None:
    """One process of a measurement (started by torchrun)."""
    import torch.distributed as dist

    from sslx import distributed
    from sslx.config import apply_overrides, read_experiment, resolve
    from sslx.engine.trainer import MemoryRecorder, train
    from sslx.plugins import load_plugins

    if args.one_process_group:  # the distributed code path with a single process
        dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
    host = load_plugins(strict=True)
    clock = StepClock({args.warmup, args.steps})  # the timed span's ends wait for the GPU
    host.add_plugin(clock, "clock")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    sets = [
        f"trainer.max_steps={args.steps}",
        "trainer.progress=false",
        "evaluators=[]",
        f"trainer.device={args.device}",
        f"trainer.log_every={args.steps}",
        f"trainer.checkpoint_every={args.steps}",
        f"trainer.threads={max(1, (os.cpu_count() or 1) // world)}" if args.device == "cpu" else "trainer.threads=null",
        *args.set,
    ]
    exp = resolve(apply_overrides(read_experiment(EXPERIMENT), sets), host, source=str(EXPERIMENT))
    train(exp, host, MemoryRecorder())
    if distributed.launched_rank() == 0:
        sampler, params = exp.components["sampler"]
        views = exp.trainer.batch_size * sampler.cls(params).num_views * (args.steps - args.warmup)
        seconds = clock.times[-1] - clock.times[args.warmup - 1]
        Path(args.result).write_text(
            json.dumps(
                {
                    "views_per_s": views / seconds,
                    "seconds_per_step": seconds / (args.steps - args.warmup),
                    "batch_size": exp.trainer.batch_size,
                }
            )
        )
    if args.one_process_group:
        dist.destroy_process_group()


def measure(args: argparse.Namespace, nproc: int, one_process_group: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            str(Path(__file__).resolve()),
            "--worker",
            "--result",
            str(result),
            "--device",
            args.device,
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            *(f"--set={s}" for s in args.set),
        ]
        if one_process_group:
            command.append("--one-process-group")
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc))}
        subprocess.run(command, check=True, env=env, cwd=REPO)
        return json.loads(result.read_text())


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 2.8), dpi=120)
    names = [r["config"] for r in rows]
    values = [r["views_per_s"] for r in rows]
    ax.barh(names[::-1], values[::-1], color="#4c72b0")
    for y, v in enumerate(values[::-1]):
        ax.text(v, y, f" {v:,.0f}", va="center", fontsize=8)
    ax.set_xlabel("training views per second (rank 0)")
    ax.set_title(title, fontsize=9)
    ax.set_xlim(0, max(values) * 1.2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--nproc", type=int, nargs="+", default=[1, 2], help="Process counts to measure (1 always runs)."
    )
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5, help="Steps left out of the timing (start-up, first batches).")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="Experiment override (repeatable)."
    )
    parser.add_argument("--no-docs", action="store_true", help="Print the JSON only.")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--one-process-group", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    rows = []
    base = measure(args, 1, False)
    rows.append({"config": "1 process", "processes": 1, **base, "ratio": 1.0})
    on = measure(args, 1, True)
    rows.append(
        {
            "config": "1 process, distributed path",
            "processes": 1,
            **on,
            "ratio": on["views_per_s"] / base["views_per_s"],
        }
    )
    for n in sorted(set(args.nproc) - {1}):
        r = measure(args, n, False)
        rows.append({"config": f"{n} processes", "processes": n, **r, "ratio": r["views_per_s"] / base["views_per_s"]})
    report = {
        "date": datetime.date.today().isoformat(),
        "hardware": hardware(),
        "device": args.device,
        "torch": torch.__version__,
        "experiment": "experiments/simclr.json",
        "steps": args.steps,
        "warmup": args.warmup,
        "sets": args.set,
        "rows": rows,
    }
    print(json.dumps(report, indent=2))
    if args.no_docs:
        return
    batch = rows[0]["batch_size"]
    lines = [
        f"### Throughput in one and several processes ({args.device.upper()}), {report['date']}",
        "",
        f"`benchmarks/scaling.py{' --device cuda' if args.device == 'cuda' else ''}` on {report['hardware']}, torch "
        f"{torch.__version__}: experiments/simclr.json (global batch {batch}, 2 views), {args.steps - args.warmup} timed steps "
        f"after {args.warmup}; ratios against 1 process, measured in the same run.",
        "",
        "| configuration | views/s | s/step | ratio |",
        "|---|---:|---:|---:|",
        *(
            f"| {r['config']} | {r['views_per_s']:,.0f} | {r['seconds_per_step']:.3f} | {r['ratio']:.2f} |"
            for r in rows
        ),
    ]
    name = f"scaling-{args.device}"
    write_section(REPO / "docs" / "benchmarks.md", name, "\n".join(lines))
    plot(rows, REPO / "docs" / f"{name}.png", f"simclr, batch {batch}, {report['hardware']}")


if __name__ == "__main__":
    main()
