"""/health latency while N requests wait for the models (issue 15: a busy server must pass its health check).

    .venv/bin/python benchmarks/health_under_load.py --pending 64
    .venv/bin/python benchmarks/health_under_load.py --pending 64 --server-args "--batch-window-ms 8000"
    .venv/bin/python benchmarks/health_under_load.py --pending 64 --server-args "" \
        --server-args "--batch-window-ms 8000" --out benchmarks/results/health_under_load.json

Starts `findbox serve` with tiny random-weight models on 127.0.0.1 (as benchmarks/load.py does),
fires --pending concurrent requests (each one new 320x240 JPEG with 4 captions) and, while
at least half of them are still unanswered, probes /health and /metrics every --every seconds.
Reports the probes' p50/p99/max latency and status, and how long the requests took.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import write_result
from load import CAPTIONS, percentile, scene_b64, start_tiny_server, wait_ready


def run(pending: int, every: float, server_args: str) -> dict:
    """One server, `pending` concurrent requests, /health and /metrics probed while half are unanswered."""
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        proc, url, _ = start_tiny_server(Path(tmp), shlex.split(server_args))
        try:
            wait_ready(url, proc)
            bodies = [{"instances": [{"caption": c, "b64": image} for c in CAPTIONS[:4]]}
                      for image in (scene_b64(seed, 320, 240) for seed in range(pending))]
            pool = httpx.Client(base_url=url, timeout=300, limits=httpx.Limits(max_connections=pending + 4))
            done: list[tuple[int, float]] = []
            start = time.monotonic()

            def request(body: dict) -> None:
                status = pool.post("/identify", json=body).status_code
                done.append((status, time.monotonic() - start))

            clients = [threading.Thread(target=request, args=(body,)) for body in bodies]
            for thread in clients:
                thread.start()
            probes: dict[str, list[tuple[int, float]]] = {"/health": [], "/metrics": []}
            with httpx.Client(base_url=url, timeout=300) as probe:
                while len(done) <= pending // 2:
                    for path, seen in probes.items():
                        t0 = time.monotonic()
                        status = probe.get(path).status_code
                        seen.append((status, time.monotonic() - t0))
                    time.sleep(every)
            for thread in clients:
                thread.join()
            pool.close()
        finally:
            proc.terminate()
            proc.wait(30)

    row = {"server_args": server_args, "pending": pending, "captions": len(CAPTIONS[:4]),
           "statuses": {str(s): sum(1 for d, _ in done if d == s) for s in sorted({s for s, _ in done})},
           "last_answered_s": max(t for _, t in done)}
    print(f"{pending} concurrent requests ({row['captions']} captions each) {server_args}".strip())
    print(f"  requests: statuses {row['statuses']}, last answered after {row['last_answered_s']:.1f} s")
    for path, seen in probes.items():
        ms = [t * 1000 for _, t in seen]
        row[path] = {"probes": len(seen), "statuses": sorted({s for s, _ in seen}), "p50_ms": percentile(ms, 50),
                     "p99_ms": percentile(ms, 99), "max_ms": max(ms)}
        print(f"  {path} while >= {pending // 2} were pending: {len(seen)} probes, statuses "
              f"{row[path]['statuses']}, p50 {row[path]['p50_ms']:.1f} ms, p99 {row[path]['p99_ms']:.1f} ms, "
              f"max {max(ms):.1f} ms")
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pending", type=int, default=64, help="concurrent requests (default 64)")
    parser.add_argument("--every", type=float, default=0.05, help="seconds between probes (default 0.05)")
    parser.add_argument("--server-args", action="append",
                        help="extra `findbox serve` flags, one string; repeat for one run (one fresh server) each")
    parser.add_argument("--out", help="also write the runs with the machine and commit (e.g. benchmarks/results/"
                                      "health_under_load.json)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows = [run(args.pending, args.every, server_args) for server_args in args.server_args or [""]]
    if args.out:
        write_result(args.out, {"load_average": {"start": load_before, "end": os.getloadavg()}, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
