"""The `findbox` command line.

Each subcommand lives in the module that owns it; that module exposes
`add_arguments(parser)` and `main(args) -> int`. Modules are imported only
when their command runs, so `findbox synth` never pays for torch.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

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
}


def _wanted_module(argv: list[str]) -> str | None:
    """The module of the command named on the command line, if any."""
    words = [a for a in argv if not a.startswith("-")]
    for n in (2, 1):
        name = " ".join(words[:n])
        if name in COMMANDS:
            return COMMANDS[name][0]
    return None


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="findbox", description="Find the object a caption describes.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    wanted = _wanted_module(argv)
    for name, (module_name, help_text) in COMMANDS.items():
        *group, leaf = name.split()
        target = sub
        if group:
            if group[0] not in groups:
                gp = sub.add_parser(group[0], help=f"{group[0]} a model")
                groups[group[0]] = gp.add_subparsers(dest="subcommand", metavar="WHAT", required=True)
            target = groups[group[0]]
        p = target.add_parser(leaf, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        if module_name == wanted:  # only the chosen command imports its module
            importlib.import_module(module_name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.main(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, FileExistsError) as exc:
        # bad input: the message names the field or file; a traceback would only hide it
        if os.environ.get("FINDBOX_TRACEBACK"):
            raise
        print(f"findbox {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
