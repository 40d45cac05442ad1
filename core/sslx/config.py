"""Experiment files: reading, ``--set`` overrides and validation.

An experiment is a JSON object with one section per component (each a
``name`` plus that component's parameters), a list of evaluators and the
trainer settings::

    {"seed": 0,
     "dataset": {"name": "<a dataset>", ...its parameters},
     "augmentation": {"name": "<an augmentation>", ...},
     "sampler": {"name": "<a pair sampler>", ...},
     "encoder": {"name": "<an encoder>", ...},
     "objective": {"name": "<a method>", ...},
     "evaluators": [{"name": "<an evaluator>", ...}, ...],
     "trainer": {"batch_size": 256, "epochs": 10, ...}}

The names are those the installed plugins register (``sslx plugins``).

Validation fills in defaults and reports every problem at once, each with its
JSON path, what was expected and what was found.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError

from sslx.components import Params
from sslx.errors import ConfigError, UserError
from sslx.registry import ComponentInfo

if TYPE_CHECKING:
    from sslx.plugins import PluginHost

UNION_TAG = re.compile(r"^(int|float|str|bool|none|list|tuple|dict|constrained-\w+|function-\w+|literal\[.*\])$")
COMPONENT_SECTIONS = ("dataset", "augmentation", "sampler", "encoder", "objective")


class TrainerParams(Params):
    """How the trainer runs: batch, optimizer, schedule, hardware, records."""

    batch_size: int = Field(
        256, ge=2, description="Global batch size: samples per optimizer step (each has several views)."
    )
    epochs: int = Field(
        1, ge=1, description="Passes over the training split. With max_steps set, whichever comes first ends training."
    )
    max_steps: int | None = Field(
        None, ge=1, description="Cap on optimizer steps (null: epochs decide). The LR schedule spans the capped length."
    )
    optimizer: Literal["sgd", "adamw"] = Field(
        "sgd", description="sgd (with momentum, the usual choice for SimCLR/MoCo with a ResNet) or adamw."
    )
    lr: float = Field(0.06, gt=0, description="Peak learning rate, reached after warm-up. Not rescaled by batch size.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum (or AdamW beta1).")
    weight_decay: float = Field(
        5e-4, ge=0, description="Weight decay, applied to weights only (never to biases or normalisation parameters)."
    )
    warmup_steps: int = Field(0, ge=0, description="Steps of linear warm-up from 0 to lr.")
    schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="LR after warm-up: cosine decay to final_lr_ratio * lr, or constant."
    )
    final_lr_ratio: float = Field(0.0, ge=0, le=1, description="Final LR of the cosine schedule as a fraction of lr.")
    grad_clip: float | None = Field(None, gt=0, description="Clip the gradient norm to this value (null: no clipping).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto picks CUDA when available, else the CPU.")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto: bf16 autocast on CUDA, fp32 on the CPU."
    )
    channels_last: bool = Field(
        True,
        description="Keep images and convolution weights in channels-last memory layout (faster convolutions on CPUs and GPUs).",
    )
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto",
        description="DataLoader worker processes; auto: one per spare core of this run's share of the machine "
        "(the cores divided among the sslx trainings running on it), at most 8.",
    )
    threads: Annotated[int, Field(ge=1)] | Literal["auto"] | None = Field(
        "auto",
        description="torch intra-op threads of the training process; auto: its share of the machine's cores "
        "(or of OMP_NUM_THREADS), re-divided as other sslx trainings start and end; "
        "null: torch's default.",
    )
    log_every: int = Field(10, ge=1, description="Log train.* and collapse.* metrics every this many steps.")
    checkpoint_every: int = Field(
        200, ge=1, description="Write the resumable checkpoint every this many steps (always at the end)."
    )
    eval_every: int | None = Field(
        None, ge=1, description="Also run the evaluators every this many steps (null: only at the end)."
    )
    eval_at_start: bool = Field(
        False,
        description="Also run the evaluators before the first step (logged at step 0): the "
        "untrained encoder's scores, the floor a run must beat.",
    )
    compile: bool = Field(
        False,
        description="torch.compile the training step's model (the objective, under DDP too): "
        "faster steps on GPUs after a compilation of seconds to minutes.",
    )
    fused_optimizer: bool = Field(
        False, description="Use the optimizer's fused kernel (one kernel for all parameters; faster on GPUs)."
    )
    augment_on_device: bool = Field(
        False,
        description="Keep the training images on the training device as uint8 and make "
        "each batch's views there, all samples at once, each with its own "
        "random parameters (no loader workers). Needs an augmentation with a "
        "batched path and a sampler whose samples are views of one image "
        "(`sslx describe` says which have them).",
    )
    sync_batchnorm: bool = Field(
        True,
        description="With several processes, normalise BatchNorm layers with the statistics of the "
        "global batch (SyncBatchNorm), as one process would; false keeps per-process "
        "statistics (faster, but the answer then depends on the number of processes).",
    )
    eval_batch_size: int = Field(512, ge=1, description="Batch size for feature extraction in evaluators.")
    progress: bool = Field(True, description="Show progress bars.")


class _Top(BaseModel):
    """The fixed top level of an experiment file (sections are checked apart)."""

    model_config = {"extra": "forbid"}
    description: str = Field("", description="What this experiment is for.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed of every random choice in the run.")


TOP_KEYS = ("description", "seed", *COMPONENT_SECTIONS, "evaluators", "trainer")


@dataclass
class ResolvedExperiment:
    """A validated experiment: the plain config (defaults filled in, what Sacred
    records) and the parsed parameters of each part."""

    config: dict[str, Any]
    components: dict[str, tuple[ComponentInfo, Params]]
    evaluators: list[tuple[ComponentInfo, Params]]
    trainer: TrainerParams

    @property
    def seed(self) -> int:
        return int(self.config["seed"])


# ----------------------------------------------------------------------------
# reading


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def read_experiment(path: str | Path) -> dict[str, Any]:
    """Parse an experiment file; syntax errors name the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(
            f"{path}: no such experiment file. Give the path to a JSON file such as experiments/moco.json."
        ) from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the experiment file: {exc.strerror}.") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path}, line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg}). Fix the file at that "
            f"position; a missing comma or quote, a trailing comma or a comment are the usual causes."
        ) from None
    except ValueError as exc:
        raise UserError(f"{path}: invalid experiment: {exc}; each key may appear once per object.") from None
    if not isinstance(data, dict):
        raise ConfigError(str(path), [("", f"expected a JSON object at the top level, got {_json_type(data)}.")])
    return data


def parse_value(raw: str) -> Any:
    """A ``--set`` value: JSON when it parses, else the plain string."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def apply_overrides(config: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply ``--set a.b=value`` assignments to a copy of ``config``.

    ``value`` is parsed as JSON when it parses (numbers, true/false/null,
    lists, objects, quoted strings), else taken as a plain string. List items
    are addressed by index: ``evaluators.0.k=50``.
    """
    config = json.loads(json.dumps(config))
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {assignment!r}: expected KEY=VALUE, for example --set objective.temperature=0.1.")
        value = parse_value(raw)
        parts = key.strip().split(".")
        node: Any = config
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            where = ".".join(parts[: i + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise UserError(f"--set {assignment!r}: {where} is not an item of a list of {len(node)}.")
                idx = int(part)
                if last:
                    node[idx] = value
                else:
                    node = node[idx]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise UserError(f"--set {assignment!r}: {'.'.join(parts[:i])} is a {_json_type(node)}, not an object.")
    return config


# ----------------------------------------------------------------------------
# validation


def resolve(
    data: dict[str, Any], host: PluginHost, source: str = "experiment", overrides: Sequence[str] = ()
) -> ResolvedExperiment:
    """Validate an experiment against the registered components.

    Raises :class:`ConfigError` listing every problem with its JSON path; a
    problem in a value that one of the ``overrides`` (the ``--set``
    assignments applied to ``data``) wrote names that assignment.
    """
    problems: list[tuple[str, str]] = []
    config: dict[str, Any] = {}
    for key in data:
        if key not in TOP_KEYS and key != "$schema":  # "$schema" is for editors only
            problems.append((f"/{key}", _unknown_key(key, TOP_KEYS, "top-level key")))
    top = _validate_model(_Top, {k: data[k] for k in ("description", "seed") if k in data}, "", problems, None)
    if top is not None:
        config.update(top.model_dump())

    components: dict[str, tuple[ComponentInfo, Params]] = {}
    for section in COMPONENT_SECTIONS:
        if section not in data:
            problems.append(
                (
                    f"/{section}",
                    f'missing section: which {section} to use, as {{"name": ...}}. ' + _names(host, section),
                )
            )
            continue
        got = _component(host, section, data[section], f"/{section}", problems)
        if got is not None:
            components[section] = got
            config[section] = {"name": got[0].name, **got[1].model_dump(mode="json")}

    evaluators: list[tuple[ComponentInfo, Params]] = []
    raw_evals = data.get("evaluators", [])
    if not isinstance(raw_evals, list):
        problems.append(("/evaluators", f"expected a list of evaluators, got {_json_type(raw_evals)}."))
        raw_evals = []
    config["evaluators"] = []
    for i, item in enumerate(raw_evals):
        got = _component(host, "evaluator", item, f"/evaluators/{i}", problems)
        if got is not None:
            evaluators.append(got)
            config["evaluators"].append({"name": got[0].name, **got[1].model_dump(mode="json")})

    raw_trainer = data.get("trainer", {})
    trainer = _validate_model(TrainerParams, raw_trainer, "/trainer", problems, "trainer")
    if trainer is not None:
        config["trainer"] = trainer.model_dump(mode="json")

    if problems:
        pointers = {"/" + a.partition("=")[0].strip().replace(".", "/"): a for a in overrides}
        raise ConfigError(source, problems, pointers)
    assert trainer is not None
    return ResolvedExperiment(config=config, components=components, evaluators=evaluators, trainer=trainer)


def json_schema(host: PluginHost) -> dict[str, Any]:
    """A JSON Schema of experiment files for the installed plugins (for
    editors: reference it with ``"$schema"``)."""

    def one_of(kind: str) -> dict[str, Any]:
        return {"oneOf": [info.json_schema() for info in host.registry.all() if info.kind == kind]}

    top = _Top.model_json_schema()["properties"]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "sslx experiment",
        "type": "object",
        "additionalProperties": False,
        "required": list(COMPONENT_SECTIONS),
        "properties": {
            "$schema": {"type": "string"},
            **top,
            **{section: one_of(section) for section in COMPONENT_SECTIONS},
            "evaluators": {"type": "array", "items": one_of("evaluator")},
            "trainer": TrainerParams.model_json_schema(),
        },
    }


def resolve_component(host: PluginHost, kind: str, raw: Any, source: str) -> tuple[ComponentInfo, Params]:
    """Validate one component given as ``{"name": ..., <params>}`` (the
    evaluator of ``sslx eval``); raises :class:`ConfigError` naming ``source``."""
    problems: list[tuple[str, str]] = []
    got = _component(host, kind, raw, "", problems)
    if problems or got is None:
        # the paths are parameter names here, not places in a file: "--set k=0: k: expected ..."
        raise UserError(
            "\n".join(
                f"{source}: "
                + (f"{path.strip('/').replace('/', '.')}: " if path.strip("/") not in ("", "name") else "")
                + message
                for path, message in problems
            )
        )
    return got


def _component(
    host: PluginHost, kind: str, raw: Any, path: str, problems: list[tuple[str, str]]
) -> tuple[ComponentInfo, Params] | None:
    if not isinstance(raw, dict):
        problems.append((path, f'expected an object such as {{"name": ...}}, got {_json_type(raw)}.'))
        return None
    name = raw.get("name")
    if name is None:
        problems.append((path, f"missing `name`: which {kind} to use. " + _names(host, kind)))
        return None
    info = host.registry.find(kind, name) if isinstance(name, str) else None
    if info is None:
        problems.append((f"{path}/name", host.registry.unknown_name_message(kind, name)))
        return None
    params = _validate_model(info.cls.Params, {k: v for k, v in raw.items() if k != "name"}, path, problems, info)
    return (info, params) if params is not None else None


def _validate_model(model: type[BaseModel], raw: Any, path: str, problems: list[tuple[str, str]], owner: Any) -> Any:
    if not isinstance(raw, dict):
        problems.append((path, f"expected an object, got {_json_type(raw)}."))
        return None
    try:
        return model.model_validate_json(json.dumps(raw), strict=True)
    except ValidationError as exc:
        whose = _owner(owner)
        hint = (
            " See `sslx describe " + (owner if isinstance(owner, str) else f"{owner.kind} {owner.name}") + "`."
            if owner
            else ""
        )
        fields = list(model.model_fields)
        grouped: dict[str, list[Any]] = {}
        for err in exc.errors():
            loc = "/".join(str(p) for p in err["loc"] if not _is_union_tag(p))
            grouped.setdefault(f"{path}/{loc}" if loc else path, []).append(err)
        for where, errs in grouped.items():
            err = errs[0]
            if err["type"] == "extra_forbidden":
                problems.append((where, _unknown_key(str(err["loc"][-1]), fields, f"parameter of {whose}")))
            elif err["type"] == "missing":
                problems.append((where, f"missing required parameter of {whose}.{hint}"))
            elif err["type"] == "value_error":
                problems.append((where, f"{_expected(err)} ({whose})."))
            else:
                expected = " or ".join(dict.fromkeys(_expected(e) for e in errs)).replace(" or expected ", " or ")
                problems.append((where, f"{expected}, got {json.dumps(err.get('input'))} ({whose}).{hint}"))
        return None


def _is_union_tag(part: Any) -> bool:
    """pydantic names the member of a union that failed (``int``,
    ``literal['auto']``) in the error location; those are not JSON keys."""
    return isinstance(part, str) and UNION_TAG.match(part) is not None


def _expected(err: Any) -> str:
    """pydantic's "Input should be greater than 0" as "expected a value greater than 0"."""
    msg = str(err["msg"])
    if msg.startswith("Input should be "):
        rest = msg[len("Input should be ") :]
        if rest.split(" ")[0] in {"greater", "less", "a", "an"} or rest.startswith(("'", '"')):
            rest = ("a value " if rest.startswith(("greater", "less")) else "") + rest
        return "expected " + rest
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    return msg[0].lower() + msg[1:]


def _owner(owner: Any) -> str:
    if owner is None:
        return "top level of the experiment"
    if isinstance(owner, str):
        return owner
    return f"{owner.kind} {owner.name!r} from {owner.provenance}"


def _names(host: PluginHost, kind: str) -> str:
    names = host.registry.names(kind)
    return f"Registered {kind}s: {', '.join(names)}." if names else f"No {kind} is registered: check `sslx plugins`."


def _unknown_key(key: str, known: Any, what: str) -> str:
    close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {what}: {key!r}.{hint} Allowed: {', '.join(known)}."


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    ) + (f" ({json.dumps(value)})" if isinstance(value, (int, float, str)) and not isinstance(value, bool) else "")
