"""A Sacred MongoDB database as sslx reads and writes it: the ``runs`` and
``metrics`` collections and the GridFS ``fs`` bucket, in the layout Sacred's
``MongoObserver`` writes (so Omniboard shows sslx's runs like any other), and
the check that the database holds a whole file-store run.

:func:`missing_parts` is that check: it reads the run back and names every
part the database lacks (metric points by name and step, the final status, the
result, each artifact). The live observer runs it before it reports a run
recorded, and ``sslx sync`` after it has written one.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections import Counter
from collections.abc import Mapping
from typing import Any

import gridfs
import pymongo
from bson.errors import BSONError
from pymongo.errors import DuplicateKeyError, PyMongoError

from sslx.records import UID_KEY, RunFolder
from sslx_mongo.target import MongoTarget

with warnings.catch_warnings():  # sacred 0.8.7 imports pkg_resources, deprecated by setuptools
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    from sacred.observers.mongo import force_bson_encodeable
from sacred.utils import ObserverError

DB_ERRORS = (PyMongoError, BSONError, ObserverError, gridfs.errors.GridFSError)
SHOWN_STEPS = 8  # a message lists at most this many missing steps of one metric


def points(n: int) -> str:
    return f"{n} point" if n == 1 else f"{n} points"


def now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def _point(step: Any, value: Any) -> tuple[Any, Any]:
    """A metric point as a comparable key (NaN equals NaN here)."""
    return step, "nan" if isinstance(value, float) and math.isnan(value) else value


def _result(result: Any) -> Any:
    """A run's result as stored, whether or not Sacred had to make it BSON-safe."""
    return force_bson_encodeable(result) if isinstance(result, dict) else result


class SacredDatabase:
    """The collections of one database, through a journaled client (close it)."""

    def __init__(self, target: MongoTarget, client: pymongo.MongoClient | None = None):
        self.target = target
        self.client = client or target.client()
        db = target.database(self.client)
        self.runs, self.metrics, self.fs = db["runs"], db["metrics"], gridfs.GridFS(db)
        self.chunks = db["fs.chunks"]
        self.files = db["fs.files"]

    def close(self) -> None:
        self.client.close()

    def ensure_indexes(self) -> None:
        """Index what sslx looks runs and metric series up by (the observer
        updates a series per heartbeat; unindexed, each update scans them all)."""
        self.metrics.create_index([("run_id", pymongo.ASCENDING), ("name", pymongo.ASCENDING)])
        self.runs.create_index(f"info.{UID_KEY}")

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

    def series(self, run_id: int) -> dict[str, list[dict[str, Any]]]:
        """The run's metric documents by name (a name may, wrongly, have several)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for doc in self.metrics.find({"run_id": run_id}):
            out.setdefault(doc["name"], []).append(doc)
        return out

    def artifact_ok(self, file_id: Any, size: int) -> bool:
        """Whether GridFS holds file ``file_id`` whole: its files document
        with ``size`` bytes and every chunk."""
        doc = self.files.find_one({"_id": file_id}, {"length": 1, "chunkSize": 1})
        if doc is None or doc.get("length") != size:
            return False
        expected = math.ceil(size / doc["chunkSize"]) if size else 0
        return self.chunks.count_documents({"files_id": file_id}) == expected


def _series(series: dict[str, Any]) -> list[tuple[Any, Any]]:
    """A metric series (file store or database) as its points."""
    return [_point(s, v) for s, v in zip(series.get("steps", []), series.get("values", []))]


def missing_points(name: str, local: dict[str, Any], stored: list[dict[str, Any]]) -> list[str]:
    """What the stored documents of metric ``name`` lack of (or add to) the file store's series."""
    want = _series(local)
    if len(stored) == 1 and _series(stored[0]) == want:
        return []
    have = Counter(point for doc in stored for point in _series(doc))
    left = Counter(have)
    lost = []
    for point in want:
        if left[point] > 0:
            left[point] -= 1
        else:
            lost.append(point[0])
    out = []
    if lost:
        steps = ", ".join(map(str, lost[:SHOWN_STEPS])) + (", ..." if len(lost) > SHOWN_STEPS else "")
        out.append(f"{name}: {len(lost)} of {points(len(want))} (steps {steps})")
    extra = sum(left.values())
    if extra:
        out.append(f"{name}: {points(extra)} the file store does not have (duplicates or strays)")
    if not lost and not extra:
        out.append(f"{name}: its points are split over {len(stored)} documents or out of order")
    return out


def missing_parts(db: SacredDatabase, run_id: int | None, folder: RunFolder) -> list[str]:
    """Every part of the file-store run ``folder`` that the database's run
    ``run_id`` lacks or holds differently: its document, final status,
    result, each metric's points (same steps and values as ``metrics.json``)
    and each artifact still in the folder. Empty when the database holds the
    whole run."""
    if run_id is None:
        return ["the whole run (it never reached the database)"]
    doc = db.runs.find_one({"_id": run_id})
    if doc is None:
        return [f"the whole run (no document with _id {run_id})"]
    run = folder.run
    problems = []
    if doc.get("status") != run.get("status"):
        problems.append(f"the final status {run.get('status')} (the database says {doc.get('status')})")
    if run.get("result") is not None and _result(doc.get("result")) != _result(run.get("result")):
        problems.append("the result")
    stored = db.series(run_id)
    local = folder.metrics
    for name, series in local.items():
        if name not in stored:
            problems.append(f"{name}: all of its {points(len(series.get('steps', [])))}")
        else:
            problems += missing_points(name, series, stored[name])
    problems += [f"{name}: in the database only" for name in stored if name not in local]
    files = {a.get("name"): a.get("file_id") for a in doc.get("artifacts") or []}
    for name in dict.fromkeys(run.get("artifacts") or []):
        path = folder.path / name
        if path.is_file() and (name not in files or not db.artifact_ok(files[name], path.stat().st_size)):
            problems.append(f"artifact {name}")
    return problems


def omniboard_tags(tags: Mapping[str, str]) -> list[str]:
    """A run's tags (``info.tags``) as Omniboard shows and filters them: ``KEY:VALUE``."""
    return [f"{key}:{value}" for key, value in sorted(tags.items())]
