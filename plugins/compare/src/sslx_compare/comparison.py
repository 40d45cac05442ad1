"""Side-by-side comparison of recorded runs (``sslx compare``).

Runs are read either from a Sacred file store (through :mod:`sslx.records`,
the one reader of run folders) or from a Sacred MongoDB database (the
``runs`` and ``metrics`` collections as Sacred's ``MongoObserver`` writes
them), into one :class:`RunSummary` shape, so selection, the table and the
plot do not care where a run came from. The table shows what tells runs apart:
id, name, method, status, duration, only the config keys whose values differ
between the listed runs, and the final evaluation metrics.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sslx.errors import UserError
from sslx.records import RunFolder, list_runs

if TYPE_CHECKING:
    from sslx_mongo.target import MongoTarget

FIXED_COLUMNS = ["id", "name", "method", "status", "duration_s"]
CELL_WIDTH = 22  # the human table cuts longer cells so many differing keys stay readable


@dataclass
class RunSummary:
    """What ``compare`` needs of one recorded run, whatever stored it."""

    id: str
    name: str
    status: str
    start: datetime | None
    end: datetime | None  # stop time, or the last heartbeat of a running or failed run
    config: dict[str, Any]
    result: dict[str, Any]
    metrics: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # name -> {"steps", "values"}

    @property
    def method(self) -> str | None:
        """The objective's name; an evaluation run reports the one it evaluates."""
        for config in (self.config, self.config.get("pretraining") or {}):
            objective = config.get("objective")
            if isinstance(objective, dict) and "name" in objective:
                return objective["name"]
        return None

    @property
    def duration_s(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return round((self.end - self.start).total_seconds(), 1)

    def final_metrics(self) -> dict[str, Any]:
        """The last value of each ``eval.*`` metric, then the run's result
        dict (which wins where both name the same metric)."""
        out = {
            name: m["values"][-1]
            for name, m in sorted(self.metrics.items())
            if name.startswith("eval.") and m.get("values")
        }
        out.update({k: v for k, v in sorted(self.result.items()) if isinstance(v, (int, float, str, bool))})
        return out


# ----------------------------------------------------------------- file store


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _summary(run_id: str, run: dict[str, Any], config: dict[str, Any], metrics: dict[str, Any]) -> RunSummary:
    """One summary from Sacred's run entry, config and metrics (either store)."""
    result = run.get("result")
    return RunSummary(
        id=run_id,
        name=(run.get("experiment") or {}).get("name") or "",
        status=run.get("status") or "UNKNOWN",
        start=_time(run.get("start_time")),
        end=_time(run.get("stop_time")) or _time(run.get("heartbeat")),
        config=config,
        # a result Sacred had to make BSON-safe has ',' where the metric names had '.'
        result={str(k).replace(",", "."): v for k, v in result.items()} if isinstance(result, dict) else {},
        metrics={
            name: {"steps": list(m.get("steps", [])), "values": list(m.get("values", []))}
            for name, m in metrics.items()
        },
    )


def read_run_dir(run_dir: Path) -> RunSummary:
    """A run folder of the file store (it holds ``run.json``)."""
    folder = RunFolder(run_dir)
    if not folder.is_run():
        raise UserError(
            f"{run_dir} is not a run folder: it has no run.json. Give a folder under runs/ "
            "(e.g. runs/3) or a run id within --source."
        )
    return _summary(folder.id, folder.run, folder.config, folder.metrics)


def load_file_runs(source: Path, refs: list[str]) -> list[RunSummary]:
    """The runs named by ``refs`` (run folders, or run ids within ``source``),
    or every run in ``source`` by start time when ``refs`` is empty."""
    if refs:
        runs = []
        for ref in refs:
            path = Path(ref)
            if not path.is_dir() and (source / ref).is_dir():
                path = source / ref
            if not path.is_dir():
                raise UserError(
                    f"RUN {ref!r}: no such run folder, and no run with that id in --source {source}. "
                    f"Give a run folder or an id listed by `sslx compare --source {source}`."
                )
            runs.append(read_run_dir(path))
        return runs
    if not source.is_dir():
        raise UserError(
            f"--source {source}: no such folder. Point it at the runs folder that "
            "`sslx run --runs-dir` wrote (default runs/)."
        )
    return sorted((_summary(f.id, f.run, f.config, f.metrics) for f in list_runs(source)), key=_start_key)


# -------------------------------------------------------------------- MongoDB


def load_mongo_runs(target: MongoTarget, refs: list[str]) -> list[RunSummary]:
    """Runs from the ``runs`` and ``metrics`` collections of a Sacred
    MongoDB database: the ones whose ids are ``refs``, or all by start time."""
    from pymongo.errors import PyMongoError

    client = target.client()
    try:
        return _read_mongo_runs(target.database(client), refs)
    except PyMongoError as exc:
        raise UserError(
            f"--mongo {target.shown}: cannot read the database {target.db} "
            f"({target.describe_error(exc)}). Check that the server runs and the URL (user, password) "
            "is right, or compare the file store with --source runs/."
        ) from None
    finally:
        client.close()


def _read_mongo_runs(db: Any, refs: list[str]) -> list[RunSummary]:
    """Each run entry with its metrics (one ``metrics`` document per name)."""
    if refs:
        ids: list[Any] = []
        for ref in refs:
            try:
                ids.append(int(ref))
            except ValueError:
                raise UserError(f"RUN {ref!r}: with --mongo, give run ids (the numbers Omniboard shows).") from None
        docs = {doc["_id"]: doc for doc in db.runs.find({"_id": {"$in": ids}})}
        missing = [str(i) for i in ids if i not in docs]
        if missing:
            raise UserError(
                f"RUN {', '.join(missing)}: no run with that id in the MongoDB database {db.name!r}. "
                "Run `sslx compare --mongo URL` to list the runs it holds."
            )
        ordered = [docs[i] for i in ids]
    else:
        ordered = list(db.runs.find({}))
    metrics: dict[Any, dict[str, Any]] = {}
    if ordered:
        for m in db.metrics.find({"run_id": {"$in": [d["_id"] for d in ordered]}}):
            metrics.setdefault(m["run_id"], {})[m["name"]] = m
    runs = [_summary(str(d["_id"]), d, d.get("config") or {}, metrics.get(d["_id"], {})) for d in ordered]
    return runs if refs else sorted(runs, key=_start_key)


# ------------------------------------------------------------------ selection


def _start_key(run: RunSummary) -> tuple[datetime, str]:
    return (run.start or datetime.min, run.id.zfill(12))


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys for nested dicts and lists: ``{"evaluators.0.k": 20, ...}``."""
    if isinstance(config, dict) and config:
        items = config.items()
    elif isinstance(config, list) and config:
        items = ((str(i), v) for i, v in enumerate(config))
    else:
        return {prefix: config} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def parse_filter(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses, else as text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(
            f"--filter {text!r}: write KEY=VALUE, e.g. --filter objective.name=moco, "
            "--filter trainer.lr=0.06 or --filter status=COMPLETED."
        )
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


def _matches(run: RunSummary, key: str, value: Any) -> bool:
    """Run fields (``id``, ``name``, ``status``, ``method``) compare as text;
    anything else is a dotted config key compared as a JSON value."""
    if key in ("id", "name", "status", "method"):
        return str(getattr(run, key)) == (value if isinstance(value, str) else json.dumps(value))
    flat = flatten(run.config)
    if key in flat:
        return flat[key] == value
    prefix = key + "."
    sub = {k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)}
    return bool(sub) and flatten(value) == sub  # a whole section, e.g. objective={"name": "moco", ...}


def select(runs: list[RunSummary], filters: list[str], last: int | None) -> list[RunSummary]:
    """The runs matching every filter; with ``last``, only the ``last`` most
    recent of those (listed oldest first)."""
    for key, value in (parse_filter(f) for f in filters):
        runs = [r for r in runs if _matches(r, key, value)]
    if last is not None:
        if last < 1:
            raise UserError(f"--last {last}: give a positive number of runs.")
        runs = sorted(runs, key=_start_key)[-last:]
    return runs


# ---------------------------------------------------------------------- table


def differing_keys(runs: list[RunSummary]) -> list[str]:
    """Dotted config keys whose value is not the same in every run (a key
    missing from some run counts as differing)."""
    flats = [flatten(r.config) for r in runs]
    keys = sorted(set().union(*flats)) if flats else []
    missing = object()
    return [k for k in keys if len({json.dumps(f.get(k, missing), sort_keys=True, default=repr) for f in flats}) > 1]


def table(runs: list[RunSummary]) -> tuple[list[str], list[dict[str, Any]]]:
    """Columns and one row per run: the fixed columns, the differing config
    keys, then every final metric any run has."""
    keys = differing_keys(runs) if len(runs) > 1 else []
    finals = [r.final_metrics() for r in runs]
    metric_names = sorted(set().union(*finals)) if finals else []
    columns = FIXED_COLUMNS + keys + metric_names
    rows = []
    for run, final in zip(runs, finals):
        flat = flatten(run.config)
        row = {"id": run.id, "name": run.name, "method": run.method, "status": run.status, "duration_s": run.duration_s}
        row.update({k: flat.get(k) for k in keys})
        row.update({m: final.get(m) for m in metric_names})
        rows.append(row)
    return columns, rows


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, (dict, list, bool)):
        return json.dumps(value)
    return str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes}m{sec:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _cut(text: str, width: int = CELL_WIDTH, keep_end: bool = False) -> str:
    if len(text) <= width:
        return text
    return "…" + text[-(width - 1) :] if keep_end else text[: width - 1] + "…"


def format_text(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """An aligned table; headers keep their (most telling) end, cells their
    start, both cut at :data:`CELL_WIDTH` characters."""
    if not rows:
        return "no runs match."
    headers = ["duration" if c == "duration_s" else _cut(c, keep_end=True) for c in columns]
    cells = [[_duration(r[c]) if c == "duration_s" else _cut(_cell(r[c])) for c in columns] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def format_json(columns: list[str], rows: list[dict[str, Any]]) -> str:
    return json.dumps([{c: r[c] for c in columns} for r in rows], indent=2, default=str)


def format_csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """CSV with a header row; lists and dicts as JSON, missing values empty."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow(
            ["" if r[c] is None else json.dumps(r[c]) if isinstance(r[c], (list, dict)) else r[c] for c in columns]
        )
    return buf.getvalue()


# ----------------------------------------------------------------------- plot


def plot(runs: list[RunSummary], metric_names: list[str], out: Path) -> Path:
    """One subplot per metric, one curve per run (labelled ``id name``), as a PNG."""
    available = sorted(set().union(*(r.metrics for r in runs))) if runs else []
    missing = [m for m in metric_names if not any(r.metrics.get(m, {}).get("values") for r in runs)]
    if missing:
        raise UserError(
            f"--metric {', '.join(missing)}: no listed run logged it. "
            f"Metrics they have: {', '.join(available) or 'none'}."
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(metric_names), 1, figsize=(8, 3 * len(metric_names)), squeeze=False)
    for ax, name in zip(axes[:, 0], metric_names):
        for run in runs:
            m = run.metrics.get(name)
            if m and m.get("values"):
                ax.plot(
                    m["steps"], m["values"], marker="." if len(m["values"]) < 30 else None, label=f"{run.id} {run.name}"
                )
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png", dpi=100)
    except OSError as exc:
        raise UserError(f"--plot {out}: cannot write the image ({exc}).") from None
    finally:
        plt.close(fig)
    return out
