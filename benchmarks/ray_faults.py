"""A scorer replica killed under load on the Ray engine: what clients see, with and without retries.

    .venv/bin/python benchmarks/ray_faults.py --clients 16 --before 20 --after 40

`findbox serve --engine ray --address ...` on the demo bundle with 2 scorer replicas (the fractional
layout of scale_out.py, so both fit 2 cores), image cache off, joined to a one-node cluster this
script starts (`ray.cluster_utils.Cluster`, 2 logical CPUs), so it can watch Serve and the replicas. `--clients` clients post fresh scenes in the
published client's order (each of a scene's captions an instance): half of them plainly, half through
the retry README documents (urllib3's `Retry` on 502/503/504 and dropped connections, honouring
Retry-After). After `--before` seconds one scorer replica's process is SIGKILLed; the load goes on for
`--after` seconds. Records, in benchmarks/results/scale_out_faults.json:
- requests per client kind and status, lost answers (a retrying client's request that did not end in
  a 200), errors seen without retries, accuracy of the answers;
- seconds until Serve reports both scorer replicas running again (`serve.status()`, polled);
- p50/p99 latency of requests started before the kill, while a replica was missing, and after;
- the detector deployment's frames per call under this load (cross-request batching, observed).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, percentile, write_result  # noqa: E402
from load import run_clients, start_demo_server, wait_ready  # noqa: E402
from scale_out import RAY_ARGS, scene_bodies  # noqa: E402

REPLICA = "ServeReplica:findbox:ScorerStage"  # the title Ray gives a scorer replica's worker process


def retrying_session():
    """The client retry README shows: POST retried on 502/503/504 and on dropped connections, with
    exponential backoff, Retry-After honoured."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util import Retry

    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=Retry(total=8, backoff_factor=0.5, allowed_methods=None,
                                                           status_forcelist=[502, 503, 504])))
    return session


def replica_pids() -> list[int]:
    """The scorer replicas' worker processes: under the cluster's raylet, a child of this process."""
    import psutil

    pids = []
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if REPLICA in " ".join(child.cmdline()):
                pids.append(child.pid)
        except psutil.Error:
            pass
    return pids


def running_scorers() -> int:
    """Scorer replicas Serve reports RUNNING (this script is a driver of the cluster)."""
    from ray import serve

    app = serve.status().applications.get("findbox")
    if app is None or "ScorerStage" not in app.deployments:
        return 0
    return app.deployments["ScorerStage"].replica_states.get("RUNNING", 0)


def main() -> int:
    import requests

    from findbox.eval.metric import iou_ltwh, is_hit

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--before", type=float, default=20, help="seconds of load before the kill")
    parser.add_argument("--after", type=float, default=40, help="seconds of load after it")
    parser.add_argument("--scenes", type=int, default=60)
    parser.add_argument("--seed", type=int, default=9701)
    parser.add_argument("--out", default=str(RESULTS / "scale_out_faults.json"))
    args = parser.parse_args()

    bodies = scene_bodies(args.scenes, args.seed)
    from findbox.env import ensure_offline

    ensure_offline()
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    layout = list(RAY_ARGS)  # the stages' layout; the cluster's CPUs are set above
    del layout[layout.index("--ray-num-cpus"):layout.index("--ray-num-cpus") + 2]
    extra = ["--device", "cpu", "--image-cache", "0", "--engine", "ray", "--address", cluster.address,
             "--scorer-replicas", "2", *layout]
    records: list[dict] = []  # per request: kind, start, end, status, right
    lock = threading.Lock()
    counter = iter(range(10**9))
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, log = start_demo_server(Path(tmp), extra)
        try:
            wait_ready(url, proc, timeout=600)
            for _ in range(600):  # ready means one scorer replica is up; the load starts with both
                if running_scorers() == 2:
                    break
                time.sleep(0.5)
            pids = replica_pids()
            assert len(pids) == 2 and running_scorers() == 2, (pids, running_scorers())
            stop = threading.Event()
            t0 = time.monotonic()

            def client(kind: str) -> None:
                session = retrying_session() if kind == "retry" else requests.Session()
                while not stop.is_set():
                    body, truths = bodies[next(counter) % len(bodies)]
                    start = time.monotonic()
                    try:
                        response = session.post(url + "/identify", json=body, timeout=300)
                        status, hits = response.status_code, []
                        if status == 200:
                            hits = [is_hit(iou_ltwh(b, t)) for b, t in zip(response.json()["predictions"], truths)]
                    except requests.RequestException as exc:  # retries exhausted, or a dropped connection
                        status, hits = type(exc).__name__, []
                    with lock:
                        records.append({"kind": kind, "start": start - t0, "end": time.monotonic() - t0,
                                        "status": status, "hits": hits})

            kinds = ["plain" if k % 2 else "retry" for k in range(args.clients)]
            events: dict[str, float] = {}

            def conductor() -> None:
                time.sleep(args.before)
                events["kill"] = time.monotonic() - t0
                os.kill(pids[0], 9)
                while running_scorers() == 2 and time.monotonic() - t0 < events["kill"] + 30:
                    time.sleep(0.2)  # Serve notices the dead replica
                events["noticed"] = time.monotonic() - t0
                while running_scorers() < 2 and time.monotonic() - t0 < events["kill"] + 600:
                    time.sleep(0.5)
                events["back"] = time.monotonic() - t0
                time.sleep(max(0.0, events["kill"] + args.after - (time.monotonic() - t0)))
                stop.set()

            batches_before = ray_batches()
            run_clients([lambda k=k: client(k) for k in kinds] + [conductor])
            frames_per_call = ray_batches()[len(batches_before):]
        finally:
            proc.terminate()
            proc.wait(180)
            ray.shutdown()
            cluster.shutdown()

    kill, back = events["kill"], events["back"]

    def summary(rows: list[dict]) -> dict:
        ms = [1000 * (r["end"] - r["start"]) for r in rows if r["status"] == 200]
        statuses: dict[str, int] = {}
        for r in rows:
            statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
        hits = [h for r in rows for h in r["hits"]]
        return {"requests": len(rows), "statuses": dict(sorted(statuses.items())),
                "accuracy": round(sum(hits) / len(hits), 4) if hits else None,
                "p50_ms": round(percentile(ms, 50)) if ms else None, "p99_ms": round(percentile(ms, 99)) if ms else None}

    phases = {"before": [r for r in records if r["start"] < kill],
              "during": [r for r in records if kill <= r["start"] < back],
              "after": [r for r in records if r["start"] >= back]}
    retried = [r for r in records if r["kind"] == "retry"]
    plain = [r for r in records if r["kind"] == "plain"]
    result = {
        "clients": args.clients, "scenes": args.scenes, "seed": args.seed, "server_args": extra,
        "cpus": os.cpu_count(), "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "kill_at_s": round(kill, 1), "noticed_after_s": round(events["noticed"] - kill, 1),
        "back_after_s": round(back - kill, 1),
        "retrying_clients": summary(retried) | {
            "lost": sum(r["status"] != 200 for r in retried)},
        "plain_clients": summary(plain) | {"errors": sum(r["status"] != 200 for r in plain)},
        "phases": {name: summary(rows) for name, rows in phases.items()},
        "detector_frames_per_call": {"calls": len(frames_per_call),
                                     "mean": round(sum(frames_per_call) / len(frames_per_call), 2)
                                     if frames_per_call else None,
                                     "max": max(frames_per_call, default=None),
                                     "histogram": {str(n): frames_per_call.count(n) for n in sorted(set(frames_per_call))}},
    }
    print(result)
    write_result(args.out, result)
    return 0


def ray_batches() -> list[int]:
    """The detector replica's frames per call so far (DetectorStage keeps the last 1000)."""
    from ray import serve

    return serve.get_deployment_handle("DetectorStage", app_name="findbox").batch_sizes.remote().result(timeout_s=60)


if __name__ == "__main__":
    sys.exit(main())
