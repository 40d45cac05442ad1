"""sslx bench: end-to-end and model-only speed of one experiment, as JSON."""

from __future__ import annotations

import json

from click.testing import CliRunner
from helpers import EXPERIMENTS, tiny_overrides

from sslx.cli import cli


def test_bench_prints_both_rates_their_ratio_and_peak_memory(tmp_path):
    sets = [f"--set={s}" for s in tiny_overrides("simclr")] + ["--set=trainer.augment_on_device=true"]
    proc = CliRunner().invoke(cli, ["bench", str(EXPERIMENTS / "simclr.json"), "--seconds", "2", *sets])
    assert proc.exit_code == 0, proc.output[-3000:]
    report = json.loads(proc.stdout)
    assert report["device"] == "cpu" and report["views_per_step"] == 64 and report["augment_on_device"] is True
    assert report["end_to_end_views_per_s"] > 0 and report["model_only_views_per_s"] > 0
    ratio = report["end_to_end_views_per_s"] / report["model_only_views_per_s"]
    assert abs(report["ratio"] - ratio) < 1e-3
    assert 0 < report["peak_memory_mb"] and report["peak_memory_of"] == "process resident set"
    assert not list(tmp_path.iterdir()), "bench records nothing"
