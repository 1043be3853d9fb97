"""Many concurrent clients posting one large image each: the server's memory bound (docs/OPERATIONS.md).

    .venv/bin/python benchmarks/flood.py --clients 64 256 --seconds 40 --out benchmarks/results/ops_flood.json

Starts `findbox serve` with its defaults (the bundled demo models; --server-args adds flags) on
127.0.0.1 and, for each --clients N, runs N clients for --seconds: each posts one instance with a
new ~--image-mb MB JPEG (noise, so it does not compress) to /identify, and on a 503 waits the
Retry-After it was given before posting again; the time those clients see to a 503 includes
sending their whole body (httpx sends before it reads). A probe sends only a POST's headers every
second and times the 503 that the budget decides from them (`refusal_from_headers`). Every image is new (a JPEG comment numbers it), so
the image cache never answers; the clients stream their bodies from one shared buffer, so the
client process stays small whatever N. Records per N: the statuses, the throughput and latency
of the admitted (200) requests, /health probed every --health-every seconds, and the server's
RSS (psutil) before the clients, at its peak and at the end.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import shlex
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import write_result
from load import HealthProbe, RssWatch, percentile, run_clients, start_demo_server, wait_ready

CHUNK = 1 << 20  # bytes per write of a streamed body
MIB = 1024 * 1024


def noise_jpeg(megabytes: float, seed: int = 0) -> bytes:
    """A JPEG of random pixels of about `megabytes` MB (noise barely compresses: ~1.15 bytes a pixel at q95)."""
    pixels = int(megabytes * 1e6 / 1.15)
    width = int((pixels * 4 / 3) ** 0.5)
    height = pixels // width
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


class Bodies:
    """Request bodies that differ only in a numbered JPEG comment, streamed from one shared buffer.

    The comment segment right after the JPEG's SOI marker is 18 bytes (a multiple of 3), so the
    base64 of the rest of the file is the same for every body and is encoded once.
    """

    def __init__(self, jpeg: bytes, caption: str):
        self.rest = base64.b64encode(jpeg[2:])
        self.prefix = b'{"instances": [{"caption": "' + caption.encode() + b'", "b64": "'
        self.suffix = b'"}]}'
        self.length = len(self.prefix) + 24 + len(self.rest) + len(self.suffix)

    def stream(self, number: int):
        head = b"\xff\xd8\xff\xfe\x00\x0e" + f"{number:012d}".encode()  # SOI, COM of 12 bytes
        yield self.prefix + base64.b64encode(head)
        view = memoryview(self.rest)
        for start in range(0, len(view), CHUNK):
            yield bytes(view[start:start + CHUNK])
        yield self.suffix


class HeaderProbe:
    """Every `every` seconds, sends a POST's headers (the flood's Content-Length) and no body, and times
    the answer: a refusal is decided from the headers, so its 503 comes with no byte of body sent. A
    probe the budget admits gets no answer (the server waits for its body) and is closed after
    `wait` seconds, giving its reservation back."""

    def __init__(self, url: str, length: int, every: float = 1.0, wait: float = 2.0):
        self.host, port = url.removeprefix("http://").split(":")
        self.port, self.length, self.every, self.wait = int(port), length, every, wait
        self.probes: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        head = (f"POST /identify HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {self.length}\r\n\r\n").encode()
        while not self._stop.wait(self.every):
            with socket.create_connection((self.host, self.port), timeout=self.wait) as sock:
                start = time.perf_counter()
                sock.sendall(head)
                try:
                    line = sock.recv(64).split(b"\r\n", 1)[0].decode()
                    status = line.split()[1] if line.startswith("HTTP/") else "closed"
                except TimeoutError:
                    status = "admitted"
                self.probes.append((status, time.perf_counter() - start))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        refused = [seconds * 1000 for status, seconds in self.probes if status == "503"]
        counts: dict[str, int] = {}
        for status, _ in self.probes:
            counts[status] = counts.get(status, 0) + 1
        return {"probes": len(self.probes), "statuses": counts,
                "refused_ms": {"p50": round(percentile(refused, 50), 1), "p99": round(percentile(refused, 99), 1),
                               "max": round(max(refused), 1)} if refused else None}


def flood(url: str, bodies: Bodies, clients: int, seconds: float, timeout: float, first: int) -> dict:
    import httpx

    lock = threading.Lock()
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    refused_s: list[float] = []
    counter = [first]
    stop_at = time.monotonic() + seconds

    def client() -> None:
        headers = {"Content-Type": "application/json", "Content-Length": str(bodies.length)}
        with httpx.Client(timeout=timeout) as http:
            while time.monotonic() < stop_at:
                with lock:
                    counter[0] += 1
                    number = counter[0]
                start = time.perf_counter()
                wait = 0.0
                try:
                    r = http.post(url + "/identify", content=bodies.stream(number), headers=headers)
                    status = str(r.status_code)
                    if r.status_code == 503:
                        wait = float(r.headers.get("retry-after", 1))
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed = time.perf_counter() - start
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    (latencies if status == "200" else refused_s if status == "503" else []).append(elapsed)
                time.sleep(wait)

    wall = run_clients([client] * clients)
    return {"clients": clients, "statuses": statuses, "wall_s": round(wall, 1),
            "admitted_per_s": round(len(latencies) / wall, 3),
            "admitted_latency_s": {"p50": round(percentile(latencies, 50), 2),
                                   "p90": round(percentile(latencies, 90), 2), "max": round(max(latencies), 2)}
            if latencies else None,
            "refused_latency_s": {"p50": round(percentile(refused_s, 50), 3),
                                  "max": round(max(refused_s), 3)} if refused_s else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--seconds", type=float, default=40.0, help="each level runs this long")
    parser.add_argument("--image-mb", type=float, default=30.0)
    parser.add_argument("--health-every", type=float, default=0.5)
    parser.add_argument("--timeout", type=float, default=300.0, help="client timeout per request")
    parser.add_argument("--server-args", default="", help="extra `findbox serve` flags")
    parser.add_argument("--out", help="write the result JSON here")
    args = parser.parse_args()

    jpeg = noise_jpeg(args.image_mb)
    width, height = Image.open(io.BytesIO(jpeg)).size
    bodies = Bodies(jpeg, "grey missile")
    tmp = tempfile.TemporaryDirectory(prefix="findbox-flood-")
    proc, url, _ = start_demo_server(Path(tmp.name), shlex.split(args.server_args))
    levels = []
    try:
        wait_ready(url, proc, timeout=600)
        flood(url, bodies, 1, 0.1, args.timeout, 0)  # one request: the first call's set-up is not in the figures
        for n, clients in enumerate(args.clients):
            load_start = os.getloadavg()
            with (RssWatch(proc.pid, every=0.25) as rss, HealthProbe(url, args.health_every) as health,
                  HeaderProbe(url, bodies.length) as headers):
                before = rss.rss()
                level = flood(url, bodies, clients, args.seconds, args.timeout, (n + 1) * 1_000_000)
                end = rss.rss()
            peak = max([s for s in rss.samples if s] + [end])
            level.update({"rss_mib": {"before": round(before / MIB), "peak": round(peak / MIB),
                                      "end": round(end / MIB), "growth_peak": round((peak - before) / MIB)},
                          "health": health.summary(), "refusal_from_headers": headers.summary(),
                          "load_average": {"start": [round(v, 2) for v in load_start],
                                           "end": [round(v, 2) for v in os.getloadavg()]}})
            print(level, flush=True)
            levels.append(level)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except Exception:  # noqa: BLE001 - a server that will not stop is killed
            proc.kill()
        tmp.cleanup()
    result = {"image": {"bytes": len(jpeg), "width": width, "height": height, "body_bytes": bodies.length},
              "server": "demo bundle", "server_args": args.server_args or None, "seconds_per_level": args.seconds,
              "levels": levels}
    if args.out:
        write_result(args.out, result)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
