"""SimCLR training speed and accuracy: sslx's on-device views, sslx's CPU
views, and the usual pipeline, side by side in one process.

On the same data (Fashion-MNIST), encoder (ResNet-18 with a 32 px stem),
batch size and precision (bf16 on CUDA, fp32 on the CPU):

* ``sslx-device``: `sslx run` with ``trainer.augment_on_device`` (images kept
  on the device as uint8, each view made for the whole batch at once);
* ``sslx-cpu``: `sslx run` with the albumentations views on DataLoader workers;
* ``usual``: lightly's ``SimCLRTransform`` on DataLoader workers (PIL images,
  converted to RGB as it expects), its ``NTXentLoss``, the same encoder with
  a SimCLR projection head and the same optimizer and schedule.

Each is timed over ``--steps`` steps after ``--warmup`` (views per second,
the device synchronised at both ends), then trained from scratch for the
same ``--budget`` seconds (the schedule sized to the steps the measured
speed allows) and evaluated with weighted kNN (k=200, t=0.1) on the full
test set. Prints JSON; writes a dated table into docs/benchmarks.md.

lightly is not an sslx dependency: give its wheel and lightning-utilities'
(``pip download --no-deps lightly==1.6.0 lightning-utilities -d WHEELS``)
with ``--wheels WHEELS``; they are imported from the wheel files (no install,
their other dependencies are not needed).

    .venv/bin/python benchmarks/gpu_throughput.py --wheels WHEELS                        # CPU
    python benchmarks/gpu_throughput.py --wheels WHEELS --device cuda --batch-sizes 512 1024
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from benchutil import REPO, hardware, write_section

import sslx
from sslx.config import apply_overrides, read_experiment, resolve
from sslx.engine.bench import StepClock
from sslx.engine.share import auto_workers
from sslx.engine.trainer import MemoryRecorder, lr_at, make_optimizer, pick_device, seed_everything, train
from sslx.modules import projection_mlp
from sslx.plugins import load_plugins

EXPERIMENT = REPO / "experiments" / "simclr.json"
KNN = {"name": "knn", "k": 200, "temperature": 0.1}


def sslx_sets(args: argparse.Namespace, batch: int, on_device: bool) -> list[str]:
    return [
        'encoder={"name": "resnet18"}',
        'augmentation={"name": "simclr", "size": 32}',
        f"trainer.batch_size={batch}",
        f"trainer.device={args.device}",
        "trainer.progress=false",
        f"trainer.augment_on_device={'true' if on_device else 'false'}",
        "trainer.epochs=1000",
        f"evaluators=[{json.dumps(KNN)}]",
        *args.set,
    ]


def sslx_run(host, args: argparse.Namespace, batch: int, on_device: bool, steps: int, evaluate: bool) -> dict:
    """Train with sslx's own trainer for ``steps`` steps; its rate after warm-up and, with ``evaluate``, kNN."""
    sets = sslx_sets(args, batch, on_device) + [
        f"trainer.max_steps={steps}",
        f"trainer.log_every={steps}",
        f"trainer.checkpoint_every={steps}",
    ]
    if not evaluate:
        sets.append("evaluators=[]")
    exp = resolve(apply_overrides(read_experiment(EXPERIMENT), sets), host, source=str(EXPERIMENT))
    clock = StepClock({min(args.warmup, steps - 1), steps})
    host.add_plugin(clock, "clock")
    try:
        recorder = MemoryRecorder()
        result = train(exp, host, recorder)
    finally:
        host.remove_plugin("clock")
    warm = min(args.warmup, steps - 1)
    rate = (steps - warm) / (clock.times[-1] - clock.times[warm - 1]) if warm >= 1 else float("nan")
    return {"steps_per_s": rate, "knn_top1": result.get("eval.knn_top1")}


class RGBEval(sslx.Augmentation):
    """The usual pipeline's evaluation view: the image as RGB, normalised as
    its training views are."""

    name = "rgb_eval"

    def __init__(self, data: sslx.DataInfo, mean: float, std: float):
        super().__init__(sslx.NoParams(), data)
        self.mean, self.std = mean, std

    def seed(self, seed: int) -> None:
        pass

    def view(self, image: np.ndarray, view: int) -> torch.Tensor:
        return self.eval(image)

    def eval(self, image: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.repeat(image[..., :1], 3, axis=2).astype(np.float32) / 255).permute(2, 0, 1)
        x = torch.nn.functional.interpolate(x[None], size=32, mode="bilinear", align_corners=False)[0]
        return (x - self.mean) / self.std

    @property
    def out_channels(self) -> int:
        return 3


def usual_pipeline(host, args: argparse.Namespace, batch: int, steps: int, evaluate: bool) -> dict:
    """lightly's SimCLR transform on DataLoader workers and its NT-Xent, on
    the sslx encoder, optimizer and schedule: the rate after warm-up and,
    with ``evaluate``, kNN."""
    from lightly.loss import NTXentLoss
    from lightly.transforms import SimCLRTransform
    from PIL import Image

    exp = resolve(apply_overrides(read_experiment(EXPERIMENT), sslx_sets(args, batch, False)), host)
    t = exp.trainer
    seed_everything(exp.seed)
    device = pick_device(t.device)
    dataset_info, dataset_params = exp.components["dataset"]
    dataset = dataset_info.cls(dataset_params)
    split = dataset.split("train")
    mean, std = float(split.info.mean[0]), float(split.info.std[0])
    transform = SimCLRTransform(input_size=32, normalize={"mean": [mean] * 3, "std": [std] * 3})

    class Views(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(split)

        def __getitem__(self, i: int):
            return transform(Image.fromarray(split.image(i)[..., 0]).convert("RGB"))

    rgb = sslx.DataInfo(channels=3, image_size=(32, 32), mean=(mean,) * 3, std=(std,) * 3, num_classes=10)
    encoder_info, encoder_params = exp.components["encoder"]
    encoder = encoder_info.cls(encoder_params, rgb)
    model = torch.nn.ModuleDict(
        {"encoder": encoder, "projector": projection_mlp(encoder.out_dim, encoder.out_dim, 128)}
    )
    model = model.to(device, memory_format=torch.channels_last).train()
    optimizer = make_optimizer(model, t)
    criterion = NTXentLoss(temperature=0.2)
    loader = torch.utils.data.DataLoader(
        Views(),
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        num_workers=auto_workers("auto"),
        pin_memory=device.type == "cuda",
        persistent_workers=True,
        prefetch_factor=4 if auto_workers("auto") else None,
    )
    use_bf16 = device.type == "cuda"
    step, times = 0, []
    while step < steps:
        for x0, x1 in loader:
            x0 = x0.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            x1 = x1.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(t, step, steps)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                z0, z1 = model["projector"](model["encoder"](x0)), model["projector"](model["encoder"](x1))
            loss = criterion(z0.float(), z1.float())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if device.type == "cuda" and step in (min(args.warmup, steps - 1), steps):
                torch.cuda.synchronize()
            times.append(time.perf_counter())
            if step == steps:
                break
    warm = min(args.warmup, steps - 1)
    rate = (steps - warm) / (times[-1] - times[warm - 1]) if warm >= 1 else float("nan")
    knn = None
    if evaluate:
        info, params = exp.evaluators[0]
        ctx = sslx.EvalContext(
            encoder=encoder,
            dataset=dataset,
            augmentation=RGBEval(rgb, mean, std),
            device=device,
            batch_size=t.eval_batch_size,
            num_workers=auto_workers(t.num_workers),
            progress=False,
            memory_format=torch.channels_last,
            seed=exp.seed,
        )
        knn = float(info.cls(params).evaluate(ctx)["knn_top1"])
    return {"steps_per_s": rate, "knn_top1": knn}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[512])
    parser.add_argument("--steps", type=int, default=12, help="Steps per speed measurement (warm-up included).")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--budget", type=float, default=150.0, help="Training seconds per pipeline for the kNN score.")
    parser.add_argument(
        "--wheels", type=Path, required=True, help="Folder with the lightly and lightning-utilities wheels."
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="sslx experiment override.")
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    sys.path[:0] = [str(w) for w in sorted(args.wheels.glob("*.whl"))]
    host = load_plugins(strict=True)
    pipelines = {
        "sslx-device": lambda b, n, e: sslx_run(host, args, b, True, n, e),
        "sslx-cpu": lambda b, n, e: sslx_run(host, args, b, False, n, e),
        "usual": lambda b, n, e: usual_pipeline(host, args, b, n, e),
    }
    rows = []
    for batch in args.batch_sizes:
        speed = {name: run(batch, args.steps, False)["steps_per_s"] for name, run in pipelines.items()}
        for name, run in pipelines.items():
            budget_steps = max(args.warmup + 2, math.floor(args.budget * speed[name]))
            trained = run(batch, budget_steps, True)
            rows.append(
                {
                    "pipeline": name,
                    "batch_size": batch,
                    "views_per_s": 2 * batch * speed[name],
                    "ratio_to_usual": speed[name] / speed["usual"],
                    "budget_steps": budget_steps,
                    "knn_top1": trained["knn_top1"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    report = {
        "date": datetime.date.today().isoformat(),
        "hardware": hardware(),
        "device": args.device,
        "torch": torch.__version__,
        "budget_s": args.budget,
        "rows": rows,
    }
    print(json.dumps(report, indent=2))
    if args.no_docs:
        return
    lines = [
        f"### SimCLR throughput against the usual pipeline ({args.device.upper()}), {report['date']}",
        "",
        f"`benchmarks/gpu_throughput.py --device {args.device} --batch-sizes {' '.join(map(str, args.batch_sizes))} "
        f"--steps {args.steps} --warmup {args.warmup} --budget {args.budget:g}"
        f"{''.join(f' --set {s}' for s in args.set)} --wheels WHEELS` on {report['hardware']}, torch "
        f"{torch.__version__} (lightly 1.6.0): Fashion-MNIST, ResNet-18 "
        f"(32 px stem), views of 32 px; speed over {args.steps - args.warmup} steps after {args.warmup}, measured in "
        f"one run; kNN (k=200, t=0.1) on the test set after {args.budget:g} s of training each.",
        "",
        "| pipeline | batch | views/s | ratio to usual | steps in budget | kNN top-1 |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {r['pipeline']} | {r['batch_size']} | {r['views_per_s']:,.0f} | {r['ratio_to_usual']:.2f} | "
            f"{r['budget_steps']} | {r['knn_top1']:.3f} |"
            for r in rows
        ),
    ]
    write_section(REPO / "docs" / "benchmarks.md", f"gpu-throughput-{args.device}", "\n".join(lines))


if __name__ == "__main__":
    main()
