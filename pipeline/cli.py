"""The ``wit`` command: one subcommand per stage, plus ``shards`` (all of them) and ``train``.

Flags are derived from the config dataclasses (``select.cap`` -> ``--cap``); a config file
(``--config configs/x.yaml``) sets the same keys by section. Flags win over the file, the file over
defaults. Everything after a bare ``--`` is handed to Beam (``-- --project=p --region=r``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
import typing

from pipeline import config as C

# subcommand -> (help, sections it reads, what it runs)
COMMANDS: dict[str, tuple[str, list[str], str]] = {
    "demo-world": (
        "generate the offline demo world (Wikipedia dump, pageviews, WAT files, tables) and optionally serve its images",
        ["run", "demo_world"],
        "stage:demo-world",
    ),
    "queries": (
        "build the query list from Wikipedia, pageviews and WordNet",
        ["run", "queries"],
        "stage:queries",
    ),
    "select": (
        "extract (image URL, alt text) candidates, match queries, balance per query",
        ["run", "select"],
        "stage:select",
    ),
    "download": (
        "download, verify and resize images into webdataset shards",
        ["run", "download"],
        "stage:download",
    ),
    "filter": (
        "drop duplicate images, score pairs with CLIP, identify caption languages; reshard",
        ["run", "filter"],
        "stage:filter",
    ),
    "report": (
        "render the audit report (HTML + JSON) from what is on disk",
        ["run", "report"],
        "stage:report",
    ),
    "shards": (
        "everything: demo world (unless real inputs are given) -> queries -> select -> download -> report",
        ["run", "demo_world", "queries", "select", "download", "filter", "report"],
        "pipeline.all_stages:run",
    ),
    "train": (
        "train the bundled CLIP on the shards, then evaluate zero-shot",
        ["run", "train", "eval"],
        "clip_model.main:run",
    ),
    "eval": (
        "evaluate a checkpoint (ours, OpenAI's or open_clip's): zero-shot on a labelled image "
        "folder, retrieval on held-out shards",
        ["run", "train", "eval"],
        "clip_model.main:evaluate_checkpoint",
    ),
}


class _Parser(argparse.ArgumentParser):
    """argparse that exits with code 2 and a one-line message naming the bad flag."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_section_flags(parser: argparse.ArgumentParser, section: str) -> None:
    cls = C.section_class(section)
    types = C.field_types(cls)
    group = parser.add_argument_group(f"{section} options (config file section '{section}:')")
    for f in dataclasses.fields(cls):
        typ = types[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        flag = C.flag_for(f"{section}.{f.name}")
        help_text = f"{f.metadata.get('help', '')} (default: {default!r})".replace("%", "%%")
        kwargs: dict = {
            "dest": f"{section}.{f.name}",
            "default": argparse.SUPPRESS,
            "help": help_text,
        }
        if typ is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typ is list or typing.get_origin(typ) is list:
            kwargs["nargs"] = "*"
            kwargs["metavar"] = f.name.upper()
        else:
            kwargs["metavar"] = f.name.upper()
            if f.metadata.get("choices"):
                kwargs["metavar"] = "{" + ",".join(map(str, f.metadata["choices"])) + "}"
        group.add_argument(flag, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The full ``wit`` parser with every subcommand and its flags."""
    parser = _Parser(
        prog="wit",
        description="Build CLIP-style image-text datasets with Apache Beam, and train CLIP on them.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (help_text, sections, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "--config",
            default=None,
            help="YAML config file (sections: " + ", ".join(sections) + ")",
        )
        for section in sections:
            _add_section_flags(p, section)
    return parser


def parse(argv: list[str]) -> tuple[str, dict[str, typing.Any], str | None]:
    """Parse argv into (command, resolved configs, config file path); exits 2 on bad input."""
    beam_extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, beam_extra = argv[:i], argv[i + 1 :]
    args = build_parser().parse_args(argv)
    _, sections, _ = COMMANDS[args.command]
    flags: dict[str, dict] = {}
    for dest, value in vars(args).items():
        if "." in dest:
            section, key = dest.split(".", 1)
            flags.setdefault(section, {})[key] = value
    file_values = C.load_file(args.config) if args.config else {}
    configs = C.resolve(sections, file_values, flags)
    if beam_extra:
        run = configs["run"]
        configs["run"] = dataclasses.replace(run, beam_args=[*run.beam_args, *beam_extra])
    return args.command, configs, args.config


def dispatch(command: str, configs: dict[str, typing.Any]) -> dict:
    """Run a parsed command; returns its summary."""
    target = COMMANDS[command][2]
    if target.startswith("stage:"):
        from pipeline import all_stages

        return all_stages.execute(target.split(":", 1)[1], configs).summary
    module, func = target.split(":")
    import importlib

    return getattr(importlib.import_module(module), func)(**configs) or {}


BEAM_COMMANDS = ("queries", "select", "download", "filter", "shards")


@contextlib.contextmanager
def _cluster(command: str, run):
    """For ``--runner dask``: join or start the cluster before any work, close it at the end."""
    if not (run.is_dask and command in BEAM_COMMANDS):
        yield
        return
    from pipeline import dask_cluster

    try:
        dask_cluster.session(run)
        yield
    finally:
        dask_cluster.close()


def recorded_sections(command: str, configs: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """The sections a command records in ``<out>/config.json``: ``wit eval`` reads the train
    section only for the model's device and vocabulary, so the run's training settings stay."""
    return {k: v for k, v in configs.items() if not (command == "eval" and k == "train")}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``wit`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        command, configs, _ = parse(argv)
    except C.ConfigError as e:
        print(f"wit: configuration error: {e}", file=sys.stderr)
        return 2
    C.write_resolved(recorded_sections(command, configs), configs["run"].out)
    started = time.time()
    from pipeline.invariants import PortabilityError, StageFailed

    try:
        with _cluster(command, configs["run"]):
            summary = dispatch(command, configs)
    except C.ConfigError as e:  # stages may check inputs (e.g. files exist) before any work
        print(f"wit: configuration error: {e}", file=sys.stderr)
        return 2
    except StageFailed as e:  # the stage's outputs failed its end check: no _SUCCESS.json
        print(f"wit: {e}", file=sys.stderr)
        return 1
    except PortabilityError as e:  # refused before it ran: some runner would run it wrongly
        print(f"wit {command}: not run: {e}", file=sys.stderr)
        return 1
    if command == "shards":
        from pipeline.all_stages import format_summary

        print(format_summary(summary))
    elif summary:
        print(json.dumps(summary, indent=2, default=str))
        for line in summary.get("warnings", []):  # the run's last lines: what it could not read
            print(f"wit {command}: warning: {line}", file=sys.stderr)
    print(f"wit {command}: finished in {time.time() - started:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
