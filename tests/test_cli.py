"""findbox.cli: flags built from config dataclasses, --config TOML under flags, one error format."""

import argparse
import enum
from dataclasses import dataclass

import pytest

from findbox.cli import add_options, config_from_args, main
from findbox.config import option


class Colour(str, enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Inner:
    depth: int = option(3, help="how deep")


@dataclass
class Example:
    name: str = option(help="required name")
    size: float = option(0.5, help="a size")
    colour: Colour = option(Colour.RED, help="a colour")
    verbose: bool = option(False, help="say more")
    progress: bool = option(True, help="no progress bar")
    paths: list[str] | None = option(None, help="repeatable")
    renamed: int = option(1, flag="--old-name", help="kept flag")
    inner: Inner = option(default_factory=Inner)
    count: int = 2  # comment as help


def parse(argv):
    parser = argparse.ArgumentParser()
    add_options(parser, Example)
    return parser, parser.parse_args(argv)


def test_flags_follow_the_fields():
    parser, args = parse(["--name", "n", "--size", "2", "--colour", "blue", "--verbose", "--no-progress",
                          "--paths", "a", "--paths", "b", "--old-name", "5", "--depth", "7", "--count", "4"])
    c = config_from_args(args, Example)
    assert (c.name, c.size, c.colour, c.verbose, c.progress) == ("n", 2.0, "blue", True, False)
    assert (c.paths, c.renamed, c.inner.depth, c.count) == (["a", "b"], 5, 7, 4)
    with pytest.raises(SystemExit):
        parser.parse_args(["--colour", "green"])


def test_help_has_defaults_from_the_fields():
    parser, _ = parse([])
    text = " ".join(parser.format_help().split())
    assert "a size (default 0.5)" in text and "a colour (default red)" in text and "how deep (default 3)" in text
    assert "comment as help (default 2)" in text and "required name" in text


def test_defaults_then_toml_then_flags(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('name = "t"\nsize = 1.5\ndepth = 9\n[inner]\n')
    _, args = parse(["--config", str(toml), "--size", "3"])
    c = config_from_args(args, Example)
    assert (c.name, c.size, c.inner.depth, c.count) == ("t", 3.0, 9, 2)


def test_unknown_toml_key_and_missing_required(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('nmae = "t"\n')
    with pytest.raises(ValueError, match="did you mean 'name'"):
        config_from_args(parse(["--config", str(toml)])[1], Example)
    with pytest.raises(ValueError, match="name: expected --name"):
        config_from_args(parse([])[1], Example)


def test_every_command_takes_config_and_prints_errors_one_way(tmp_path, capsys):
    toml = tmp_path / "bad.toml"
    toml.write_text("imagse = 3\n")
    assert main(["synth", str(tmp_path / "o"), "--config", str(toml)]) == 2
    assert "findbox synth: error:" in capsys.readouterr().err
    toml.write_text("images = 1\nseed = 0\nwidth = 640\nheight = 400\nmin_objects = 1\nmax_objects = 2\n")
    assert main(["synth", str(tmp_path / "o"), "--config", str(toml)]) == 0
    assert (tmp_path / "o" / "vlm.jsonl").is_file()
