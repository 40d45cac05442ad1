"""MongoDB records that never cost a run: a fault-tolerant Sacred observer and
``sslx sync``.

:class:`SafeMongoObserver` is Sacred's ``MongoObserver`` whose every event
catches database errors: the first one prints a single warning (the URL's
password redacted), and the observer stays silent for the rest of the run, so
training goes on and the file store keeps the complete record.
:func:`sync_run` later uploads such a file-store run in the layout Sacred's
``MongoObserver`` writes (runs document, ``metrics`` collection, artifacts in
GridFS), so Omniboard shows synced runs like live ones. Runs are matched by
the ``sslx_uid`` that every run carries in its info, so syncing twice updates
the same document instead of adding one.

Credentials come only from the URL (``--mongo`` or ``SSLX_MONGO_URL``); every
message and record shows the URL through :func:`redact_url`.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import sys
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pymongo
from pymongo import uri_parser
from bson.errors import BSONError
from pymongo.errors import ConfigurationError, DuplicateKeyError, InvalidURI, PyMongoError

with warnings.catch_warnings():  # sacred 0.8.7 imports pkg_resources, deprecated by setuptools
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    from sacred.dependencies import get_digest
    from sacred.observers.file_storage import DEFAULT_FILE_STORAGE_PRIORITY
    from sacred.observers.mongo import MongoObserver, force_bson_encodeable, mimetype_detector
from sacred.utils import ObserverError

from sslx.errors import UserError

DEFAULT_DB = "sacred"  # Sacred's and Omniboard's default database name
# Short timeouts: an unreachable server costs a run at most a few seconds, once.
CLIENT_OPTIONS = {"serverSelectionTimeoutMS": 2000, "connectTimeoutMS": 2000, "socketTimeoutMS": 20000}
UID_KEY = "sslx_uid"  # the run's identity in info, shared by the file store and the database
INFO_KEY = "mongo"  # the file store's note of where the run went in the database
DB_ERRORS = (PyMongoError, BSONError, ObserverError)

_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z0-9+.-]+://)(?P<user>[^:@/]*):(?P<password>[^@/]*)@")


def redact_url(url: str) -> str:
    """``url`` with the password of its user info replaced by ``***``."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)


def redact_text(text: str, url: str) -> str:
    """``text`` with the URL's password removed, in any spelling it may take."""
    m = _USERINFO.match(url)
    if m and m["password"]:
        plain = unquote(m["password"])
        for spelling in sorted({m["password"], plain, quote(plain, safe="")}, key=len, reverse=True):
            text = text.replace(spelling, "***")
    return text


@dataclass(frozen=True)
class MongoTarget:
    """Where runs go: a MongoDB URL (with any credentials) and a database."""

    url: str = field(repr=False)
    db: str = DEFAULT_DB

    @classmethod
    def from_options(cls, url: str | None, db: str | None) -> MongoTarget | None:
        """The target of ``--mongo URL`` / ``--mongo-db NAME`` (or their
        environment variables), checked; None when no URL is given."""
        if not url:
            return None
        try:
            parsed = uri_parser.parse_uri(url, warn=True)
        except (InvalidURI, ConfigurationError, ValueError) as exc:
            raise UserError(
                f"--mongo / SSLX_MONGO_URL: {redact_url(url)!r} is not a MongoDB URL ({redact_text(str(exc), url)}). "
                "Give one like mongodb://HOST:27017 or mongodb://USER:PASSWORD@HOST:27017/?authSource=admin."
            ) from None
        return cls(url, db or parsed.get("database") or DEFAULT_DB)

    @property
    def shown(self) -> str:
        """The URL as every message and record shows it (password redacted)."""
        return redact_url(self.url)

    def client(self) -> pymongo.MongoClient:
        """A client that gives up after ~2 s when the server is unreachable
        (it connects lazily: constructing it never blocks)."""
        return pymongo.MongoClient(self.url, **CLIENT_OPTIONS)

    def describe_error(self, exc: BaseException) -> str:
        """``Type: message`` of a database error, with the password removed."""
        return redact_text(f"{type(exc).__name__}: {exc}", self.url).splitlines()[0][:300]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a database event unless the database is already lost; a database
    error marks it lost (one warning) instead of reaching Sacred or the run."""

    @functools.wraps(method)
    def call(self: SafeMongoObserver, *args: Any, **kwargs: Any) -> Any:
        if self.lost:
            return None
        try:
            return method(self, *args, **kwargs)
        except DB_ERRORS as exc:
            self.lose(exc)
            return None

    return call


class SafeMongoObserver(MongoObserver):
    """Sacred's MongoObserver that can fail without failing the run.

    It runs after the file store (lower priority), so the file store numbers
    the run and the database gets its own auto-incremented ``_id``. The
    document's info carries the run's ``sslx_uid`` from its first write.
    ``record`` is the live note the file store keeps in ``info.mongo``:
    redacted URL, database, ``status`` ("ok" or "lost at ...") and the
    database ``run_id``.
    """

    def __init__(self, target: MongoTarget, uid: str, warn: Callable[[str], None] | None = None):
        self.target = target
        self.uid = uid
        self.lost = False
        self.record: dict[str, Any] = {"url": target.shown, "db": target.db, "status": "ok", "run_id": None}
        self._warn = warn or (lambda text: print(text, file=sys.stderr, flush=True))
        self._metric_info: dict[str, Any] = {}  # info.metrics refs, kept out of the file store's info
        self._last_step: int | None = None
        super().__init__(client=target.client(), db_name=target.db, priority=DEFAULT_FILE_STORAGE_PRIORITY - 10)

    def lose(self, exc: BaseException) -> None:
        """Stop using the database for this run and say so, once."""
        self.lost = True
        after = f" after step {self._last_step}" if self._last_step is not None else " before any metric"
        self.record["status"] = f"lost at {_now()}{after}: {self.target.describe_error(exc)}"
        self._warn(
            f"sslx: warning: MongoDB at {self.target.shown} (database {self.target.db}) is unreachable "
            f"({self.target.describe_error(exc)}); the run continues and is recorded in the file store only. "
            f"Upload it when the server is back with: sslx sync RUN_DIR --mongo URL"
        )

    def close(self) -> None:
        """Close the client (its monitor threads would keep polling a dead server)."""
        self._client.close()

    # -- Sacred events, each guarded -------------------------------------------------------------

    @_guarded
    def started_event(self, ex_info, command, host_info, start_time, config, meta_info, _id):  # type: ignore[override]
        # _id is the file store's folder number: the database numbers its own runs
        run_id = super().started_event(ex_info, command, host_info, start_time, config, meta_info, None)
        self.record["run_id"] = run_id
        return run_id

    @_guarded
    def heartbeat_event(self, info, captured_out, beat_time, result):  # type: ignore[override]
        super().heartbeat_event(self._info(info), redact_text(captured_out, self.target.url), beat_time, result)

    @_guarded
    def completed_event(self, stop_time, result):  # type: ignore[override]
        super().completed_event(stop_time, result)

    @_guarded
    def interrupted_event(self, interrupt_time, status):  # type: ignore[override]
        super().interrupted_event(interrupt_time, status)

    @_guarded
    def failed_event(self, fail_time, fail_trace):  # type: ignore[override]
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


def new_uid() -> str:
    """A run's identity shared by its file-store and database records."""
    return uuid.uuid4().hex


# -- sslx sync ----------------------------------------------------------------------------------


@dataclass
class SyncResult:
    run_dir: Path
    run_id: int
    created: bool
    status: str
    metrics: int
    artifacts: int
    missing: list[str]


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """The run folders named by ``paths``: each a run folder (with run.json),
    or a file store whose numbered run folders are all taken."""
    found: list[Path] = []
    for path in paths:
        if (path / "run.json").is_file():
            found.append(path)
            continue
        runs = sorted((d for d in path.iterdir() if d.name.isdigit() and (d / "run.json").is_file()),
                      key=lambda d: int(d.name)) if path.is_dir() else []
        if not runs:
            raise UserError(
                f"{path}: not a run folder (no run.json) nor a file store holding any. Give run folders "
                "written by `sslx run`, such as runs/3, or the runs/ folder itself."
            )
        found.extend(runs)
    return found


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc}); this run folder cannot be synced.") from None


def write_json(path: Path, obj: Any) -> None:
    """Write a record atomically: a reader sees the old file or the new one, never half of it."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(obj, sort_keys=True, indent=2))
    partial.replace(path)


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


@dataclass
class LocalRun:
    """A file-store run, read for upload."""

    dir: Path
    run: dict[str, Any]
    config: dict[str, Any]
    metrics: dict[str, Any]
    info: dict[str, Any]
    cout: str

    @classmethod
    def read(cls, run_dir: Path) -> LocalRun:
        """Read the run's records, giving it a ``sslx_uid`` (written to its
        info.json) when it was recorded before runs had one."""
        run = _read_json(run_dir / "run.json")
        if not isinstance(run, dict) or "experiment" not in run:
            raise UserError(f"{run_dir / 'run.json'}: not a Sacred run record; this run folder cannot be synced.")
        info = _read_json(run_dir / "info.json") or {}
        if not info.get(UID_KEY):
            info[UID_KEY] = new_uid()
            write_json(run_dir / "info.json", info)
        cout = run_dir / "cout.txt"
        return cls(run_dir, run, _read_json(run_dir / "config.json") or {}, _read_json(run_dir / "metrics.json") or {},
                   info, cout.read_text(errors="replace") if cout.exists() else "")


class _Database:
    """The runs, metrics and GridFS collections Sacred's MongoObserver writes."""

    def __init__(self, target: MongoTarget):
        import gridfs

        self.target = target
        self.client = target.client()
        db = self.client[target.db]
        self.runs, self.metrics, self.fs = db["runs"], db["metrics"], gridfs.GridFS(db)

    def run_id_for(self, uid: str) -> int | None:
        doc = self.runs.find_one({f"info.{UID_KEY}": uid}, {"_id": 1})
        return doc["_id"] if doc else None

    def reserve(self, entry: dict[str, Any]) -> int:
        """Insert ``entry`` under the next free integer ``_id``, as Sacred does."""
        while True:
            last = list(self.runs.find({}, {"_id": 1}).sort("_id", pymongo.DESCENDING).limit(1))
            entry["_id"] = last[0]["_id"] + 1 if last else 1
            try:
                self.runs.insert_one(entry)
                return entry["_id"]
            except DuplicateKeyError:
                continue

    def put_metrics(self, run_id: int, metrics: dict[str, Any]) -> list[dict[str, str]]:
        """One document per metric, ``{run_id, name, steps, values, timestamps}``,
        replaced in place; returns the ``info.metrics`` refs."""
        refs = []
        for name, series in metrics.items():
            doc = {"run_id": run_id, "name": name, "steps": series.get("steps", []),
                   "values": series.get("values", []),
                   "timestamps": [_time(t) for t in series.get("timestamps", [])]}
            self.metrics.replace_one({"run_id": run_id, "name": name}, doc, upsert=True)
            refs.append({"name": name, "id": str(self.metrics.find_one({"run_id": run_id, "name": name}, {"_id": 1})["_id"])})
        self.metrics.delete_many({"run_id": run_id, "name": {"$nin": list(metrics)}})
        return refs

    def put_artifacts(self, run_id: int, run_dir: Path, names: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
        """Each artifact file in GridFS as ``artifact://runs/<id>/<name>``,
        replacing any earlier copy; returns the artifacts list and the names
        whose file is missing from the run folder."""
        artifacts, missing = [], []
        for name in dict.fromkeys(names):
            path = run_dir / name
            if not path.is_file():
                missing.append(name)
                continue
            db_name = f"artifact://{self.runs.name}/{run_id}/{name}"
            for old in self.fs.find({"filename": db_name}):
                self.fs.delete(old._id)
            with path.open("rb") as f:
                file_id = self.fs.put(f, filename=db_name, content_type=mimetype_detector.guess_type(str(path))[0])
            artifacts.append({"name": name, "file_id": file_id})
        return artifacts, missing

    def put_sources(self, store: Path, experiment: dict[str, Any]) -> list[list[Any]]:
        """``[name, file_id]`` of the experiment's source files, in GridFS
        under their absolute path as Sacred stores them; a file already there
        with the same content (from the live run or an earlier sync) is reused."""
        out = []
        for name, stored in experiment.get("sources", []):
            path = store / stored if not Path(stored).is_absolute() else Path(stored)
            if not path.is_file():
                continue
            content = path.read_bytes()
            db_name = str(Path(experiment.get("base_dir", "")) / name)
            same = [f._id for f in self.fs.find({"filename": db_name, "length": len(content)}) if f.read() == content]
            out.append([name, same[0] if same else self.fs.put(content, filename=db_name)])
        return out


def _resources(store: Path, resources: list[list[str]]) -> list[list[str]]:
    """``[filename, md5]`` pairs as Sacred's MongoObserver records resources."""
    out = []
    for filename, stored in resources:
        path = Path(stored) if Path(stored).is_absolute() else store / stored
        md5 = get_digest(str(path)) if path.is_file() else (get_digest(filename) if Path(filename).is_file() else None)
        out.append([filename, md5])
    return out


def _entry(local: LocalRun, db: _Database) -> dict[str, Any]:
    """The runs document of ``local``, as MongoObserver would have left it
    (artifacts and metric refs are added once the run has an ``_id``)."""
    run, store = local.run, local.dir.parent
    experiment = dict(run["experiment"])
    experiment["sources"] = db.put_sources(store, experiment)
    entry = {
        "experiment": experiment, "format": MongoObserver.VERSION, "command": run.get("command"),
        "host": run.get("host", {}), "start_time": _time(run.get("start_time")), "config": local.config,
        "meta": run.get("meta", {}), "status": run.get("status"), "resources": _resources(store, run.get("resources", [])),
        "artifacts": [], "captured_out": redact_text(local.cout, db.target.url),
        "info": {k: v for k, v in local.info.items() if k != INFO_KEY},
        "heartbeat": _time(run.get("heartbeat")), "result": run.get("result"),
    }
    if run.get("stop_time"):
        entry["stop_time"] = _time(run["stop_time"])
    if run.get("fail_trace"):
        entry["fail_trace"] = run["fail_trace"]
    return entry


def sync_run(local: LocalRun, target: MongoTarget) -> SyncResult:
    """Upload one file-store run to the database: create its document, or
    replace the one with the same ``sslx_uid`` (a live run's partial record,
    or an earlier sync). Notes the result in the run's ``info.mongo``."""
    db = _Database(target)
    try:
        entry = _entry(local, db)
        run_id = db.run_id_for(local.info[UID_KEY])
        created = run_id is None
        if created:
            run_id = db.reserve(dict(entry))
        entry["_id"] = run_id
        entry["info"]["metrics"] = db.put_metrics(run_id, local.metrics)
        entry["artifacts"], missing = db.put_artifacts(run_id, local.dir, local.run.get("artifacts", []))
        try:
            db.runs.replace_one({"_id": run_id}, entry, upsert=True)
        except BSONError:  # as Sacred's final save: store what cannot be encoded as strings
            db.runs.replace_one({"_id": run_id}, force_bson_encodeable(entry), upsert=True)
    finally:
        db.client.close()
    local.info[INFO_KEY] = {"url": target.shown, "db": target.db, "status": f"synced at {_now()}", "run_id": run_id}
    write_json(local.dir / "info.json", local.info)
    return SyncResult(local.dir, run_id, created, entry["status"], len(local.metrics), len(entry["artifacts"]), missing)


def sync_runs(paths: list[Path], target: MongoTarget) -> list[SyncResult]:
    """Sync every run folder named by ``paths`` (all are read and checked
    before anything is uploaded); database errors become one UserError."""
    locals_ = [LocalRun.read(d) for d in find_run_dirs(paths)]
    results = []
    for local in locals_:
        try:
            results.append(sync_run(local, target))
        except DB_ERRORS as exc:
            done = f" ({len(results)} of {len(locals_)} runs were synced before it)" if results else ""
            raise UserError(
                f"cannot sync {local.dir} to MongoDB at {target.shown} (database {target.db}): "
                f"{target.describe_error(exc)}{done}. Check the URL given with --mongo or SSLX_MONGO_URL and that "
                "the server is running, then run `sslx sync` again: runs already in the database are updated, never "
                "duplicated."
            ) from None
    return results
