"""A request past its deadline frees the model worker: how soon, and the next request's latency.

    .venv/bin/python benchmarks/bench_timeout.py [--timeout-s 5] [--images 64]
    .venv/bin/python benchmarks/bench_timeout.py --timeout-chunks 3   # timeout = 3 x one chunk, measured first

Serves the benchmark models (CPU, fp32, imgsz 640) in a real `findbox serve` process with
--request-timeout-s, sends one request of `--images` distinct 1520x870 frames x 4 captions
(256 instances, the instance cap; ~64/8 = 8 chunks) that cannot finish in time, then, as soon
as its 504 arrives, one small request (1 image, 1 caption). Reports when each answer came,
and how many images the worker had detected by then (/metrics): the big request's work stops
within one chunk of its deadline. With --timeout-chunks K it first times one chunk (8 new
frames x 4 captions) on a server without a tight timeout, then uses K times that as the
timeout, so that the small request's own chunk fits and its latency is the figure.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import BENCH_DETECTION, RESULTS, bench_models, write_result  # noqa: E402


def frame_b64(seed: int, wh=(1520, 870)) -> str:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (wh[1] // 30 + 1, wh[0] // 40 + 1, 3), dtype=np.uint8).repeat(30, 0).repeat(40, 1)[: wh[1], : wh[0]]
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=80)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def images_detected(url: str) -> int:
    import httpx

    text = httpx.get(url + "/metrics", timeout=30).text
    return int(float(re.search(r'findbox_pipeline_work_total\{counter="images_detected"\} (\S+)', text).group(1)))


def start_server(models: dict, timeout_s: float) -> tuple[subprocess.Popen, str]:
    """The benchmark models in a real `findbox serve` on a free loopback port, once /health answers."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "findbox.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--detector", str(models["detector"]), "--scorer", str(models["scorer"]), "--no-upscaler",
           "--device", "cpu", "--precision", "fp32", "--request-timeout-s", str(timeout_s)]
    for key, value in BENCH_DETECTION.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        assert server.poll() is None, "server exited"
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    server.wait(60)


CAPTIONS = ["grey fighter jet", "yellow drone", "red and white helicopter", "black cargo aircraft"]


def one_chunk_seconds(models: dict) -> float:
    """Seconds for one chunk: 8 frames never seen before x 4 captions, on a server with a 600 s timeout."""
    import httpx

    server, url = start_server(models, 600)
    try:
        chunk = {"instances": [{"caption": c, "b64": frame_b64(10_000 + i)} for i in range(8) for c in CAPTIONS]}
        t0 = time.monotonic()
        r = httpx.post(url + "/identify", json=chunk, timeout=600)
        assert r.status_code == 200, r.text
        return time.monotonic() - t0
    finally:
        stop(server)


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timeout-s", type=float, default=5.0)
    parser.add_argument("--timeout-chunks", type=float, default=0, metavar="K",
                        help="measure one chunk first and set the timeout to K times it (overrides --timeout-s)")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--out", default=str(RESULTS / "ops_timeout.json"))
    args = parser.parse_args()
    models = bench_models()
    load_start = os.getloadavg()
    chunk_s = None
    if args.timeout_chunks > 0:
        chunk_s = one_chunk_seconds(models)
        args.timeout_s = round(args.timeout_chunks * chunk_s, 1)
        print(f"one chunk (8 frames x 4 captions): {chunk_s:.2f} s; --request-timeout-s {args.timeout_s}")
    server, url = start_server(models, args.timeout_s)
    try:
        frames = [frame_b64(i) for i in range(args.images + 1)]
        captions = CAPTIONS
        big = {"instances": [{"caption": c, "b64": f} for f in frames[1:] for c in captions][:256]}
        small = {"instances": [{"caption": captions[0], "b64": frames[0]}]}
        before = images_detected(url)
        t0 = time.monotonic()
        r_big = httpx.post(url + "/identify", json=big, timeout=600)
        t_big = time.monotonic() - t0
        r_small = httpx.post(url + "/identify", json=small, timeout=600)
        t_small = time.monotonic() - t0 - t_big
        detected = images_detected(url) - before
        row = {"timeout_s": args.timeout_s, "big_images": args.images, "big_status": r_big.status_code,
               "big_answered_s": t_big, "small_status": r_small.status_code, "small_latency_s": t_small,
               "images_detected_by_then": detected, "one_chunk_s": chunk_s,
               "load_average": {"start": load_start, "end": os.getloadavg()}}
    finally:
        stop(server)
    print(f"big request ({args.images} distinct frames, 256 instances): {row['big_status']} after "
          f"{t_big:.2f} s; next request: {row['small_status']} in {t_small:.2f} s; the worker detected "
          f"{detected} images in all (of {args.images} + 1)")
    write_result(args.out, {"row": row})


if __name__ == "__main__":
    main()
