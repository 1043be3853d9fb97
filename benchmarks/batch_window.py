"""`findbox serve --batch-window-ms W` against no window, interleaved runs of benchmarks/load.py.

    .venv/bin/python benchmarks/batch_window.py [--windows 0,10] [--repeats 2] [--clients 8] [--seconds 20]

For each repeat, each window in turn: a fresh tiny server (load.py's default) with
`--batch-window-ms W`, `--clients` clients for `--seconds` s. Interleaving spreads the machine's
other load over the windows alike. Per run: throughput, latency, instances and requests per model
call (the server's /metrics), RSS growth. Writes benchmarks/results/ops_batch_window.json;
docs_tables.py renders it in docs/OPERATIONS.md ("Batch window").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, write_result  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", default="0,10", help="batch windows in ms, comma-separated (0: off)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--out", default=str(RESULTS / "ops_batch_window.json"))
    args = parser.parse_args()
    windows = [int(w) for w in args.windows.split(",")]
    runs = []
    for repeat in range(args.repeats):
        for window in windows:
            cmd = [sys.executable, str(Path(__file__).parent / "load.py"), "--clients", str(args.clients),
                   "--seconds", str(args.seconds), "--server-args", f"--batch-window-ms {window}", "--json"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"load.py failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            m = r["metrics"]
            calls = m.get("findbox_model_call_instances_count") or 0
            run = {"window_ms": window, "repeat": repeat, "requests": r["requests"], "statuses": r["statuses"],
                   "throughput_rps": r["throughput_rps"], "latency_ms": r["latency_ms"],
                   "instances_per_call": m["findbox_model_call_instances_sum"] / calls if calls else None,
                   "requests_per_call": m["findbox_model_call_requests_sum"] / calls if calls else None,
                   "rss_growth_mib": r["rss_mib"]["growth"], "load_average": r["load_average"]}
            runs.append(run)
            print(f"W {window:>4} ms, run {repeat + 1}: {run['throughput_rps']} req/s, p50 {r['latency_ms']['p50']} ms, "
                  f"{run['instances_per_call']:.1f} instances a model call, RSS {run['rss_growth_mib']:+.1f} MiB",
                  flush=True)
    write_result(args.out, {"clients": args.clients, "seconds": args.seconds, "windows_ms": windows,
                            "repeats": args.repeats, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
