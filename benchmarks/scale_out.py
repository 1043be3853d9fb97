"""The in-process server against the Ray engine, on this machine, under concurrent clients.

    .venv/bin/python benchmarks/scale_out.py --clients 16 --seconds 40

For each contender (`findbox serve` in-process; `--engine ray` with 1 and 2 scorer replicas) it
starts the demo bundle on 127.0.0.1 with the image cache off (every request pays for its image),
then:
- one client alone, sequential requests: the latency of an unloaded server (the Ray engine's extra
  hops show as the difference to in-process);
- `--clients` clients for `--seconds`, each request the published client's shape (one fresh scene,
  each of its captions an instance: 3-8 instances), answers checked against the truth boxes.
Records requests/s, instances/s, p50/p99 latency, statuses, accuracy and the resident memory of
the server's whole process tree (Ray's workers included) in benchmarks/results/scale_out.json.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, percentile, write_result  # noqa: E402
from load import run_clients, start_demo_server, wait_ready  # noqa: E402

CONTENDERS = {
    "inprocess": [],
    "ray, 1 scorer replica": ["--engine", "ray", "--scorer-replicas", "1"],
    "ray, 2 scorer replicas": ["--engine", "ray", "--scorer-replicas", "2"],
}
# fractional stages so that every replica fits the 2 logical cores; one torch thread each
RAY_ARGS = ["--ray-num-cpus", "2", "--ingress-num-cpus", "0.1", "--detector-num-cpus", "0.5",
            "--scorer-num-cpus", "0.5", "--detector-threads", "1", "--scorer-threads", "1"]


def scene_bodies(count: int, seed: int) -> list[tuple[dict, list]]:
    """(request body, truth boxes) per fresh synthetic scene: one instance per object, the client's order."""
    from findbox.synth import SynthConfig, generate_scene_jpeg

    out = []
    for index in range(count):
        data, objects = generate_scene_jpeg(SynthConfig(noise="low"), index, seed)
        b64 = base64.b64encode(data).decode("ascii")
        out.append(({"instances": [{"key": k, "caption": o.caption, "b64": b64} for k, o in enumerate(objects)]},
                    [o.bbox_ltwh for o in objects]))
    return out


def tree_rss_mb(pid: int) -> float:
    import psutil

    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def drive(url: str, bodies: list, clients: int, seconds: float) -> dict:
    """`clients` threads posting bodies in turn for `seconds`; latencies, statuses, hits."""
    import httpx

    from findbox.eval.metric import iou_ltwh, is_hit

    latencies, statuses, hits = [], {}, []
    lock = threading.Lock()
    end = time.monotonic() + seconds
    counter = iter(range(10**9))

    def client() -> None:
        with httpx.Client(timeout=300) as http:
            while time.monotonic() < end:
                body, truths = bodies[next(counter) % len(bodies)]
                start = time.perf_counter()
                response = http.post(url + "/identify", json=body)
                took = time.perf_counter() - start
                with lock:
                    latencies.append(took)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                    if response.status_code == 200:
                        hits.extend(is_hit(iou_ltwh(b, t)) for b, t in zip(response.json()["predictions"], truths))

    wall = run_clients([client] * clients)
    ms = [t * 1000 for t in latencies]
    return {"clients": clients, "requests": len(latencies), "seconds": round(wall, 1),
            "requests_per_s": round(len(latencies) / wall, 2), "instances_per_s": round(len(hits) / wall, 1),
            "p50_ms": round(percentile(ms, 50)), "p99_ms": round(percentile(ms, 99)),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "accuracy": round(sum(hits) / len(hits), 4) if hits else None}


def main() -> int:
    import os

    import httpx

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--scenes", type=int, default=60)
    parser.add_argument("--seed", type=int, default=9601)
    parser.add_argument("--out", default=str(RESULTS / "scale_out.json"))
    args = parser.parse_args()

    bodies = scene_bodies(args.scenes, args.seed)
    rows = {}
    for name, engine_args in CONTENDERS.items():
        extra = ["--device", "cpu", "--image-cache", "0", *engine_args, *(RAY_ARGS if engine_args else [])]
        with tempfile.TemporaryDirectory() as tmp:
            proc, url, _ = start_demo_server(Path(tmp), extra)
            try:
                started = time.perf_counter()
                wait_ready(url, proc, timeout=600)
                ready_s = time.perf_counter() - started
                alone = []
                for body, _ in bodies[:10]:
                    t = time.perf_counter()
                    assert httpx.post(url + "/identify", json=body, timeout=300).status_code == 200
                    alone.append((time.perf_counter() - t) * 1000)
                rss_idle = tree_rss_mb(proc.pid)
                loaded = drive(url, bodies, args.clients, args.seconds)
                rows[name] = {"server_args": extra, "ready_s": round(ready_s, 1),
                              "one_client_median_ms": round(statistics.median(alone)),
                              "rss_tree_mb_idle": round(rss_idle), "rss_tree_mb_after_load": round(tree_rss_mb(proc.pid)),
                              "loaded": loaded}
                print(name, rows[name], flush=True)
            finally:
                proc.terminate()
                proc.wait(180)
    write_result(args.out, {"cpus": os.cpu_count(), "scenes": args.scenes, "seed": args.seed, "contenders": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
