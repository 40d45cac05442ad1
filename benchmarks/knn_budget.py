"""kNN accuracy of every method after the same fixed wall-clock training budget.

Trains each method of experiments/<method>.json (same encoder, data and
evaluator) on the full Fashion-MNIST
training set for about --budget seconds (a short calibration run measures the
step time; the schedule is then sized to the budget, so warm-up and cosine
decay complete), evaluates weighted kNN (k=200, t=0.1) on the full test set,
and compares with the same kNN on raw pixels (the normalised images,
flattened). Prints JSON; writes a dated table into docs/results.md and a plot
into docs/knn_budget.png.

    .venv/bin/python benchmarks/knn_budget.py --budget 300
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
import tempfile
from pathlib import Path

import torch

from sslx.config import apply_overrides, read_experiment, resolve
from sslx.plugins import load_plugins
from sslx.tracking import record_run
from sslx.trainer import MemoryRecorder, build, train

REPO = Path(__file__).resolve().parent.parent
METHODS = ["simclr", "moco", "npid", "pirl", "swav", "barlowtwins", "byol", "vicreg"]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def hardware() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{cpu_name()}, {os.cpu_count()} cores, CPU only"


def raw_pixel_knn(host, experiment: Path, k: int, temperature: float) -> float:
    """The kNN evaluator's vote on the normalised images themselves."""
    from sslx_knn import knn_predict

    exp = resolve(read_experiment(experiment), host, source=str(experiment))
    parts = build(exp)
    feats = {}
    for split_name in ("train", "test"):
        split = parts.dataset.split(split_name)
        x = torch.stack([parts.augmentation.eval(split.image(i)) for i in range(len(split))])
        feats[split_name] = (x.flatten(1), torch.as_tensor(split.labels))
    (xtr, ytr), (xte, yte) = feats["train"], feats["test"]
    pred = knn_predict(xtr, ytr, xte, num_classes=int(ytr.max()) + 1, k=k, temperature=temperature)
    return float((pred == yte).float().mean())


def seconds_per_step(host, experiment: Path, steps: int = 40) -> float:
    """The trainer's own views/s over the second half of a short run."""
    raw = apply_overrides(read_experiment(experiment), [f"trainer.max_steps={steps}", "trainer.progress=false",
                                                        f"trainer.log_every={steps // 2}", "evaluators=[]"])
    exp = resolve(raw, host)
    rec = MemoryRecorder()
    train(exp, host, rec)
    views_per_s = rec.metrics["train.views_per_s"][-1][1]  # the second window: past warm-up effects
    views_per_step = exp.trainer.batch_size * exp.config["sampler"]["views"]
    return views_per_step / views_per_s


def run_method(host, method: str, budget: float, runs_dir: Path) -> dict:
    experiment = REPO / "experiments" / f"{method}.json"
    per_step = seconds_per_step(host, experiment)
    steps = max(10, int(budget / per_step))
    raw = apply_overrides(read_experiment(experiment), [f"trainer.max_steps={steps}", "trainer.epochs=1000",
                                                        "trainer.progress=false"])
    exp = resolve(raw, host, source=str(experiment))
    record = record_run(exp, host, runs_dir=runs_dir, name=f"knn_budget-{method}", experiment_file=experiment)
    info = json.loads((record.run_dir / "info.json").read_text())
    metrics = json.loads((record.run_dir / "metrics.json").read_text())
    return {
        "eval.knn_top1": record.result["eval.knn_top1"],
        "steps": steps,
        "epochs": round(steps * exp.trainer.batch_size / 60000, 2),
        "train_seconds": info["train_seconds"],
        "run_dir": str(record.run_dir),
        "loss_curve": list(zip(metrics["train.loss"]["steps"], metrics["train.loss"]["values"])),
        "embedding_std": metrics["collapse.embedding_std"]["values"][-1],
        "config": {k: exp.config[k] for k in ("augmentation", "encoder", "objective", "trainer")},
    }


def write_markdown(report: dict, path: Path) -> None:
    start, end = "<!-- knn_budget:start -->", "<!-- knn_budget:end -->"
    raw = report["raw_pixels"]["eval.knn_top1"]
    rows = [f"| raw pixels (normalised, flattened) | - | - | - | - | {raw:.4f} | - |"]
    for method in report["methods"]:
        r = report[method]
        rows.append(f"| {method} (`experiments/{method}.json`) | {r['steps']} | {r['epochs']} | "
                    f"{r['train_seconds']:.0f} | {r['embedding_std']:.3f} | {r['eval.knn_top1']:.4f} | "
                    f"{r['eval.knn_top1'] - raw:+.4f} |")
    section = "\n".join([
        start,
        f"## kNN after a fixed training budget ({report['date']})",
        "",
        f"Hardware: {report['hardware']}; torch {report['torch']}. Budget: {report['budget_s']:.0f} s of training "
        f"per method on the full Fashion-MNIST training set (60,000 images); weighted kNN (k={report['k']}, "
        f"t={report['temperature']}) on the full test set (10,000 images).",
        "",
        "| features | steps | epochs | train s | final embedding std | kNN top-1 | vs raw pixels |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        "Final embedding std is the last logged `collapse.embedding_std`: the per-dimension std of the L2-normalised "
        "embeddings (the ones each objective monitors) averaged over dimensions; about 1/sqrt(D) for embeddings "
        "spread over D dimensions, 0 at collapse.",
        "",
        f"Command: `{report['command']}`. Plot: [knn_budget.png](knn_budget.png).",
        end,
    ])
    text = path.read_text() if path.exists() else "# Results\n\nMeasured by the scripts in `benchmarks/`.\n"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = ["raw pixels", *report["methods"]]
    values = [report["raw_pixels"]["eval.knn_top1"], *(report[m]["eval.knn_top1"] for m in report["methods"])]
    colors = [c for i, c in enumerate(plt.cm.tab10.colors) if i != 7]  # tab10's 8th colour is the baseline's gray
    ax1.bar(names, values, color=["gray", *(colors[i % len(colors)] for i in range(len(names) - 1))])
    ax1.tick_params(axis="x", labelrotation=45)
    ax1.set_ylim(min(values) - 0.05, max(values) + 0.02)
    ax1.set_ylabel("weighted kNN top-1 (test)")
    ax1.set_title(f"after {report['budget_s']:.0f} s of training")
    for i, v in enumerate(values):
        ax1.text(i, v + 0.003, f"{v:.3f}", ha="center")
    for i, m in enumerate(report["methods"]):
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
    parser.add_argument("--runs-dir", type=Path, default=None, help="Where the runs are recorded (default: a temporary folder).")
    parser.add_argument("--no-docs", action="store_true", help="Print JSON only; do not touch docs/.")
    args = parser.parse_args()

    host = load_plugins(strict=True)
    evaluator = read_experiment(REPO / "experiments" / f"{args.methods[0]}.json")["evaluators"][0]
    k, temperature = evaluator.get("k", 200), evaluator.get("temperature", 0.1)
    runs_dir = args.runs_dir or Path(tempfile.mkdtemp(prefix="sslx-knn-budget-"))
    report: dict = {
        "benchmark": "knn_budget",
        "date": datetime.date.today().isoformat(),
        "hardware": hardware(),
        "torch": torch.__version__,
        "budget_s": args.budget,
        "k": k,
        "temperature": temperature,
        "methods": args.methods,
        "command": "python benchmarks/knn_budget.py " + " ".join(sys.argv[1:]),
        "raw_pixels": {"eval.knn_top1": raw_pixel_knn(host, REPO / "experiments" / f"{args.methods[0]}.json", k, temperature)},
    }
    for method in args.methods:
        report[method] = run_method(host, method, args.budget, runs_dir)
    print(json.dumps(report, indent=2))
    if not args.no_docs:
        write_markdown(report, REPO / "docs" / "results.md")
        plot(report, REPO / "docs" / "knn_budget.png")


if __name__ == "__main__":
    main()
