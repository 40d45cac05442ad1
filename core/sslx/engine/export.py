"""``sslx export``: a training checkpoint turned into plain backbone weights.

A checkpoint holds the whole objective (heads, momentum encoders, queues,
banks) and the optimizer. Export keeps only the encoder, keyed as the
standalone model expects (:meth:`sslx.Encoder.export`: torchvision's own
ResNet keys, or the sslx encoder's), so that::

    model.load_state_dict(weights, strict=True)

works on the model the printed code builds. Two formats:

``torchvision``
    ``torch.save`` of the state dict (read it with ``torch.load(f,
    weights_only=True)``), with a ``FILE.json`` beside it that says how to
    build the model and how its input images were normalised.
``safetensors``
    the same tensors in a ``.safetensors`` file, the same description in its
    metadata (all values are JSON strings).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sslx
from sslx.engine import checkpoint as ckpt
from sslx.engine.evaluation import load_trained
from sslx.errors import UserError

if TYPE_CHECKING:
    from sslx.plugins import PluginHost

FORMATS = ("torchvision", "safetensors")


@dataclass
class Exported:
    path: Path
    format: str
    metadata: dict[str, Any]
    load_code: str  # Python that builds `model` and loads the file into it with strict=True


def export_backbone(run: Path, out: Path, fmt: str | None, host: PluginHost) -> Exported:
    """Write the encoder of ``run`` (a run folder or a checkpoint) to ``out``."""
    fmt = fmt or ("safetensors" if str(out).endswith(".safetensors") else "torchvision")
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}.")
    path = ckpt.find_checkpoint(run, final_first=True)
    exp, parts, step = load_trained(path, host)
    encoder = parts.encoder
    exported = encoder.export()
    tensors = {k: v.detach().cpu().contiguous() for k, v in exported.state.items()}
    data = encoder.data
    metadata = {
        "model": exported.model,
        "code": exported.code,
        "encoder": exp.config["encoder"],
        "out_dim": encoder.out_dim,
        "input": {
            "channels": data.channels,
            "image_size": data.image_size,
            "mean": data.mean,
            "std": data.std,
            "note": "images scaled to [0, 1], then normalised per channel with mean and std",
        },
        "source": {
            "checkpoint": str(Path(path).resolve()),
            "step": step,
            "objective": exp.config["objective"]["name"],
            "dataset": exp.config["dataset"],
        },
        "sslx_version": sslx.__version__,
        "format": fmt,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        from safetensors.torch import save_file

        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # written whole, then renamed: never a torn file
        save_file(tensors, str(tmp), metadata={k: json.dumps(v) for k, v in metadata.items()})
        os.replace(tmp, out)
        load = f"from safetensors.torch import load_file\n{exported.code}\nmodel.load_state_dict(load_file({str(out)!r}), strict=True)"
    else:
        ckpt.save_atomic(tensors, out)
        sidecar = out.with_name(out.name + ".json")
        sidecar.write_text(json.dumps(metadata, indent=2) + "\n")
        load = f"{exported.code}\nmodel.load_state_dict(torch.load({str(out)!r}, weights_only=True), strict=True)"
        if "import torch\n" not in exported.code:
            load = "import torch\n" + load
    return Exported(out, fmt, metadata, load)
