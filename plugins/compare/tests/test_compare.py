"""`sslx compare` on real recorded runs: three tiny sslx runs in a file store
(table, JSON, CSV, --last, --filter, explicit runs, --plot, errors), and the
same comparison read from a real MongoDB-wire server (SecantusDB) that
Sacred's own MongoObserver wrote."""

from __future__ import annotations

import csv
import io
import json
import re
import struct
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import EXPERIMENTS, SSLX, read_run, tiny_overrides
from sslx_compare import comparison as compare

from sslx.cli import cli
from sslx.config import apply_overrides, read_experiment, resolve
from sslx.plugins import load_plugins
from sslx.records import record_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs 1 and 2: simclr at lr 0.06 and 0.12; run 3: moco (trained once per module)."""
    runs = tmp_path_factory.mktemp("runs")
    host = load_plugins(strict=True)
    for method, name, sets in [
        ("simclr", "simclr-a", ["trainer.lr=0.06"]),
        ("simclr", "simclr-b", ["trainer.lr=0.12"]),
        ("moco", "moco-a", []),
    ]:
        raw = apply_overrides(read_experiment(EXPERIMENTS / f"{method}.json"), tiny_overrides(method) + sets)
        record = record_run(resolve(raw, host, source=method), host, runs_dir=runs, name=name)
        assert record.status == "COMPLETED"
    return runs


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["compare", *args])
    return result.exit_code, result.output


def as_json(*args: str) -> list[dict]:
    code, out = invoke(*args, "--json")
    assert code == 0, out
    return json.loads(out)


def ids(*args: str) -> list[str]:
    return [row["id"] for row in as_json(*args)]


def parse_table(text: str) -> list[dict[str, str]]:
    """The aligned table as dicts, cut at the header's column starts (cells may hold spaces)."""
    header, *lines = text.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    bounds = list(zip(starts, starts[1:] + [None]))
    return [{n: line[a:b].strip() for n, (a, b) in zip(names, bounds)} for line in lines]


def test_table_shows_what_differs_and_the_final_metrics(runs_dir):
    code, out = invoke("--source", str(runs_dir))
    assert code == 0, out
    rows = parse_table(out)
    columns = list(rows[0])
    assert columns[:5] == ["id", "name", "method", "status", "duration"]
    # differing keys are columns; keys equal in all three runs are not
    assert {"objective.name", "trainer.lr", "objective.queue_size", "eval.knn_top1"} <= set(columns)
    assert "dataset.train_size" not in columns and "encoder.width" not in columns and "seed" not in columns
    assert [r["id"] for r in rows] == ["1", "2", "3"]
    for row in rows:
        rec = read_run(runs_dir / row["id"])
        assert row["name"] == rec["run"]["experiment"]["name"] and row["status"] == "COMPLETED"
        assert row["method"] == row["objective.name"] == rec["config"]["objective"]["name"]
        assert row["eval.knn_top1"] == f"{rec['run']['result']['eval.knn_top1']:.4g}"
        assert row["duration"].endswith("s")
    assert [r["trainer.lr"] for r in rows] == ["0.06", "0.12", str(read_run(runs_dir / "3")["config"]["trainer"]["lr"])]
    assert [r["objective.queue_size"] for r in rows] == ["-", "-", "64"]  # absent from simclr's config


def test_json_through_the_installed_command_equals_the_records(runs_dir):
    proc = subprocess.run(
        [SSLX, "compare", "--source", str(runs_dir), "--json"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["id"] for r in rows] == ["1", "2", "3"]
    for row in rows:
        rec = read_run(runs_dir / row["id"])
        assert (
            row["eval.knn_top1"]
            == rec["metrics"]["eval.knn_top1"]["values"][-1]
            == rec["run"]["result"]["eval.knn_top1"]
        )
        assert row["trainer.lr"] == rec["config"]["trainer"]["lr"]
        assert row["method"] == rec["config"]["objective"]["name"] and row["status"] == "COMPLETED"
        start, stop = (datetime.fromisoformat(rec["run"][k]) for k in ("start_time", "stop_time"))
        assert row["duration_s"] == round((stop - start).total_seconds(), 1) and row["duration_s"] > 0
        assert "dataset.train_size" not in row


def test_csv_has_the_json_columns_and_values(runs_dir):
    code, out = invoke("--source", str(runs_dir), "--csv")
    assert code == 0, out
    rows = list(csv.DictReader(io.StringIO(out)))
    expected = as_json("--source", str(runs_dir))
    assert [list(r) for r in rows] == [list(r) for r in expected]
    for got, want in zip(rows, expected):
        assert got["id"] == want["id"] and got["name"] == want["name"]
        assert float(got["eval.knn_top1"]) == want["eval.knn_top1"]
        assert float(got["trainer.lr"]) == want["trainer.lr"]


def test_last_filter_and_named_runs_select_runs(runs_dir):
    src = ["--source", str(runs_dir)]
    assert ids(*src, "--last", "2") == ["2", "3"]
    assert ids(*src, "--filter", "objective.name=simclr") == ["1", "2"]
    assert ids(*src, "--filter", "trainer.lr=0.120") == ["2"]  # compared as JSON numbers, not text
    assert ids(*src, "--filter", "trainer.lr=0.06") == ["1", "3"]  # moco's default lr is 0.06 too
    assert ids(*src, "--filter", "objective.name=simclr", "--last", "1") == ["2"]
    assert ids(*src, "--filter", "status=COMPLETED", "--filter", "name=moco-a") == ["3"]
    assert ids(*src, "--filter", "status=FAILED") == []
    # explicit runs, by folder and by id within --source, in the order given
    assert ids(*src, str(runs_dir / "3"), "1") == ["3", "1"]
    # between the two simclr runs only the learning rate differs
    row = as_json(*src, "1", "2")[0]
    assert "trainer.lr" in row and "objective.name" not in row


def test_plot_writes_one_subplot_per_metric(runs_dir, tmp_path):
    out = tmp_path / "plots" / "curves.png"
    code, output = invoke(
        "--source", str(runs_dir), "--plot", str(out), "--metric", "train.loss", "--metric", "eval.knn_top1"
    )
    assert code == 0, output
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    width, height = struct.unpack(">II", data[16:24])  # IHDR: 8x3 inches per subplot at 100 dpi
    assert (width, height) == (800, 600)
    single = tmp_path / "loss.png"
    assert invoke("--source", str(runs_dir), "--plot", str(single))[0] == 0
    assert struct.unpack(">II", single.read_bytes()[16:24]) == (800, 300)  # default: train.loss alone


def test_wide_tables_cut_long_cells():
    runs = [
        compare.RunSummary(
            str(i), f"run{i}", "COMPLETED", None, None, {"objective": {"name": "x" * 40 + str(i)}, "a": i}, {}
        )
        for i in (1, 2)
    ]
    text = compare.format_text(*compare.table(runs))
    assert "…" in text and all(len(cell) <= compare.CELL_WIDTH for line in text.splitlines() for cell in line.split())


@pytest.mark.parametrize(
    "args, needle",
    [
        (["9"], "RUN '9'"),
        (["--filter", "objective.name"], "--filter 'objective.name'"),
        (["--json", "--csv"], "--json and --csv"),
        (["--metric", "nope", "--plot", "x.png"], "--metric nope"),
        (["--last", "0"], "--last 0"),
    ],
)
def test_mistakes_are_one_paragraph_naming_the_argument(runs_dir, args, needle):
    code, out = invoke("--source", str(runs_dir), *args)
    assert code == 2 and needle in out and "Traceback" not in out


def test_a_folder_that_is_not_a_run_or_a_missing_source_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    code, out = invoke(str(tmp_path / "empty"))
    assert code == 2 and "is not a run folder" in out and "run.json" in out
    code, out = invoke("--source", str(tmp_path / "nowhere"))
    assert code == 2 and "--source" in out and "no such folder" in out


# ---------------------------------------------------------------- MongoDB


def _record_plain_sacred_runs(uri: str, runs: Path) -> None:
    """Two runs of a plain Sacred experiment (not sslx's recorder), each
    written by Sacred's MongoObserver and a FileStorageObserver at once."""
    import logging

    from sacred import Experiment
    from sacred.observers import FileStorageObserver, MongoObserver

    quiet = logging.getLogger("test_compare.sacred")
    quiet.setLevel(logging.CRITICAL)
    for lr in (0.06, 0.12):
        ex = Experiment("plain", interactive=True, save_git_info=False)
        ex.logger = quiet
        ex.add_config({"objective": {"name": "simclr", "temperature": 0.2}, "trainer": {"lr": lr, "max_steps": 3}})
        ex.observers += [MongoObserver(url=uri, db_name="sacred"), FileStorageObserver(str(runs))]

        @ex.main
        def main(_run, trainer):
            for step in (1, 2, 3):
                _run.log_scalar("train.loss", 2.0 / step + trainer["lr"], step)
            _run.log_scalar("eval.knn_top1", 0.3 + trainer["lr"], 3)
            return {"eval.knn_top1": 0.3 + trainer["lr"]}

        assert ex.run().status == "COMPLETED"


def test_mongo_source_reads_what_sacreds_mongo_observer_wrote(tmp_path, monkeypatch):
    from secantus import SecantusDBServer

    runs = tmp_path / "runs"
    with SecantusDBServer(storage_path=str(tmp_path / "db")) as server:
        _record_plain_sacred_runs(server.uri, runs)
        from_mongo = as_json("--mongo", server.uri)
        assert ids("--mongo", server.uri, "--mongo-db", "sacred", "2") == ["2"]
        assert ids("--mongo", server.uri, "--filter", "trainer.lr=0.12") == ["2"]
        monkeypatch.setenv("SSLX_MONGO_URL", server.uri)
        assert ids("--mongo") == ["1", "2"]  # --mongo alone reads the URL from the environment
        code, out = invoke("--mongo", server.uri, "7")
        assert code == 2 and "RUN 7" in out
        plot = tmp_path / "mongo.png"
        assert invoke("--mongo", server.uri, "--plot", str(plot))[0] == 0
        assert plot.read_bytes()[:8] == PNG_MAGIC
    from_files = as_json("--source", str(runs))
    assert [r["id"] for r in from_mongo] == ["1", "2"]
    assert from_mongo[1]["trainer.lr"] == 0.12 and from_mongo[1]["eval.knn_top1"] == pytest.approx(0.42)
    assert "objective.name" not in from_mongo[0]
    for m, f in zip(from_mongo, from_files):  # the same table, whichever store it came from
        assert m.pop("duration_s") == pytest.approx(f.pop("duration_s"), abs=0.11)
        assert m == f


def test_unreachable_mongo_is_a_user_error_without_the_password(tmp_path):
    from secantus import SecantusDBServer

    with SecantusDBServer(storage_path=str(tmp_path / "db")) as server:
        port = server.uri.rsplit(":", 1)[1].strip("/")
    url = f"mongodb://ana:s3cret-pw@127.0.0.1:{port}/sacred"  # the server is stopped now
    code, out = invoke("--mongo", url)
    assert code == 2 and "cannot read the database sacred (unreachable" in out and "Traceback" not in out
    assert "s3cret-pw" not in out and "ana:***@127.0.0.1" in out
