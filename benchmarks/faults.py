"""Faults an operator meets, each shown against a real server or command: what the client or user sees.

    .venv/bin/python benchmarks/faults.py kill        # SIGKILL `findbox serve` mid-request, restart it
    .venv/bin/python benchmarks/faults.py scorer      # a scorer that raises, served by uvicorn
    .venv/bin/python benchmarks/faults.py disk --full-dir /tmp/fullfs   # `findbox eval --out` on a full disk

kill: `findbox serve` with its defaults (the bundled demo models) on a free loopback port; one
request of the shipped sample scene's 5 captions on 8 re-encoded copies of its image (40
instances) is sent, the server is SIGKILLed while the request is in flight (seen on /metrics;
a request answered before the kill is an error, not a record), and the client's outcome and
its delay are recorded; the same command is started again, and /health and /identify are
checked. Files the server wrote anywhere under the findbox cache folder during the run are
listed (none expected: its only state is in-memory caches).

scorer: the bundled demo models loaded by `findbox.factory.load_pipeline`, with the scorer's
`embed_texts` wrapped to raise RuntimeError for one trigger caption (the way a real model error
or a bad caption surfaces: from inside the model call), served by `create_app(config, load=...)`
under uvicorn in this process. The same keep-alive connection sends a good request, the trigger,
and a good request again.

disk: `findbox eval` of the shipped sample scene with --out on a nearly full file system
(--full-dir: a tiny tmpfs, e.g. `mount -t tmpfs -o size=200k tmpfs /tmp/fullfs`, or a folder
you filled), then with --out on /dev/full's directory-less cousin: a path whose parent is a
file. Records the exit status and the last lines of stderr.

Each writes its JSON under results/ (ops_faults_<what>.json), with the load average.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import write_result  # noqa: E402
from load import free_port, wait_ready  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SAMPLE = Path(__file__).resolve().parents[1] / "src" / "findbox" / "assets" / "sample"


def sample_body() -> dict:
    """The shipped sample scene (1520x870 JPEG) with its five captions, the published client's shape."""
    line = json.loads((SAMPLE / "vlm.jsonl").read_text().splitlines()[0])
    b64 = base64.b64encode((SAMPLE / "images" / line["image"]).read_bytes()).decode("ascii")
    captions = [a["caption"] for a in line["annotations"]]
    return {"instances": [{"key": k, "caption": c, "b64": b64} for k, c in enumerate(captions)]}


def long_body(variants: int = 8) -> dict:
    """The sample scene's five captions on `variants` copies of its image, each re-encoded at another JPEG
    quality (other pixels, so none is answered from the image cache): a request that stays inside the
    model call for seconds, long enough to be killed there on a fast machine (the sample alone took
    0.28 s on a quiet 2-core AMD EPYC, shorter than the wait before the kill)."""
    import io

    from PIL import Image

    line = json.loads((SAMPLE / "vlm.jsonl").read_text().splitlines()[0])
    image = Image.open(SAMPLE / "images" / line["image"]).convert("RGB")
    captions = [a["caption"] for a in line["annotations"]]
    instances = []
    for k in range(variants):
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=90 - k)
        b64 = base64.b64encode(buf.getvalue()).decode("ascii")
        instances += [{"key": len(instances), "caption": c, "b64": b64} for c in captions]
    return {"instances": instances}


def serve_cmd(port: int) -> list[str]:
    return [sys.executable, "-m", "findbox.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning"]


def in_flight(url: str) -> float:
    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("findbox_requests_in_flight{") and "/identify" in line)


def files_newer_than(root: Path, since: float) -> list[str]:
    if not root.is_dir():
        return []
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and p.stat().st_mtime >= since)


def fault_kill() -> dict:
    import httpx

    from findbox.env import cache_dir

    started = time.time()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    body = long_body()
    server = subprocess.Popen(serve_cmd(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(url, server, timeout=300)
    outcome: dict = {}

    def client() -> None:
        t0 = time.monotonic()
        try:
            r = httpx.post(url + "/identify", json=body, timeout=120)
            outcome.update(status=r.status_code)
        except httpx.HTTPError as exc:
            outcome.update(error=f"{type(exc).__name__}: {exc}")
        outcome["done_at"] = time.monotonic()
        outcome["seconds"] = round(outcome["done_at"] - t0, 3)

    thread = threading.Thread(target=client)
    thread.start()
    while in_flight(url) < 1:  # the request has reached the app (it shows on /metrics) ...
        time.sleep(0.01)
    time.sleep(0.2)  # ... and is past parsing, inside the model call
    killed_at = time.monotonic()
    server.send_signal(signal.SIGKILL)
    server.wait()
    thread.join(150)
    if outcome.get("done_at", float("inf")) < killed_at:
        raise RuntimeError(f"kill: the request was answered ({outcome}) before the server was killed: nothing "
                           "was killed mid-request; send a longer request (long_body(variants=...))")
    row = {"server_exit": server.returncode, "client": {k: v for k, v in outcome.items() if k != "done_at"},
           "client_error_after_kill_s": round(outcome["done_at"] - killed_at, 3) if "done_at" in outcome else None,
           "client_hung": thread.is_alive()}
    t0 = time.monotonic()
    restarted = subprocess.Popen(serve_cmd(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(url, restarted, timeout=300)
        row["restart_to_health_200_s"] = round(time.monotonic() - t0, 2)
        row["health_after_restart"] = httpx.get(url + "/health", timeout=10).json()
        r = httpx.post(url + "/identify", json=sample_body(), timeout=120)
        row["identify_after_restart"] = {"status": r.status_code, "predictions": len(r.json().get("predictions", []))}
    finally:
        restarted.terminate()
        restarted.wait(60)
    row["files_written_under_cache_dir"] = files_newer_than(cache_dir(), started)
    return row


def fault_scorer() -> dict:
    import httpx
    import uvicorn

    from findbox.config import ServeConfig, ServerConfig
    from findbox.factory import load_pipeline
    from findbox.serve.app import create_app

    trigger = "caption the scorer fails on"

    def load(config):
        pipeline = load_pipeline(config)
        embed_texts = pipeline.scorer.embed_texts

        def failing(captions, *args, **kwargs):
            if trigger in captions:
                raise RuntimeError("scorer failed (injected by benchmarks/faults.py)")
            return embed_texts(captions, *args, **kwargs)

        pipeline.scorer.embed_texts = failing
        return pipeline

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(ServeConfig(server=ServerConfig(port=port)), load=load)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    rows = []
    try:
        wait_ready(url, None, timeout=300)
        good = sample_body()
        bad = {"instances": [*good["instances"][:2], {**good["instances"][2], "caption": trigger}]}
        with httpx.Client(base_url=url, timeout=120) as http:  # one keep-alive connection throughout
            for name, body in [("good", good), ("trigger", bad), ("good again", good)]:
                r = http.post("/identify", json=body)
                rows.append({"request": name, "status": r.status_code, "x_request_id": r.headers.get("x-request-id"),
                             "answer": r.json() if r.status_code != 200 else {"predictions": len(r.json()["predictions"])}})
            health = http.get("/health").status_code
            errors = [line for line in http.get("/metrics").text.splitlines()
                      if line.startswith("findbox_errors_total{")]
    finally:
        server.should_exit = True
        thread.join(60)
    return {"rows": rows, "health_after": health, "metrics_errors": errors}


def run_eval(out: Path) -> dict:
    cmd = [sys.executable, "-m", "findbox.cli", "eval", str(SAMPLE / "vlm.jsonl"), "--out", str(out), "--no-progress"]
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    return {"command": f"findbox eval {SAMPLE.relative_to(SAMPLE.parents[3])}/vlm.jsonl --out {out}",
            "exit": done.returncode, "seconds": round(time.monotonic() - t0, 1),
            "stderr_tail": done.stderr.strip().splitlines()[-4:], "stdout_tail": done.stdout.strip().splitlines()[-2:]}


def fault_disk(full_dir: Path) -> dict:
    stat = os.statvfs(full_dir)
    rows = {"full_dir": str(full_dir), "free_bytes": stat.f_bavail * stat.f_frsize,
            "full_disk": run_eval(full_dir / "eval")}
    parent_is_file = full_dir.parent / "findbox-faults-not-a-dir"
    parent_is_file.write_text("a file where --out expects a folder\n")
    try:
        rows["out_under_a_file"] = run_eval(parent_is_file / "eval")
    finally:
        parent_is_file.unlink()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("fault", choices=["kill", "scorer", "disk"])
    parser.add_argument("--full-dir", type=Path, help="disk: a folder on a (nearly) full file system")
    args = parser.parse_args()
    load_start = os.getloadavg()
    if args.fault == "kill":
        result = fault_kill()
    elif args.fault == "scorer":
        result = fault_scorer()
    else:
        if args.full_dir is None:
            raise SystemExit("disk: --full-dir is required (e.g. a 200k tmpfs)")
        result = fault_disk(args.full_dir)
    out = {"fault": args.fault, "result": result, "load_average": {"start": load_start, "end": os.getloadavg()},
           "command": " ".join([".venv/bin/python", *sys.argv])}
    path = RESULTS / f"ops_faults_{args.fault}.json"
    print(json.dumps(out, indent=1, ensure_ascii=False))
    write_result(path, out)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
