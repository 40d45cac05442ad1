"""MongoDB records against a real MongoDB-wire server (SecantusDB): live runs
with ``--mongo``, a database lost mid-run or never reachable (the run goes
on in the file store), ``sslx sync`` bringing such runs in without duplicates,
and passwords kept out of every record and message."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import gridfs
import pymongo
import pytest
from bson import json_util
from helpers import EXPERIMENTS, SSLX, read_run, tiny_overrides
from secantus import SecantusDBServer

import sslx
from sslx.mongo import MongoTarget, redact_text, redact_url
from sslx.records import record_run

PASSWORD = "Pw-9f3kq!x"
SIMCLR = EXPERIMENTS / "simclr.json"


@pytest.fixture
def server(tmp_path):
    with SecantusDBServer(storage_path=str(tmp_path / "db")) as s:
        yield s


def sslx_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SSLX_MONGO")}
    return subprocess.run([SSLX, *args], capture_output=True, text=True, timeout=300, env={**environ, **(env or {})})


def tiny_run(runs_dir: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    sets = [arg for s in tiny_overrides("simclr") for arg in ("--set", s)]
    return sslx_cli("run", str(SIMCLR), "--runs-dir", str(runs_dir), *sets, *args, env=env)


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"mongodb://127.0.0.1:{port}/"


def database(uri: str, name: str = "sacred"):
    return pymongo.MongoClient(uri)[name]


def counts(db) -> dict[str, int]:
    return {c: db[c].count_documents({}) for c in ("runs", "metrics", "fs.files", "fs.chunks")}


def assert_complete(db, run_dir: Path) -> dict:
    """The database holds ``run_dir`` exactly as the file store does: one
    COMPLETED runs document with its config, result and uid, one metrics
    document per metric with every step, the checkpoint in GridFS."""
    rec = read_run(run_dir)
    docs = list(db.runs.find({"info.sslx_uid": rec["info"]["sslx_uid"]}))
    assert len(docs) == 1
    doc = docs[0]
    assert doc["status"] == "COMPLETED" and doc["format"] == "MongoObserver-0.7.0"
    assert doc["config"] == rec["config"] and doc["result"] == rec["run"]["result"]
    assert doc["experiment"]["name"] == rec["run"]["experiment"]["name"] and doc["host"] == rec["run"]["host"]
    assert doc["start_time"] and doc["stop_time"] > doc["start_time"]
    metrics = {m["name"]: m for m in db.metrics.find({"run_id": doc["_id"]})}
    assert {"train.loss", "eval.knn_top1"} <= set(metrics) and len(metrics) == db.metrics.count_documents({"run_id": doc["_id"]})
    assert set(metrics) == set(rec["metrics"])
    for name, series in rec["metrics"].items():
        assert metrics[name]["steps"] == series["steps"] and metrics[name]["values"] == series["values"]
    assert metrics["train.loss"]["steps"] == [2, 4, 6]
    assert sorted(ref["name"] for ref in doc["info"]["metrics"]) == sorted(metrics)
    assert {ref["id"] for ref in doc["info"]["metrics"]} == {str(m["_id"]) for m in metrics.values()}
    assert [a["name"] for a in doc["artifacts"]] == ["checkpoint.pt"]
    stored = gridfs.GridFS(db).get(doc["artifacts"][0]["file_id"])
    assert stored.filename == f"artifact://runs/{doc['_id']}/checkpoint.pt"
    assert stored.read() == (run_dir / "checkpoint.pt").read_bytes()
    return doc


def test_run_with_mongo_records_it_live_and_keeps_the_password_out(server, tmp_path):
    """`sslx run --mongo URL-with-password --mongo-db omni`: the run is in the
    database as Sacred's MongoObserver writes it, the file store notes where,
    and the password is in no file, no document and no output."""
    pymongo.MongoClient(server.uri).admin.command("createUser", "alice", pwd=PASSWORD, roles=["root"])
    url = server.uri.replace("mongodb://", f"mongodb://alice:{PASSWORD}@")
    proc = tiny_run(tmp_path / "runs", "--mongo", url, "--mongo-db", "omni")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "unreachable" not in proc.stderr
    db = database(server.uri, "omni")
    doc = assert_complete(db, tmp_path / "runs" / "1")
    assert counts(db)["runs"] == 1 and database(server.uri).runs.count_documents({}) == 0
    shown = server.uri.replace("mongodb://", "mongodb://alice:***@")
    assert f"Recorded to MongoDB {shown} (database omni) as run {doc['_id']}." in proc.stdout
    note = read_run(tmp_path / "runs" / "1")["info"]["mongo"]
    assert note == {"url": shown, "db": "omni", "status": "ok", "run_id": doc["_id"]}
    assert "mongo" not in doc["info"]
    # the password: not in the output, the run folder, or any collection
    assert PASSWORD not in proc.stdout + proc.stderr
    for path in (tmp_path / "runs").rglob("*"):
        assert not path.is_file() or PASSWORD.encode() not in path.read_bytes(), path
    for name in db.list_collection_names():
        assert PASSWORD not in json_util.dumps(list(db[name].find())), name


def test_server_stopped_mid_run_the_run_completes_and_sync_brings_it_in_once(tiny, host, tmp_path, capsys):
    """The server stops after step 3 of 6: the run completes in the file store
    with one warning and ``info.mongo`` saying the database was lost; after a
    restart `sslx sync RUN_DIR` completes the live run's document (same _id),
    and a second sync changes no count."""
    storage = str(tmp_path / "db")
    first = SecantusDBServer(storage_path=storage)
    first.start()

    class StopServer:
        @sslx.hookimpl
        def sslx_step_finished(self, step):
            if step == 3:
                first.stop()

    host.add_plugin(StopServer(), "stop-server")
    try:
        record = record_run(tiny("simclr"), host, runs_dir=tmp_path / "runs", mongo=MongoTarget(first.uri))
    finally:
        first.stop()
    assert record.status == "COMPLETED"
    err = capsys.readouterr().err
    assert err.count("is unreachable") == 1 and "sslx sync RUN_DIR" in err
    rec = read_run(record.run_dir)
    assert rec["run"]["status"] == "COMPLETED" and rec["metrics"]["train.loss"]["steps"] == [2, 4, 6]
    assert "eval.knn_top1" in rec["metrics"] and (record.run_dir / "checkpoint.pt").is_file()
    note = rec["info"]["mongo"]
    assert note["status"].startswith("lost at ") and note == record.mongo
    live_id = note["run_id"]
    assert isinstance(live_id, int)

    with SecantusDBServer(storage_path=storage) as second:
        db = database(second.uri)
        live = db.runs.find_one({"_id": live_id})
        assert live["status"] == "RUNNING" and live["info"]["sslx_uid"] == rec["info"]["sslx_uid"]
        proc = sslx_cli("sync", str(record.run_dir), "--mongo", second.uri)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"run {live_id} updated: COMPLETED" in proc.stdout
        assert assert_complete(db, record.run_dir)["_id"] == live_id
        before = counts(db)
        assert before["runs"] == 1 and before["metrics"] == len(rec["metrics"])
        assert [f["filename"] for f in db["fs.files"].find() if f["filename"].startswith("artifact://")] == [
            f"artifact://runs/{live_id}/checkpoint.pt"]
        filenames = [f["filename"] for f in db["fs.files"].find()]
        assert len(filenames) == len(set(filenames)), filenames  # the live run's source file was reused
        again = sslx_cli("sync", str(record.run_dir), "--mongo", second.uri)
        assert again.returncode == 0 and f"run {live_id} updated" in again.stdout
        assert counts(db) == before
        assert_complete(db, record.run_dir)
    synced = read_run(record.run_dir)["info"]["mongo"]
    assert synced["status"].startswith("synced at ") and synced["run_id"] == live_id


def test_unreachable_server_from_the_environment_then_sync(tmp_path):
    """SSLX_MONGO_URL names a closed port: the run completes in the file
    store with a warning; syncing to the closed port is a clear error; syncing
    the runs/ folder to a live server (from the environment) creates it."""
    dead = closed_port_url()
    proc = tiny_run(tmp_path / "runs", env={"SSLX_MONGO_URL": dead})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is unreachable" in proc.stderr and "NOT fully recorded to MongoDB" in proc.stderr
    run_dir = tmp_path / "runs" / "1"
    rec = read_run(run_dir)
    assert rec["run"]["status"] == "COMPLETED" and "eval.knn_top1" in rec["metrics"]
    assert rec["info"]["mongo"]["run_id"] is None and "before any metric" in rec["info"]["mongo"]["status"]

    failed = sslx_cli("sync", str(run_dir), env={"SSLX_MONGO_URL": dead})
    assert failed.returncode == 2 and f"cannot sync {run_dir} to MongoDB at {dead}" in failed.stderr
    assert "Traceback" not in failed.stderr

    with SecantusDBServer(storage_path=str(tmp_path / "db")) as server:
        proc = sslx_cli("sync", str(tmp_path / "runs"), env={"SSLX_MONGO_URL": server.uri})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "run 1 created: COMPLETED" in proc.stdout
        db = database(server.uri)
        assert_complete(db, run_dir)
        assert counts(db)["runs"] == 1


def test_bad_urls_and_folders_are_clear_errors_without_the_password(tmp_path):
    """A URL that is not mongodb://, sync without a URL, and sync of a folder
    that holds no run: one paragraph each, naming the option or folder."""
    proc = tiny_run(tmp_path / "runs", "--mongo", f"http://bob:{PASSWORD}@db.example:27017")
    assert proc.returncode == 2 and "--mongo / SSLX_MONGO_URL" in proc.stderr and "http://bob:***@" in proc.stderr
    assert PASSWORD not in proc.stdout + proc.stderr and not (tmp_path / "runs").exists()
    proc = sslx_cli("sync", str(tmp_path))
    assert proc.returncode == 2 and "give --mongo" in proc.stderr
    proc = sslx_cli("sync", str(tmp_path), "--mongo", closed_port_url())
    assert proc.returncode == 2 and f"{tmp_path}: not a run folder" in proc.stderr


def test_redaction_covers_every_spelling_of_the_password():
    url = "mongodb://bob:p%40ss%2Fw0rd@h1:27017,h2:27018/omni?authSource=admin"
    assert redact_url(url) == "mongodb://bob:***@h1:27017,h2:27018/omni?authSource=admin"
    assert redact_url("mongodb://h1:27017/") == "mongodb://h1:27017/"
    text = "auth p@ss/w0rd failed for p%40ss%2Fw0rd"
    assert redact_text(text, url) == "auth *** failed for ***"
    target = MongoTarget.from_options(url, None)
    assert target.db == "omni" and "p@ss" not in repr(target)
    assert MongoTarget.from_options(url, "other").db == "other" and MongoTarget.from_options(None, "x") is None
    assert MongoTarget.from_options("mongodb://h:1", None).db == "sacred"
