"""Peak memory against request size: one fresh process per (contender, instances).

    .venv/bin/python benchmarks/bench_memory.py [--instances 4,16,64]

Each child loads the models, notes its RSS, serves one request in the client's order
(the 4 captions of each image together; 64 instances = 16 images) and reports its peak
RSS (ru_maxrss). findbox detects and embeds images in chunks (PROPOSE_CHUNK images,
crop_batch crops per forward), so its peak stops growing once a request fills one crop
batch (16 instances = 40 crops > 32); `findbox --crop-batch 4096` shows what an uncapped
crop batch would cost.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import BENCH_DETECTION, RESULTS, bench_models, machine, peak_rss_mb  # noqa: E402

CONTENDERS = {"findbox": {}, "findbox --crop-batch 4096": {"crop_batch": 4096}, "reference": {}}


def child(contender: str, instances: int) -> None:
    import psutil

    from bench_pipeline import as_request, findbox_fn, reference_fn
    from common import scenes

    from findbox.factory import load_pipeline
    from findbox.pipeline import Pipeline

    models = bench_models()
    images = -(-instances // 4)
    frames = scenes(images + 1, start=20_000)
    warm, frames = as_request([(frames[0].b64, "warm up")]), frames[1:]  # a different image: no cache hit later
    request = as_request([(f.b64, c) for f in frames for c in f.captions[:4]][:instances])
    pipe = load_pipeline(detector=str(models["detector"]), scorer=str(models["scorer"]), no_upscaler=True,
                         device="cpu", precision="fp32", detection=dict(BENCH_DETECTION),
                         **CONTENDERS[contender])
    run = reference_fn(Pipeline(pipe.detector, pipe.scorer)) if contender == "reference" else findbox_fn(pipe, {})
    run(warm)
    loaded = psutil.Process().memory_info().rss / 2**20
    peak_before = peak_rss_mb()
    t = time.perf_counter()
    run(request)
    seconds = time.perf_counter() - t
    print(json.dumps({"contender": contender, "instances": instances, "images": images, "seconds": seconds,
                      "rss_loaded_mb": loaded, "peak_rss_mb": peak_rss_mb(), "peak_before_request_mb": peak_before}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", default="4,16,64", help="request sizes for findbox")
    parser.add_argument("--uncapped-instances", default="64", help="request sizes for findbox --crop-batch 4096")
    parser.add_argument("--reference-instances", default="4", help="the reference is slow: fewer sizes")
    parser.add_argument("--out", default=str(RESULTS / "memory.json"))
    parser.add_argument("--child", nargs=2, metavar=("CONTENDER", "INSTANCES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    bench_models()  # build once, outside the children
    runs = [("findbox", int(n)) for n in args.instances.split(",") if n]
    runs += [("findbox --crop-batch 4096", int(n)) for n in args.uncapped_instances.split(",") if n]
    runs += [("reference", int(n)) for n in args.reference_instances.split(",") if n]
    rows = []
    for contender, n in runs:
        proc = subprocess.run([sys.executable, __file__, "--child", contender, str(n)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{contender} {n}: child failed:\n{proc.stderr[-3000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{contender:28s} {n:4d} instances: peak RSS {row['peak_rss_mb']:7.0f} MB "
              f"(loaded {row['rss_loaded_mb']:.0f} MB, +{row['peak_rss_mb'] - row['peak_before_request_mb']:.0f} MB "
              f"in the request), {row['seconds']:.1f} s", flush=True)
    out = {"machine": machine(), "detection": BENCH_DETECTION, "rows": rows,
           "command": " ".join([".venv/bin/python", *sys.argv])}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
