"""The database killed (SIGKILL, a real SecantusDB process on a fixed port)
at several points of a live run and started again on the same URL and storage:
after the run, and after `sslx sync` where the run said it is incomplete, the
database holds every metric point, the final status and every artifact of the
file store, and a second sync changes no count (no duplicates).

The run trains in this process with Sacred's heartbeat every 0.2 s (instead of
10 s) so that a few tiny steps span several heartbeats; a small plugin kills
and restarts the server from the training hooks."""

from __future__ import annotations

import time

import pymongo
import pytest
from click.testing import CliRunner

import sslx
from sslx.cli import cli
from sslx.records import record_run

BEAT_S = 0.2


@pytest.fixture(autouse=True)
def fast_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    from sslx.records import sacred_module

    monkeypatch.setitem(sacred_module().SETTINGS, "DEFAULT_BEAT_INTERVAL", BEAT_S)


def flushed(uri: str, name: str, step: int) -> bool:
    """Whether the database holds ``name`` at ``step`` (a heartbeat wrote it)."""
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=1000)
    try:
        return client["sacred"].metrics.count_documents({"name": name, "steps": step}) > 0
    finally:
        client.close()


class Faults:
    """Kills the server at one point of the run and starts it again later."""

    def __init__(self, server, when: str):
        self.server = server
        self.when = when
        self.acknowledged: list[int] = []  # train.loss steps the database had when it was killed

    def kill_after_heartbeat(self, step: int) -> None:
        """SIGKILL the server just after the heartbeat that wrote train.loss at ``step``, acknowledged."""
        deadline = time.monotonic() + 10
        while not flushed(self.server.uri, "train.loss", step):
            assert time.monotonic() < deadline, f"no heartbeat wrote train.loss at step {step}"
            time.sleep(0.02)
        self.acknowledged = list(range(2, step + 1, 2))
        self.server.kill()

    @sslx.hookimpl
    def sslx_step_finished(self, step: int) -> None:
        if self.when == "mid-training" and step == 3:
            self.kill_after_heartbeat(2)
            time.sleep(3 * BEAT_S)  # heartbeats fail while it is down
        elif self.when == "mid-training" and step == 5:
            self.server.start()
        elif self.when == "after-heartbeat" and step == 5:
            self.kill_after_heartbeat(4)
            self.server.start()  # at once: the client may never notice
        elif self.when == "final-evaluation" and step == 6:
            self.server.kill()  # the evaluators run next, with the server down

    @sslx.hookimpl
    def sslx_run_finished(self) -> None:
        if self.when == "final-evaluation":
            self.server.start()  # back for the run's final writes


@pytest.mark.parametrize("when", ["mid-training", "after-heartbeat", "final-evaluation"])
def test_a_killed_database_loses_nothing_once_synced(
    when, server_process, host, tiny, tmp_path, assert_complete, counts
):
    faults = Faults(server_process, when)
    host.add_plugin(faults, "faults")
    record = record_run(tiny("simclr"), host, runs_dir=tmp_path / "runs", options={"mongo_url": server_process.uri})
    assert record.status == "COMPLETED"
    [report] = record.reports
    db = pymongo.MongoClient(server_process.uri)["sacred"]
    loss = db.metrics.find_one({"name": "train.loss"})
    assert set(faults.acknowledged) <= set(loss["steps"] if loss else [])  # journaled: they survived SIGKILL
    if report.complete:
        assert report.message == f"Recorded to MongoDB {server_process.uri} (database sacred) as run 1."
    else:
        assert f"sslx sync {record.run_dir} --mongo {server_process.uri}" in report.message
        result = CliRunner().invoke(cli, ["sync", str(record.run_dir), "--mongo", server_process.uri])
        assert result.exit_code == 0 and "run 1 updated: COMPLETED" in result.output, result.output
    assert assert_complete(db, record.run_dir)["_id"] == 1
    before = counts(db)
    again = CliRunner().invoke(cli, ["sync", str(record.run_dir), "--mongo", server_process.uri])
    assert again.exit_code == 0 and "0 metric series and 0 artifacts written" in again.output, again.output
    assert counts(db) == before and before["runs"] == 1
    assert_complete(db, record.run_dir)
