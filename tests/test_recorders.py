"""The recorder of docs/plugins.md ("Recording runs elsewhere"), installed as a
real distribution with an ``sslx`` entry point: its ``--jsonl FILE`` option
reaches ``sslx_run_observers``, the run records every metric point there, and
its report is printed and kept in info.json."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner
from helpers import EXPERIMENTS, REPO, read_run, tiny_overrides

from sslx.cli import cli


def documented_recorder() -> str:
    """The first Python block of the section "Recording runs elsewhere"."""
    text = (REPO / "docs" / "plugins.md").read_text()
    section = text.split("## Recording runs elsewhere", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_documented_recorder_records_a_run(fake_dists, tmp_path):
    fake_dists({"fake-jsonl": documented_recorder()})
    out = tmp_path / "metrics.jsonl"
    sets = [arg for s in tiny_overrides("simclr") for arg in ("--set", s)]
    run = cli.commands["run"]
    try:
        result = CliRunner().invoke(
            cli,
            ["run", str(EXPERIMENTS / "simclr.json"), "--runs-dir", str(tmp_path / "runs"), *sets, "--jsonl", str(out)],
            catch_exceptions=False,
        )
    finally:
        run.params[:] = [p for p in run.params if p.name != "jsonl"]  # the global command outlives the fake plugin
    assert result.exit_code == 0, result.output
    assert f"Metrics appended to {out}." in result.stdout
    rec = read_run(tmp_path / "runs" / "1")
    assert rec["info"]["jsonl"] == {"file": str(out)}
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {line["run"] for line in lines} == {rec["info"]["sslx_uid"]}
    recorded = {
        name: [(line["step"], line["value"]) for line in lines if line["name"] == name] for name in rec["metrics"]
    }
    assert recorded == {name: list(zip(m["steps"], m["values"])) for name, m in rec["metrics"].items()}
    assert len(recorded["train.loss"]) == 3 and "eval.knn_top1" in recorded
