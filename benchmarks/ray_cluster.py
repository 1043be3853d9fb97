"""Ray's own costs and scaling, apart from findbox's models, and the demo served across two nodes.

    .venv/bin/python benchmarks/ray_cluster.py

On a simulated two-node cluster on this machine (`ray.cluster_utils.Cluster`: a head and a second
node on loopback, each its own raylet with `--node-cpus` logical CPUs):
1. **two nodes**: `findbox serve --engine ray --address HEAD` on the demo bundle with 2 scorer
   replicas and `--scorer-max-replicas-per-node 1`; which node each scorer replica landed on (its worker
   process under that node's raylet), requests answered, then SIGTERM: the application is gone and
   the cluster (both nodes) still up (`--address` leaves it running).
2. **per-request overhead, no-op stages**: sequential HTTP requests, median and p99, to a plain uvicorn
   app answering at once (the floor), to a Serve deployment answering at once (one hop through Ray's
   proxy), and to an ingress deployment that calls a no-op deployment that calls another (findbox's
   three hops: ingress -> scorer -> detector).
3. **routing scales a sleep-bound stage**: `--clients` concurrent callers of a deployment that sleeps
   `--sleep-ms` per call (one call at a time per replica), with 1 and 2 replicas: calls/s.
4. **cross-request batching**: `--clients` concurrent callers of a `@serve.batch` deployment (batch
   up to 16, 10 ms wait, a 20 ms call): the batch sizes it saw.
Results: benchmarks/results/scale_out_cluster.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, percentile, write_result  # noqa: E402
from load import free_port, run_clients, start_demo_server, wait_ready  # noqa: E402
from scale_out import scene_bodies  # noqa: E402


def latencies(url: str, count: int) -> dict:
    import httpx

    with httpx.Client(timeout=60) as http:
        for _ in range(5):  # warm: connections, first-call paths
            http.get(url)
        ms = []
        for _ in range(count):
            start = time.perf_counter()
            assert http.get(url).status_code == 200
            ms.append((time.perf_counter() - start) * 1000)
    return {"requests": count, "p50_ms": round(statistics.median(ms), 2), "p99_ms": round(percentile(ms, 99), 2)}


def node_of(pid: int, raylets: dict[int, str]) -> str | None:
    """The node whose raylet has `pid` among its descendants."""
    import psutil

    proc = psutil.Process(pid)
    while proc is not None:
        if proc.pid in raylets:
            return raylets[proc.pid]
        proc = proc.parent()
    return None


def raylet_nodes() -> dict[int, str]:
    """raylet pid -> node id, matched on the raylet's socket (each node's raylet has its own)."""
    import psutil
    import ray

    by_socket = {node["RayletSocketName"]: node["NodeID"] for node in ray.nodes() if node["Alive"]}
    out = {}
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] != "raylet":
            continue
        for arg in proc.info["cmdline"] or []:
            if arg.startswith("--raylet_socket_name=") and arg.split("=", 1)[1] in by_socket:
                out[proc.pid] = by_socket[arg.split("=", 1)[1]]
    return out


def two_nodes(cluster, http_port: int, scenes: int) -> dict:
    """The demo bundle served across the two nodes by `findbox serve --address`."""
    import httpx
    import psutil
    import ray
    from ray import serve

    extra = ["--device", "cpu", "--engine", "ray", "--address", cluster.address, "--scorer-replicas", "2",
             "--scorer-max-replicas-per-node", "1", "--ingress-num-cpus", "0.1", "--detector-num-cpus", "0.25",
             "--scorer-num-cpus", "0.5", "--detector-threads", "1", "--scorer-threads", "1"]
    with tempfile.TemporaryDirectory() as tmp:
        # Serve's proxies keep this port after the app is gone: the later experiments use it
        proc, url, log = start_demo_server(Path(tmp), extra, port=http_port)
        try:
            started = time.perf_counter()
            wait_ready(url, proc, timeout=600)
            ready_s = time.perf_counter() - started
            raylets = raylet_nodes()
            placed = {}
            for child in psutil.Process(os.getpid()).children(recursive=True):  # the nodes' raylets are ours
                try:
                    if "ServeReplica:findbox:ScorerStage" in " ".join(child.cmdline()):
                        placed[child.pid] = node_of(child.pid, raylets)
                except psutil.Error:
                    pass
            statuses: dict[str, int] = {}
            for body, _ in scene_bodies(scenes, 9801):
                status = str(httpx.post(url + "/identify", json=body, timeout=300).status_code)
                statuses[status] = statuses.get(status, 0) + 1
            proc.send_signal(signal.SIGTERM)
            exit_code = proc.wait(180)
            time.sleep(2)
            alive_nodes = sum(node["Alive"] for node in ray.nodes())
            apps = sorted(serve.status().applications)
        finally:
            if proc.poll() is None:
                proc.kill()
    node_ids = sorted({n for n in placed.values() if n})
    return {"server_args": extra, "ready_s": round(ready_s, 1), "scorer_replicas": len(placed),
            "nodes_holding_scorer_replicas": len(node_ids), "cluster_nodes": len(raylets),
            "requests": statuses, "exit_code": exit_code, "nodes_alive_after_sigterm": alive_nodes,
            "serve_applications_after_sigterm": apps}


def overhead(http_port: int, count: int) -> dict:
    """Sequential no-op requests: plain uvicorn, one Serve hop, findbox's three Serve hops."""
    from ray import serve
    from starlette.requests import Request

    floor_port = free_port()
    code = ("import uvicorn\nasync def app(scope, receive, send):\n"
            "    if scope['type'] != 'http': return\n"
            "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
            "    await send({'type': 'http.response.body', 'body': b'ok'})\n"
            f"uvicorn.run(app, host='127.0.0.1', port={floor_port}, log_level='warning')\n")
    floor = subprocess.Popen([sys.executable, "-c", code])
    try:
        wait_http(f"http://127.0.0.1:{floor_port}/")
        plain = latencies(f"http://127.0.0.1:{floor_port}/", count)
    finally:
        floor.terminate()
        floor.wait(30)

    @serve.deployment(ray_actor_options={"num_cpus": 0.05})
    class Noop:
        async def __call__(self, request: Request | None = None) -> str:
            return "ok"

    @serve.deployment(ray_actor_options={"num_cpus": 0.05})
    class Hop:
        def __init__(self, nxt):
            self.next = nxt

        async def __call__(self, request: Request | None = None) -> str:
            return await self.next.remote()

    serve.run(Noop.bind(), name="noop", route_prefix="/noop")
    one = latencies(f"http://127.0.0.1:{http_port}/noop", count)
    serve.delete("noop")
    serve.run(Hop.options(name="Ingress").bind(Hop.options(name="Middle").bind(Noop.bind())), name="hops",
              route_prefix="/hops")
    three = latencies(f"http://127.0.0.1:{http_port}/hops", count)
    serve.delete("hops")
    return {"uvicorn_floor": plain, "serve_one_hop": one, "serve_three_hops": three,
            "three_hops_over_floor_ms": round(three["p50_ms"] - plain["p50_ms"], 2)}


def wait_http(url: str, timeout: float = 30) -> None:
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise TimeoutError(url)


def sleep_scaling(clients: int, sleep_ms: float, seconds: float) -> dict:
    """Calls/s of a sleep-bound stage with 1 and 2 replicas: routing, not CPU, decides."""
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0.05}, max_ongoing_requests=1)
    class Sleeper:
        def __call__(self) -> int:
            time.sleep(sleep_ms / 1000)
            return os.getpid()

    out = {}
    for replicas in (1, 2):
        handle = serve.run(Sleeper.options(num_replicas=replicas).bind(), name="sleeper", route_prefix=None)
        end = time.monotonic() + seconds
        done: list[int] = []

        def caller() -> None:
            while time.monotonic() < end:
                done.append(handle.remote().result(timeout_s=60))

        wall = run_clients([caller] * clients)
        out[f"{replicas}_replicas"] = {"calls": len(done), "calls_per_s": round(len(done) / wall, 2),
                                       "replicas_answering": len(set(done))}
        serve.delete("sleeper")
    out["ratio"] = round(out["2_replicas"]["calls_per_s"] / out["1_replicas"]["calls_per_s"], 2)
    out["ideal_calls_per_s_1_replica"] = round(1000 / sleep_ms, 2)
    return out


def batching(clients: int, seconds: float) -> dict:
    """Batch sizes a `@serve.batch` deployment sees from concurrent callers."""
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0.05}, max_ongoing_requests=64)
    class Batched:
        def __init__(self):
            self.sizes: list[int] = []

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
        async def __call__(self, items: list[int]) -> list[int]:
            self.sizes.append(len(items))
            await asyncio.sleep(0.02)
            return items

        def seen(self) -> list[int]:
            return self.sizes

    handle = serve.run(Batched.bind(), name="batched", route_prefix=None)
    end = time.monotonic() + seconds

    def caller() -> None:
        while time.monotonic() < end:
            handle.remote(1).result(timeout_s=60)

    run_clients([caller] * clients)
    sizes = handle.seen.remote().result()
    serve.delete("batched")
    return {"clients": clients, "max_batch_size": 16, "batches": len(sizes),
            "mean": round(sum(sizes) / len(sizes), 2), "histogram": {str(n): sizes.count(n) for n in sorted(set(sizes))}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--node-cpus", type=float, default=2, help="logical CPUs of each simulated node")
    parser.add_argument("--requests", type=int, default=200, help="sequential requests per overhead contender")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--sleep-ms", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--scenes", type=int, default=10, help="requests sent to the two-node demo")
    parser.add_argument("--out", default=str(RESULTS / "scale_out_cluster.json"))
    args = parser.parse_args()

    from findbox.env import ensure_offline

    ensure_offline()
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": args.node_cpus, "include_dashboard": False})
    cluster.add_node(num_cpus=args.node_cpus)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    try:
        http_port = free_port()
        result = {"cpus": os.cpu_count(), "node_cpus": args.node_cpus,
                  "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}
        # first, so that `findbox serve` starts Serve on this port; the later apps reuse it
        result["two_nodes"] = two_nodes(cluster, http_port, args.scenes)
        print("two nodes", result["two_nodes"], flush=True)
        result["overhead"] = overhead(http_port, args.requests)
        print("overhead", result["overhead"], flush=True)
        result["sleep_scaling"] = sleep_scaling(args.clients, args.sleep_ms, args.seconds)
        print("sleep scaling", result["sleep_scaling"], flush=True)
        result["batching"] = batching(args.clients, args.seconds)
        print("batching", result["batching"], flush=True)
        result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        serve.shutdown()
        ray.shutdown()
        cluster.shutdown()
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
