"""The physical limit: FLOPs one instance needs, the machine's matmul peak, achieved / peak.

    .venv/bin/python benchmarks/bench_flops.py [--results benchmarks/results/cpu.json]

FLOPs are counted by torch.utils.flop_counter.FlopCounterMode (matmuls and convolutions,
2 per multiply-add) on the configured models: the detector on one 1520x870 frame
letterboxed at imgsz 640 (640x384, as ultralytics does for a single image), the image
tower on one crop, the text tower on one caption. The peak is the best of torch.mm (int8:
torch._int_mm) on large square matrices in the same precision and thread count. With --results, the
achieved rate of every contender of workloads a and b is set against it, and each findbox
contender's time per pipeline stage against that stage's FLOP floor (its work at the peak).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
from common import BENCH_DETECTION, RESULTS, bench_models, machine, write_result  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


def count_flops(fn, *args) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn(*args)
    return int(counter.get_total_flops())


def matmul_peak(dtype: torch.dtype, n: int = 4096, repeats: int = 5) -> float:
    """Best GFLOP/s of an n x n x n matmul in `dtype` with the current thread count: torch.mm, or for
    int8 torch._int_mm (int8 x int8 -> int32, the VNNI kernels; the same arithmetic as the int8 towers)."""
    if dtype == torch.int8:
        a, b = (torch.randint(-128, 127, (n, n), dtype=torch.int8) for _ in range(2))
        mm = torch._int_mm
    else:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        mm = torch.mm
    mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


# which matmul peak bounds a contender's scorer; int8's is torch._int_mm's (ONNX Runtime's int8 kernels
# are not torch's, but run the same VNNI instructions): a floor, not a promise
PEAK_OF_PRECISION = {"fp32": "fp32", "bf16": "bf16", "bf16-mixed": "bf16", "int8": "int8"}
# stages with matmul/conv work, and the FLOPs of one unit of their work
FLOP_STAGES = {"detect": ("images_detected", "detector_per_image"),
               "embed_images": ("crops_embedded", "image_tower_per_crop"),
               "embed_texts": ("captions_embedded", "text_tower_per_caption")}


def achieved_and_stages(bench: dict, flops: dict[str, int], peaks: dict[str, float]) -> tuple[dict, dict]:
    """From a bench_pipeline result: each contender's achieved GFLOP/s against its peak, and per findbox
    contender the seconds of each pipeline stage (per request) against that stage's FLOP floor
    (its counted work at the matmul peak of its precision; the detector always runs fp32 on the CPU)."""
    achieved, stages = {}, {}
    for section in ("a", "b"):
        contenders = bench["sections"].get(section, {}).get("contenders", {})
        fp32_work = next((c["work"] for c in contenders.values() if c.get("precision") == "fp32" and "work" in c),
                         None)
        requests = bench["sections"].get(section, {}).get("requests", 1)
        for name, row in contenders.items():
            work = row.get("work")
            if work:
                total_flops = sum(work[unit] * flops[kind] for unit, kind in FLOP_STAGES.values())
            elif fp32_work and name == "reference":
                # the original's loop: per instance the detector, every crop, the caption once per 4 crops
                n = bench["sections"][section]["instances"]
                crops = fp32_work["crops_embedded"] / max(fp32_work["images_detected"], 1)
                total_flops = n * (flops["detector_per_image"] + crops * flops["image_tower_per_crop"]
                                   + -(-crops // 4) * flops["text_tower_per_caption"])
            else:
                continue
            precision = row.get("precision", "fp32")
            peak = PEAK_OF_PRECISION.get(precision)
            gflops = total_flops / row["total_s"] / 1e9
            achieved[f"{section}/{name}"] = {"gflops": gflops, "precision": precision, "peak": peak,
                                             "of_peak": gflops / peaks[peak] if peak else None}
            if not work:
                continue
            rows = {}
            for stage, seconds in row["stage_seconds"].items():
                entry = {"seconds_per_request": seconds / requests}
                if stage in FLOP_STAGES:
                    unit, kind = FLOP_STAGES[stage]
                    stage_peak = "fp32" if stage == "detect" else peak
                    entry["work_per_request"] = work[unit] / requests
                    entry["gflop_per_request"] = work[unit] * flops[kind] / requests / 1e9
                    if stage_peak:
                        entry["floor_s_per_request"] = entry["gflop_per_request"] / peaks[stage_peak]
                        entry["peak"] = stage_peak
                rows[stage] = entry
            # what the stage timers do not cover: the request object, the response, Python between stages
            rows["other"] = {"seconds_per_request": (row["total_s"] - sum(row["stage_seconds"].values())) / requests}
            stages[f"{section}/{name}"] = rows
    return achieved, stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scorer-preset", default="base")
    parser.add_argument("--results", default=str(RESULTS / "cpu.json"), help="bench_pipeline results to set against")
    parser.add_argument("--out", default=str(RESULTS / "flops.json"))
    args = parser.parse_args()

    from findbox.score.transformers import TransformersScorer
    from ultralytics import YOLO

    models = bench_models(args.scorer_preset)
    scorer = TransformersScorer.from_pretrained(models["scorer"])
    h, w = scorer.preprocess.size_hw
    yolo = YOLO(str(models["detector"])).model.float().eval()
    imgsz = BENCH_DETECTION["imgsz"]
    letterboxed = (imgsz * 870 // 1520 + 31) // 32 * 32  # 1520x870 -> 640x366 -> padded to a stride multiple
    flops = {
        "detector_per_image": count_flops(yolo, torch.zeros(1, 3, letterboxed, imgsz)),
        "image_tower_per_crop": count_flops(scorer.image_features, torch.zeros(1, 3, h, w)),
        "text_tower_per_caption": count_flops(scorer.text_features, ["grey missile"]),
    }
    boxes, captions = BENCH_DETECTION["max_det"], 4
    d, v, t = flops["detector_per_image"], flops["image_tower_per_crop"], flops["text_tower_per_caption"]
    per_instance = {
        # findbox, 4 captions of one image: detector and crops once per image; the benchmark's synthetic
        # captions are nearly all new, so each is embedded once (a server that has seen them: "_warm")
        "findbox_a": (d + boxes * v + captions * t) / captions,
        "findbox_a_warm": (d + boxes * v) / captions,
        # findbox, distinct images: everything per instance, the caption embedded once
        "findbox_b": d + boxes * v + t,
        "findbox_b_warm": d + boxes * v,
        # the original: detector and crops per instance, the caption once per batch of 4 crops
        "reference": d + boxes * v + -(-boxes // 4) * t,
    }
    threads = torch.get_num_threads()
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16), "int8": matmul_peak(torch.int8)}
    out = {"machine": machine(), "threads": threads, "detector_input": [letterboxed, imgsz],
           "boxes_per_image": boxes, "flops": flops, "flops_per_instance": per_instance, "matmul_peak_gflops": peaks}
    print(json.dumps({k: out[k] for k in ("flops", "flops_per_instance", "matmul_peak_gflops")}, indent=1))

    results = Path(args.results)
    if results.is_file():
        bench = json.loads(results.read_text())
        out["achieved"], out["stages"] = achieved_and_stages(bench, flops, peaks)
        out["results_file"] = str(results)
        for k, row in out["achieved"].items():
            share = "" if row["of_peak"] is None else f"{100 * row['of_peak']:5.1f}% of {row['peak']} peak"
            print(f"{k:40s} {row['gflops']:7.1f} GFLOP/s  {share}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
