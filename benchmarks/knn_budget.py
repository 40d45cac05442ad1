"""Every method after the same fixed wall-clock training budget, under
three evaluation protocols.

Trains each method of experiments/<method>.json (same encoder, data and
evaluator) on the full Fashion-MNIST training set for about --budget seconds
(a short calibration run measures the step time; the schedule is then sized
to the budget, so warm-up and cosine decay complete) and evaluates its
encoder on the full test set with weighted kNN (k=200, t=0.1, during the
run), then with `sslx eval`'s protocols: the linear probe on frozen features
(`linear`) and fine-tuning with 10% of the labels (`finetune`), each recorded
as an evaluation run beside the pretraining run. Baselines: raw pixels (the
normalised images, flattened) for kNN and the linear probe, and a randomly
initialised encoder under all three protocols. Prints JSON; writes a dated
table into docs/results.md and a plot into docs/knn_budget.png.

    .venv/bin/python benchmarks/knn_budget.py --budget 600 --runs-dir runs/knn_budget
    .venv/bin/python benchmarks/knn_budget.py --from-report out.json   # evaluate runs trained before
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

import sslx
from sslx.config import read_experiment
from sslx.plugins import load_plugins
from sslx.records import RunFolder, record_evaluation

METHODS = ["simclr", "moco", "npid", "pirl", "swav", "barlowtwins", "byol", "vicreg"]
# `sslx eval` protocols run on every trained encoder: (protocol, --set assignments)
PROTOCOLS = [("linear", []), ("finetune", ["label_fraction=0.1"])]


class RawPixels(sslx.Encoder):
    """The normalised evaluation view itself, flattened: the no-learning baseline."""

    name = "raw_pixels"
    stages = ()

    def __init__(self, data: sslx.DataInfo):
        super().__init__(sslx.Params(), data)
        self.out_dim = data.channels * data.image_size[0] * data.image_size[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


def summarize_run(run_dir: Path) -> dict:
    """What the table shows of one pretraining run, from its records."""
    folder = RunFolder(run_dir)
    run, info, metrics, config = folder.run, folder.info, folder.metrics, folder.config
    steps = config["trainer"]["max_steps"]
    return {
        "eval.knn_top1": run["result"]["eval.knn_top1"],
        "steps": steps,
        "epochs": round(steps * config["trainer"]["batch_size"] / 60000, 2),
        "train_seconds": info["train_seconds"],
        "run_dir": str(run_dir),
        "loss_curve": list(zip(metrics["train.loss"]["steps"], metrics["train.loss"]["values"])),
        "embedding_std": metrics["collapse.embedding_std"]["values"][-1],
        "config": {k: config[k] for k in ("augmentation", "encoder", "objective", "trainer")},
    }


def evaluate_protocols(host, run_dir: Path) -> dict:
    """`sslx eval RUN_DIR --protocol P` for each protocol, recorded beside the run."""
    out = {}
    for protocol, sets in PROTOCOLS:
        record = record_evaluation(run_dir, protocol, [*sets, "trainer.progress=false"], host)
        out.update(record.result)
        out.setdefault("eval_runs", {})[protocol] = str(record.run_dir)
    return out


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def write_markdown(report: dict, path: Path) -> None:
    raw, rnd = report["raw_pixels"], report["random_init"]
    knn0 = raw["eval.knn_top1"]
    rows = [
        f"| raw pixels (normalised, flattened) | - | - | - | - | {fmt(knn0)} | - | {fmt(raw.get('eval.linear_top1'))} | - |",
        f"| random init (the same encoder, untrained) | 0 | 0 | 0 | - | {fmt(rnd['eval.knn_top1'])} | "
        f"{rnd['eval.knn_top1'] - knn0:+.4f} | {fmt(rnd.get('eval.linear_top1'))} | {fmt(rnd.get('eval.finetune_top1'))} |",
    ]
    for method in report["methods"]:
        r = report[method]
        rows.append(
            f"| {method} (`experiments/{method}.json`) | {r['steps']} | {r['epochs']} | "
            f"{r['train_seconds']:.0f} | {r['embedding_std']:.3f} | {r['eval.knn_top1']:.4f} | "
            f"{r['eval.knn_top1'] - knn0:+.4f} | {fmt(r.get('eval.linear_top1'))} | "
            f"{fmt(r.get('eval.finetune_top1'))} |"
        )
    section = "\n".join(
        [
            f"## Every method after a fixed training budget ({report['date']})",
            "",
            f"Hardware: {report['hardware']}; torch {report['torch']}. Budget: {report['budget_s']:.0f} s of training "
            f"per method on the full Fashion-MNIST training set (60,000 images). Evaluated on the full test set (10,000 "
            f"images): weighted kNN (k={report['k']}, t={report['temperature']}) at the end of the run; then, each as "
            f"an `sslx eval` run beside it, the linear probe on frozen features (`linear`, defaults: standardised "
            f"features, L-BFGS, L2 chosen on a 10% validation split) and fine-tuning of the whole encoder with 10% of "
            f"the training labels (`finetune --set label_fraction=0.1`, defaults otherwise).",
            "",
            "| features | steps | epochs | train s | final embedding std | kNN top-1 | kNN vs raw pixels | linear top-1 | fine-tune 10% top-1 |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            *rows,
            "",
            "Final embedding std is the last logged `collapse.embedding_std`: the per-dimension std of the L2-normalised "
            "embeddings (the ones each objective monitors) averaged over dimensions; about 1/sqrt(D) for embeddings "
            "spread over D dimensions, 0 at collapse. The random-init row is the experiments' encoder at its seeded "
            "initialisation (seed 0): its fine-tune column is supervised training from scratch on the same 10%.",
            "",
            f"Commands: {report['command']}. Plot: [knn_budget.png](knn_budget.png).",
        ]
    )
    write_section(path, "knn_budget", section)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    methods = report["methods"]
    colors = [c for i, c in enumerate(plt.cm.tab10.colors) if i != 7]  # tab10's 8th colour is the baselines' gray
    protocols = [("eval.knn_top1", "kNN"), ("eval.linear_top1", "linear"), ("eval.finetune_top1", "fine-tune 10%")]
    width = 0.27
    for j, (key, label) in enumerate(protocols):
        xs = [i + (j - 1) * width for i in range(len(methods))]
        ax1.bar(xs, [report[m].get(key, 0.0) for m in methods], width, label=label, color=plt.cm.Set2.colors[j])
        for name, ls in (("raw_pixels", ":"), ("random_init", "--")):
            value = report[name].get(key)
            if value is not None:
                ax1.axhline(value, color=plt.cm.Set2.colors[j], ls=ls, lw=1)
    ax1.set_xticks(range(len(methods)), methods, rotation=45)
    values = [report[m].get(k) for m in methods for k, _ in protocols if report[m].get(k) is not None]
    ax1.set_ylim(min(values) - 0.05, max(values) + 0.02)
    ax1.set_ylabel("top-1 (test)")
    ax1.set_title(f"after {report['budget_s']:.0f} s of training (dotted: raw pixels, dashed: random init)", fontsize=9)
    ax1.legend(fontsize=8)
    for i, m in enumerate(methods):
        steps, losses = zip(*report[m]["loss_curve"])
        ax2.plot(steps, [v / losses[0] for v in losses], label=m, color=colors[i % len(colors)])
    ax2.set_xlabel("step")
    ax2.set_ylabel("train.loss / first logged value")
    ax2.legend()
    fig.suptitle(f"Fashion-MNIST, {report['hardware']} ({report['date']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=300, help="Training seconds per method.")
    parser.add_argument("--methods", nargs="+", default=METHODS, help="Experiments (experiments/<name>.json) to train.")
    parser.add_argument(
        "--runs-dir", type=Path, default=None, help="Where the runs are recorded (default: a temporary folder)."
    )
    parser.add_argument(
        "--from-report",
        type=Path,
        default=None,
        help="A JSON report of an earlier run of this script: reuse its trained runs (and budget, "
        "date, kNN numbers) and run only the evaluation protocols.",
    )
    parser.add_argument("--no-docs", action="store_true", help="Print JSON only; do not touch docs/.")
    args = parser.parse_args()

    host = load_plugins(strict=True)
    first = REPO / "experiments" / f"{args.methods[0]}.json"
    evaluator = read_experiment(first)["evaluators"][0]
    command = "`python benchmarks/knn_budget.py " + " ".join(sys.argv[1:]) + "`"
    if args.from_report:
        report = json.loads(args.from_report.read_text())
        earlier = report["command"] if report["command"].startswith("`") else f"`{report['command']}`"
        report["command"] = f"{earlier}, then {command}"
        report["protocols_date"] = datetime.date.today().isoformat()
    else:
        runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="sslx-knn-budget-"))
        report = {
            "benchmark": "knn_budget",
            "date": datetime.date.today().isoformat(),
            "hardware": hardware(),
            "torch": torch.__version__,
            "budget_s": args.budget,
            "k": evaluator.get("k", 200),
            "temperature": evaluator.get("temperature", 0.1),
            "methods": args.methods,
            "command": command,
        }
        for method in args.methods:
            experiment = REPO / "experiments" / f"{method}.json"
            record, _ = train_for_budget(host, experiment, args.budget, runs_dir, f"knn_budget-{method}")
            report[method] = summarize_run(record.run_dir)
    knn = ("knn", [f"k={report['k']}", f"temperature={report['temperature']}"])
    report["raw_pixels"] = evaluate_untrained(host, first, [knn, PROTOCOLS[0]], encoder=RawPixels)
    report["random_init"] = evaluate_untrained(host, first, [knn, *PROTOCOLS])
    for method in report["methods"]:
        report[method].update(evaluate_protocols(host, Path(report[method]["run_dir"])))
    print(json.dumps(report, indent=2))
    if not args.no_docs:
        write_markdown(report, REPO / "docs" / "results.md")
        plot(report, REPO / "docs" / "knn_budget.png")


if __name__ == "__main__":
    main()
