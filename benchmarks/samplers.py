"""Each pair sampler's downstream measure, against the untrained encoder of the same shape.

Trains the sampler experiments (patches of one image, video frames, object
tracks, audio-video) for the same wall-clock budget each (a short
calibration run sizes each schedule to it), with `trainer.eval_at_start`, so
every recorded Sacred run holds its own floor: the evaluators' scores on the
seeded initial model at step 0 and on the trained one at the last step.
Then runs the two real-clip experiments as shipped (frames of vtest.avi;
audio-video on Megamind.avi and bigbuckbunny.mp4) and reports their status
and the packets their decoding skipped. Prints JSON; writes a dated table
into docs/results.md and a plot into docs/samplers.png.

    .venv/bin/python benchmarks/samplers.py --budget 300 --runs-dir runs/samplers
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path

import torch
from benchutil import REPO, hardware, train_for_budget, write_section

from sslx.config import read_experiment, resolve
from sslx.plugins import load_plugins
from sslx.records import RunFailed, RunFolder, record_run

# experiment -> (what it learns from, the measures that must beat the untrained model)
SAMPLERS = {
    "patches": ("near patches of one MNIST digit image", {"eval.knn_top1": "kNN top-1, digit class"}),
    "frames": ("nearby frames of moving-digit clips", {"eval.knn_top1": "kNN top-1, digit class"}),
    "tracks": ("one moving digit's patches across frames", {"eval.reid_top1": "re-identification top-1"}),
    "audio_video": (
        "talking-digit frames and their own audio",
        {
            "eval.av_retrieval_top1": "audio-to-video retrieval top-1",
            "eval.linear_top1": "video branch linear top-1, digit class",
        },
    ),
}
REAL = {"frames_vtest": "frames of vtest.avi", "audio_video_real": "audio-video on Megamind.avi + bigbuckbunny.mp4"}


def read_metrics(run_dir: Path) -> dict:
    return RunFolder(run_dir).metrics


def floor_and_final(metrics: dict, name: str) -> tuple[float, float]:
    """The metric at step 0 (untrained) and at the last step (trained)."""
    series = metrics[name]
    if series["steps"][0] != 0:
        raise RuntimeError(f"{name} has no step-0 value: was trainer.eval_at_start on?")
    return series["values"][0], series["values"][-1]


def measure(host, name: str, budget: float, runs_dir: Path) -> dict:
    experiment = REPO / "experiments" / f"{name}.json"
    record, steps = train_for_budget(
        host, experiment, budget, runs_dir, f"samplers-{name}", sets=["trainer.eval_at_start=true"]
    )
    metrics = read_metrics(record.run_dir)
    out = {"run_dir": str(record.run_dir), "steps": steps, "measures": {}}
    for metric, label in SAMPLERS[name][1].items():
        untrained, trained = floor_and_final(metrics, metric)
        out["measures"][metric] = {
            "label": label,
            "untrained": untrained,
            "trained": trained,
            "beats_untrained": trained > untrained,
        }
    for metric, series in metrics.items():  # chance levels and sizes the evaluators report
        if metric.startswith("eval.") and metric not in out["measures"]:
            out.setdefault("other", {})[metric] = series["values"][-1]
    return out


def run_real(host, name: str, runs_dir: Path) -> dict:
    experiment = REPO / "experiments" / f"{name}.json"
    exp = resolve(read_experiment(experiment), host, source=str(experiment))
    try:
        record = record_run(exp, host, runs_dir=runs_dir, name=f"samplers-{name}", experiment_file=experiment)
        status, result, run_dir = "COMPLETED", record.result, record.run_dir
    except RunFailed as exc:
        status, result, run_dir = f"FAILED: {exc.reason}", None, exc.record.run_dir
    info = RunFolder(Path(run_dir)).info
    return {
        "run_dir": str(run_dir),
        "status": status,
        "result": result,
        "steps": info.get("total_steps"),
        "data": info.get("data"),
    }


def chance_note(report: dict) -> str:
    """What the retrieval-style measures mean: their chance level from the sizes the evaluators logged."""
    gallery = report["tracks"].get("other", {}).get("eval.reid_gallery")
    clips = report["audio_video"].get("other", {}).get("eval.av_retrieval_clips")
    parts = []
    if gallery:
        parts.append(
            f"Re-identification picks each test digit's later patch among {gallery:.0f} patches of all "
            f"chosen clips' digits (chance {1 / gallery:.4f}), after rotation, scaling, occlusion and "
            f"imprecise boxes."
        )
    if clips:
        parts.append(
            f"Audio-to-video retrieval picks each test clip's frame for its sound among {clips:.0f} clips "
            f"(chance {1 / clips:.2f}); many clips share a digit and whether it is being spoken, which caps "
            f"top-1 well below 1."
        )
    return " ".join(parts)


def write_markdown(report: dict, path: Path) -> None:
    rows = []
    for name, (source, _) in SAMPLERS.items():
        r = report[name]
        for metric, m in r["measures"].items():
            mark = "yes" if m["beats_untrained"] else "**no**"
            rows.append(
                f"| `{name}` | {source} | {m['label']} (`{metric}`) | {r['steps']} | {m['untrained']:.4f} | "
                f"{m['trained']:.4f} | {mark} |"
            )
    real = []
    for name, source in REAL.items():
        r = report[name]
        data = r.get("data") or {}
        real.append(
            f"| `{name}` | {source} | {r['status']} | {r['steps']} | {data.get('packets_skipped', '-')} | "
            + ", ".join(f"{k} {v:.4f}" for k, v in (r["result"] or {}).items())
            + " |"
        )
    section = "\n".join(
        [
            f"## Pair samplers: each downstream measure against the untrained model ({report['date']})",
            "",
            f"Hardware: {report['hardware']}; torch {report['torch']}. Each experiment trained for "
            f"{report['budget_s']:.0f} s (schedule sized by a calibration run) with `trainer.eval_at_start=true`: "
            f"the run records its evaluators on the seeded initial model (same shape, same seed) at step 0 and on the "
            f"trained model at the end, both as Sacred metrics of the one run. The test clips and digits are never seen "
            f"in training.",
            "",
            "| experiment | positives | measure | steps | untrained | trained | beats untrained |",
            "| --- | --- | --- | ---: | ---: | ---: | --- |",
            *rows,
            "",
            chance_note(report),
            "",
            "Real clips, trained as shipped (decoding skips undecodable packets and counts them in the run's info):",
            "",
            "| experiment | data | status | steps | packets skipped | final metrics |",
            "| --- | --- | --- | ---: | ---: | --- |",
            *real,
            "",
            f"Command: {report['command']}. Plot: [samplers.png](samplers.png).",
        ]
    )
    write_section(path, "samplers", section)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, untrained, trained = [], [], []
    for name in SAMPLERS:
        for metric, m in report[name]["measures"].items():
            labels.append(f"{name}\n{metric.removeprefix('eval.')}")
            untrained.append(m["untrained"])
            trained.append(m["trained"])
    x = range(len(labels))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(labels)), 4.5))
    ax.bar([i - 0.2 for i in x], untrained, 0.4, label="untrained (step 0)", color="lightgray")
    ax.bar([i + 0.2 for i in x], trained, 0.4, label=f"trained ({report['budget_s']:.0f} s)")
    for i, (u, t) in enumerate(zip(untrained, trained)):
        ax.annotate(f"{u:.3f}", (i - 0.2, u), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
        ax.annotate(f"{t:.3f}", (i + 0.2, t), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("top-1 (test)")
    ax.legend(loc="upper center", ncol=2)
    ax.set_title(
        f"Pair samplers: downstream measure before and after training; {report['hardware']} ({report['date']})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=300, help="Training seconds per sampler experiment.")
    parser.add_argument(
        "--only", nargs="*", default=None, help="Run only these experiments (names as in SAMPLERS/REAL)."
    )
    parser.add_argument(
        "--runs-dir", type=Path, default=None, help="Where the runs are recorded (default: a temporary folder)."
    )
    parser.add_argument(
        "--from-report", type=Path, default=None, help="Merge into this earlier JSON report (rerun some)."
    )
    parser.add_argument("--no-docs", action="store_true", help="Print JSON only; do not touch docs/.")
    args = parser.parse_args()

    host = load_plugins(strict=True)
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="sslx-samplers-"))
    report = json.loads(args.from_report.read_text()) if args.from_report else {}
    rerun = [name for name in (*SAMPLERS, *REAL) if args.only is None or name in args.only]
    if rerun or not report:  # `--from-report F --only` with no names just redraws the table and plot
        report.update(
            {
                "benchmark": "samplers",
                "date": datetime.date.today().isoformat(),
                "hardware": hardware(),
                "torch": torch.__version__,
                "budget_s": args.budget,
                "command": "`python benchmarks/samplers.py " + " ".join(sys.argv[1:]) + "`",
            }
        )
    for name in rerun:
        report[name] = (
            measure(host, name, args.budget, runs_dir) if name in SAMPLERS else run_real(host, name, runs_dir)
        )
        print(json.dumps({name: report[name]}), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))
    if not args.no_docs:
        write_markdown(report, REPO / "docs" / "results.md")
        plot(report, REPO / "docs" / "samplers.png")


if __name__ == "__main__":
    main()
