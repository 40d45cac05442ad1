"""Side-by-side comparison of recorded runs (``sslx compare``).

Runs are read either from a Sacred file store (through :mod:`sslx.records`,
the one reader of run folders) or from a Sacred MongoDB database (the
``runs`` and ``metrics`` collections as Sacred's ``MongoObserver`` writes
them), into one :class:`RunSummary` shape, so selection, the table and the
plot do not care where a run came from. The table shows what tells runs apart:
id, name, method, status, duration, only the config keys whose values differ
between the listed runs, and the final evaluation metrics.

With ``--group-by``, runs that share the values of some keys (usually all but
the seed) form a :class:`Group`, shown as one row with the mean, sample
standard deviation and count of each final metric (:func:`group_table`), and
plotted as mean curves with a ±1 std band plus bars (:func:`plot_groups`).
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import statistics
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
    tags: dict[str, str] = field(default_factory=dict)  # info["tags"]: e.g. {"sweep": "lr", "point": "a"}

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


def _summary(
    run_id: str, run: dict[str, Any], config: dict[str, Any], metrics: dict[str, Any], info: dict[str, Any]
) -> RunSummary:
    """One summary from Sacred's run entry, config, metrics and info (either store)."""
    result = run.get("result")
    tags = info.get("tags")
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
        tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {},
    )


def read_run_dir(run_dir: Path) -> RunSummary:
    """A run folder of the file store (it holds ``run.json``)."""
    folder = RunFolder(run_dir)
    if not folder.is_run():
        raise UserError(
            f"{run_dir} is not a run folder: it has no run.json. Give a folder under runs/ "
            "(e.g. runs/3) or a run id within --source."
        )
    return _summary(folder.id, folder.run, folder.config, folder.metrics, folder.info)


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
    return sorted((_summary(f.id, f.run, f.config, f.metrics, f.info) for f in list_runs(source)), key=_start_key)


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
    runs = [
        _summary(str(d["_id"]), d, d.get("config") or {}, metrics.get(d["_id"], {}), d.get("info") or {})
        for d in ordered
    ]
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


def _matches(run: RunSummary, key: str, value: Any, raw: str) -> bool:
    """Run fields (``id``, ``name``, ``status``, ``method``) compare as text;
    a tag (``tags.NAME``) with the text as written (a sweep id such as
    ``1e5a07c3`` is no number); anything else is a dotted config key
    compared as a JSON value."""
    if key in ("id", "name", "status", "method"):
        return str(getattr(run, key)) == (value if isinstance(value, str) else json.dumps(value))
    if key.startswith("tags."):
        return run.tags.get(key[len("tags.") :]) == raw
    flat = flatten(run.config)
    if key in flat:
        return flat[key] == value
    prefix = key + "."
    sub = {k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)}
    return bool(sub) and flatten(value) == sub  # a whole section, e.g. objective={"name": "moco", ...}


def select(runs: list[RunSummary], filters: list[str], last: int | None) -> list[RunSummary]:
    """The runs matching every filter; with ``last``, only the ``last`` most
    recent of those (listed oldest first)."""
    for text in filters:
        key, value = parse_filter(text)
        runs = [r for r in runs if _matches(r, key, value, text.partition("=")[2])]
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
    return _align(headers, cells)


def _align(headers: list[str], cells: list[list[str]]) -> str:
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


# --------------------------------------------------------------------- groups

ROW_FIELDS = ("name", "method", "status")  # --group-by keys read from the run, not its config
SEED_KEYS = {"seed"}  # the config keys a group is expected to vary in
MAX_DIFFERS_SHOWN = 6  # the text warning names this many differing keys, --json all of them
_MISSING = object()


@dataclass
class Group:
    """Runs that share the value of every --group-by key (None: the run lacks it)."""

    values: dict[str, Any]
    runs: list[RunSummary]

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_cell(v)}" for k, v in self.values.items())


def key_value(run: RunSummary, key: str, default: Any = None) -> Any:
    """A --group-by key of a run: ``name``, ``method``, ``status``, a tag
    (``tags.NAME``) or a dotted config key (a section gives its dict)."""
    if key in ROW_FIELDS:
        return getattr(run, key)
    if key.startswith("tags."):
        return run.tags.get(key[len("tags.") :], default)
    node: Any = run.config
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return default
    return node


def _unknown_key(key: str, runs: list[RunSummary]) -> UserError:
    tags = sorted({f"tags.{t}" for r in runs for t in r.tags})
    known = sorted(set().union(*(flatten(r.config) for r in runs))) + tags
    close = difflib.get_close_matches(key, known, n=3)
    return UserError(
        f"--group-by {key}: none of the {len(runs)} selected runs has this key. "
        + (f"Did you mean {' or '.join(close)}? " if close else "")
        + "Give a dotted key of the runs' config.json (e.g. objective.name "
        f"or trainer.lr), tags.NAME for a run's tag ({', '.join(tags) if tags else 'these runs have no tags'}), "
        "or name, method or status."
    )


def group_runs(runs: list[RunSummary], keys: list[str]) -> list[Group]:
    """The runs grouped by the values of ``keys``, groups in the order of
    their first run. Every key must be held by at least one run."""
    keys = list(dict.fromkeys(keys))
    for key in keys:
        if not key or "" in key.split("."):
            raise UserError(
                f"--group-by {key!r}: give a dotted config key (e.g. trainer.lr), tags.NAME, or name, method or status."
            )
        if runs and all(key_value(r, key, _MISSING) is _MISSING for r in runs):
            raise _unknown_key(key, runs)
    groups: dict[str, Group] = {}
    for run in runs:
        values = {k: key_value(run, k) for k in keys}
        ident = json.dumps(list(values.values()), sort_keys=True, default=repr)
        groups.setdefault(ident, Group(values, [])).runs.append(run)
    return list(groups.values())


def describe(values: list[float]) -> dict[str, Any]:
    """``{"mean", "std", "n"}`` of some values: the mean, the sample standard
    deviation (ddof=1; None for fewer than two values) and the count. A NaN
    or infinite value (a diverged run) is kept: mean and std turn NaN or
    infinite rather than hide it."""
    n = len(values)
    mean = statistics.fmean(values) if n else None
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1)) if mean is not None and n > 1 else None
    return {"mean": mean, "std": std, "n": n}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def group_table(groups: list[Group]) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """The group keys, the final metrics, and one row per group: its key
    values, ``runs`` (count), ``ids``, ``{"mean", "std", "n"}`` for every
    numeric final metric any run has (the table's final metrics), and
    ``differs``: the config keys other than the seed that are not the same
    in all of its runs."""
    keys = list(groups[0].values) if groups else []
    finals = {id(r): r.final_metrics() for g in groups for r in g.runs}
    metric_names = sorted({m for final in finals.values() for m, v in final.items() if _is_number(v)})
    rows = []
    for group in groups:
        row: dict[str, Any] = dict(group.values)
        row.update(runs=len(group.runs), ids=[r.id for r in group.runs])
        for name in metric_names:
            values = [finals[id(r)].get(name) for r in group.runs]
            row[name] = describe([v for v in values if _is_number(v)])
        row["differs"] = [k for k in differing_keys(group.runs) if k not in SEED_KEYS]
        rows.append(row)
    return keys, metric_names, rows


def _stat_cell(stat: dict[str, Any]) -> str:
    if not stat["n"]:
        return "-"
    mean = _cell(stat["mean"])
    return f"{mean} ({stat['n']})" if stat["std"] is None else f"{mean} ± {_cell(stat['std'])} ({stat['n']})"


def format_group_text(keys: list[str], metric_names: list[str], rows: list[dict[str, Any]]) -> str:
    """One aligned row per group, metrics as ``mean ± std (n)``, then a
    warning for each group whose runs differ in more than the seed."""
    if not rows:
        return "no runs match."
    headers = [_cut(c, keep_end=True) for c in [*keys, "runs", *metric_names]]
    cells = [
        [_cut(_cell(r[k])) for k in keys] + [str(r["runs"])] + [_stat_cell(r[m]) for m in metric_names] for r in rows
    ]
    lines = [_align(headers, cells)]
    for r in rows:
        if r["differs"]:
            shown = ", ".join(r["differs"][:MAX_DIFFERS_SHOWN])
            more = len(r["differs"]) - MAX_DIFFERS_SHOWN
            lines.append(
                f"warning: {', '.join(f'{k}={_cell(r[k])}' for k in keys)} (runs {', '.join(r['ids'])}) "
                f"differs in more than the seed: {shown}" + (f" and {more} more (see --json)" if more > 0 else "")
            )
    return "\n".join(lines)


def format_group_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2, default=str)


def format_group_csv(keys: list[str], metric_names: list[str], rows: list[dict[str, Any]]) -> str:
    """The JSON rows flattened: ``METRIC.mean``, ``METRIC.std``, ``METRIC.n``;
    ``ids`` and ``differs`` as JSON lists."""
    stats = [f"{m}.{s}" for m in metric_names for s in ("mean", "std", "n")]
    flat = [
        {k: r[k] for k in [*keys, "runs", "ids"]}
        | {f"{m}.{s}": r[m][s] for m in metric_names for s in ("mean", "std", "n")}
        | {"differs": r["differs"]}
        for r in rows
    ]
    return format_csv([*keys, "runs", "ids", *stats, "differs"], flat)


# ----------------------------------------------------------------------- plot


def _check_metrics(runs: list[RunSummary], metric_names: list[str]) -> None:
    available = sorted(set().union(*(r.metrics for r in runs))) if runs else []
    missing = [m for m in metric_names if not any(r.metrics.get(m, {}).get("values") for r in runs)]
    if missing:
        raise UserError(
            f"--metric {', '.join(missing)}: no listed run logged it. "
            f"Metrics they have: {', '.join(available) or 'none'}."
        )


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path) -> Path:
    plt = _pyplot()
    fig.tight_layout()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png", dpi=100)
    except OSError as exc:
        raise UserError(f"--plot {out}: cannot write the image ({exc}).") from None
    finally:
        plt.close(fig)
    return out


def plot(runs: list[RunSummary], metric_names: list[str], out: Path) -> Path:
    """One subplot per metric, one curve per run (labelled ``id name``), as a PNG."""
    _check_metrics(runs, metric_names)
    plt = _pyplot()
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
    return _save(fig, out)


@dataclass
class Curve:
    """A group's curve of one metric: at each step that every run of the
    group that logged the metric logged, the mean and the sample std of
    their values (``std`` is None when fewer than two runs logged it)."""

    steps: list[Any]
    mean: list[float]
    std: list[float] | None
    n: int  # the runs that logged the metric


def mean_curve(runs: list[RunSummary], metric: str) -> Curve:
    """The mean ± std curve of ``metric`` over ``runs`` (see :class:`Curve`);
    where a run logged a step twice (a resumed run), its last value counts."""
    series = [
        {s: v for s, v in zip(m["steps"], m["values"]) if _is_number(v)}
        for r in runs
        if (m := r.metrics.get(metric)) and m.get("values")
    ]
    steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
    stats = [describe([s[step] for s in series]) for step in steps]
    std = [st["std"] for st in stats] if len(series) > 1 else None
    return Curve(steps, [st["mean"] for st in stats], std, len(series))


def plot_groups(groups: list[Group], metric_names: list[str], out: Path) -> Path:
    """One PNG: a full-width subplot per metric with one curve per group (the
    mean over its runs, a shaded band of ±1 std, at the steps all of the
    group's runs that logged the metric logged; see :func:`mean_curve`), then
    one row with a bar chart per final metric: each group's mean, its std as
    the error bar. A group has one colour throughout."""
    _check_metrics([r for g in groups for r in g.runs], metric_names)
    _, finals, rows = group_table(groups)
    plt = _pyplot()
    ncols = max(1, len(finals))
    fig = plt.figure(figsize=(max(8, 3 * ncols), 3 * (len(metric_names) + bool(finals))))
    grid = fig.add_gridspec(len(metric_names) + bool(finals), ncols)
    for i, name in enumerate(metric_names):
        ax = fig.add_subplot(grid[i, :])
        for g, group in enumerate(groups):
            curve = mean_curve(group.runs, name)
            if not curve.steps:
                continue
            marker = "." if len(curve.steps) < 30 else None
            ax.plot(curve.steps, curve.mean, color=f"C{g % 10}", marker=marker, label=f"{group.label} (n={curve.n})")
            if curve.std is not None:
                low = [m - s for m, s in zip(curve.mean, curve.std)]
                high = [m + s for m, s in zip(curve.mean, curve.std)]
                ax.fill_between(curve.steps, low, high, color=f"C{g % 10}", alpha=0.2, linewidth=0)
        ax.set_title(f"{name} (mean ± 1 std)")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for j, name in enumerate(finals):
        ax = fig.add_subplot(grid[len(metric_names), j])
        stats = [r[name] for r in rows]
        ax.bar(
            range(len(groups)),
            [math.nan if s["mean"] is None else s["mean"] for s in stats],
            yerr=[math.nan if s["std"] is None else s["std"] for s in stats],
            color=[f"C{g % 10}" for g in range(len(groups))],
            capsize=3,
        )
        ax.set_xticks(range(len(groups)), [g.label for g in groups], rotation=30, ha="right", fontsize="small")
        ax.set_title(f"final {name}", fontsize="medium")
        ax.grid(alpha=0.3, axis="y")
    return _save(fig, out)
