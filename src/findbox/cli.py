"""The `findbox` command line.

Each subcommand lives in the module that owns it; that module exposes
`add_arguments(parser)` and `main(args) -> int`. Modules are imported only
when their command runs, so `findbox synth` never pays for torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import importlib
import inspect
import logging
import os
import re
import sys
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")

# command name -> (module, one-line help). Nested names ("train detector") are groups.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("findbox.serve.cli", "serve the /identify HTTP protocol"),
    "predict": ("findbox.predict", "find captions in image files and print the boxes as JSON lines"),
    "synth": ("findbox.synth.cli", "generate a synthetic flying-objects data set"),
    "crops": ("findbox.train.crops", "cut ground-truth crops for scorer training"),
    "train detector": ("findbox.train.detector", "train the single-class YOLO detector"),
    "train scorer": ("findbox.train.scorer", "fine-tune the SigLIP scorer on crops"),
    "convert-checkpoint": ("findbox.train.convert", "strip wrapper prefixes from a checkpoint"),
    "eval": ("findbox.eval.cli", "score a model or a server on a vlm.jsonl data set"),
    "calibrate": ("findbox.eval.calibrate", "measure which faster precisions keep a scorer's answers; "
                  "--precision auto reads the record"),
    "data import": ("findbox.data.import_cli", "read a RefCOCO, ODVG, COCO or YOLO data set into vlm.jsonl"),
    "data export": ("findbox.data.export_cli", "write a vlm.jsonl (and predictions) as ODVG or COCO"),
}
GROUP_HELP = {"train": "train a model", "data": "bring data sets in from other formats and out to them"}


def _wanted_module(argv: list[str]) -> str | None:
    """The module of the command named on the command line, if any."""
    words = [a for a in argv if not a.startswith("-")]
    for n in (2, 1):
        name = " ".join(words[:n])
        if name in COMMANDS:
            return COMMANDS[name][0]
    return None


# Flags that users bring from ultralytics (and YOLOv5) habits -> the findbox flag (or positional
# argument, by metavar) that means that thing here; told only where the command has no flag of that name.
FOREIGN_FLAGS: dict[str, tuple[str, str]] = {
    "--model": ("--detector", "ultralytics' --model (the detector weights)"),
    "--weights": ("--detector", "YOLOv5's --weights (the detector weights)"),
    "--source": ("IMAGE", "ultralytics' --source (the images)"),
    "--data": ("DATA_JSONL", "ultralytics' --data (the data set)"),
    "--img": ("--imgsz", "YOLOv5's --img (the inference size)"),
    "--img-size": ("--imgsz", "YOLOv5's --img-size (the inference size)"),
    "--batch-size": ("--batch", "ultralytics' --batch-size"),
    "--text": ("--caption", "a grounding model's --text (the caption)"),
    "--prompt-text": ("--caption", "a grounding model's --prompt-text (the caption)"),
}


class _Parser(argparse.ArgumentParser):
    """argparse whose unknown flags are reported by the subcommand that got them, with its own usage
    and a "did you mean" (argparse reports them at the top level, with the top-level usage)."""

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            leaf = getattr(parsed, "_parser", None) or self
            leaf.error(unrecognized_message(leaf, extras))
        return parsed


def unrecognized_message(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """'unrecognized arguments: ...' plus, per unknown flag, the flag of `parser` it likely meant."""
    hints = [hint for word in extras if word.startswith("--") and (hint := flag_hint(parser, word.split("=")[0]))]
    return f"unrecognized arguments: {' '.join(extras)}" + "".join(f"\n  {h}" for h in hints)


def flag_hint(parser: argparse.ArgumentParser, flag: str) -> str | None:
    """What an unknown `flag` most likely meant in `parser`: a foreign tool's name for one of its
    arguments (FOREIGN_FLAGS), else the closest of its own flags by spelling; None if nothing is close."""
    import difflib

    own = [s for s in parser._option_string_actions if s.startswith("--")]
    positionals = {a.metavar or a.dest: a for a in parser._actions if not a.option_strings}
    if flag in FOREIGN_FLAGS:
        target, what = FOREIGN_FLAGS[flag]
        if target in own:
            return f"{flag}: {what} is {target} in findbox {_command_of(parser)}"
        if target in positionals:
            return f"{flag}: {what} is the positional argument {target} in findbox {_command_of(parser)}"
    close = difflib.get_close_matches(flag, own, n=3, cutoff=0.6)
    return f"{flag}: did you mean {' or '.join(close)}?" if close else None


def _command_of(parser: argparse.ArgumentParser) -> str:
    return parser.prog.removeprefix("findbox ")


def _version() -> str:
    """findbox's version, with the Python it runs on."""
    from findbox import __version__

    return f"findbox {__version__} (Python {sys.version.split()[0]})"


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = _Parser(prog="findbox", description="Find the object a caption describes.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    wanted = _wanted_module(argv)
    for name, (module_name, help_text) in COMMANDS.items():
        *group, leaf = name.split()
        target = sub
        if group:
            if group[0] not in groups:
                gp = sub.add_parser(group[0], help=GROUP_HELP[group[0]], description=GROUP_HELP[group[0]])
                groups[group[0]] = gp.add_subparsers(dest="subcommand", metavar="WHAT", required=True)
            target = groups[group[0]]
        p = target.add_parser(leaf, help=help_text, description=help_text)
        p.set_defaults(_module=module_name, _parser=p)
        p.add_argument("--log-level", default="info", type=str.lower, choices=("debug", "info", "warning", "error"),
                       help="log level (default info)")
        p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only (--log-level warning)")
        if module_name == wanted:  # only the chosen command imports its module
            importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    from findbox.env import MissingExtra, ensure_offline

    ensure_offline()  # before any command module imports a model library
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    module = importlib.import_module(args._module)
    command = " ".join(n for n in (args.command, getattr(args, "subcommand", None)) if n)
    if args.quiet:
        args.log_level = "warning"  # commands read args.log_level (serve hands it to uvicorn and Ray)
    del args._parser, args.quiet  # parsing state, not options: the commands' option readers never see them
    setup_logging(args.log_level)
    try:
        return int(module.main(args) or 0)
    except (CommandError, MissingExtra, ValueError, TypeError, OSError) as exc:
        # bad input or a missing extra: the message names the field or file; a traceback would only hide it
        if os.environ.get("FINDBOX_TRACEBACK"):
            raise
        print_error(command, exc)
        return 2


class CommandError(Exception):
    """A command cannot do what was asked for a reason outside findbox (e.g. a server that does
    not answer); printed like bad input, without a traceback."""


def print_error(command: str, message: object) -> None:
    """The one way a command reports a failure: `findbox COMMAND: error: MESSAGE` on stderr."""
    print(f"findbox {command}: error: {message}", file=sys.stderr)


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str = "info") -> None:
    """Root logging for every command; findbox's own loggers at `level` even when a host
    application (or pytest) configured the root logger first."""
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)
    logging.getLogger("findbox").setLevel(level.upper())
    # httpx logs each request it sends at INFO: `eval --server` would print a line per batch; the server
    # logs the requests it answers, one line each, so the client's lines show at debug only
    logging.getLogger("httpx").setLevel("DEBUG" if level.upper() == "DEBUG" else "WARNING")
    from findbox.logs import progress_shown, quiet_third_party_bars

    if not progress_shown():  # --quiet / --log-level warning: no bars either, findbox's or the libraries'
        quiet_third_party_bars()


# --- model options: serve, eval and predict ------------------------------------------------------


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose and configure the models (PipelineConfig), shared by serve, eval
    and predict. Where the bundled demo brings its own settings, the help shows both defaults."""
    from findbox.config import PipelineConfig

    add_options(parser, PipelineConfig, "models", shown=_bundle_shown())


def serve_config_from_args(args: argparse.Namespace):
    """ServeConfig from field defaults < the bundled demo's settings (for the bundled models
    only) < --config FILE.toml < flags. A parser without server flags still reads a serve TOML."""
    from findbox.bundle import with_bundle_defaults
    from findbox.config import ServeConfig

    data = options_from_args(args, ServeConfig)
    data["pipeline"] = with_bundle_defaults(data.get("pipeline", {}))
    return config_from_args(args, ServeConfig, data)


def _bundle_shown() -> dict[str, str]:
    """Field name -> "DEFAULT; BUNDLED with the bundled demo ..." where the bundle's setting differs."""
    from findbox.bundle import bundle_detection_defaults, bundle_ranking_defaults
    from findbox.config import DetectorConfig, PipelineConfig

    shown = {}
    for cls, settings, models in ((DetectorConfig, bundle_detection_defaults(), "detector"),
                                  (PipelineConfig, bundle_ranking_defaults(), "detector and scorer")):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name, value in settings.items():
            f = fields.get(name)
            if f is None:
                continue
            default = field_default(f)
            if isinstance(default, enum.Enum):
                value = type(default)(value)
            if value != default:
                shown[name] = f"{default_text(f, default)}; {default_text(f, value)} with the bundled demo {models}"
    return shown


# --- options from config dataclasses --------------------------------------------------------------


def add_options(parser: argparse.ArgumentParser, cls: type, title: str | None = None,
                shown: dict[str, str] | None = None, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of the config dataclass `cls`; a nested config's fields are flattened
    (PipelineConfig.detection.imgsz is --imgsz) in a group of their own.

    The flag is --kebab-name unless `option(flag=...)` names another; bool fields are switches
    (--name, or --no-name for a field that defaults to True), Enum fields take their values.
    Every flag defaults to None so that `config_from_args` can apply: field default <
    --config FILE.toml < flag. The help text is the field's `option(help=...)` (else its
    comment) plus the default, taken from the field or from `shown` (field name -> text).
    `skip` leaves fields off the command line; a TOML file still sets them.
    """
    from findbox.config import nested_config

    if "--config" not in parser._option_string_actions:
        parser.add_argument("--config", metavar="FILE.toml",
                            help="TOML file with the options' names as keys (--max-det is max_det); flags win over it")
    comments = _field_comments(cls)
    group = parser.add_argument_group(title) if title else parser
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.metadata.get("cli", True):
            continue
        sub = nested_config(cls, f.name)
        if sub is not None:
            add_options(parser, sub, f.name, shown, skip)
            continue
        flag, kwargs = _flag(cls, f, comments.get(f.name, ""), (shown or {}).get(f.name))
        group.add_argument(flag, dest=f.name, default=None, **kwargs)


def option_names(cls: type) -> list[str]:
    """Field names `add_options(parser, cls)` makes flags for, nested configs' fields included."""
    from findbox.config import nested_config

    names = []
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True):
            continue
        sub = nested_config(cls, f.name)
        names += option_names(sub) if sub is not None else [f.name]
    return names


def flag_of(cls: type, name: str) -> str:
    """The flag of field `name` (searched in nested configs too), e.g. "--max-det"."""
    from findbox.config import _key_path, _owner

    path = _key_path(cls, name)
    assert path is not None, name
    f = next(f for f in dataclasses.fields(_owner(cls, path)) if f.name == path[-1])
    return _flag_name(f)


def options_from_args(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The nested dict of what the user set for `cls`: the --config TOML file's keys, then the
    flags given (not None) over them. Keys of the TOML file that `cls` lacks raise ValueError."""
    from findbox.config import _key_path, load_toml, nest_keys

    path = getattr(args, "config", None)
    data = nest_keys(cls, load_toml(path), str(path)) if path else {}
    for name, value in vars(args).items():
        if value is None or (where := _key_path(cls, name)) is None:
            continue  # not given, or the command's own option (e.g. eval's --out)
        target = data
        for step in where[:-1]:
            target = target.setdefault(step, {})
        target[where[-1]] = value
    return data


def config_from_args(args: argparse.Namespace, cls: type[T], data: dict[str, Any] | None = None) -> T:
    """`cls` built from `options_from_args` (or from `data`, that dict after the caller's own
    merging). A required field that neither sets raises ValueError naming its flag."""
    from findbox.config import from_dict

    data = options_from_args(args, cls) if data is None else data
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and f.name not in data:
            raise ValueError(f"{f.name}: expected {_flag_name(f)} (or {f.name} = ... in --config FILE), got none")
    return from_dict(cls, data, str(getattr(args, "config", None) or "config"))


def _flag_name(f: dataclasses.Field) -> str:
    if f.metadata.get("flag"):
        return f.metadata["flag"]
    kebab = f.name.replace("_", "-")
    return f"--no-{kebab}" if f.default is True else f"--{kebab}"


def _flag(cls: type, f: dataclasses.Field, comment: str, shown: str | None) -> tuple[str, dict[str, Any]]:
    """The flag name and add_argument keywords of one field."""
    from findbox.config import field_types

    meta = f.metadata
    kind = field_types(cls)[f.name]
    union = typing.get_origin(kind) in (typing.Union, types.UnionType)
    members = [a for a in typing.get_args(kind) if a is not type(None)] if union else [kind]  # X | None -> X
    base = members[0]
    kwargs: dict[str, Any] = {}
    if base is bool:
        kwargs["action"] = "store_false" if f.default is True else "store_true"
    elif isinstance(base, type) and issubclass(base, enum.Enum):
        kwargs["choices"] = list(meta.get("choices") or [m.value for m in base])
    elif any(typing.get_origin(m) is list for m in members):
        kwargs["action"] = "append"  # repeatable: --detector a.pt --detector b.pt
    elif meta.get("parse"):
        kwargs["type"] = meta["parse"]
    elif base in (int, float):
        kwargs["type"] = base
    # anything else (str, tuples) goes in as text: the dataclass parses it ("2x2", "1280:55,1600:7")
    if meta.get("metavar"):
        kwargs["metavar"] = meta["metavar"]
    kwargs["help"] = _help(f, meta.get("help") or comment, shown).replace("%", "%%")
    return _flag_name(f), kwargs


def _help(f: dataclasses.Field, text: str, shown: str | None) -> str:
    """The help text with the default in it, taken from the field, never written by hand."""
    if shown is not None:
        return f"{text} (default {shown})"
    default = field_default(f)
    if default is dataclasses.MISSING or default is None or isinstance(default, bool) or "(default" in text:
        return text  # a switch, or a default the text itself explains
    return f"{text} (default {default_text(f, default)})"


def field_default(f: dataclasses.Field) -> Any:
    """The field's default value; dataclasses.MISSING for a required field."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def default_text(f: dataclasses.Field, value: Any) -> str:
    """How a value of field `f` is written in help text: 2x2, v2, 2e-05, 1280:55,1600:7."""
    if f.metadata.get("show"):
        return f.metadata["show"](value)
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def _field_comments(cls: type) -> dict[str, str]:
    """Field name -> its trailing comment, else the comment lines right above it; {} without source."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    comments: dict[str, str] = {}
    above: list[str] = []
    for line in lines:
        text = line.strip()
        if text.startswith("#"):
            above.append(text.lstrip("# "))
            continue
        match = re.match(r"(\w+)\s*:[^#]*?(?:#\s*(.*))?$", text)
        if match and not text.startswith(("def ", "class ", "return ")):
            comments.setdefault(match[1], (match[2] or " ".join(above)).strip())
        above = []
    return comments


if __name__ == "__main__":
    # `python -m findbox.cli` runs this file as __main__, a second copy of the module whose CommandError is
    # not the one the commands raise: run the imported module's main so that it catches theirs
    from findbox.cli import main as imported_main

    sys.exit(imported_main())
