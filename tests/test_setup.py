"""Setup a newcomer runs: `make serve` installs no browser, `make test` does; the README's install sizes
are the recorded ones; no document points at files outside the repository."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_dry_run(target: str) -> str:
    """The commands `make TARGET` would run (-B: as on a fresh checkout, every step)."""
    return subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=True,
                          timeout=60).stdout


def test_make_serve_needs_no_browser_and_make_test_installs_it():
    serve = make_dry_run("serve")
    assert "findbox serve" in serve and "pip install" in serve
    assert "chromium" not in serve and "apt-get" not in serve
    assert "chromium" in make_dry_run("test")


def test_readme_install_sizes_are_the_recorded_ones():
    record = json.loads((ROOT / "benchmarks/results/install_size.json").read_text())
    text = " ".join((ROOT / "README.md").read_text().split())
    section = text[text.index("**Install size.**"):][:900]
    assert f"takes {record['venv_gb']:.1f} GB, {record['cuda_wheels_gb']:.1f} GB of it the CUDA wheels" in section
    assert f"comes to {record['serve_only_gb']:.1f} GB, and to {record['serve_only_without_cuda_gb']:.1f} GB" in section
    assert "benchmarks/results/install_size.json" in section


def test_no_document_points_outside_the_repository():
    for path in [ROOT / "Makefile", ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        found = re.findall(r"[\w/.]*shared/[\w/.]+", path.read_text())
        assert not found, (path.name, found)
