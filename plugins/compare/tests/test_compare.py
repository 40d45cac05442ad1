"""`sslx compare` on real recorded runs: three tiny sslx runs in a file store
(table, JSON, CSV, --last, --filter, explicit runs, --plot, errors), and the
same comparison read from a real MongoDB-wire server (SecantusDB) that
Sacred's own MongoObserver wrote."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import struct
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import NamedTuple

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


# ------------------------------------------------------- groups over seeds


class Rec(NamedTuple):
    """One hand-written run: its setting, seed, tags and known values."""

    id: int
    method: str
    lr: float
    seed: int
    tags: dict[str, str]
    knn: float  # eval.knn_top1: logged at the last step and in the result
    linear: float | None  # eval.linear_top1, in the result only; None: not evaluated
    loss: dict[int, float]  # train.loss by step
    train_size: int = 256


RECORDS = [
    Rec(1, "simclr", 0.06, 1, {"sweep": "1e5", "point": "a"}, 0.71, 0.75, {0: 5.0, 2: 4.0, 4: 3.5}),
    Rec(2, "simclr", 0.06, 2, {"sweep": "1e5", "point": "a"}, 0.74, 0.77, {0: 5.2, 2: 4.1, 4: 3.3}),
    Rec(3, "simclr", 0.06, 3, {"sweep": "1e5", "point": "a"}, 0.78, 0.80, {0: 4.9, 2: 3.8, 4: 3.4, 6: 3.0}),
    Rec(4, "simclr", 0.12, 1, {"sweep": "1e5", "point": "b"}, 0.80, 0.83, {0: 5.1, 2: 3.6, 4: 3.1}),
    Rec(5, "simclr", 0.12, 2, {"sweep": "1e5", "point": "b"}, 0.815, None, {0: 5.0, 2: 3.7, 4: 3.0}),
    Rec(6, "simclr", 0.12, 3, {"sweep": "1e5", "point": "b"}, 0.79, 0.82, {0: 5.3, 2: 3.9, 4: 3.2}, 512),
    Rec(7, "moco", 0.06, 1, {}, 0.5, 0.6, {0: 6.0, 2: 5.0, 4: 4.5}),
]
BY_ID = {r.id: r for r in RECORDS}


def _sacred_records(rec: Rec) -> dict[str, dict]:
    """run.json, config.json, info.json and metrics.json of ``rec``, as Sacred's file store holds them."""
    start = datetime(2024, 5, 1, 12, rec.id)
    objective = {"name": rec.method} | ({"queue_size": 64} if rec.method == "moco" else {})
    result = {"eval.knn_top1": rec.knn} | ({} if rec.linear is None else {"eval.linear_top1": rec.linear})
    last = max(rec.loss)
    return {
        "run": {
            "experiment": {"name": rec.method},
            "status": "COMPLETED",
            "start_time": start.isoformat(),
            "stop_time": (start + timedelta(seconds=30)).isoformat(),
            "result": result,
        },
        "config": {
            "seed": rec.seed,
            "dataset": {"name": "fashion_mnist", "train_size": rec.train_size},
            "objective": objective,
            "trainer": {"lr": rec.lr},
        },
        "info": {"tags": rec.tags} if rec.tags else {},
        "metrics": {
            "train.loss": {"steps": list(rec.loss), "values": list(rec.loss.values()), "timestamps": []},
            "eval.knn_top1": {"steps": [last], "values": [rec.knn], "timestamps": []},
        },
    }


@pytest.fixture(scope="module")
def seeds_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven runs written by hand: simclr at two learning rates x three seeds
    (run 6 also on more data, run 5 without a linear probe), one moco run."""
    root = tmp_path_factory.mktemp("seeds")
    for rec in RECORDS:
        (root / str(rec.id)).mkdir()
        for name, obj in _sacred_records(rec).items():
            (root / str(rec.id) / f"{name}.json").write_text(json.dumps(obj))
    return root


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """The explicit formulas: mean = sum/n, sample std = sqrt(sum((x - mean)^2) / (n - 1))."""
    n = len(values)
    mean = sum(values) / n
    return mean, (math.sqrt(sum((x - mean) ** 2 for x in values) / (n - 1)) if n > 1 else None)


def assert_stat(stat: dict, values: list[float]) -> None:
    mean, std = mean_std(values)
    assert stat["n"] == len(values)
    assert abs(stat["mean"] - mean) < 1e-12
    assert stat["std"] is None if std is None else abs(stat["std"] - std) < 1e-12


def test_group_by_gives_mean_std_and_count_per_setting(seeds_dir):
    rows = as_json("--source", str(seeds_dir), "--group-by", "objective.name", "--group-by", "trainer.lr")
    assert [(r["objective.name"], r["trainer.lr"], r["runs"], r["ids"]) for r in rows] == [
        ("simclr", 0.06, 3, ["1", "2", "3"]),
        ("simclr", 0.12, 3, ["4", "5", "6"]),
        ("moco", 0.06, 1, ["7"]),
    ]
    for row in rows:
        recs = [BY_ID[int(i)] for i in row["ids"]]
        assert_stat(row["eval.knn_top1"], [r.knn for r in recs])
        assert_stat(row["eval.linear_top1"], [r.linear for r in recs if r.linear is not None])
    assert rows[1]["eval.linear_top1"]["n"] == 2  # run 5 has no linear probe
    assert rows[2]["eval.knn_top1"] == {"mean": 0.5, "std": None, "n": 1}  # one run: no std
    assert "train.loss" not in rows[0]  # a curve, not a final metric
    # seeds differ in every group and are not reported; run 6's dataset is
    assert [r["differs"] for r in rows] == [[], ["dataset.train_size"], []]
    assert list(rows[0]) == ["objective.name", "trainer.lr", "runs", "ids", "eval.knn_top1", "eval.linear_top1"] + [
        "differs"
    ]


def test_group_by_text_shows_cells_and_warns_when_a_group_mixes_more_than_seeds(seeds_dir):
    code, out = invoke("--source", str(seeds_dir), "--group-by", "trainer.lr", "--filter", "objective.name=simclr")
    assert code == 0, out
    table, warnings = out.rstrip("\n").split("\nwarning: ")
    rows = parse_table(table)
    assert list(rows[0]) == ["trainer.lr", "runs", "eval.knn_top1", "eval.linear_top1"]
    mean, std = mean_std([0.71, 0.74, 0.78])
    assert rows[0] == {
        "trainer.lr": "0.06",
        "runs": "3",
        "eval.knn_top1": f"{mean:.4g} ± {std:.4g} (3)",
        "eval.linear_top1": "{:.4g} ± {:.4g} (3)".format(*mean_std([0.75, 0.77, 0.80])),
    }
    assert rows[1]["eval.linear_top1"] == "{:.4g} ± {:.4g} (2)".format(*mean_std([0.83, 0.82]))
    assert warnings == "trainer.lr=0.12 (runs 4, 5, 6) differs in more than the seed: dataset.train_size"
    code, out = invoke("--source", str(seeds_dir), "--group-by", "method", "--filter", "objective.name=moco")
    assert code == 0 and parse_table(out) == [
        {"method": "moco", "runs": "1", "eval.knn_top1": "0.5 (1)"} | {"eval.linear_top1": "0.6 (1)"}
    ]


def test_group_by_csv_flattens_the_json(seeds_dir):
    args = ["--source", str(seeds_dir), "--group-by", "trainer.lr"]
    code, out = invoke(*args, "--csv")
    assert code == 0, out
    rows = list(csv.DictReader(io.StringIO(out)))
    metrics = [f"eval.{m}_top1.{s}" for m in ("knn", "linear") for s in ("mean", "std", "n")]
    assert list(rows[0]) == ["trainer.lr", "runs", "ids", *metrics, "differs"]
    expected = as_json(*args)
    assert len(rows) == len(expected) == 2  # moco's lr is 0.06 too: runs 1, 2, 3 and 7
    for got, want in zip(rows, expected):
        assert float(got["trainer.lr"]) == want["trainer.lr"] and int(got["runs"]) == want["runs"]
        assert json.loads(got["ids"]) == want["ids"] and json.loads(got["differs"]) == want["differs"]
        for m in ("eval.knn_top1", "eval.linear_top1"):
            assert float(got[f"{m}.mean"]) == want[m]["mean"] and float(got[f"{m}.std"]) == want[m]["std"]
            assert int(got[f"{m}.n"]) == want[m]["n"]
    assert expected[0]["ids"] == ["1", "2", "3", "7"]
    assert_stat(expected[0]["eval.knn_top1"], [0.71, 0.74, 0.78, 0.5])
    assert expected[0]["differs"] == ["objective.name", "objective.queue_size"]


def test_group_by_tags_and_keys_some_runs_lack(seeds_dir):
    rows = as_json("--source", str(seeds_dir), "--group-by", "tags.point")
    assert [(r["tags.point"], r["ids"]) for r in rows] == [
        ("a", ["1", "2", "3"]),
        ("b", ["4", "5", "6"]),
        (None, ["7"]),
    ]
    assert_stat(rows[1]["eval.knn_top1"], [0.80, 0.815, 0.79])
    assert ids("--source", str(seeds_dir), "--filter", "tags.point=b") == ["4", "5", "6"]
    assert ids("--source", str(seeds_dir), "--filter", "tags.sweep=1e5") == [
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
    ]  # not 100000.0
    rows = as_json("--source", str(seeds_dir), "--group-by", "objective.queue_size", "--group-by", "tags.sweep")
    assert [(r["objective.queue_size"], r["tags.sweep"], r["runs"]) for r in rows] == [(None, "1e5", 6), (64, None, 1)]
    assert rows[0]["differs"] == ["dataset.train_size", "trainer.lr"]


def test_mean_curve_is_the_mean_and_std_at_the_steps_all_runs_logged(seeds_dir):
    groups = compare.group_runs(compare.load_file_runs(seeds_dir, []), ["tags.point"])
    curve = compare.mean_curve(groups[0].runs, "train.loss")
    assert curve.steps == [0, 2, 4] and curve.n == 3  # run 3's step 6 is not in the others
    for step, mean, std in zip(curve.steps, curve.mean, curve.std):
        want_mean, want_std = mean_std([BY_ID[i].loss[step] for i in (1, 2, 3)])
        assert abs(mean - want_mean) < 1e-12 and abs(std - want_std) < 1e-12
    single = compare.mean_curve(groups[2].runs, "train.loss")
    assert single.std is None and single.mean == [6.0, 5.0, 4.5] and single.n == 1
    knn = compare.mean_curve(groups[0].runs, "eval.knn_top1")
    assert knn.steps == [] and knn.n == 3  # logged at steps 4, 4 and 6: no step in common


def test_describe_keeps_a_diverged_run_visible():
    assert compare.describe([]) == {"mean": None, "std": None, "n": 0}
    nan = compare.describe([0.5, math.nan])
    assert math.isnan(nan["mean"]) and math.isnan(nan["std"]) and nan["n"] == 2
    assert compare.describe([2, 4]) == {"mean": 3.0, "std": math.sqrt(2), "n": 2}


def test_group_by_plot_writes_curves_and_a_row_of_bars(seeds_dir, tmp_path):
    out = tmp_path / "groups.png"
    code, output = invoke("--source", str(seeds_dir), "--group-by", "trainer.lr", "--plot", str(out))
    assert code == 0, output
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    assert struct.unpack(">II", data[16:24]) == (800, 600)  # train.loss, then bars of the two final metrics


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--group-by", "trainer.lrr"], ["--group-by trainer.lrr: none of the 7 selected runs", "trainer.lr?"]),
        (["--group-by", "tags.nope"], ["--group-by tags.nope", "tags.point, tags.sweep"]),
        (["--group-by", "tags."], ["--group-by 'tags.'"]),
        (["--group-by", "trainer.lr", "--plot", "x.png", "--metric", "nope"], ["--metric nope"]),
    ],
)
def test_group_by_mistakes_name_the_option(seeds_dir, args, needles):
    code, out = invoke("--source", str(seeds_dir), *args)
    assert code == 2 and all(n in out for n in needles) and "Traceback" not in out, out


def test_group_by_reads_tags_from_mongodb_as_from_the_file_store(tmp_path):
    """Four plain Sacred runs (two learning rates x two seeds, tagged by the
    run itself), written by Sacred's MongoObserver and FileStorageObserver at
    once: both stores give the same groups."""
    import logging

    from sacred import Experiment
    from sacred.observers import FileStorageObserver, MongoObserver
    from secantus import SecantusDBServer

    knn = {(0.06, 1): 0.61, (0.06, 2): 0.64, (0.12, 1): 0.70, (0.12, 2): 0.75}
    runs = tmp_path / "runs"
    quiet = logging.getLogger("test_compare.sacred")
    quiet.setLevel(logging.CRITICAL)
    with SecantusDBServer(storage_path=str(tmp_path / "db")) as server:
        for lr, seed in knn:
            ex = Experiment("sweep", interactive=True, save_git_info=False)
            ex.logger = quiet
            ex.add_config({"objective": {"name": "simclr"}, "trainer": {"lr": lr}, "seed": seed})
            ex.observers += [MongoObserver(url=server.uri, db_name="sacred"), FileStorageObserver(str(runs))]

            @ex.main
            def main(_run, trainer, seed):
                _run.info["tags"] = {"point": "low" if trainer["lr"] < 0.1 else "high"}
                for step in (1, 2):
                    _run.log_scalar("train.loss", 2.0 / step + trainer["lr"] + seed / 100, step)
                return {"eval.knn_top1": knn[trainer["lr"], seed]}

            assert ex.run().status == "COMPLETED"
        from_mongo = as_json("--mongo", server.uri, "--group-by", "tags.point")
        plot = tmp_path / "mongo-groups.png"
        assert invoke("--mongo", server.uri, "--group-by", "tags.point", "--plot", str(plot))[0] == 0
        assert plot.read_bytes()[:8] == PNG_MAGIC
    assert from_mongo == as_json("--source", str(runs), "--group-by", "tags.point")
    assert [(r["tags.point"], r["ids"], r["differs"]) for r in from_mongo] == [
        ("low", ["1", "2"], []),
        ("high", ["3", "4"], []),
    ]
    assert_stat(from_mongo[0]["eval.knn_top1"], [0.61, 0.64])
    assert_stat(from_mongo[1]["eval.knn_top1"], [0.70, 0.75])
