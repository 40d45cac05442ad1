"""`sslx export`: only the encoder's weights, keyed for the standalone model,
loaded with strict=True by the printed code, giving the trained encoder's
features."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from helpers import EXPERIMENTS, tiny_overrides
from safetensors import safe_open
from safetensors.torch import load_file
from sslx_encoders.models import ResNet18, ResNet50, SmallCNN

import sslx
from sslx.cli import cli
from sslx.engine.evaluation import load_trained
from sslx.records import record_run


def real_images(parts, n: int = 16) -> torch.Tensor:
    split = parts.dataset.split("test")
    return torch.stack([parts.augmentation.eval(split.image(i)) for i in range(n)])


def load_as_printed(code: str) -> torch.nn.Module:
    """Run the loading code `sslx export` prints, as a user would paste it."""
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the printed snippet is what is under test
    return namespace["model"]


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory):
    """Tiny recorded MoCo runs with the small CNN and with a ResNet-18 (1-channel, small-image stem)."""
    from sslx.config import apply_overrides, read_experiment, resolve
    from sslx.plugins import load_plugins

    host = load_plugins(strict=True)
    runs = {}
    for encoder, extra in [
        ("small_cnn", []),
        (
            "resnet18",
            [
                'encoder={"name": "resnet18"}',
                "trainer.max_steps=2",
                "trainer.batch_size=8",
                "dataset.train_size=64",
                "dataset.test_size=32",
            ],
        ),
    ]:
        raw = apply_overrides(read_experiment(EXPERIMENTS / "moco.json"), tiny_overrides("moco") + extra)
        if encoder == "resnet18":
            raw["evaluators"] = []
        exp = resolve(raw, host)
        runs[encoder] = record_run(exp, host, runs_dir=tmp_path_factory.mktemp(encoder)).run_dir
    return runs


@pytest.mark.parametrize("encoder", ["small_cnn", "resnet18"])
@pytest.mark.parametrize("fmt,suffix", [("torchvision", ".pt"), ("safetensors", ".safetensors")])
def test_export_loads_strictly_and_gives_the_trained_features(trained_runs, encoder, fmt, suffix, host, tmp_path):
    run_dir = trained_runs[encoder]
    out = tmp_path / f"backbone{suffix}"
    proc = CliRunner().invoke(cli, ["export", str(run_dir), "--out", str(out), "--format", fmt])
    assert proc.exit_code == 0, proc.output
    code = proc.stdout.split("load it with:\n", 1)[1]
    code = "\n".join(line.removeprefix("    ") for line in code.splitlines() if line.strip())
    assert "strict=True" in code
    model = load_as_printed(code)  # raises if a key is missing or unexpected, or a shape differs

    # only the encoder: no head, queue, momentum encoder or optimizer state
    weights = load_file(out) if fmt == "safetensors" else torch.load(out, weights_only=True)
    assert set(weights) == set(model.state_dict())
    if encoder == "resnet18":
        assert isinstance(model, __import__("torchvision").models.ResNet)
        assert "conv1.weight" in weights and not any(k.startswith(("net.", "encoder.")) for k in weights)

    exp, parts, step = load_trained(run_dir / "checkpoint.pt", host)
    assert step == exp.trainer.max_steps
    x = real_images(parts)
    parts.encoder.eval()
    model.eval()
    with torch.no_grad():
        expected, got = parts.encoder(x), model(x)
    assert got.shape == (16, parts.encoder.out_dim)
    assert torch.equal(got, expected)

    meta = (
        json.loads((out.parent / (out.name + ".json")).read_text())
        if fmt == "torchvision"
        else {k: json.loads(v) for k, v in safe_open(str(out), "pt").metadata().items()}
    )
    assert meta["source"]["step"] == step and meta["encoder"]["name"] == encoder
    assert meta["input"]["mean"] == list(parts.encoder.data.mean) and meta["out_dim"] == parts.encoder.out_dim


@pytest.mark.parametrize(
    "cls,channels,small",
    [(ResNet18, 3, False), (ResNet18, 1, False), (ResNet18, 1, True), (ResNet18, 3, True), (ResNet50, 3, False)],
)
def test_resnet_export_matches_torchvision_for_every_stem(cls, channels, small):
    """The keys and construction code fit torchvision's own model whatever the
    stem (standard 7x7, 1-channel 7x7, small-image 3x3)."""
    torch.manual_seed(0)
    data = sslx.DataInfo(
        channels=channels, image_size=(32, 32), mean=(0.5,) * channels, std=(0.25,) * channels, num_classes=None
    )
    encoder = cls(cls.Params(small_images=small), data).eval()
    with torch.no_grad():  # move BatchNorm statistics away from their defaults, so a missed buffer shows
        for m in encoder.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    exported = encoder.export()
    model = load_as_printed(exported.code)
    model.load_state_dict(exported.state, strict=True)
    model.eval()
    x = torch.randn(2, channels, 16 if small else 32, 16 if small else 32)
    with torch.no_grad():
        assert torch.equal(model(x), encoder(x))


def test_small_cnn_export_loads_into_small_cnn():
    torch.manual_seed(0)
    data = sslx.DataInfo(channels=3, image_size=(16, 16), mean=(0.5,) * 3, std=(0.25,) * 3, num_classes=None)
    encoder = SmallCNN(SmallCNN.Params(width=4, blocks=3), data).eval()
    exported = encoder.export()
    model = load_as_printed(exported.code)
    model.load_state_dict(exported.state, strict=True)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), encoder(x))


def test_export_of_a_folder_without_checkpoint_is_one_clear_error(tmp_path):
    proc = CliRunner().invoke(cli, ["export", str(tmp_path), "--out", str(tmp_path / "x.pt")])
    assert proc.exit_code == 2
    assert "has no checkpoint" in proc.stderr and "Traceback" not in proc.stderr
