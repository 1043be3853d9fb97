"""Fuzz `findbox serve` with schemathesis from its own OpenAPI schema: zero 5xx allowed.

    .venv/bin/python benchmarks/fuzz.py --examples 200
    .venv/bin/python benchmarks/fuzz.py --url http://127.0.0.1:5004 --examples 100

Without --url it starts a tiny server (as benchmarks/load.py does) on 127.0.0.1. Runs
the examples, coverage and fuzzing phases with the `not_a_server_error` check, then
cross-checks the server's own count of 5xx answers on /metrics. Bounded by --examples
per operation and --max-seconds for the whole run. Writes the summary (test cases, 5xx,
load average) as JSON with --out.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import write_result  # noqa: E402
from load import require_loopback, scrape, start_tiny_server, wait_ready  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server (loopback only); default: start a tiny one")
    parser.add_argument("--server-args", default="", help="extra `findbox serve` options for the tiny server")
    parser.add_argument("--examples", type=int, default=100, help="test cases per operation and phase")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=600, help="the whole schemathesis run")
    parser.add_argument("--out", help="write the summary as JSON to this file")
    args = parser.parse_args()

    proc, tmp = None, None
    if args.url:
        require_loopback(args.url)
        url = args.url.rstrip("/")
    else:
        tmp = tempfile.TemporaryDirectory(prefix="findbox-fuzz-")
        proc, url, _ = start_tiny_server(Path(tmp.name), shlex.split(args.server_args))
    try:
        wait_ready(url, proc)
        before = scrape(url).get("server_errors", 0)
        cli = Path(sys.executable).with_name("schemathesis")
        cmd = [str(cli), "run", f"{url}/openapi.json", "--checks", "not_a_server_error",
               "--phases", "examples,coverage,fuzzing", "-n", str(args.examples), "--seed", str(args.seed),
               "--workers", "2", "--request-timeout", "60", "--generation-database", "none", "--no-color"]
        print("$", " ".join(cmd), flush=True)
        start = time.monotonic()
        load_start = os.getloadavg()
        try:
            done = subprocess.run(cmd, timeout=args.max_seconds, cwd=tmp.name if tmp else None,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            rc, output = done.returncode, done.stdout
        except subprocess.TimeoutExpired as exc:
            print(f"schemathesis stopped after --max-seconds {args.max_seconds}")
            rc, output = 0, (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        print(output)
        seconds = time.monotonic() - start
        after = scrape(url).get("server_errors", 0)
        print(f"schemathesis exit {rc} in {seconds:.0f} s; server-counted 5xx during the run: {after - before:g}")
        if args.out:
            cases = re.search(r"(\d+) generated", output) or re.search(r"(\d+) test cases", output)
            summary = {"command": " ".join([".venv/bin/python", *sys.argv]), "schemathesis": " ".join(cmd[1:]),
                       "exit": rc, "seconds": round(seconds, 1), "test_cases": int(cases.group(1)) if cases else None,
                       "server_errors": after - before,
                       "load_average": {"start": load_start, "end": os.getloadavg()},
                       "summary": [line for line in output.splitlines()[-25:] if line.strip()]}
            write_result(args.out, summary)
        return 1 if rc or after > before else 0
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
