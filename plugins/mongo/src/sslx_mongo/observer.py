"""The live MongoDB recorder: Sacred's ``MongoObserver`` made safe for a run.

:class:`SafeMongoObserver` writes what Sacred's observer writes (so Omniboard
shows the run live), through a journaled client (see :mod:`sslx_mongo.target`),
and never fails the run: its every event catches database errors; the first one
prints a single warning (an authentication failure named as such, the password
removed) and the observer writes nothing more, so training goes on and the
file store keeps the complete record. When the run has ended, :meth:`finish`
reads the run back and reports it recorded only if the database holds all of
it; else it names what is missing and the ``sslx sync`` command that completes it.
"""

from __future__ import annotations

import functools
import sys
import threading
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sslx.hookspecs import RecorderReport
from sslx.records import UID_KEY, RunFolder
from sslx_mongo.database import DB_ERRORS, SacredDatabase, missing_parts, now, omniboard_tags
from sslx_mongo.target import INFO_KEY, MongoTarget, redact_text

with warnings.catch_warnings():  # sacred 0.8.7 imports pkg_resources, deprecated by setuptools
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    from sacred.observers.file_storage import DEFAULT_FILE_STORAGE_PRIORITY
    from sacred.observers.mongo import MongoObserver, force_bson_encodeable, mimetype_detector
    from sacred.utils import IntervalTimer
from bson.errors import BSONError

LAST_HEARTBEAT_WAIT_S = 120.0  # bounded by the client's timeouts; only a stalled file system waits this long


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a database event unless the database is already lost; a database
    error marks it lost (one warning) instead of reaching Sacred or the run.
    Events run one at a time: Sacred's heartbeat thread and the run's thread
    both write the whole run document, and one must not undo the other."""

    @functools.wraps(method)
    def call(self: SafeMongoObserver, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self.lost:
                return None
            try:
                return method(self, *args, **kwargs)
            except DB_ERRORS as exc:
                self.lose(exc)
                return None

    return call


def await_last_heartbeat() -> None:
    """Wait for Sacred's last heartbeat of the run to be written.

    Sacred 0.8.7 stops its heartbeat thread, waits for it at most 2 s, then
    records the run's end while that thread may still be writing the last
    heartbeat (the last metric points, in the file store and here): on a busy
    machine the end was written first and the last points after, or not yet
    when the run was read back. Waiting for the stopped thread puts the end
    last and lets the final check see every point."""
    for thread in threading.enumerate():
        if isinstance(thread, IntervalTimer) and thread.stopped.is_set() and thread is not threading.current_thread():
            thread.join(timeout=LAST_HEARTBEAT_WAIT_S)


class SafeMongoObserver(MongoObserver):
    """Sacred's MongoObserver that can fail without failing the run.

    It runs after the file store (lower priority), so the file store numbers
    the run (its folder, ``runs_dir/<id>``) and the database gets its own
    auto-incremented ``_id``. The document's info carries the run's
    ``sslx_uid`` from its first write, which is how ``sslx sync`` finds it.
    """

    def __init__(self, target: MongoTarget, uid: str, runs_dir: Path, tags: Mapping[str, str] | None = None):
        self.target = target
        self.uid = uid
        self.tags = dict(tags or {})
        self.runs_dir = Path(runs_dir)
        self.run_dir: Path | None = None  # the file store's folder, known once the run has started
        self.run_id: int | None = None  # the database's _id
        self.lost: str | None = None  # when and why the database was lost
        self._lock = threading.RLock()
        self._metric_info: dict[str, Any] = {}  # info.metrics refs, kept out of the file store's info
        self._last_step: int | None = None
        self._db = SacredDatabase(target)
        super().__init__(client=self._db.client, db_name=target.db, priority=DEFAULT_FILE_STORAGE_PRIORITY - 10)

    def lose(self, exc: BaseException) -> None:
        """Stop using the database for this run and say so, once."""
        after = f" after step {self._last_step}" if self._last_step is not None else " before any metric"
        self.lost = f"lost at {now()}{after}: {self.target.describe_error(exc)}"
        print(
            f"sslx: warning: {self.target.where}: {self.target.describe_error(exc)}. The run continues and is "
            f"recorded in the file store only; complete the database afterwards with: "
            f"{self.target.sync_command(self.run_dir or 'RUN_DIR')}",
            file=sys.stderr,
            flush=True,
        )

    def finish(self) -> RecorderReport:
        """Read the run back and report whether the database holds all of it
        (every metric point, the final status, the result, every artifact);
        then close the client (its monitor threads would keep polling)."""
        await_last_heartbeat()
        try:
            if self.run_dir is None:
                missing = ["the whole run (it did not start)"]
            else:
                try:
                    missing = missing_parts(self._db, self.run_id, RunFolder(self.run_dir))
                except DB_ERRORS as exc:
                    missing = [f"unknown: the run could not be read back ({self.target.describe_error(exc)})"]
        finally:
            self._db.close()
        target = self.target
        at = f" as run {self.run_id}" if self.run_id is not None else ""
        if not missing:
            note = {"url": target.shown, "db": target.db, "status": "ok", "run_id": self.run_id}
            return RecorderReport(INFO_KEY, note, f"Recorded to {target.where}{at}.")
        what = f"missing {'; '.join(missing)}"
        status = f"{self.lost}; {what}" if self.lost else f"incomplete: {what}"
        note = {"url": target.shown, "db": target.db, "status": status, "run_id": self.run_id}
        message = (
            f"NOT fully recorded to {target.where}{at}: {status}. The file store has the whole run; "
            f"complete the database with: {target.sync_command(self.run_dir or 'RUN_DIR')}"
        )
        return RecorderReport(INFO_KEY, note, message, complete=False)

    # -- Sacred events, each guarded -------------------------------------------------------------

    @_guarded
    def started_event(self, ex_info, command, host_info, start_time, config, meta_info, _id):  # type: ignore[override]
        self.run_dir = self.runs_dir / str(_id)  # _id is the file store's folder: the database numbers its own runs
        self._db.ensure_indexes()
        self.run_id = super().started_event(ex_info, command, host_info, start_time, config, meta_info, None)
        return self.run_id

    @_guarded
    def heartbeat_event(self, info, captured_out, beat_time, result):  # type: ignore[override]
        super().heartbeat_event(self._info(info), redact_text(captured_out, self.target.url), beat_time, result)

    def completed_event(self, stop_time, result):  # type: ignore[override]
        await_last_heartbeat()
        self._completed(stop_time, result)

    def interrupted_event(self, interrupt_time, status):  # type: ignore[override]
        await_last_heartbeat()
        self._interrupted(interrupt_time, status)

    def failed_event(self, fail_time, fail_trace):  # type: ignore[override]
        await_last_heartbeat()
        self._failed(fail_time, fail_trace)

    @_guarded
    def _completed(self, stop_time, result):  # type: ignore[no-untyped-def]
        super().completed_event(stop_time, result)

    @_guarded
    def _interrupted(self, interrupt_time, status):  # type: ignore[no-untyped-def]
        super().interrupted_event(interrupt_time, status)

    @_guarded
    def _failed(self, fail_time, fail_trace):  # type: ignore[no-untyped-def]
        super().failed_event(fail_time, fail_trace)

    @_guarded
    def resource_event(self, filename):  # type: ignore[override]
        super().resource_event(filename)

    @_guarded
    def artifact_event(self, name, filename, metadata=None, content_type=None):  # type: ignore[override]
        super().artifact_event(name, filename, metadata, content_type)

    @_guarded
    def log_metrics(self, metrics_by_name, info):  # type: ignore[override]
        super().log_metrics(metrics_by_name, self._metric_info)
        steps = [s for m in metrics_by_name.values() for s in m["steps"] if s is not None]
        if steps:
            self._last_step = max(steps + ([self._last_step] if self._last_step is not None else []))

    # -- writes that raise instead of retrying or pickling ---------------------------------------

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        """The document's info: the run's, with the metric refs, without the file store's note."""
        out = {k: v for k, v in info.items() if k != INFO_KEY}
        out[UID_KEY] = self.uid
        out["metrics"] = list(self._metric_info.get("metrics", []))
        return out

    def insert(self) -> None:
        self.run_entry["info"] = {**self.run_entry.get("info", {}), UID_KEY: self.uid}
        if self.tags:  # the run's tags (a sweep's id and point) as Omniboard's tags, to filter by
            self.run_entry["omniboard"] = {"tags": omniboard_tags(self.tags)}
        super().insert()

    def save(self) -> None:
        self.runs.update_one({"_id": self.run_entry["_id"]}, {"$set": self.run_entry})

    def final_save(self, attempts: int) -> None:
        try:
            self.runs.update_one({"_id": self.run_entry["_id"]}, {"$set": self.run_entry}, upsert=True)
        except BSONError:
            self.run_entry = force_bson_encodeable(self.run_entry)
            self.runs.update_one({"_id": self.run_entry["_id"]}, {"$set": self.run_entry}, upsert=True)

    def _try_to_detect_content_type(self, filename: str) -> str | None:  # type: ignore[override]
        return mimetype_detector.guess_type(filename)[0]  # Sacred's prints a line per artifact
