"""Configuration: frozen dataclasses per section, filled from defaults < config file < CLI flags.

Every section is a frozen dataclass whose fields carry their help text in ``metadata``. The CLI
derives one flag per field (``select.cap`` -> ``--cap``); flag names are unique across sections so
``wit shards`` can accept all of them. Bad values fail before any work with a :class:`ConfigError`
that names both the config key and the flag.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import typing
from pathlib import Path
from typing import Any

import yaml

# section name -> "module:Class". Sections live beside the code they configure.
SECTIONS: dict[str, str] = {
    "run": "pipeline.config:RunConfig",
    "demo_world": "pipeline.demo_world.config:DemoWorldConfig",
    "queries": "queries.config:QueriesConfig",
    "select": "pipeline.select.config:SelectConfig",
    "download": "pipeline.download.config:DownloadConfig",
    "filter": "pipeline.filter.config:FilterConfig",
    "report": "pipeline.report.config:ReportConfig",
    "train": "clip_model.config:TrainConfig",
    "eval": "clip_model.config:EvalConfig",
}

LOCAL_RUNNERS = ("local", "DirectRunner", "FnApiRunner")
DASK_RUNNERS = ("dask", "DaskRunner", "apache_beam.runners.dask.dask_runner.DaskRunner")
# Beam runners that need no code of ours to start (Dataflow, a job service, ...), by short name.
OTHER_RUNNERS = (
    "DataflowRunner",
    "PortableRunner",
    "FlinkRunner",
    "SparkRunner",
    "PrismRunner",
    "TestDataflowRunner",
)


class ConfigError(ValueError):
    """A configuration problem; ``key`` is the config key (``section.field``) to fix."""

    def __init__(self, key: str, message: str, flag: str | None = None):
        self.key = key
        self.flag = flag or flag_for(key)
        super().__init__(f"{key} ({self.flag}): {message}")


def opt(default: Any = dataclasses.MISSING, help: str = "", choices=None, **kw) -> Any:
    """A dataclass field carrying its CLI help (and allowed values)."""
    meta = {"help": help}
    if choices is not None:
        meta["choices"] = tuple(choices)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta, **kw)
    return dataclasses.field(default=default, metadata=meta, **kw)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Options shared by every stage: where outputs go and how Beam runs."""

    out: str = opt("out/demo", "output directory (local path or any Beam filesystem URL)")
    runner: str = opt(
        "local",
        "Beam runner: 'local' (Beam's in-process FnApiRunner), 'dask' (a dask.distributed "
        "cluster, see --dask-scheduler) or a Beam runner name such as DataflowRunner, "
        "PortableRunner, FlinkRunner",
    )
    workers: int = opt(
        2,
        "local runner: worker processes, except the download's threads (its work releases the "
        "GIL); dask: the worker processes of the local cluster started when no scheduler is given",
    )
    dask_scheduler: str = opt(
        "",
        "with --runner dask: the address of a running Dask scheduler (tcp://host:8786) or the "
        "path of its scheduler file (dask scheduler --scheduler-file F); empty: start a local "
        "cluster of --workers processes for the run",
    )
    seed: int = opt(0, "seed for every deterministic choice (sampling, generation, training)")
    beam_args: list = opt([], "extra Beam pipeline options, e.g. ['--project=p', '--region=r']")
    force: bool = opt(False, "re-run stages even when their outputs are complete and up to date")
    progress: bool = opt(True, "show progress bars")

    def validate(self) -> None:
        if not self.out:
            raise ConfigError("run.out", "must not be empty")
        if self.workers < 1:
            raise ConfigError("run.workers", f"must be >= 1, got {self.workers}")
        if not isinstance(self.beam_args, list) or not all(
            isinstance(a, str) for a in self.beam_args
        ):
            raise ConfigError("run.beam_args", "must be a list of strings like '--project=p'")
        if not (
            self.runner in LOCAL_RUNNERS + DASK_RUNNERS + OTHER_RUNNERS or _dotted(self.runner)
        ):
            raise ConfigError(
                "run.runner",
                f"unknown runner {self.runner!r}; valid: local, dask, "
                + ", ".join(OTHER_RUNNERS)
                + ", or a runner class as module.path.ClassName",
            )
        if self.dask_scheduler and not self.is_dask:
            raise ConfigError("run.dask_scheduler", "is only used with --runner dask")

    @property
    def is_local(self) -> bool:
        return self.runner in LOCAL_RUNNERS

    @property
    def is_dask(self) -> bool:
        return self.runner in DASK_RUNNERS


def _dotted(name: str) -> bool:
    """A fully qualified class name, as Beam accepts for --runner (checked when it is imported)."""
    parts = name.split(".")
    return len(parts) > 1 and all(p.isidentifier() for p in parts)


def at_least(cfg: Any, section: str, minimum: float, *keys: str) -> None:
    """Raise ConfigError for the first of ``keys`` whose value on ``cfg`` is below ``minimum``."""
    for key in keys:
        value = getattr(cfg, key)
        if value < minimum:
            raise ConfigError(f"{section}.{key}", f"must be >= {minimum}, got {value}")


def flag_for(key: str) -> str:
    """``select.cap`` -> ``--cap``; the CLI flag that sets a config key."""
    return "--" + key.split(".", 1)[-1].replace("_", "-")


def section_class(name: str) -> type:
    """Import the dataclass of a config section."""
    module, cls = SECTIONS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def field_types(cls: type) -> dict[str, Any]:
    """Resolved type of each field of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def coerce(key: str, value: Any, typ: Any) -> Any:
    """Convert a value from YAML or the command line to the field's type, or raise ConfigError."""
    origin = typing.get_origin(typ)
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None or value == "none":
            return None
        return coerce(key, value, args[0])
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in (
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        ):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(key, f"expected true or false, got {value!r}")
    if typ in (int, float):
        if isinstance(value, bool):
            raise ConfigError(key, f"expected a number, got {value!r}")
        try:
            number = typ(value)
        except (TypeError, ValueError):
            raise ConfigError(
                key, f"expected {'an integer' if typ is int else 'a number'}, got {value!r}"
            ) from None
        if typ is int and isinstance(value, float) and value != number:
            raise ConfigError(key, f"expected an integer, got {value!r}")
        return number
    if typ is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(key, f"expected a string, got {value!r}")
        return str(value)
    if typ is list or origin is list:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()] if value else []
        if not isinstance(value, (list, tuple)):
            raise ConfigError(key, f"expected a list, got {value!r}")
        return [str(v).strip() if isinstance(v, str) else v for v in value]
    if typ is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, f"expected a mapping, got {value!r}")
        return dict(value)
    return value


def build_section(name: str, values: dict[str, Any]) -> Any:
    """Instantiate and validate one section from a mapping of overrides."""
    cls = section_class(name)
    types = field_types(cls)
    kwargs = {}
    for key, value in values.items():
        if key not in types:
            known = ", ".join(sorted(types))
            raise ConfigError(
                f"{name}.{key}", f"unknown key; known keys of '{name}': {known}", flag="--config"
            )
        kwargs[key] = coerce(f"{name}.{key}", value, types[key])
    cfg = cls(**kwargs)
    for f in dataclasses.fields(cls):
        choices = f.metadata.get("choices")
        if choices and getattr(cfg, f.name) not in choices:
            raise ConfigError(
                f"{name}.{f.name}",
                f"must be one of {', '.join(map(str, choices))}; got {getattr(cfg, f.name)!r}",
            )
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


def load_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a YAML (or JSON) config file into {section: {key: value}}; unknown sections fail."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("config", f"config file not found: {path}", flag="--config")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "parse error"
        raise ConfigError(
            "config", f"{path} is not valid YAML{where}: {problem}", flag="--config"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError("config", f"{path} must hold a mapping of sections", flag="--config")
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(
                str(section),
                f"unknown section in {path}; known: {', '.join(SECTIONS)}",
                flag="--config",
            )
        if not isinstance(values, dict):
            raise ConfigError(str(section), f"section must be a mapping in {path}", flag="--config")
    return data


def resolve(
    sections: list[str],
    file_values: dict[str, dict] | None = None,
    flag_values: dict[str, dict] | None = None,
) -> dict[str, Any]:
    """Defaults < file < flags, for each named section; returns {section: dataclass}."""
    file_values = file_values or {}
    flag_values = flag_values or {}
    resolved = {}
    for name in sections:
        merged = dict(file_values.get(name, {}))
        merged.update(flag_values.get(name, {}))
        resolved[name] = build_section(name, merged)
    return resolved


def expand_inputs(patterns: list[str], key: str) -> list[str]:
    """Files matching each glob, in pattern order without repeats; a pattern matching nothing is a ConfigError."""
    from pipeline import fs

    paths: list[str] = []
    for pattern in patterns:
        found = fs.glob(pattern)
        if not found:
            raise ConfigError(key, f"no file matches {pattern!r}")
        paths.extend(p for p in found if p not in paths)
    return paths


def to_jsonable(configs: dict[str, Any]) -> dict[str, dict]:
    """The resolved configuration as plain JSON data."""
    return {name: dataclasses.asdict(cfg) for name, cfg in configs.items()}


def write_resolved(configs: dict[str, Any], out_dir: str) -> str:
    """Merge the resolved sections into ``<out>/config.json`` (other sections already there stay)."""
    from pipeline import fs

    path = fs.join(out_dir, "config.json")
    existing = {}
    if fs.exists(path):
        try:
            existing = json.loads(fs.read_text(path))
        except ValueError:
            existing = {}
    existing.update(to_jsonable(configs))
    fs.write_text_atomic(path, json.dumps(existing, indent=2, sort_keys=True) + "\n")
    return path
