"""CLI conventions a newcomer expects: --version, a subcommand's own usage on a mistyped flag with a
"did you mean", other tools' flag names pointed at ours, and --quiet / --log-level on every command."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from findbox import __version__
from findbox.cli import COMMANDS, main


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    """`findbox ARGV` in a child process (argparse exits), its output as text."""
    return subprocess.run([sys.executable, "-m", "findbox.cli", *argv], capture_output=True, text=True, timeout=120)


def test_version():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith(f"findbox {__version__}")


@pytest.mark.parametrize("argv, usage, hint", [
    (["predict", "img.png", "--captoin", "x"], "usage: findbox predict", "did you mean --caption"),
    (["serve", "--prot", "5004"], "usage: findbox serve", "--port"),
    (["predict", "img.png", "--model", "det.pt"], "usage: findbox predict", "is --detector in findbox predict"),
    (["predict", "--source", "img.png"], "usage: findbox predict", "positional argument IMAGE"),
    (["eval", "--data", "d.jsonl", "--out", "o"], "usage: findbox eval", "positional argument DATA_JSONL"),
    (["train", "detector", "--modle", "yolov8n.pt"], "usage: findbox train detector", "did you mean --model?"),
])
def test_a_mistyped_flag_gets_the_subcommands_usage_and_a_suggestion(argv, usage, hint):
    r = run_cli(*argv)
    assert r.returncode == 2
    assert usage in r.stderr and "usage: findbox [-h]" not in r.stderr
    assert hint in r.stderr, r.stderr


def test_train_detector_keeps_its_own_model_flag():
    """--model is a real flag of `train detector` (the base model): no foreign-name hint there."""
    r = run_cli("train", "detector", "--model")
    assert "expected one argument" in r.stderr and "ultralytics' --model" not in r.stderr


def test_every_command_takes_quiet_and_log_level():
    for name in COMMANDS:
        for flags in (["--quiet"], ["--log-level", "WARNING"]):
            r = run_cli(*name.split(), *flags, "--help")
            assert r.returncode == 0, (name, flags, r.stderr)
            assert "--quiet" in r.stdout and "--log-level" in r.stdout
    r = run_cli("synth", "--log-level", "loud", "out")
    assert r.returncode == 2 and "invalid choice: 'loud'" in r.stderr


SMALL_SYNTH = ["--images", "1", "--seed", "0", "--width", "640", "--height", "400", "--min-objects", "1",
               "--max-objects", "2"]


def test_quiet_sets_warning_level(tmp_path):
    assert main(["synth", str(tmp_path / "o"), *SMALL_SYNTH, "--quiet"]) == 0
    assert logging.getLogger("findbox").level == logging.WARNING
    assert main(["synth", str(tmp_path / "p"), *SMALL_SYNTH, "--log-level", "debug"]) == 0
    assert logging.getLogger("findbox").level == logging.DEBUG



def test_quiet_hides_the_progress_bars_too(tmp_path):
    """A bar is INFO-level output: each command's bar shows by default and not under --quiet or
    --log-level warning (before, tqdm drew it whatever the level)."""
    for variant, flags in {"default": [], "quiet": ["--quiet"]}.items():  # --quiet is --log-level warning
        data = tmp_path / variant / "data"
        commands = {
            "synth": ["synth", str(data), "--images", "5", *SMALL_SYNTH[2:]],
            "crops": ["crops", "--data", str(data / "vlm.jsonl"), "--out", str(tmp_path / variant / "crops")],
            "predict": ["predict", str(data / "images"), "--caption", "missile", "--device", "cpu"],
        }
        for name, argv in commands.items():
            r = run_cli(*argv, *flags)
            assert r.returncode == 0, (name, flags, r.stderr)
            if variant == "default":
                assert f"{name}: 100%" in r.stderr, (name, r.stderr)
            else:
                assert "100%" not in r.stderr and "it/s" not in r.stderr, (name, flags, r.stderr)


def test_every_progress_bar_goes_through_findbox_logs():
    """A bar drawn with tqdm directly would ignore --quiet; findbox.logs.progress is the one bar."""
    import re
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "src" / "findbox"
    direct = [f"{path.relative_to(src)}:{n}" for path in src.rglob("*.py") if path.name != "logs.py"
              for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
              if re.search(r"\btqdm\(", line.split("#")[0])]
    assert direct == [], f"use findbox.logs.progress: {direct}"
