"""``sslx sync``: bring file-store runs into a Sacred MongoDB database.

A run is uploaded in the layout Sacred's ``MongoObserver`` writes (runs
document, one ``metrics`` document per name, artifacts in GridFS as
``artifact://runs/<id>/<name>``), so Omniboard shows synced runs like live ones.
Runs are matched by the ``sslx_uid`` every run carries, so a run recorded live
(whole or in part) or synced before is completed in place, never duplicated.
Only what differs from the file store is written (a metric series that is
already whole, an artifact already whole in GridFS are left alone), so a second
sync changes nothing; every write is journaled (see :mod:`sslx_mongo.target`).
After writing, the run is read back (:func:`sslx_mongo.database.missing_parts`).
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bson.errors import BSONError

from sslx.errors import UserError
from sslx.records import RunFolder, find_runs
from sslx_mongo.database import DB_ERRORS, SacredDatabase, missing_parts, missing_points, now, omniboard_tags
from sslx_mongo.target import INFO_KEY, MongoTarget, redact_text

with warnings.catch_warnings():  # sacred 0.8.7 imports pkg_resources, deprecated by setuptools
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    from sacred.dependencies import get_digest
    from sacred.observers.mongo import MongoObserver, force_bson_encodeable, mimetype_detector


@dataclass
class SyncResult:
    """What ``sslx sync`` did to one run."""

    run_dir: Path
    run_id: int
    created: bool
    status: str
    metrics: int  # metric series written (the others were already whole)
    artifacts: int  # artifact files uploaded (the others were already whole)
    gone: list[str]  # artifacts listed in run.json whose file is no longer in the folder
    missing: list[str]  # what the database still lacks after the sync (normally nothing)


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _resources(store: Path, resources: list[list[str]]) -> list[list[Any]]:
    """``[filename, md5]`` pairs as Sacred's MongoObserver records resources."""
    out = []
    for filename, stored in resources:
        path = Path(stored) if Path(stored).is_absolute() else store / stored
        md5 = get_digest(str(path)) if path.is_file() else (get_digest(filename) if Path(filename).is_file() else None)
        out.append([filename, md5])
    return out


def _entry(folder: RunFolder, target: MongoTarget) -> dict[str, Any]:
    """The runs document of ``folder``, as MongoObserver would have left it
    (artifacts and metric refs are added once the run has an ``_id``)."""
    run = folder.run
    entry = {
        "experiment": {**run["experiment"], "sources": []},  # sslx records plugin versions, not source files
        "format": MongoObserver.VERSION,
        "command": run.get("command"),
        "host": run.get("host", {}),
        "start_time": _time(run.get("start_time")),
        "config": folder.config,
        "meta": run.get("meta", {}),
        "status": run.get("status"),
        "resources": _resources(folder.path.parent, run.get("resources", [])),
        "artifacts": [],
        "captured_out": redact_text(folder.cout, target.url),
        "info": {k: v for k, v in folder.info.items() if k != INFO_KEY},
        "heartbeat": _time(run.get("heartbeat")),
        "result": run.get("result"),
    }
    if tags := folder.info.get("tags"):
        entry["omniboard"] = {"tags": omniboard_tags(tags)}
    if run.get("stop_time"):
        entry["stop_time"] = _time(run["stop_time"])
    if run.get("fail_trace"):
        entry["fail_trace"] = run["fail_trace"]
    return entry


def _put_metrics(db: SacredDatabase, run_id: int, metrics: dict[str, Any]) -> tuple[list[dict[str, str]], int]:
    """Make each metric one document ``{run_id, name, steps, values,
    timestamps}`` equal to the file store's, rewriting only those that
    differ; returns the ``info.metrics`` refs and how many were written."""
    stored = db.series(run_id)
    refs, written = [], 0
    for name, series in metrics.items():
        docs = stored.get(name, [])
        if len(docs) != 1 or missing_points(name, series, docs):
            doc = {
                "run_id": run_id,
                "name": name,
                "steps": series.get("steps", []),
                "values": series.get("values", []),
                "timestamps": [_time(t) for t in series.get("timestamps", [])],
            }
            if len(docs) > 1:
                db.metrics.delete_many({"_id": {"$in": [d["_id"] for d in docs[1:]]}})
            if docs:
                db.metrics.replace_one({"_id": docs[0]["_id"]}, doc)
                doc["_id"] = docs[0]["_id"]
            else:
                doc["_id"] = db.metrics.insert_one(doc).inserted_id
            docs, written = [doc], written + 1
        refs.append({"name": name, "id": str(docs[0]["_id"])})
    strays = [d["_id"] for name, docs in stored.items() if name not in metrics for d in docs]
    if strays:
        db.metrics.delete_many({"_id": {"$in": strays}})
    return refs, written


def _put_artifacts(
    db: SacredDatabase, run_id: int, folder: RunFolder, current: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], int, list[str]]:
    """Each artifact file whole in GridFS as ``artifact://runs/<id>/<name>``
    (one already whole there is kept, partial or stale copies are removed);
    returns the artifacts list, how many were uploaded, and the names whose
    file is gone from the run folder."""
    known = {a.get("name"): a.get("file_id") for a in current}
    artifacts, uploaded, gone = [], 0, []
    for name in dict.fromkeys(folder.run.get("artifacts") or []):
        path = folder.path / name
        if not path.is_file():
            gone.append(name)
            continue
        db_name = f"artifact://{db.runs.name}/{run_id}/{name}"
        keep = known.get(name)
        if keep is None or not db.artifact_ok(keep, path.stat().st_size):
            keep = None
        for old in db.fs.find({"filename": db_name}):
            if old._id != keep:
                db.fs.delete(old._id)
        if keep is None:
            with path.open("rb") as f:
                keep = db.fs.put(f, filename=db_name, content_type=mimetype_detector.guess_type(str(path))[0])
            uploaded += 1
        artifacts.append({"name": name, "file_id": keep})
    return artifacts, uploaded, gone


def sync_run(folder: RunFolder, target: MongoTarget) -> SyncResult:
    """Upload one file-store run: create its document, or complete the one
    with the same ``sslx_uid`` (a live run's partial record, or an earlier
    sync); read it back; note the result in the run's ``info.mongo``."""
    uid = folder.uid()
    db = SacredDatabase(target)
    try:
        db.ensure_indexes()
        entry = _entry(folder, target)
        existing = db.run_id_for(uid)
        created = existing is None
        run_id = db.reserve(dict(entry)) if existing is None else existing
        current = [] if created else (db.runs.find_one({"_id": run_id}, {"artifacts": 1}) or {}).get("artifacts") or []
        entry["_id"] = run_id
        entry["info"]["metrics"], metrics = _put_metrics(db, run_id, folder.metrics)
        entry["artifacts"], artifacts, gone = _put_artifacts(db, run_id, folder, current)
        try:
            db.runs.replace_one({"_id": run_id}, entry, upsert=True)
        except BSONError:  # as Sacred's final save: store what cannot be encoded as strings
            db.runs.replace_one({"_id": run_id}, force_bson_encodeable(entry), upsert=True)
        missing = missing_parts(db, run_id, folder)
    finally:
        db.close()
    status = f"synced at {now()}" + (f", still missing {'; '.join(missing)}" if missing else "")
    folder.update_info({INFO_KEY: {"url": target.shown, "db": target.db, "status": status, "run_id": run_id}})
    return SyncResult(folder.path, run_id, created, entry["status"], metrics, artifacts, gone, missing)


def sync_runs(paths: list[Path], target: MongoTarget) -> list[SyncResult]:
    """Sync every run folder named by ``paths`` (all are found and read
    before anything is uploaded); database errors become one UserError."""
    folders = find_runs(paths)
    for folder in folders:
        if not folder.run.get("experiment"):
            raise UserError(
                f"{folder.path}: its run.json is not a Sacred run record; this run folder cannot be synced."
            )
    results: list[SyncResult] = []
    for folder in folders:
        try:
            results.append(sync_run(folder, target))
        except DB_ERRORS as exc:
            done = f" ({len(results)} of {len(folders)} runs were synced before it)" if results else ""
            raise UserError(
                f"cannot sync {folder.path} to {target.where}: {target.describe_error(exc)}{done}. Check the URL "
                "given with --mongo or SSLX_MONGO_URL and that the server is running, then run `sslx sync` again: "
                "runs already in the database are completed, never duplicated."
            ) from None
    return results
