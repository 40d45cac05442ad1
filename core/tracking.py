"""Sacred records; the only module that touches Sacred.

Each call of :func:`record_run` builds a fresh ``Experiment`` (explicit name,
no source discovery), adds the validated config, the experiment file as a
resource and every plugin distribution as a package dependency, attaches a
FileStorageObserver under the runs directory and runs the trainer inside one
Sacred run. The run directory holds ``config.json``, ``run.json`` (status,
result, artifacts, ``fail_trace``), ``metrics.json``, ``info.json``,
``cout.txt`` and the ``checkpoint.pt`` artifact. :func:`record_evaluation`
records a later evaluation of such a run the same way, as a run of its own.

Every run's info carries a ``sslx_uid``. Given a :class:`~sslx.mongo.MongoTarget`,
a :class:`~sslx.mongo.SafeMongoObserver` records the run to MongoDB as well;
if the database fails, the run goes on in the file store, whose
``info.mongo`` says what happened (``sslx sync`` uploads the run later).
"""

from __future__ import annotations

import json
import logging
import subprocess
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

with warnings.catch_warnings():  # sacred 0.8.7 imports pkg_resources, deprecated by setuptools
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    from sacred import SETTINGS, Experiment
from sacred.observers import FileStorageObserver
from sacred.utils import apply_backspaces_and_linefeeds

import sslx
from sslx.checkpoint import find_checkpoint
from sslx.config import ResolvedExperiment
from sslx.errors import UserError
from sslx.launch import note_run_dir
from sslx.mongo import INFO_KEY, UID_KEY, MongoTarget, SafeMongoObserver, new_uid, write_json
from sslx.runs import prepare_evaluation
from sslx.trainer import train

SETTINGS.DISCOVER_SOURCES = "none"  # plugin versions are recorded as dependencies instead
SETTINGS.DISCOVER_DEPENDENCIES = "none"
SETTINGS.CAPTURE_MODE = "sys"

_log = logging.getLogger("sslx.sacred")
_log.setLevel(logging.CRITICAL)  # sslx prints its own summary; the records hold the details
_log.propagate = False


@dataclass
class RunRecord:
    run_id: str
    run_dir: Path
    status: str
    result: dict[str, float] | None
    mongo: dict[str, Any] | None = None  # the run's ``info.mongo`` note when recorded to MongoDB too


class RunFailed(Exception):
    """A recorded run ended without completing; ``__cause__`` is the reason."""

    def __init__(self, record: RunRecord, reason: BaseException):
        self.record = record
        self.reason = reason
        super().__init__(f"run {record.run_id} {record.status.lower()}: {reason}")


class SacredRecorder:
    """The trainer's :class:`~sslx.trainer.Recorder`, writing to a Sacred run."""

    def __init__(self, run: Any, run_dir: Path):
        self._run = run
        self.run_dir = run_dir

    def log_scalar(self, name: str, value: float, step: int) -> None:
        self._run.log_scalar(name, float(value), step)

    def add_artifact(self, path: Path, name: str) -> None:
        self._run.add_artifact(str(path), name=name)

    def set_info(self, key: str, value: Any) -> None:
        self._run.info[key] = value


def _git_info(path: Path) -> dict[str, Any] | None:
    try:
        cwd = path.resolve().parent
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--", str(path.resolve())], cwd=cwd, capture_output=True, text=True, timeout=5)
        return {"commit": sha.stdout.strip(), "experiment_file_modified": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def _experiment(name: str, config: dict[str, Any], host: Any, runs_dir: Path, mongo: MongoTarget | None,
                uid: str) -> tuple[Experiment, FileStorageObserver, SafeMongoObserver | None]:
    """A fresh Sacred experiment with the config, every plugin distribution as
    a dependency, the file store attached and, given ``mongo``, the database."""
    ex = Experiment(name, interactive=True, save_git_info=False)
    ex.logger = _log
    ex.captured_out_filter = apply_backspaces_and_linefeeds
    ex.add_config(config)
    for dist, version in [("sslx", sslx.__version__), ("torch", torch.__version__), *host.distributions()]:
        # Sacred accepts only public versions: '2.14.1+cu130' is recorded as 2.14.1 (the full one is in info)
        public = version.split("+")[0]
        try:
            ex.add_package_dependency(dist, public)
        except ValueError:
            pass
    observer = FileStorageObserver(str(runs_dir))
    ex.observers.append(observer)
    mongo_observer = SafeMongoObserver(mongo, uid) if mongo is not None else None
    if mongo_observer is not None:
        ex.observers.append(mongo_observer)
    return ex, observer, mongo_observer


def _versions(host: Any) -> dict[str, Any]:
    return {
        "versions": {"sslx": sslx.__version__, "torch": torch.__version__, **dict(host.distributions())},
        "plugins": [p.as_dict() for p in host.plugins if p.loaded],
    }


def _components(items: list[tuple[str, Any]]) -> dict[str, Any]:
    return {kind: {"name": ci.name, "plugin": ci.provenance.plugin, "distribution": ci.provenance.distribution,
                   "version": ci.provenance.version} for kind, ci in items}


def _note_mongo(run_dir: Path | None, mongo_observer: SafeMongoObserver | None) -> dict[str, Any] | None:
    """Close the database client and write its final note to the run's
    info.json (the file store's last heartbeat precedes the database's last
    events, which may still have failed)."""
    if mongo_observer is None:
        return None
    mongo_observer.close()
    info_path = run_dir / "info.json" if run_dir is not None else None
    if info_path is not None and info_path.exists():
        info = json.loads(info_path.read_text())
        info[INFO_KEY] = mongo_observer.record
        write_json(info_path, info)
    return mongo_observer.record


def _run(ex: Experiment, observer: FileStorageObserver, runs_dir: Path, body: Callable[[Any, SacredRecorder], Any],
         info: dict[str, Any], name: str, comment: str | None, mongo_observer: SafeMongoObserver | None) -> RunRecord:
    """Run ``body(sacred_run, recorder)`` as the experiment's main function;
    a failure is recorded (status, ``info.failure``, trace) and raised as
    :class:`RunFailed`."""

    @ex.main
    def main(_run: Any) -> Any:
        note_run_dir(Path(observer.dir))  # for `sslx run --nproc`, should this process die unrecorded
        _run.info.update(info)
        if mongo_observer is not None:
            _run.info[INFO_KEY] = mongo_observer.record  # the same dict: the file store sees its updates
        try:
            return body(_run, SacredRecorder(_run, Path(observer.dir)))
        except BaseException as exc:
            _run.info["failure"] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, UserError) else str(exc)
            raise

    options = {"--name": name, "--capture": "sys"}
    if comment:
        options["--comment"] = comment
    try:
        run = ex.run(options=options)
    except BaseException as exc:
        run_dir = Path(observer.dir) if observer.dir else runs_dir
        status = "INTERRUPTED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        note = _note_mongo(Path(observer.dir) if observer.dir else None, mongo_observer)
        raise RunFailed(RunRecord(run_dir.name, run_dir, status, None, note), exc) from exc
    note = _note_mongo(Path(observer.dir), mongo_observer)
    return RunRecord(str(run._id), Path(observer.dir), run.status, run.result, note)


def record_run(
    exp: ResolvedExperiment,
    host: Any,
    *,
    runs_dir: Path,
    name: str | None = None,
    comment: str | None = None,
    experiment_file: Path | None = None,
    resume_from: Path | None = None,
    mongo: MongoTarget | None = None,
) -> RunRecord:
    """Train ``exp`` inside a new Sacred run recorded under ``runs_dir`` (and
    to MongoDB, given ``mongo``).

    Returns the record of a completed run; raises :class:`RunFailed` (with the
    record) when the run failed or was interrupted, after Sacred has stored
    its status and reason.
    """
    run_name = name or (experiment_file.stem if experiment_file else exp.config["objective"]["name"])
    uid = new_uid()
    ex, observer, mongo_observer = _experiment(run_name, exp.config, host, runs_dir, mongo, uid)
    info: dict[str, Any] = {
        UID_KEY: uid,
        **_versions(host),
        "components": _components([(kind, ci) for kind, (ci, _) in exp.components.items()]),
    }
    if experiment_file is not None:
        info["experiment_file"] = str(experiment_file)
        git = _git_info(experiment_file)
        if git:
            info["git"] = git
    if resume_from is not None:
        info["resumed_from"] = str(resume_from)

    def body(_run: Any, recorder: SacredRecorder) -> dict[str, float]:
        if experiment_file is not None and experiment_file.exists():
            _run.add_resource(str(experiment_file))
        return train(exp, host, recorder, resume_from=resume_from)

    return _run(ex, observer, runs_dir, body, info, run_name, comment, mongo_observer)


def record_evaluation(
    run: Path,
    protocol: str,
    assignments: list[str],
    host: Any,
    *,
    runs_dir: Path | None = None,
    name: str | None = None,
    comment: str | None = None,
    mongo: MongoTarget | None = None,
) -> RunRecord:
    """Evaluate the encoder of a recorded run (a run folder or a checkpoint)
    with one evaluator, as a new Sacred run that names the run it evaluates.

    ``assignments`` are ``KEY=VALUE`` strings: keys of the evaluator's
    parameters (``k=50``), or ``trainer.*`` / ``dataset.*`` keys of the
    pretraining config (``trainer.device=cpu``). The evaluation run's config is
    ``{"evaluates": {...}, "protocol": {...}, "pretraining": <config>}``; it
    is recorded beside the evaluated run unless ``runs_dir`` is given.
    """
    checkpoint = find_checkpoint(run, final_first=True)
    job = prepare_evaluation(checkpoint, protocol, assignments, host)
    source = Path(run)
    source_dir = source if source.is_dir() else checkpoint.parent
    source_run = json.loads((source_dir / "run.json").read_text()) if (source_dir / "run.json").exists() else {}
    evaluates = {
        "run_id": source_dir.name if source_run else None,
        "run_dir": str(source_dir.resolve()),
        "name": source_run.get("experiment", {}).get("name"),
        "status": source_run.get("status"),
        "checkpoint": str(checkpoint.resolve()),
        "step": job.step,
    }
    config = {"seed": job.exp.seed, "evaluates": evaluates, "protocol": job.protocol_config,
              "pretraining": job.exp.config}
    runs_dir = Path(runs_dir) if runs_dir is not None else source_dir.parent
    run_name = name or f"{evaluates['name'] or source_dir.name}.eval.{job.protocol_config['name']}"
    uid = new_uid()
    ex, observer, mongo_observer = _experiment(run_name, config, host, runs_dir, mongo, uid)
    info = {UID_KEY: uid, **_versions(host), "evaluates": evaluates,
            "components": _components([("evaluator", job.evaluator[0]),
                                       *((k, ci) for k, (ci, _) in job.exp.components.items())])}

    def body(_run: Any, recorder: SacredRecorder) -> dict[str, float]:
        return job.run(recorder)

    return _run(ex, observer, runs_dir, body, info, run_name, comment, mongo_observer)
