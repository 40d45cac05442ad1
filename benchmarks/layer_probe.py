"""Linear probes at every layer: an invariance method (PIRL) against the
pretext task it is built on (Jigsaw), after the same training budget.

Pretrains experiments/pirl.json and experiments/jigsaw.json (the same small
CNN, the same 3x3 tiles of 9 px cut from 30 px crops, the same wall-clock
budget; a short calibration run sizes each schedule to the budget) on the
full Fashion-MNIST training set, then runs `sslx eval RUN --protocol
linear_layers` on each: every stage's feature map average-pooled to at most
--max-dim features, a linear probe per stage, top-1 on the full test set.
The same probe on the untrained encoder is the floor. Prints JSON; writes a
dated table into docs/results.md and a plot into docs/layer_probe.png.

On ImageNet with a ResNet-50, Misra & van der Maaten (2020, PIRL, fig. 5)
found PIRL's accuracy rising to the last layer while Jigsaw's peaks in a
middle layer (res4) and falls at res5: the pretext task's last layers
specialise in solving the jigsaw, the invariance objective's do not.

    .venv/bin/python benchmarks/layer_probe.py --budget 600 --runs-dir runs/layer_probe
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path

import torch
from benchutil import REPO, evaluate_untrained, hardware, train_for_budget, write_section

from sslx.config import read_experiment, resolve
from sslx.engine.trainer import build
from sslx.plugins import load_plugins
from sslx.records import RunFolder, record_evaluation

METHODS = {"pirl": "PIRL", "jigsaw": "Jigsaw"}


def stages_of(metrics: dict) -> list[str]:
    return [k.split(".")[2] for k in metrics if k.startswith("eval.layer.") and k.endswith(".linear_top1")]


def write_markdown(report: dict, path: Path) -> None:
    stages = report["stages"]
    rows = []
    for key, label in [*METHODS.items(), ("untrained", "untrained encoder")]:
        r = report[key]
        values = [r["layers"][s] for s in stages]
        best = stages[max(range(len(stages)), key=lambda i: values[i])]
        cells = [f"**{v:.4f}**" if s == best else f"{v:.4f}" for s, v in zip(stages, values)]
        extra = f"{r['steps']} | {r['epochs']} | {r.get('eval.knn_top1', 0):.4f}" if key != "untrained" else "0 | 0 | -"
        rows.append(f"| {label} | {extra} | " + " | ".join(cells) + " |")
    section = "\n".join(
        [
            f"## Linear probes at every layer: PIRL against Jigsaw ({report['date']})",
            "",
            f"Hardware: {report['hardware']}; torch {report['torch']}. Budget: {report['budget_s']:.0f} s of training per "
            f"method on the full Fashion-MNIST training set, the same small CNN (`small_cnn`, width 16, 4 blocks) and "
            f"the same jigsaw tiles (3x3 tiles of 9 px from 30 px crops). Probe: `sslx eval RUN --protocol "
            f"linear_layers` (each block's output average-pooled to at most {report['max_dim']} features, standardised, "
            f"L-BFGS logistic regression, L2 chosen on a 10% validation split), top-1 on the full test set. Bold: the "
            f"best layer of each row.",
            "",
            "| encoder | steps | epochs | kNN top-1 (final features) | "
            + " | ".join(f"{s} ({report['dims'][s]}-d)" for s in stages)
            + " |",
            "| --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in stages) + " |",
            *rows,
            "",
            report["finding"],
            "",
            f"Command: {report['command']}. Plot: [layer_probe.png](layer_probe.png).",
        ]
    )
    write_section(path, "layer_probe", section)


def finding(report: dict) -> str:
    stages = report["stages"]
    parts = []
    for key, label in METHODS.items():
        values = [report[key]["layers"][s] for s in stages]
        peak = max(range(len(values)), key=lambda i: values[i])
        shape = (
            "rises to the last layer"
            if peak == len(values) - 1
            else f"peaks at {stages[peak]} ({values[peak]:.4f}) and falls to {values[-1]:.4f} at {stages[-1]}"
        )
        parts.append(f"{label} {shape}")
    pirl, jig = ([report[k]["layers"][s] for s in stages] for k in METHODS)
    matches = (
        max(range(len(pirl)), key=lambda i: pirl[i]) == len(pirl) - 1
        and max(range(len(jig)), key=lambda i: jig[i]) < len(jig) - 1
    )
    return (
        f"Observed: {'; '.join(parts)}. This {'matches' if matches else 'does not match'} the ImageNet "
        f"finding (PIRL rising to the last layer, Jigsaw peaking in a middle layer)."
    )


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = report["stages"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, label, style in [("pirl", "PIRL", "o-"), ("jigsaw", "Jigsaw", "s-"), ("untrained", "untrained", "x--")]:
        values = [report[key]["layers"][s] for s in stages]
        ax.plot(range(len(stages)), values, style, label=label, color="gray" if key == "untrained" else None)
        for i, v in enumerate(values):
            ax.annotate(f"{v:.3f}", (i, v), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xticks(range(len(stages)), [f"{s}\n{report['dims'][s]}-d" for s in stages])
    ax.set_xlabel("layer (depth)")
    ax.set_ylabel("linear probe top-1 (test)")
    ax.set_title(f"Fashion-MNIST, {report['budget_s']:.0f} s of pretraining each", fontsize=10)
    ax.legend()
    fig.suptitle(f"{report['hardware']} ({report['date']})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=600, help="Training seconds per method.")
    parser.add_argument("--max-dim", type=int, default=2048, help="linear_layers' max_dim: features per layer.")
    parser.add_argument(
        "--runs-dir", type=Path, default=None, help="Where the runs are recorded (default: a temporary folder)."
    )
    parser.add_argument("--no-docs", action="store_true", help="Print JSON only; do not touch docs/.")
    args = parser.parse_args()

    host = load_plugins(strict=True)
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="sslx-layer-probe-"))
    sets = [f"max_dim={args.max_dim}"]
    report: dict = {
        "benchmark": "layer_probe",
        "date": datetime.date.today().isoformat(),
        "hardware": hardware(),
        "torch": torch.__version__,
        "budget_s": args.budget,
        "max_dim": args.max_dim,
        "command": "`python benchmarks/layer_probe.py " + " ".join(sys.argv[1:]) + "`",
    }
    for method in METHODS:
        experiment = REPO / "experiments" / f"{method}.json"
        record, steps = train_for_budget(host, experiment, args.budget, runs_dir, f"layer_probe-{method}")
        config = RunFolder(record.run_dir).config
        evaluation = record_evaluation(record.run_dir, "linear_layers", [*sets, "trainer.progress=false"], host)
        report[method] = {
            "run_dir": str(record.run_dir),
            "eval_run_dir": str(evaluation.run_dir),
            "steps": steps,
            "epochs": round(steps * config["trainer"]["batch_size"] / 60000, 2),
            "eval.knn_top1": record.result["eval.knn_top1"],
            "layers": {s: evaluation.result[f"eval.layer.{s}.linear_top1"] for s in stages_of(evaluation.result)},
        }
    metrics = evaluate_untrained(host, REPO / "experiments" / "pirl.json", [("linear_layers", sets)])
    report["untrained"] = {"layers": {s: metrics[f"eval.layer.{s}.linear_top1"] for s in stages_of(metrics)}}
    report["stages"] = list(report["untrained"]["layers"])
    # the probe's feature size per stage, from the encoder's channels and the pooling rule
    from sslx_linear.probes import stage_dims

    exp = resolve(read_experiment(REPO / "experiments" / "pirl.json"), host)
    report["dims"] = stage_dims(build(exp).encoder, args.max_dim)
    report["finding"] = finding(report)
    print(json.dumps(report, indent=2))
    if not args.no_docs:
        write_markdown(report, REPO / "docs" / "results.md")
        plot(report, REPO / "docs" / "layer_probe.png")


if __name__ == "__main__":
    main()
