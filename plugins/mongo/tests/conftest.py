"""Fixtures of sslx-mongo's tests: real SecantusDB servers (MongoDB's wire
protocol), one in this process, or one in its own process on a fixed port
that a test can kill with SIGKILL and start again on the same URL and
storage; and checks of what the database holds. (The installed plugins,
``host``, and tiny experiments, ``tiny``, come from the repository's
conftest.py.)"""

from __future__ import annotations

import socket
from pathlib import Path

import gridfs
import pytest
from helpers import read_run
from secantus import SecantusDBServer
from sslx_mongo.server import ServerProcess


@pytest.fixture
def server(tmp_path: Path):
    """A SecantusDB server in this process."""
    with SecantusDBServer(storage_path=str(tmp_path / "db")) as s:
        yield s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server_process(tmp_path: Path):
    """A started :class:`ServerProcess`; killed at the end of the test."""
    proc = ServerProcess(tmp_path / "db")
    proc.start()
    yield proc
    proc.kill()


@pytest.fixture
def closed_url() -> str:
    """The URL of a port nothing listens on."""
    return f"mongodb://127.0.0.1:{free_port()}/"


def count_documents(db) -> dict[str, int]:
    return {c: db[c].count_documents({}) for c in ("runs", "metrics", "fs.files", "fs.chunks")}


@pytest.fixture
def counts():
    """``counts(db)``: the number of documents of each collection sslx writes."""
    return count_documents


def check_complete(db, run_dir: Path) -> dict:
    """The database holds ``run_dir`` exactly as the file store does: one
    runs document with its status, config, result and uid, one metrics
    document per metric with every step and value (no duplicate, no stray),
    every artifact in GridFS byte for byte. Returns the runs document."""
    rec = read_run(run_dir)
    docs = list(db.runs.find({"info.sslx_uid": rec["info"]["sslx_uid"]}))
    assert len(docs) == 1
    doc = docs[0]
    assert doc["status"] == rec["run"]["status"] and doc["format"] == "MongoObserver-0.7.0"
    assert doc["config"] == rec["config"] and doc["result"] == rec["run"]["result"]
    assert doc["experiment"]["name"] == rec["run"]["experiment"]["name"] and doc["host"] == rec["run"]["host"]
    metrics = list(db.metrics.find({"run_id": doc["_id"]}))
    assert sorted(m["name"] for m in metrics) == sorted(rec["metrics"])  # one document per name, no strays
    for m in metrics:
        assert m["steps"] == rec["metrics"][m["name"]]["steps"] and m["values"] == rec["metrics"][m["name"]]["values"]
    assert sorted(ref["name"] for ref in doc["info"]["metrics"]) == sorted(rec["metrics"])
    assert {ref["id"] for ref in doc["info"]["metrics"]} == {str(m["_id"]) for m in metrics}
    assert [a["name"] for a in doc["artifacts"]] == rec["run"]["artifacts"]
    for a in doc["artifacts"]:
        stored = gridfs.GridFS(db).get(a["file_id"])
        assert stored.filename == f"artifact://runs/{doc['_id']}/{a['name']}"
        assert stored.read() == (run_dir / a["name"]).read_bytes()
    return doc


@pytest.fixture
def assert_complete():
    """``assert_complete(db, run_dir)``: see :func:`check_complete`."""
    return check_complete
