"""Fixtures of sslx-mongo's tests: the real installed plugins, tiny versions of
the shipped experiments, and real SecantusDB servers (MongoDB's wire protocol):
one in this process, or one in its own process on a fixed port that a test can
kill with SIGKILL and start again on the same URL and storage."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import gridfs
import pymongo
import pytest
from helpers import EXPERIMENTS, read_run, tiny_overrides
from secantus import SecantusDBServer

from sslx.config import apply_overrides, read_experiment, resolve
from sslx.plugins import PluginHost, load_plugins


@pytest.fixture
def host() -> PluginHost:
    return load_plugins(strict=True)


@pytest.fixture
def tiny(host: PluginHost):
    """``tiny(name, *sets)``: experiments/<name>.json shrunk, validated."""

    def make(name: str, *sets: str):
        raw = apply_overrides(read_experiment(EXPERIMENTS / f"{name}.json"), tiny_overrides(name) + list(sets))
        return resolve(raw, host, source=name)

    return make


@pytest.fixture
def server(tmp_path: Path):
    """A SecantusDB server in this process."""
    with SecantusDBServer(storage_path=str(tmp_path / "db")) as s:
        yield s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A SecantusDB server in its own process, on a port fixed at creation so
    that a restart keeps its URL, with its storage in ``storage``."""

    def __init__(self, storage: Path):
        self.storage = storage
        self.port = free_port()
        self.uri = f"mongodb://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen | None = None
        self.log = storage.parent / "secantus.log"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and return once it answers a ping."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "secantus",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--storage-path",
                    str(self.storage),
                    "--log-level",
                    "WARNING",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=500)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.admin.command("ping")
                    return
                except pymongo.errors.PyMongoError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"SecantusDB did not start: {self.log.read_text()[-2000:]}") from None
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to flush anything."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


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
