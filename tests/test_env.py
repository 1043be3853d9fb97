"""Importing findbox has no side effects; the entry points set the offline environment.

Each check runs in a fresh interpreter: this test session's own environment was set by conftest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from findbox.env import OFFLINE_DEFAULTS


def _clean_env(tmp_path: Path) -> dict[str, str]:
    """This process's environment without the variables findbox sets, its cache in tmp_path."""
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_DEFAULTS and k != "YOLO_CONFIG_DIR"}
    env["FINDBOX_CACHE"] = str(tmp_path / "cache")
    return env


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module", ["findbox", "findbox.pipeline", "findbox.factory", "findbox.cli", "findbox.env"])
def test_import_leaves_environment_and_disk_alone(module, tmp_path):
    code = f"import os; e = dict(os.environ); import {module}; assert dict(os.environ) == e, 'os.environ changed'"
    done = _run(code, _clean_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "cache").exists(), "importing created findbox's cache folder"


def test_ensure_offline_sets_defaults_and_keeps_user_values(tmp_path):
    env = _clean_env(tmp_path)
    env["HF_HUB_OFFLINE"] = "0"  # a user who opts in to the hub keeps that choice
    code = (
        "import os, json; from findbox.env import ensure_offline; ensure_offline(); ensure_offline(); "
        "print(json.dumps(dict(os.environ)))"
    )
    done = _run(code, env)
    assert done.returncode == 0, done.stderr
    after = json.loads(done.stdout)
    assert after["HF_HUB_OFFLINE"] == "0"
    for key in set(OFFLINE_DEFAULTS) - {"HF_HUB_OFFLINE"}:
        assert after[key] == OFFLINE_DEFAULTS[key], key
    config_dir = Path(after["YOLO_CONFIG_DIR"])
    assert config_dir == tmp_path / "cache" / "ultralytics"
    assert (config_dir / "Ultralytics" / "Arial.ttf").is_file()  # ultralytics would download it otherwise


def test_cli_main_sets_environment_before_the_command(tmp_path):
    code = (
        "import os, sys; from findbox.cli import main; "
        "sys.argv = ['findbox', 'synth', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert os.environ.get('HF_HUB_OFFLINE') == '1', 'cli.main did not set the offline environment'"
    )
    done = _run(code, _clean_env(tmp_path))
    assert done.returncode == 0, done.stderr


def test_missing_optional_package_names_the_extra():
    from findbox.env import require

    with pytest.raises(ImportError, match=r"pip install 'findbox\[zoo\]'"):
        require("findbox_no_such_package", "zoo")
    require("numpy", "zoo")  # installed: no error


def test_ray_reports_no_usage_stats_after_ensure_offline(tmp_path):
    """Ray sends usage statistics to its project's server unless told not to: the Ray engines must not."""
    pytest.importorskip("ray")
    code = ("from findbox.env import ensure_offline; ensure_offline(); "
            "from ray._common.usage.usage_lib import usage_stats_enabled; assert not usage_stats_enabled()")
    env = _clean_env(tmp_path)
    env.pop("RAY_USAGE_STATS_ENABLED", None)
    done = _run(code, env)
    assert done.returncode == 0, done.stderr[-2000:]
