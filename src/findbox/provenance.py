"""Which commit made a generated record (benchmark results, the demo bundle's manifest), and when."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

# the repository root of a source checkout (an installed package has none: then commit and clean_tree are None)
ROOT = Path(__file__).resolve().parents[2]


def provenance(root: Path = ROOT, outputs: tuple[str, ...] | None = None) -> dict:
    """{"commit", "clean_tree", "date"}: the commit checked out in `root`, whether tracked files had changes
    beside it (a dirty tree: the record may not be the commit's), and now (UTC, ISO 8601).

    outputs: path prefixes (relative to `root`) of generated records, such as "benchmarks/results/": a
    change there does not make the tree dirty (a run of several benchmarks writes its results one after
    another), and the changed ones are listed under "uncommitted_outputs" instead.
    """

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD").strip() or None
    # porcelain v1: "XY path" (a rename: "XY old -> new")
    status = git("status", "--porcelain", "--untracked-files=no")
    changed = [line[3:].split(" -> ")[-1] for line in status.splitlines() if line.strip()]
    generated = [path for path in changed if outputs and path.startswith(outputs)]
    record = {"commit": commit, "clean_tree": len(changed) == len(generated) if commit else None,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if outputs is not None:
        record["uncommitted_outputs"] = generated
    return record
