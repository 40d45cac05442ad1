"""MongoDB records against a real MongoDB-wire server (SecantusDB): live runs
with ``--mongo`` checked back before they are reported recorded, a server
never reachable or refusing the password (the run goes on in the file store),
``sslx sync`` completing such runs without duplicates, and passwords kept out
of every record and message."""

from __future__ import annotations

from pathlib import Path

import pymongo
import pytest
from bson import json_util
from click.testing import CliRunner, Result
from helpers import EXPERIMENTS, read_run, tiny_overrides
from sslx_mongo.target import MongoTarget, redact_text, redact_url

import sslx
from sslx.cli import cli
from sslx.records import record_run

SIMCLR = EXPERIMENTS / "simclr.json"
PASSWORD = "Pw-9f3kq!x"
NO_ENV = {"SSLX_MONGO_URL": None, "SSLX_MONGO_DB": None}


def sslx_cli(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """``sslx ARGS`` in this process (the environment's MongoDB settings removed unless given)."""
    return CliRunner().invoke(cli, list(args), env={**NO_ENV, **(env or {})}, catch_exceptions=False)


def tiny_run(runs_dir: Path, *args: str, env: dict[str, str | None] | None = None) -> Result:
    sets = [arg for s in tiny_overrides("simclr") for arg in ("--set", s)]
    return sslx_cli("run", str(SIMCLR), "--runs-dir", str(runs_dir), *sets, *args, env=env)


def test_run_with_mongo_records_it_live_and_keeps_the_password_out(server, tmp_path, assert_complete, counts):
    """`sslx run --mongo URL-with-password --mongo-db omni`, then `sslx eval`
    with the same settings from the environment: each run is in the database
    as Sacred's MongoObserver writes it, read back and reported recorded; the
    file store notes where; the password is in no file, no document and no
    output."""
    pymongo.MongoClient(server.uri).admin.command("createUser", "alice", pwd=PASSWORD, roles=["root"])
    url = server.uri.replace("mongodb://", f"mongodb://alice:{PASSWORD}@")
    result = tiny_run(tmp_path / "runs", "--mongo", url, "--mongo-db", "omni", "--tag", "sweep=s1", "--tag", "point=0")
    assert result.exit_code == 0, result.output
    db = pymongo.MongoClient(server.uri)["omni"]
    doc = assert_complete(db, tmp_path / "runs" / "1")
    assert doc["status"] == "COMPLETED" and doc["artifacts"][0]["name"] == "checkpoint.pt"
    assert doc["info"]["tags"] == {"sweep": "s1", "point": "0"}  # sslx compare reads these ...
    assert doc["omniboard"]["tags"] == ["point:0", "sweep:s1"]  # ... Omniboard shows and filters by these
    assert counts(db)["runs"] == 1 and pymongo.MongoClient(server.uri)["sacred"].runs.count_documents({}) == 0
    shown = server.uri.replace("mongodb://", "mongodb://alice:***@")
    assert f"Recorded to MongoDB {shown} (database omni) as run {doc['_id']}." in result.stdout
    assert result.stderr == ""
    note = read_run(tmp_path / "runs" / "1")["info"]["mongo"]
    assert note == {"url": shown, "db": "omni", "status": "ok", "run_id": doc["_id"]}
    assert "mongo" not in doc["info"]
    evaluated = sslx_cli(
        "eval",
        str(tmp_path / "runs" / "1"),
        "--protocol",
        "knn",
        "--set",
        "k=5",
        env={"SSLX_MONGO_URL": url, "SSLX_MONGO_DB": "omni"},
    )  # sslx eval, from the environment
    assert evaluated.exit_code == 0, evaluated.output
    evaluation = assert_complete(db, tmp_path / "runs" / "2")
    assert evaluation["config"]["evaluates"]["run_id"] == "1" and evaluation["_id"] == doc["_id"] + 1
    assert f"Recorded to MongoDB {shown} (database omni) as run {evaluation['_id']}." in evaluated.stdout
    assert PASSWORD not in result.output + evaluated.output
    for path in (tmp_path / "runs").rglob("*"):
        assert not path.is_file() or PASSWORD.encode() not in path.read_bytes(), path
    for name in db.list_collection_names():
        assert PASSWORD not in json_util.dumps(list(db[name].find())), name


class LoseWrites:
    """A plugin whose observer, run after sslx's MongoDB observer, removes
    from the database what a server that lost acknowledged writes would lack:
    train.loss at step 4, the checkpoint's chunks, the final status."""

    def __init__(self, uri: str):
        self.uri = uri

    @sslx.hookimpl
    def sslx_run_observers(self, run):
        from sacred.observers import RunObserver

        uri = self.uri

        class Loser(RunObserver):
            priority = 0  # after the file store (20) and sslx's MongoDB observer (10)

            def completed_event(self, stop_time, result):
                db = pymongo.MongoClient(uri)["sacred"]
                loss = db.metrics.find_one({"name": "train.loss"})
                at = loss["steps"].index(4)
                db.metrics.update_one(
                    {"_id": loss["_id"]},
                    {"$set": {k: loss[k][:at] + loss[k][at + 1 :] for k in ("steps", "values", "timestamps")}},
                )
                db["fs.chunks"].delete_many({})
                db.runs.update_one({}, {"$set": {"status": "RUNNING"}})

        return [Loser()]


def test_the_final_check_names_what_it_lacks_and_sync_completes_it(
    server, host, tiny, tmp_path, assert_complete, counts
):
    """The database acknowledged but lost part of the run: the report says
    NOT fully recorded, names each lost part and the sync command; `sslx
    sync` completes it in place and a second sync changes nothing."""
    host.add_plugin(LoseWrites(server.uri), "lose-writes")
    record = record_run(tiny("simclr"), host, runs_dir=tmp_path / "runs", options={"mongo_url": server.uri})
    assert record.status == "COMPLETED"
    [report] = record.reports
    assert not report.complete and report.key == "mongo"
    assert "NOT fully recorded to MongoDB" in report.message
    assert "the final status COMPLETED (the database says RUNNING)" in report.message
    assert "train.loss: 1 of 3 points (steps 4);" in report.message
    assert "artifact checkpoint.pt" in report.message
    assert f"sslx sync {record.run_dir} --mongo {server.uri}" in report.message
    assert read_run(record.run_dir)["info"]["mongo"] == report.note and report.note["status"].startswith("incomplete")

    db = pymongo.MongoClient(server.uri)["sacred"]
    first = sslx_cli("sync", str(record.run_dir), "--mongo", server.uri)
    assert first.exit_code == 0, first.output
    assert f"run {report.note['run_id']} updated: COMPLETED, 1 metric series and 1 artifacts written" in first.stdout
    assert assert_complete(db, record.run_dir)["_id"] == report.note["run_id"]
    before = counts(db)
    again = sslx_cli("sync", str(record.run_dir), "--mongo", server.uri)
    assert "0 metric series and 0 artifacts written" in again.stdout
    assert counts(db) == before and before["runs"] == 1
    assert read_run(record.run_dir)["info"]["mongo"]["status"].startswith("synced at ")


def test_unreachable_server_from_the_environment_then_sync(tmp_path, server, closed_url, assert_complete, counts):
    """SSLX_MONGO_URL names a closed port: the run completes in the file
    store with one warning; syncing to the closed port is a clear error;
    syncing the runs/ folder to a live server creates the run once."""
    dead = closed_url
    result = tiny_run(tmp_path / "runs", "--tag", "sweep=s2", env={"SSLX_MONGO_URL": dead})
    assert result.exit_code == 0, result.output
    assert result.stderr.count(f"MongoDB {dead} (database sacred): unreachable") == 1
    assert "NOT fully recorded to MongoDB" in result.stderr and "the whole run (it never reached" in result.stderr
    run_dir = tmp_path / "runs" / "1"
    rec = read_run(run_dir)
    assert rec["run"]["status"] == "COMPLETED" and "eval.knn_top1" in rec["metrics"]
    assert rec["info"]["mongo"]["run_id"] is None and "before any metric" in rec["info"]["mongo"]["status"]

    failed = sslx_cli("sync", str(run_dir), env={"SSLX_MONGO_URL": dead})
    assert failed.exit_code == 2 and f"cannot sync {run_dir} to MongoDB {dead}" in failed.stderr
    assert "unreachable" in failed.stderr

    synced = sslx_cli("sync", str(tmp_path / "runs"), env={"SSLX_MONGO_URL": server.uri})
    assert synced.exit_code == 0, synced.output
    assert "run 1 created: COMPLETED" in synced.stdout
    db = pymongo.MongoClient(server.uri)["sacred"]
    assert assert_complete(db, run_dir)["omniboard"]["tags"] == ["sweep:s2"]  # as the live observer writes them
    before = counts(db)
    assert sslx_cli("sync", str(run_dir), "--mongo", server.uri).exit_code == 0
    assert counts(db) == before and before["runs"] == 1


def test_a_wrong_password_is_an_authentication_failure(server, tmp_path):
    """A wrong password: the run goes on and the warning, the note and
    `sslx sync` say authentication failed (not unreachable), without the
    password."""
    pymongo.MongoClient(server.uri).admin.command("createUser", "bob", pwd="right-pw", roles=["root"])
    url = server.uri.replace("mongodb://", f"mongodb://bob:{PASSWORD}@")
    result = tiny_run(tmp_path / "runs", "--mongo", url)
    assert result.exit_code == 0, result.output
    assert "authentication failed" in result.stderr and "unreachable" not in result.stderr
    assert "check the user name and password" in result.stderr and PASSWORD not in result.output
    assert "authentication failed" in read_run(tmp_path / "runs" / "1")["info"]["mongo"]["status"]
    synced = sslx_cli("sync", str(tmp_path / "runs" / "1"), "--mongo", url)
    assert synced.exit_code == 2 and "authentication failed" in synced.stderr and PASSWORD not in synced.output
    assert pymongo.MongoClient(server.uri)["sacred"].runs.count_documents({}) == 0


def test_bad_urls_and_folders_are_clear_errors_without_the_password(tmp_path, closed_url):
    """A URL that is not mongodb://, sync without a URL, and sync of a folder
    that holds no run: one paragraph each, naming the option or folder."""
    result = tiny_run(tmp_path / "runs", "--mongo", f"http://bob:{PASSWORD}@db.example:27017")
    assert result.exit_code == 2 and "--mongo / SSLX_MONGO_URL" in result.stderr
    assert "http://bob:***@" in result.stderr and PASSWORD not in result.output and not (tmp_path / "runs").exists()
    result = sslx_cli("sync", str(tmp_path))
    assert result.exit_code == 2 and "give --mongo" in result.stderr
    result = sslx_cli("sync", str(tmp_path), "--mongo", closed_url)
    assert result.exit_code == 2 and f"{tmp_path}: not a run folder" in result.stderr


def test_redaction_covers_every_spelling_of_the_password():
    url = "mongodb://bob:p%40ss%2Fw0rd@h1:27017,h2:27018/omni?authSource=admin"
    assert redact_url(url) == "mongodb://bob:***@h1:27017,h2:27018/omni?authSource=admin"
    assert redact_url("mongodb://h1:27017/") == "mongodb://h1:27017/"
    assert redact_text("auth p@ss/w0rd failed for p%40ss%2Fw0rd", url) == "auth *** failed for ***"
    target = MongoTarget.from_options(url, None)
    assert target.db == "omni" and "p@ss" not in repr(target) and target.journal
    assert MongoTarget.from_options(url, "other").db == "other" and MongoTarget.from_options(None, "x") is None
    assert MongoTarget.from_options("mongodb://h:1", None).db == "sacred"
    assert target.sync_command("runs/3") == "sslx sync runs/3 --mongo URL --mongo-db omni"


@pytest.mark.parametrize("url", ["mongodb://h:1/?w=0", "mongodb://h:1/?w=majority"])
def test_every_write_is_journaled(url):
    """The client journals every write; a URL asking for unacknowledged writes
    is refused, one asking for more (majority) keeps it."""
    if "w=0" in url:
        with pytest.raises(sslx.UserError, match="not a MongoDB URL sslx can write to"):
            MongoTarget.from_options(url, None)
        return
    client = MongoTarget.from_options(url, None).client()
    assert client.write_concern.document == {"w": "majority", "j": True}
    client.close()
