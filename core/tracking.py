"""Sacred records; the only module that touches Sacred.

Each call of :func:`record_run` builds a fresh ``Experiment`` (explicit name,
no source discovery), adds the validated config, the experiment file as a
resource and every plugin distribution as a package dependency, attaches a
FileStorageObserver under the runs directory and runs the trainer inside one
Sacred run. The run directory holds ``config.json``, ``run.json`` (status,
result, artifacts, ``fail_trace``), ``metrics.json``, ``info.json``,
``cout.txt`` and the ``checkpoint.pt`` artifact.
"""

from __future__ import annotations

import logging
import subprocess
import warnings
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
from sslx.config import ResolvedExperiment
from sslx.errors import UserError
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


def record_run(
    exp: ResolvedExperiment,
    host: Any,
    *,
    runs_dir: Path,
    name: str | None = None,
    comment: str | None = None,
    experiment_file: Path | None = None,
    resume_from: Path | None = None,
) -> RunRecord:
    """Train ``exp`` inside a new Sacred run recorded under ``runs_dir``.

    Returns the record of a completed run; raises :class:`RunFailed` (with the
    record) when the run failed or was interrupted, after Sacred has stored
    its status and reason.
    """
    run_name = name or (experiment_file.stem if experiment_file else exp.config["objective"]["name"])
    ex = Experiment(run_name, interactive=True, save_git_info=False)
    ex.logger = _log
    ex.captured_out_filter = apply_backspaces_and_linefeeds
    ex.add_config(exp.config)
    for dist, version in [("sslx", sslx.__version__), ("torch", torch.__version__), *host.distributions()]:
        # Sacred accepts only public versions: '2.14.1+cu130' is recorded as 2.14.1 (the full one is in info)
        public = version.split("+")[0]
        try:
            ex.add_package_dependency(dist, public)
        except ValueError:
            pass
    observer = FileStorageObserver(str(runs_dir))
    ex.observers.append(observer)

    info: dict[str, Any] = {
        "versions": {"sslx": sslx.__version__, "torch": torch.__version__, **dict(host.distributions())},
        "plugins": [p.as_dict() for p in host.plugins if p.loaded],
        "components": {
            kind: {"name": ci.name, "plugin": ci.provenance.plugin, "distribution": ci.provenance.distribution,
                   "version": ci.provenance.version}
            for kind, (ci, _) in exp.components.items()
        },
    }
    if experiment_file is not None:
        info["experiment_file"] = str(experiment_file)
        git = _git_info(experiment_file)
        if git:
            info["git"] = git
    if resume_from is not None:
        info["resumed_from"] = str(resume_from)

    @ex.main
    def main(_run: Any) -> dict[str, float]:
        _run.info.update(info)
        if experiment_file is not None and experiment_file.exists():
            _run.add_resource(str(experiment_file))
        recorder = SacredRecorder(_run, Path(observer.dir))
        try:
            return train(exp, host, recorder, resume_from=resume_from)
        except BaseException as exc:
            _run.info["failure"] = f"{type(exc).__name__}: {exc}" if not isinstance(exc, UserError) else str(exc)
            raise

    options = {"--name": run_name, "--capture": "sys"}
    if comment:
        options["--comment"] = comment
    try:
        run = ex.run(options=options)
    except BaseException as exc:
        run_dir = Path(observer.dir) if observer.dir else runs_dir
        status = "INTERRUPTED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        raise RunFailed(RunRecord(run_dir.name, run_dir, status, None), exc) from exc
    return RunRecord(str(run._id), Path(observer.dir), run.status, run.result)
