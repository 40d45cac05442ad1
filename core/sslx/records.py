"""A run's records: the one module that reads and writes run folders and
talks to Sacred.

A recorded run is a folder of Sacred's file store, ``runs/<id>/``:

``config.json``
    the validated experiment (defaults filled in).
``run.json``
    Sacred's run entry: status, start, heartbeat and stop times, result,
    artifacts, resources, the failure's trace.
``info.json``
    sslx's notes: the run's ``sslx_uid``, plugin versions and components,
    device, total steps, the failure's reason, what recorders reported.
``metrics.json``
    every logged metric: steps, values, timestamps.
``cout.txt``, ``checkpoint.pt`` (the final checkpoint), ``last.pt`` (the
resumable one, while the run is in progress; written by the engine).

:func:`record_run` trains an experiment inside a fresh Sacred run and
:func:`record_evaluation` records a later evaluation of one; both attach the
file store plus any observer a plugin contributes through
``sslx_run_observers`` (MongoDB, MLflow, ...). Everything else reads a run
through :class:`RunFolder`, changes it through :meth:`RunFolder.update_info`
and :meth:`RunFolder.mark_failed`, and asks :func:`check_resumable` what a
resumed run may change.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import subprocess
import threading
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sslx.errors import UserError

if TYPE_CHECKING:
    from sacred import Experiment
    from sacred.observers import FileStorageObserver

    from sslx.config import ResolvedExperiment
    from sslx.hookspecs import RecorderReport
    from sslx.plugins import PluginHost
    from sslx.registry import ComponentInfo

CONFIG, RUN, INFO, METRICS, COUT = "config.json", "run.json", "info.json", "metrics.json", "cout.txt"
UID_KEY = "sslx_uid"  # the run's identity in info.json, shared with every recorder
PROCESS_KEY = "process"  # where in info.json the run's process is noted: host, pid, its start, the boot
STALE_AFTER_S = 600  # a run on another machine whose heartbeat is this old is taken for dead (Sacred beats every 10 s)


def write_json(path: Path, obj: Any) -> None:
    """Write a record atomically and durably: a reader, or a crash, sees the
    old file or the new one, never half of it."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with open(partial, "w") as f:
        f.write(json.dumps(obj, sort_keys=True, indent=2))
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read this run record ({exc}); the run folder may be damaged.") from None


def new_uid() -> str:
    """A run's identity, shared by its file-store record and every recorder's."""
    return uuid.uuid4().hex


# ----------------------------------------------------------------------------
# reading and changing a recorded run


@dataclass
class RunFolder:
    """A recorded run's folder, read on demand."""

    path: Path

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def is_run(self) -> bool:
        return (self.path / RUN).is_file()

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def run(self) -> dict[str, Any]:
        """Sacred's run entry (``run.json``)."""
        return _read_json(self.path / RUN) or {}

    @property
    def config(self) -> dict[str, Any]:
        return _read_json(self.path / CONFIG) or {}

    @property
    def info(self) -> dict[str, Any]:
        return _read_json(self.path / INFO) or {}

    @property
    def metrics(self) -> dict[str, Any]:
        """``{name: {"steps": [...], "values": [...], "timestamps": [...]}}``."""
        return _read_json(self.path / METRICS) or {}

    @property
    def cout(self) -> str:
        path = self.path / COUT
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def name(self) -> str | None:
        return (self.run.get("experiment") or {}).get("name")

    @property
    def status(self) -> str | None:
        """Sacred's status, except that a run still marked RUNNING whose
        process is gone (killed, out of memory, the machine stopped) is
        ``"DIED"``: on this machine when its process no longer exists, on
        another when its heartbeat is over ``STALE_AFTER_S`` old."""
        run = self.run
        status = run.get("status")
        if status in ("RUNNING", "QUEUED") and self._died(run):
            return "DIED"
        return status

    def _died(self, run: dict[str, Any]) -> bool:
        process = self.info.get(PROCESS_KEY) or {}
        if process.get("host") == socket.gethostname() and process.get("boot_id") == _boot_id():
            return process_start(int(process.get("pid", -1))) != process.get("start")
        beat = run.get("heartbeat") or run.get("start_time")
        if not beat:
            return False
        age = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.datetime.fromisoformat(beat)
        return age.total_seconds() > STALE_AFTER_S

    def uid(self) -> str:
        """The run's ``sslx_uid``, given to it (in info.json) when it was
        recorded before runs had one."""
        info = self.info
        if not info.get(UID_KEY):
            info[UID_KEY] = new_uid()
            write_json(self.path / INFO, info)
        return str(info[UID_KEY])

    def update_info(self, updates: Mapping[str, Any]) -> None:
        """Merge ``updates`` into the run's info.json."""
        path = self.path / INFO
        info = _read_json(path) or {}
        info.update(updates)
        write_json(path, info)

    def mark_failed(self, reason: str, by: str) -> bool:
        """Record a run whose process ended before recording its end as
        FAILED with ``reason`` (``by`` says who noticed); a run that has its
        end already is left alone. Returns whether it was marked."""
        import time

        record = self.run
        if not record or record.get("status") not in ("RUNNING", "QUEUED"):
            return False
        record["status"] = "FAILED"
        record["stop_time"] = time.strftime("%Y-%m-%dT%H:%M:%S.000000", time.gmtime())
        record["fail_trace"] = [f"{by}: {reason}; the run's process ended before it could record why.\n"]
        write_json(self.path / RUN, record)
        self.update_info({"failure": f"{reason} (recorded by {by})"})
        return True


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), None if there
    is no such process: with the pid it names one process (pids are reused)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, after the command name in parentheses


def this_process() -> dict[str, Any]:
    """The note that lets a reader tell later whether this process still runs."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "start": process_start(os.getpid()),
        "boot_id": _boot_id(),
    }


def find_runs(paths: Iterable[Path]) -> list[RunFolder]:
    """The run folders named by ``paths``: each a run folder, or a file store
    whose numbered run folders are all taken (in number order)."""
    found: list[RunFolder] = []
    for path in map(Path, paths):
        if (path / RUN).is_file():
            found.append(RunFolder(path))
            continue
        runs = list_runs(path) if path.is_dir() else []
        if not runs:
            raise UserError(
                f"{path}: not a run folder (no {RUN}) nor a file store holding any. Give run folders written by "
                "`sslx run`, such as runs/3, or the runs/ folder itself."
            )
        found.extend(runs)
    return found


def list_runs(store: Path) -> list[RunFolder]:
    """Every run folder of a file store, in number order."""
    runs = [RunFolder(d) for d in Path(store).iterdir() if d.is_dir() and (d / RUN).is_file()]
    return sorted(runs, key=lambda r: (not r.id.isdigit(), int(r.id) if r.id.isdigit() else 0, r.id))


# ----------------------------------------------------------------------------
# resuming: what may change


# Trainer settings a continued run may change. How long it trains, how it uses the machine, and how often it
# logs, checkpoints and evaluates leave the method as it was. The learning-rate schedule and gradient clipping
# change how training goes on from the checkpoint's weights, which is what a run that diverged needs (resume
# it from its last good checkpoint with a lower trainer.lr); the change is recorded in the new run's config.
# Everything else (the method, the data, the model, the optimizer's kind, momentum and weight decay, the
# batch) would make the continuation a different experiment than the weights it starts from.
RESUMABLE_CHANGES = frozenset(
    {
        "epochs",
        "max_steps",
        "num_workers",
        "threads",
        "progress",
        "log_every",
        "checkpoint_every",
        "eval_every",
        "eval_batch_size",
        "device",
        "sync_batchnorm",
        "lr",
        "warmup_steps",
        "schedule",
        "final_lr_ratio",
        "grad_clip",
    }
)


def check_resumable(config: dict[str, Any], saved: dict[str, Any], run_dir: Path, status: str | None = None) -> None:
    """Raise a UserError naming every setting in which ``config`` differs from
    the ``saved`` config of the checkpoint it would continue, or when the run
    (of ``status``) completed and ``config`` gives it no more steps."""
    if status == "COMPLETED" and all(
        config["trainer"].get(k) == saved.get("trainer", {}).get(k) for k in ("epochs", "max_steps")
    ):
        raise UserError(
            f"cannot resume {run_dir}: it COMPLETED all its training steps, so there is nothing to continue. Give "
            f"it more steps (`sslx run --resume {run_dir} --set trainer.max_steps=N`, or trainer.epochs), or "
            f"evaluate it again with `sslx eval {run_dir} --protocol NAME`."
        )
    diffs = []
    for key in sorted(set(config) | set(saved)):
        if key == "trainer":
            ours, theirs = config.get(key, {}), saved.get(key, {})
            diffs += [
                f"trainer.{k}"
                for k in sorted(set(ours) | set(theirs))
                if k not in RESUMABLE_CHANGES and ours.get(k) != theirs.get(k)
            ]
        elif key != "description" and config.get(key) != saved.get(key):
            diffs.append(key)
    if diffs:
        raise UserError(
            f"cannot resume {run_dir}: the experiment differs from the one it was trained with in "
            f"{', '.join(diffs)}. Resume with the run's own config (`sslx run --resume {run_dir}`); only "
            f"trainer.{{{', '.join(sorted(RESUMABLE_CHANGES))}}} may change."
        )


# ----------------------------------------------------------------------------
# recording a run with Sacred


@dataclass
class RunRecord:
    """How a recorded run ended."""

    run_id: str
    run_dir: Path
    status: str
    result: dict[str, float] | None
    what: str = "Run"  # "Run" or "Evaluation run", for messages
    reports: list[RecorderReport] = field(default_factory=list)  # what plugin recorders said at the end


class RunFailed(Exception):
    """A recorded run ended without completing; ``reason`` is why."""

    def __init__(self, record: RunRecord, reason: BaseException):
        self.record = record
        self.reason = reason
        super().__init__(f"run {record.run_id} {record.status.lower()}: {reason}")


@dataclass
class Recording:
    """A run about to be recorded, as ``sslx_run_observers`` sees it."""

    uid: str
    name: str
    config: dict[str, Any]
    runs_dir: Path
    options: Mapping[str, Any]
    tags: Mapping[str, str] = field(default_factory=dict)  # the run's tags (info.tags), e.g. a sweep's id and point


class SacredRecorder:
    """The trainer's :class:`~sslx.engine.trainer.Recorder`, writing to a Sacred run.

    ``flush`` sends Sacred's heartbeat at once (metrics, info, captured
    output to every observer), as the trainer asks after each checkpoint, so
    a killed run's records hold every point up to its last checkpoint.
    Sacred's own heartbeat thread goes through the same lock."""

    def __init__(self, run: Any, run_dir: Path):
        self._run = run
        self.run_dir: Path | None = run_dir
        self._lock = threading.Lock()
        beat = run._emit_heartbeat

        def locked_beat() -> None:
            with self._lock:
                beat()

        self._beat = locked_beat
        if getattr(run, "_heartbeat", None) is not None:
            run._heartbeat.func = locked_beat  # the timer thread calls its func at every beat

    def flush(self) -> None:
        self._beat()

    def log_scalar(self, name: str, value: float, step: int) -> None:
        self._run.log_scalar(name, float(value), step)

    def add_artifact(self, path: Path, name: str) -> None:
        self._run.add_artifact(str(path), name=name)

    def set_info(self, key: str, value: Any) -> None:
        self._run.info[key] = value


def sacred_module() -> Any:
    """Sacred, imported when a run is recorded (it is slow to import)."""
    with warnings.catch_warnings():  # sacred 0.8.7 imports pkg_resources, deprecated by setuptools
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        import sacred
        import sacred.observers  # noqa: F401
        import sacred.utils  # noqa: F401
    sacred.SETTINGS.DISCOVER_SOURCES = "none"  # plugin versions are recorded as dependencies instead
    sacred.SETTINGS.DISCOVER_DEPENDENCIES = "none"
    sacred.SETTINGS.CAPTURE_MODE = "sys"
    return sacred


def _file_store(sacred: Any) -> type:
    """Sacred's file store, writing each record atomically (a kill never
    leaves a torn run.json, info.json or metrics.json)."""
    from sacred.serializer import flatten

    class FileStore(sacred.observers.FileStorageObserver):
        def save_json(self, obj: Any, filename: str) -> None:
            write_json(Path(self.dir) / filename, flatten(obj))

    return FileStore


def _logger() -> logging.Logger:
    log = logging.getLogger("sslx.sacred")
    log.setLevel(logging.CRITICAL)  # sslx prints its own summary; the records hold the details
    log.propagate = False
    return log


def _git_info(path: Path) -> dict[str, Any] | None:
    try:
        cwd = path.resolve().parent
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", str(path.resolve())],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return {"commit": sha.stdout.strip(), "experiment_file_modified": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return None


def _versions(host: PluginHost) -> dict[str, Any]:
    import torch

    import sslx

    return {  # str(): torch's version is a str subclass that Sacred would pickle into a 14 KB object
        "versions": {"sslx": sslx.__version__, "torch": str(torch.__version__), **dict(host.distributions())},
        "plugins": [p.as_dict() for p in host.plugins if p.loaded],
    }


def _components(items: Iterable[tuple[str, ComponentInfo]]) -> dict[str, Any]:
    return {
        kind: {
            "name": ci.name,
            "plugin": ci.provenance.plugin,
            "distribution": ci.provenance.distribution,
            "version": ci.provenance.version,
        }
        for kind, ci in items
    }


@dataclass
class _Session:
    """One Sacred experiment with its observers, ready to run one run."""

    ex: Experiment
    files: FileStorageObserver
    observers: list[Any]
    what: str

    @classmethod
    def new(cls, recording: Recording, host: PluginHost, what: str) -> _Session:
        """A fresh Sacred experiment with the config, every plugin
        distribution as a dependency, the file store attached and then the
        observers plugins contribute (asked before anything is written, so
        a plugin refusing its options leaves no run behind)."""
        import torch

        import sslx

        observers = host.run_observers(recording)
        sacred = sacred_module()
        ex = sacred.Experiment(recording.name, interactive=True, save_git_info=False)
        ex.logger = _logger()
        ex.captured_out_filter = sacred.utils.apply_backspaces_and_linefeeds
        ex.add_config(recording.config)
        for dist, version in [("sslx", sslx.__version__), ("torch", torch.__version__), *host.distributions()]:
            try:  # Sacred accepts only public versions: '2.14.1+cu130' is recorded as 2.14.1 (the full one is in info)
                ex.add_package_dependency(dist, version.split("+")[0])
            except ValueError:
                pass
        files = _file_store(sacred)(str(recording.runs_dir))
        ex.observers.append(files)
        ex.observers.extend(observers)
        return cls(ex, files, observers, what)

    def run(
        self,
        body: Callable[[Any, SacredRecorder], dict[str, float]],
        info: dict[str, Any],
        name: str,
        comment: str | None,
    ) -> RunRecord:
        """Run ``body(sacred_run, recorder)`` as the experiment's main function;
        a failure is recorded (status, ``info.failure``, trace) and raised as
        :class:`RunFailed`."""
        from sslx.engine.launch import note_run_dir

        sacred_run: list[Any] = []

        @self.ex.main
        def main(_run: Any) -> Any:
            sacred_run.append(_run)
            run_dir = self._dir()
            assert run_dir is not None, "Sacred's file store makes the run's folder before the run starts"
            note_run_dir(run_dir)  # for `sslx run --nproc`, should this process die unrecorded
            _run.info.update(info)
            recorder = SacredRecorder(_run, run_dir)
            recorder.flush()  # info.json now, with the process note: a run killed at once still reads as DIED
            try:
                return body(_run, recorder)
            except BaseException as exc:
                _run.info["failure"] = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
                raise
            finally:
                recorder.flush()  # every point now, from this thread: Sacred's last beat may come late

        def last_beat_written() -> None:
            """Sacred waits at most 2 s for its heartbeat thread's last beat
            before recording the end: wait for it here, so that nothing writes
            the run's records after this module's own last word."""
            beat = getattr(sacred_run[0], "_heartbeat", None) if sacred_run else None
            if beat is not None:
                beat.join(timeout=120)

        options = {"--name": name, "--capture": "sys", **({"--comment": comment} if comment else {})}
        try:
            run = self.ex.run(options=options)
        except BaseException as exc:
            last_beat_written()
            run_dir = self._dir()
            status = "INTERRUPTED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
            reports = self._finish(run_dir)
            where = run_dir or Path(str(self.files.basedir))
            raise RunFailed(RunRecord(where.name, where, status, None, self.what, reports), exc) from exc
        last_beat_written()
        run_dir = self._dir()
        assert run_dir is not None
        return RunRecord(str(run._id), run_dir, str(run.status), run.result, self.what, self._finish(run_dir))

    def _dir(self) -> Path | None:
        """The run's folder, once the file store has made it."""
        return Path(str(self.files.dir)) if self.files.dir else None

    def _finish(self, run_dir: Path | None) -> list[RecorderReport]:
        """Let each plugin observer end its work; keep what it reports in the
        run's info.json (the file store's last write precedes theirs)."""
        reports = [r for r in (o.finish() for o in self.observers if callable(getattr(o, "finish", None))) if r]
        if run_dir is not None and reports and (run_dir / INFO).exists():
            RunFolder(run_dir).update_info({r.key: r.note for r in reports})
        return reports


def record_run(
    exp: ResolvedExperiment,
    host: PluginHost,
    *,
    runs_dir: Path,
    name: str | None = None,
    comment: str | None = None,
    experiment_file: Path | None = None,
    resume_from: Path | None = None,
    options: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
) -> RunRecord:
    """Train ``exp`` inside a new Sacred run recorded under ``runs_dir`` (and
    by the recorders of plugins, which read their settings from ``options``:
    the values of options plugins added to ``sslx run``), with ``tags`` in its
    info.

    Returns the record of a completed run; raises :class:`RunFailed` (with the
    record) when the run failed or was interrupted, after Sacred has stored
    its status and reason.
    """
    from sslx.engine.trainer import train

    run_name = name or (experiment_file.stem if experiment_file else exp.config["objective"]["name"])
    recording = Recording(new_uid(), run_name, exp.config, Path(runs_dir), dict(options or {}), dict(tags or {}))
    session = _Session.new(recording, host, "Run")
    info: dict[str, Any] = {
        UID_KEY: recording.uid,
        PROCESS_KEY: this_process(),
        **({"tags": dict(recording.tags)} if recording.tags else {}),
        **_versions(host),
        "components": _components((kind, ci) for kind, (ci, _) in exp.components.items()),
    }
    if experiment_file is not None:
        info["experiment_file"] = str(experiment_file)
        if git := _git_info(experiment_file):
            info["git"] = git
    if resume_from is not None:
        info["resumed_from"] = str(resume_from)

    def body(_run: Any, recorder: SacredRecorder) -> dict[str, float]:
        if experiment_file is not None and experiment_file.exists():
            _run.add_resource(str(experiment_file))
        return train(exp, host, recorder, resume_from=resume_from)

    return session.run(body, info, run_name, comment)


def record_evaluation(
    run: Path,
    protocol: str,
    assignments: list[str],
    host: PluginHost,
    *,
    runs_dir: Path | None = None,
    name: str | None = None,
    comment: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> RunRecord:
    """Evaluate the encoder of a recorded run (a run folder or a checkpoint)
    with one evaluator, as a new Sacred run that names the run it evaluates.

    ``assignments`` are ``KEY=VALUE`` strings: keys of the evaluator's
    parameters (``k=50``), or ``trainer.*`` / ``dataset.*`` keys of the
    pretraining config (``trainer.device=cpu``). The evaluation run's config is
    ``{"evaluates": {...}, "protocol": {...}, "pretraining": <config>}``; it
    is recorded beside the evaluated run unless ``runs_dir`` is given.
    """
    from sslx.engine.checkpoint import find_checkpoint
    from sslx.engine.evaluation import prepare_evaluation

    checkpoint = find_checkpoint(run, final_first=True)
    job = prepare_evaluation(checkpoint, protocol, assignments, host)
    source = RunFolder(Path(run) if Path(run).is_dir() else checkpoint.parent)
    evaluates = {
        "run_id": source.id if source.is_run() else None,
        "run_dir": str(source.path.resolve()),
        "name": source.name,
        "status": source.status,
        "checkpoint": str(checkpoint.resolve()),
        "step": job.step,
    }
    config = {
        "seed": job.exp.seed,
        "evaluates": evaluates,
        "protocol": job.protocol_config,
        "pretraining": job.exp.config,
    }
    run_name = name or f"{evaluates['name'] or source.id}.eval.{job.protocol_config['name']}"
    recording = Recording(
        new_uid(), run_name, config, Path(runs_dir) if runs_dir else source.path.parent, dict(options or {})
    )
    session = _Session.new(recording, host, "Evaluation run")
    info = {
        UID_KEY: recording.uid,
        PROCESS_KEY: this_process(),
        **_versions(host),
        "evaluates": evaluates,
        "components": _components(
            [("evaluator", job.evaluator[0]), *((k, ci) for k, (ci, _) in job.exp.components.items())]
        ),
    }
    return session.run(lambda _run, recorder: job.run(recorder), info, run_name, comment)
