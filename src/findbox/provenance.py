"""Which commit made a generated record (benchmark results, the demo bundle's manifest), and when."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

# the repository root of a source checkout (an installed package has none: then commit and clean_tree are None)
ROOT = Path(__file__).resolve().parents[2]


def provenance(root: Path = ROOT) -> dict:
    """{"commit", "clean_tree", "date"}: the commit checked out in `root`, whether tracked files had changes
    beside it (a dirty tree: the record may not be the commit's), and now (UTC, ISO 8601)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD") or None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "clean_tree": status == "" if commit else None,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
