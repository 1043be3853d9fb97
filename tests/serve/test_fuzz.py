"""A small, bounded schemathesis run against the service's own OpenAPI schema: no 5xx, ever.

`benchmarks/fuzz.py` is the longer run; this one keeps to ~20 cases per operation.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

pytest.importorskip("schemathesis", reason="schemathesis is in the test extra")


def server_errors(server) -> float:
    text = httpx.get(server.url + "/metrics", timeout=30).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("findbox_requests_total{") and 'status="5' in line)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_schemathesis_finds_no_server_error(live_server, tmp_path):
    before = server_errors(live_server)
    cli = Path(sys.executable).with_name("schemathesis")
    r = subprocess.run(
        [str(cli), "run", f"{live_server.url}/openapi.json", "--checks", "not_a_server_error",
         "--phases", "examples,coverage,fuzzing", "-n", "20", "--seed", "7", "--workers", "1",
         "--request-timeout", "60", "--generation-database", "none", "--no-color",
         "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=200, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "No issues found" in r.stdout
    assert server_errors(live_server) == before  # the server's own count agrees
    assert httpx.get(live_server.url + "/health").status_code == 200
