"""The demo bundle through the published test client: per-instance latency of today's default against
the default when issue 27 was filed, side by side on one machine, with the boxes each gives.

    git worktree add --detach /tmp/filed 970dad2      # the tree issue 27 was filed against
    .venv/bin/python benchmarks/client_latency.py --baseline /tmp/filed --images 40 --rounds 3

Each contender is `findbox serve` on 127.0.0.1 with the bundled demo models, started from a source
tree (`--baseline`'s `src/` for "filed default", this checkout for the others) with the same Python
environment and a fresh cache folder per tree. In each round every contender gets a fresh server
(the order rotates between rounds, so a busy spell of the shared machine does not land on one
contender): a warm-up set of other scenes, untimed; then the timed set as the published test
client sends it (a string body with no Content-Type, 44 instances with `key`s a request, the images
in order): the round's latency an instance is its requests' seconds over its instances; then the
finals harness's style (one instance a request, with the header) on the instances of `--finals`
other scenes, whose mean is that style's latency an instance (the first caption of a scene pays its
detection, the rest hit the image cache). The server's own stage seconds and counters (`/metrics`)
are read before and after the timed pass: where the time went.

The floor: the detector's FLOPs per frame at the served size (counted with torch's FlopCounterMode
on the bundle's detector) at this machine's fp32 and bf16 matmul rates measured in the same run
(`bench_flops.matmul_peak`): the time no fp32 (bf16) detector can beat, against the time the
server's detect stage took per frame. Writes benchmarks/results/client_latency.json; docs_tables.py renders it
in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, write_result  # noqa: E402
from load import start_demo_server, wait_ready  # noqa: E402
from published_client import BATCH, synthetic_instances  # noqa: E402

from findbox.eval.calibrate import DETECTOR_SAME_PX, corner_px  # noqa: E402
from findbox.eval.calibrate import same_box as same_answer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def contenders(baseline: Path | None) -> dict[str, dict]:
    """name -> {"src": the findbox source tree, "args": serve flags beyond the defaults}."""
    out = {}
    if baseline is not None:
        out["filed default"] = {"src": baseline / "src", "args": []}
    out["default"] = {"src": ROOT / "src", "args": []}
    # every fast path this tree has, explicitly: static int8 towers and the ONNX Runtime detector
    out["bf16 detector"] = {"src": ROOT / "src", "args": ["--detector-precision", "bf16"]}
    out["int8, onnx detector"] = {"src": ROOT / "src", "args": ["--precision", "int8", "--detector-backend", "onnx"]}
    return out


def scrape(url: str) -> dict:
    """{"stage_seconds": {stage: s}, "work": {counter: n}, "models": {stage: labels}} from /metrics."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    out = {"stage_seconds": {}, "work": {}, "models": {}}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=30).text):
        for sample in family.samples:
            if sample.name == "findbox_pipeline_stage_seconds_total":
                out["stage_seconds"][sample.labels["stage"]] = sample.value
            elif sample.name == "findbox_pipeline_work_total":
                out["work"][sample.labels["counter"]] = sample.value
            elif sample.name == "findbox_model_info":
                labels = dict(sample.labels)
                out["models"][labels.pop("stage")] = labels
    return out


def timed_send(url: str, instances: list[dict], batch: int, json_header: bool) -> tuple[list, list[float], dict]:
    """(boxes in order, each request's seconds over its instances, {status: requests}). batch 44 and no
    header: the published test client; batch 1 with the header: the finals harness."""
    import requests

    boxes, per_instance, statuses = [], [], {}
    with requests.Session() as http:
        for lo in range(0, len(instances), batch):
            chunk = instances[lo:lo + batch]
            fields = ("key", "caption", "b64") if batch > 1 else ("caption", "b64")
            body = {"instances": [{field: inst[field] for field in fields} for inst in chunk]}
            start = time.perf_counter()
            if json_header:
                response = http.post(url + "/identify", json=body, timeout=600)
            else:
                response = http.post(url + "/identify", data=json.dumps(body), timeout=600)
            per_instance.append((time.perf_counter() - start) / len(chunk))
            statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
            predictions = response.json().get("predictions") if response.status_code == 200 else None
            boxes += predictions if predictions is not None else [None] * len(chunk)
    return boxes, per_instance, statuses


def one_run(spec: dict, sets: dict[str, list[dict]], cache: Path) -> dict:
    """A fresh server of one contender: the warm-up set, the test client's pass over the timed set, the
    finals harness's pass over its own set. The three sets have no image in common: the server keeps
    each image's detections, so a repeated image would time a cache hit."""
    env = {**os.environ, "PYTHONPATH": str(spec["src"]), "FINDBOX_CACHE": str(cache)}
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, log = start_demo_server(Path(tmp), ["--device", "cpu", *spec["args"]], env=env)
        try:
            wait_ready(url, proc, timeout=900)
            timed_send(url, sets["warm"], BATCH, json_header=False)  # untimed
            before = scrape(url)
            boxes, per_instance, statuses = timed_send(url, sets["timed"], BATCH, json_header=False)
            after = scrape(url)
            _, finals_seconds, finals_statuses = timed_send(url, sets["finals"], 1, json_header=True)
        finally:
            proc.terminate()
            proc.wait(60)
    stages = {k: v - before["stage_seconds"].get(k, 0.0) for k, v in after["stage_seconds"].items()}
    work = {k: v - before["work"].get(k, 0.0) for k, v in after["work"].items()}
    return {"boxes": boxes, "per_instance_s": per_instance, "statuses": statuses,
            "finals_s": finals_seconds, "finals_statuses": finals_statuses,
            "stage_seconds": stages, "work": work, "models": after["models"]}


def _sizes(total: int, batch: int) -> list[int]:
    """Instances in each request when `total` go `batch` at a time."""
    return [min(batch, total - lo) for lo in range(0, total, batch)]


def same_box(a, b) -> bool:
    """Every corner within DETECTOR_SAME_PX, as `findbox calibrate` counts a bf16 detector's answers."""
    return a is not None and b is not None and same_answer(a, b, DETECTOR_SAME_PX)


def detector_floor(imgsz: int, image_wh: tuple[int, int]) -> dict:
    """The bundle's detector: FLOPs per frame at `imgsz` (letterboxed as ultralytics does for
    `image_wh`), this machine's fp32 matmul rate, and the time the one takes at the other."""
    import torch
    from bench_flops import count_flops, matmul_peak
    from ultralytics import YOLO

    from findbox.bundle import BUNDLE_DIR

    w, h = image_wh
    scale = imgsz / max(w, h)
    letterboxed = (round(h * scale) + 31) // 32 * 32, (round(w * scale) + 31) // 32 * 32
    model = YOLO(str(BUNDLE_DIR / "detector.pt")).model.float().eval()
    gflop = count_flops(model, torch.zeros(1, 3, *letterboxed)) / 1e9
    peak, bf16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)  # GFLOP/s
    return {"imgsz": imgsz, "input_hw": list(letterboxed), "gflop_per_frame": gflop,
            "fp32_matmul_gflops": peak, "floor_ms_per_frame": 1e3 * gflop / peak,
            "bf16_matmul_gflops": bf16, "bf16_floor_ms_per_frame": 1e3 * gflop / bf16}


def summarise(runs: list[dict], truths: list, reference: list | None) -> dict:
    from findbox.eval.metric import iou_ltwh, is_hit

    boxes = runs[0]["boxes"]
    # a round's latency an instance: its requests' seconds over its instances (requests of 44, the last shorter)
    by_round = [sum(s * n for s, n in zip(run["per_instance_s"], _sizes(len(boxes), BATCH))) / len(boxes)
                for run in runs]
    finals = [sum(run["finals_s"]) / len(run["finals_s"]) for run in runs if run["finals_s"]]
    stage_totals: dict[str, float] = {}
    work_totals: dict[str, float] = {}
    for run in runs:
        for k, v in run["stage_seconds"].items():
            stage_totals[k] = stage_totals.get(k, 0.0) + v
        for k, v in run["work"].items():
            work_totals[k] = work_totals.get(k, 0.0) + v
    frames = work_totals.get("images_detected", 0.0)
    hits = [box is not None and is_hit(iou_ltwh(box, truth)) for box, truth in zip(boxes, truths)]
    row = {"ms_per_instance_median": 1e3 * statistics.median(by_round),
           "ms_per_instance_by_round": [1e3 * v for v in by_round],
           # one instance a request: the first caption of an image pays its detection, the others hit the image
           # cache, so the mean over the instances, per round, is the latency an instance
           "finals_ms_by_round": [1e3 * v for v in finals],
           "finals_ms_median": 1e3 * statistics.median(finals) if finals else None,
           "statuses": [run["statuses"] for run in runs], "finals_statuses": [run["finals_statuses"] for run in runs],
           "accuracy": sum(hits) / len(hits), "hits": sum(hits),
           "runs_agree": all(all(same_box(a, b) for a, b in zip(boxes, run["boxes"])) for run in runs[1:]),
           "detect_ms_per_frame": 1e3 * stage_totals.get("detect", 0.0) / frames if frames else None,
           "frames_detected": frames, "stage_seconds": stage_totals, "work": work_totals,
           "models": runs[0]["models"]}
    if reference is not None and reference is not boxes:
        row["same_box_as_filed_default"] = sum(same_box(a, b) for a, b in zip(boxes, reference)) / len(boxes)
        # the answers that moved: by how much, and whether they are still the same object (IoU > 0.5)
        moved = [(a, b) for a, b in zip(boxes, reference) if not same_box(a, b)]
        row["moved_answers"] = {"count": len(moved),
                                "max_corner_px": [round(corner_px(a, b), 2) for a, b in moved],
                                "other_object": sum(a is None or b is None or not is_hit(iou_ltwh(a, b))
                                                    for a, b in moved)}
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a checkout of the commit whose default is the reference (the filed default)")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--seed", type=int, default=9402, help="a synth seed never trained on (default 9402)")
    parser.add_argument("--noise", default="low")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--finals", type=int, default=10, help="images whose instances go one a request (finals harness)")
    parser.add_argument("--out", default=str(RESULTS / "client_latency.json"))
    args = parser.parse_args()

    from tqdm import tqdm

    from findbox.bundle import bundle_detection_defaults
    from findbox.synth import SynthConfig

    specs = contenders(args.baseline)
    instances, truths = synthetic_instances(args.images, args.seed, args.noise)
    sets = {"timed": instances, "warm": synthetic_instances(2, args.seed + 1, args.noise)[0],
            "finals": synthetic_instances(args.finals, args.seed + 2, args.noise)[0]}
    runs: dict[str, list[dict]] = {name: [] for name in specs}
    names = list(specs)
    # a fresh cache folder per source tree, as a new user's first start: the exports, quantised towers
    # and the detector backend's measurement are made (before the server is ready) in this run
    caches = tempfile.TemporaryDirectory(prefix="findbox-latency-")
    trees = sorted({str(spec["src"]) for spec in specs.values()})
    with caches, tqdm(total=args.rounds * len(names), desc="servers") as bar:
        for round_ in range(args.rounds):
            for name in names[round_ % len(names):] + names[:round_ % len(names)]:
                cache = Path(caches.name) / f"tree{trees.index(str(specs[name]['src']))}"
                runs[name].append(one_run(specs[name], sets, cache))
                bar.set_postfix_str(f"{name}: {1e3 * statistics.mean(runs[name][-1]['per_instance_s']):.0f} ms")
                bar.update()
    reference = runs["filed default"][0]["boxes"] if "filed default" in runs else None
    rows = {name: summarise(runs[name], truths, reference) for name in names}
    if args.baseline is not None:
        base = rows["filed default"]["ms_per_instance_median"]
        for row in rows.values():
            row["speedup_vs_filed_default"] = base / row["ms_per_instance_median"]
    config = SynthConfig(noise=args.noise)
    floor = detector_floor(int(bundle_detection_defaults()["imgsz"]), (config.width, config.height))
    baseline = None
    if args.baseline is not None:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=args.baseline, capture_output=True, text=True)
        baseline = {"commit": commit.stdout.strip(), "path": str(args.baseline)}
    write_result(args.out, {"baseline": baseline, "data": {"images": args.images, "seed": args.seed,
                                                           "noise": args.noise, "instances": len(instances)},
                            "rounds": args.rounds, "batch": BATCH,
                            "warm_instances": len(sets["warm"]), "finals_instances": len(sets["finals"]),
                            "same_box_px": DETECTOR_SAME_PX, "contenders": {n: {"args": s["args"]} for n, s in specs.items()},
                            "rows": rows, "detector_floor": floor})
    for name, row in rows.items():
        print(f"{name}: {row['ms_per_instance_median']:.1f} ms an instance, accuracy {row['accuracy']:.3f}, "
              f"detect {row['detect_ms_per_frame']} ms a frame, x{row.get('speedup_vs_filed_default', 1):.2f}")
    print(f"floor: {floor['floor_ms_per_frame']:.1f} ms a frame ({floor['gflop_per_frame']:.1f} GFLOP "
          f"at {floor['fp32_matmul_gflops']:.0f} GFLOP/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
