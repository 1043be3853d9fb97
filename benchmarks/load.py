"""Load test of `findbox serve`: N concurrent clients for M seconds, on loopback only.

    .venv/bin/python benchmarks/load.py --clients 8 --seconds 30
    .venv/bin/python benchmarks/load.py --clients 8 --seconds 30 --server-args "--batch-window-ms 5"
    .venv/bin/python benchmarks/load.py --url http://127.0.0.1:5004 --pid 1234 --clients 4 --seconds 60
    .venv/bin/python benchmarks/load.py --demo --clients 64 --seconds 300 --size 1520x870 --health-every 0.5

Without --url it builds tiny random-weight models (findbox.testing.builders) and starts its own
server on 127.0.0.1, so it runs anywhere (--demo: `findbox serve` with its defaults, the bundled
demo models, instead); with --url it drives a server you started (give --pid to watch that
server's memory). --health-every S probes /health every S seconds during the run. Each request is the published client's
shape: one image, `--captions` instances (one per caption). Every request carries a
new image unless --image-pool N cycles through N images (then the image cache works).

Reports throughput, latency p50/p90/p99, error rate, and the server's resident memory
(RSS via psutil) after warm-up, at the end and at its peak: growth over a long run
means a leak. The run is bounded by --seconds and --max-requests. The load average is
recorded at the start and the end (the machine may be shared).
"""

from __future__ import annotations

import argparse
import base64
import io
import ipaddress
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from PIL import Image

CAPTIONS = ["grey missile", "red and white helicopter", "red, white, and blue light aircraft",
            "green and brown camouflage fighter jet", "yellow drone", "black cargo aircraft"]


def scene_b64(seed: int, width: int, height: int) -> str:
    """A sky gradient with a few coloured blobs, as base64 JPEG (a new seed, new pixels)."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    image = (np.array([120, 170, 230], np.float32) * (1 - y) + np.array([220, 230, 240], np.float32) * y)
    image = np.repeat(image, width, axis=1)
    for _ in range(5):
        w, h = int(rng.integers(width // 20, width // 6)), int(rng.integers(height // 20, height // 6))
        x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        image[y0:y0 + h, x0:x0 + w] = rng.integers(0, 255, 3)
    buf = io.BytesIO()
    Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return base64.b64encode(buf.getvalue()).decode()


def require_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"--url: this benchmark only targets loopback addresses, got {host!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_tiny_server(workdir: Path, extra_args: list[str]) -> tuple[subprocess.Popen, str, Path]:
    """Tiny random-weight models in the real formats, served on a free loopback port."""
    from findbox.testing.builders import build_siglip, build_yolo

    detector = build_yolo(workdir / "detector.pt", "yolov8n.yaml")
    scorer = build_siglip(workdir / "scorer", CAPTIONS, preset="tiny")
    port = free_port()
    cmd = [sys.executable, "-m", "findbox.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--detector", str(detector), "--scorer", str(scorer), "--no-upscaler", "--device", "cpu",
           "--imgsz", "160", "--conf", "0.001", "--iou", "0.5", "--max-det", "10", "--log-level", "warning",
           *extra_args]
    log = workdir / "server.log"
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}", log


def start_demo_server(workdir: Path, extra_args: list[str], port: int = 0,
                      env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str, Path]:
    """`findbox serve` with its defaults (the bundled demo models) on `port` of loopback (0: a free one);
    `env`: the server's environment (default: this process's)."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "findbox.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", *extra_args]
    log = workdir / "server.log"
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    return proc, f"http://127.0.0.1:{port}", log


def _probe_health(url: str, every: float, stop, results) -> None:
    """`HealthProbe`'s process: probe until `stop` is set, then put the list of (status, seconds)."""
    import httpx

    probes = []
    with httpx.Client(timeout=60) as http:
        while not stop.wait(every):
            start = time.perf_counter()
            try:
                status = str(http.get(url + "/health").status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            probes.append((status, time.perf_counter() - start))
    results.put(probes)


class HealthProbe:
    """GETs /health every `every` seconds; keeps (status, seconds) per probe.

    The probes run in a process of their own: a thread beside the benchmark's many client threads
    would wait for the client process's GIL and charge that wait to the server.
    """

    def __init__(self, url: str, every: float):
        import multiprocessing

        self.url, self.every = url, every
        self.probes: list[tuple[str, float]] = []
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._results = context.Queue()
        self._process = context.Process(target=_probe_health, args=(url, every, self._stop, self._results),
                                        daemon=True)

    def __enter__(self):
        if self.every > 0:
            self._process.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._process.is_alive() or self._process.exitcode is not None:
            self.probes = self._results.get(timeout=120)
            self._process.join(30)

    def summary(self) -> dict | None:
        if not self.probes:
            return None
        ms = [t * 1000 for _, t in self.probes]
        statuses: dict[str, int] = {}
        for status, _ in self.probes:
            statuses[status] = statuses.get(status, 0) + 1
        return {"every_s": self.every, "probes": len(ms), "statuses": statuses,
                "p50_ms": round(percentile(ms, 50), 1), "p99_ms": round(percentile(ms, 99), 1),
                "max_ms": round(max(ms), 1)}


def wait_ready(url: str, proc: subprocess.Popen | None, timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"server not ready in {timeout} s")


class RssWatch:
    """Samples a process's resident memory every `every` seconds in a thread."""

    def __init__(self, pid: int | None, every: float = 0.5):
        import psutil

        self.process = psutil.Process(pid) if pid else None
        self.every = every
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int | None:
        return self.process.memory_info().rss if self.process else None

    def _run(self):
        while not self._stop.wait(self.every):
            self.samples.append(self.rss())

    def __enter__(self):
        if self.process:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values), q))


def run_clients(clients: list) -> float:
    """Run each callable in a thread of its own, all at once; the wall-clock seconds until the last ends."""
    threads = [threading.Thread(target=client) for client in clients]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def run_load(url: str, clients: int, seconds: float, max_requests: int, captions: int, size: tuple[int, int],
             image_pool: int, timeout: float, first_seed: int = 0) -> dict:
    import httpx

    pool = [scene_b64(10_000 + i, *size) for i in range(image_pool)]
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    counter = {"sent": 0}
    stop_at = time.monotonic() + seconds

    def next_seed() -> int | None:
        with lock:
            if counter["sent"] >= max_requests:
                return None
            counter["sent"] += 1
            return first_seed + counter["sent"]

    def client(index: int) -> None:
        with httpx.Client(timeout=timeout) as http:
            while time.monotonic() < stop_at and (seed := next_seed()) is not None:
                b64 = pool[seed % image_pool] if image_pool else scene_b64(seed, *size)
                body = {"instances": [{"key": k, "caption": CAPTIONS[(seed + k) % len(CAPTIONS)], "b64": b64}
                                      for k in range(captions)]}
                start = time.perf_counter()
                try:
                    r = http.post(url + "/identify", json=body)
                    status = str(r.status_code)
                    if r.status_code == 200 and len(r.json()["predictions"]) != captions:
                        status = "wrong-count"
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed = time.perf_counter() - start
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == "200":
                        latencies.append(elapsed)

    wall = run_clients([lambda i=i: client(i) for i in range(clients)])
    total = sum(statuses.values())
    ok = statuses.get("200", 0)
    return {
        "requests": total, "ok": ok, "statuses": statuses, "wall_s": round(wall, 2),
        "error_rate": round((total - ok) / total, 4) if total else None,
        "throughput_rps": round(ok / wall, 2), "instances_per_s": round(ok * captions / wall, 2),
        "latency_ms": {"p50": round(percentile(latencies, 50) * 1000, 1),
                       "p90": round(percentile(latencies, 90) * 1000, 1),
                       "p99": round(percentile(latencies, 99) * 1000, 1),
                       "mean": round(statistics.fmean(latencies) * 1000, 1) if latencies else None},
    }


def scrape(url: str) -> dict[str, float]:
    """A few figures from /metrics: model calls, instances per call, cache hit ratios, 5xx count."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=30).text):
        for s in family.samples:
            if s.name in ("findbox_model_call_instances_count", "findbox_model_call_instances_sum",
                          "findbox_model_call_requests_sum"):
                out[s.name] = s.value
            elif s.name == "findbox_cache_hit_ratio":
                out[f"cache_hit_ratio_{s.labels['cache']}"] = round(s.value, 4)
            elif (s.name == "findbox_requests_total" and s.labels["status"].startswith("5")
                  and s.labels["endpoint"] in ("/identify", "/v1/ground")):  # not /health's 503 while loading
                out["server_errors"] = out.get("server_errors", 0) + s.value
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running server (loopback only); default: start a tiny one")
    parser.add_argument("--pid", type=int, help="the --url server's pid, to watch its memory")
    parser.add_argument("--server-args", default="", help="extra `findbox serve` options for the started server")
    parser.add_argument("--demo", action="store_true", help="start `findbox serve` with its defaults (the bundled "
                        "demo models) instead of tiny random-weight models")
    parser.add_argument("--health-every", type=float, default=0, metavar="S",
                        help="probe /health every S seconds during the run (0: off)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--max-requests", type=int, default=100_000, help="stop after this many requests")
    parser.add_argument("--warmup-requests", type=int, default=10)
    parser.add_argument("--captions", type=int, default=4, help="instances per request, one image")
    parser.add_argument("--size", default="320x240", help="image WxH")
    parser.add_argument("--image-pool", type=int, default=0, help="cycle N images (0: a new image per request)")
    parser.add_argument("--timeout", type=float, default=120, help="client timeout per request, seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON object only")
    parser.add_argument("--out", help="also write the JSON result (with the command, machine and commit) to this file")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    if not 1 <= args.clients <= 256 or not 0 < args.seconds <= 3600:
        raise SystemExit("--clients in [1, 256] and --seconds in (0, 3600]")

    proc, tmp = None, None
    if args.url:
        require_loopback(args.url)
        url, pid = args.url.rstrip("/"), args.pid
    else:
        tmp = tempfile.TemporaryDirectory(prefix="findbox-load-")
        start = start_demo_server if args.demo else start_tiny_server
        proc, url, _ = start(Path(tmp.name), shlex.split(args.server_args))
        pid = proc.pid
    try:
        wait_ready(url, proc, timeout=300)
        run_load(url, min(args.clients, 2), 60, args.warmup_requests, args.captions, size, args.image_pool,
                 args.timeout)  # warm-up: allocator and caches settle before RSS is read
        load_start = os.getloadavg()
        with RssWatch(pid) as rss, HealthProbe(url, args.health_every) as health:
            rss_start = rss.rss()
            result = run_load(url, args.clients, args.seconds, args.max_requests, args.captions, size,
                              args.image_pool, args.timeout, first_seed=1_000_000)  # not the warm-up's images
            rss_end = rss.rss()
        peak = max([s for s in rss.samples if s] + [rss_end or 0]) if pid else None
        middle = rss.samples[len(rss.samples) // 2] if rss.samples else rss_end
        mib = 1024 * 1024
        result.update({
            "clients": args.clients, "captions_per_request": args.captions, "image_size": args.size,
            "image_pool": args.image_pool, "server": "demo bundle" if args.demo else "tiny" if proc else args.url,
            "server_args": args.server_args or None,
            "load_average": {"start": [round(v, 2) for v in load_start],
                             "end": [round(v, 2) for v in os.getloadavg()]},
            "health": health.summary(),
            "rss_mib": None if not pid else {"start": round(rss_start / mib, 1), "middle": round(middle / mib, 1),
                                             "end": round(rss_end / mib, 1), "peak": round(peak / mib, 1),
                                             "growth": round((rss_end - rss_start) / mib, 1),
                                             "timeline": [round(v / mib) for v in rss.samples[9::10]]},
            "metrics": scrape(url),
        })
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if tmp is not None:
            tmp.cleanup()
    result["command"] = " ".join([".venv/bin/python", *sys.argv])
    if args.out:
        from contextlib import redirect_stdout

        from common import write_result  # with the machine, commit, clean-tree flag and date

        with redirect_stdout(sys.stderr):  # --json keeps stdout to one JSON object
            write_result(args.out, result)
    if args.json:
        print(json.dumps(result))
        return 0
    lat, mem = result["latency_ms"], result["rss_mib"]
    print(f"{result['requests']} requests in {result['wall_s']} s from {args.clients} clients "
          f"({args.captions} instances each, {args.size})")
    print(f"  throughput   {result['throughput_rps']} req/s, {result['instances_per_s']} instances/s")
    print(f"  latency      p50 {lat['p50']} ms, p90 {lat['p90']} ms, p99 {lat['p99']} ms")
    print(f"  errors       {result['error_rate']:.2%}  statuses {result['statuses']}")
    if mem:
        print(f"  server RSS   {mem['start']} -> {mem['middle']} -> {mem['end']} MiB (peak {mem['peak']}, growth {mem['growth']:+} MiB); "
              f"every 5 s: {mem['timeline']}")
    if result["health"]:
        h = result["health"]
        print(f"  /health      {h['probes']} probes, statuses {h['statuses']}, p50 {h['p50_ms']} ms, "
              f"p99 {h['p99_ms']} ms, max {h['max_ms']} ms")
    print(f"  load average {result['load_average']}")
    print(f"  server       {result['metrics']}")
    print(json.dumps(result))
    return 0 if result["error_rate"] == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
