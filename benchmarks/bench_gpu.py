"""GPU benchmark: one prepared script that runs start to finish in under 5 minutes on one GPU.

    .venv/bin/python benchmarks/bench_gpu.py [--scorer-preset large] [--detector-yaml yolov9e.yaml]

Exits with an error at once when CUDA is not available.
1. Image tower alone: crops/s and torch.cuda.max_memory_allocated for fp32 / fp16 / bf16
   at crop batches 8, 32, 128.
2. End to end against the original's loop (same models, interleaved), workloads a (the
   4 captions of one image per request) and b (4 distinct images per request), in fp16
   and bf16, detector at imgsz 1600 as the original; peak GPU memory per contender.
3. With --compile: torch.compile of the image tower (compile time reported apart).
4. The detector network alone on one letterboxed 1520x870 frame at --imgsz, per backend: torch in
   fp32, fp16 (what --precision fp16 runs) and bf16 autocast with the boxes decoded in fp32 (what
   --detector-precision bf16 runs), and its ONNX export on ONNX Runtime's TensorRT and CUDA
   providers where this onnxruntime has them (the CPU package has neither: the rows say so);
   ms a forward and the largest box-coordinate difference from torch fp32, in input pixels.
Results: benchmarks/results/gpu.json. `--device cpu --scorer-preset tiny --detector-yaml
yolov8n.yaml --imgsz 160 --requests 1` runs the same code on a CPU in a minute (a dry run
of the script, not a benchmark).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scorer-preset", default="large", help="siglip preset: large = siglip-large-patch16-384 sizes")
    parser.add_argument("--detector-yaml", default="yolov9e.yaml", help="the original's detector architecture")
    parser.add_argument("--imgsz", type=int, default=1600)
    parser.add_argument("--requests", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (adds ~1 min)")
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N; cpu only for a dry run of the script")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "gpu.json"))
    args = parser.parse_args()
    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        sys.exit("bench_gpu: CUDA is not available on this machine; run `make bench-gpu` on a host with an NVIDIA GPU "
                 "(the CPU benchmark is `make bench`)")
    if cuda and torch.device(args.device).index is not None:
        torch.cuda.set_device(torch.device(args.device))  # the peak-memory figures read the current device

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def reset_peak() -> None:
        if cuda:
            torch.cuda.reset_peak_memory_stats()

    def peak_mb() -> float | None:
        return torch.cuda.max_memory_allocated() / 2**20 if cuda else None

    from bench_pipeline import REQUEST_CAPTIONS, compare, findbox_fn, reference_fn, workload_a, workload_b
    from common import RssSampler, bench_models, machine, scenes, write_result

    from findbox.factory import load_pipeline
    from findbox.pipeline import Pipeline

    started = time.perf_counter()
    t = time.perf_counter()
    models = bench_models(args.scorer_preset, args.detector_yaml)
    result = {"machine": machine(), "gpu": torch.cuda.get_device_name(torch.device(args.device)) if cuda else None,
              "command": " ".join(sys.argv),
              "build_models_s": time.perf_counter() - t, "scorer": f"siglip-{args.scorer_preset} sizes",
              "detector": args.detector_yaml, "imgsz": args.imgsz}
    detection = dict(imgsz=args.imgsz, conf=0.001, iou=0.5, max_det=10)
    options = dict(detector=str(models["detector"]), scorer=str(models["scorer"]), no_upscaler=True,
                   device=args.device, detection=detection)

    # 1. the image tower alone
    tower = {}
    for precision in ("fp32", "fp16", "bf16"):
        pipe = load_pipeline(**options, precision=precision)
        scorer = pipe.scorer
        h, w = scorer.preprocess.size_hw
        for batch in (8, 32, 128):
            pixels = torch.randn(batch, 3, h, w, device=args.device, dtype=scorer.dtype)
            with torch.inference_mode():
                scorer.image_features(pixels)
                sync()
                reset_peak()
                t = time.perf_counter()
                for _ in range(5):
                    scorer.image_features(pixels)
                sync()
            seconds = (time.perf_counter() - t) / 5
            tower[f"{precision}/{batch}"] = {"crops_per_s": batch / seconds, "max_memory_allocated_mb": peak_mb()}
            print(f"tower {precision} batch {batch}: {batch / seconds:.0f} crops/s, {peak_mb()} MB", flush=True)
        del pipe, scorer
        if cuda:
            torch.cuda.empty_cache()
    result["tower"] = tower

    # 2. end to end against the reference loop
    sampler = RssSampler()
    frames = iter(scenes(2 + 2 * REQUEST_CAPTIONS * args.requests + args.requests * 2, start=40_000))
    take = lambda n: [next(frames) for _ in range(n)]  # noqa: E731
    result["end_to_end"] = {}
    for precision in ("fp16", "bf16"):
        pipe = load_pipeline(**options, precision=precision)
        plain = Pipeline(pipe.detector, pipe.scorer)
        warm = workload_a(take(1))[0]
        findbox_fn(pipe, {})(warm)
        reference_fn(plain)(warm)
        memory = {}

        def measured(name, fn):
            def run(request):
                sync()
                reset_peak()
                out = fn(request)
                sync()
                memory[name] = max(memory.get(name, 0.0), peak_mb() or 0.0)
                return out
            return run

        contenders = {"reference": {"run": measured("reference", reference_fn(plain))},
                      "findbox": {"run": measured("findbox", findbox_fn(pipe, {}))}}
        if args.compile and precision == "fp16":
            compiled = load_pipeline(**options, precision=precision, compile=True)
            t = time.perf_counter()
            findbox_fn(compiled, {})(warm)
            contenders["findbox compile"] = {"run": measured("findbox compile", findbox_fn(compiled, {})),
                                             "setup_s": time.perf_counter() - t}
        for section, requests in (("a", workload_a(take(args.requests))),
                                  ("b", workload_b(take(REQUEST_CAPTIONS * args.requests)))):
            row = compare(contenders, requests, sampler, f"{precision}/{section}")
            for name, c in row["contenders"].items():
                c["max_memory_allocated_mb"] = memory.get(name)
            result["end_to_end"][f"{precision}/{section}"] = row
        del pipe, plain, contenders
        if cuda:
            torch.cuda.empty_cache()
    sampler.stop()
    result["detector_backends"] = detector_backends(models["detector"], args.imgsz, args.device, sync)
    result["total_s"] = time.perf_counter() - started
    write_result(args.out, result)
    print(f"wrote {args.out} in {result['total_s']:.0f} s")


def detector_backends(pt: Path, imgsz: int, device: str, sync, repeats: int = 10) -> dict:
    """Section 4: {backend: {"ms": median ms a forward, "max_box_diff_px": vs torch fp32} or {"skipped": why}}."""
    import copy
    import statistics

    import onnxruntime as ort
    from ultralytics import YOLO

    from findbox.detect.ultralytics import decode_in_fp32, onnx_export

    cuda = device.startswith("cuda")
    height = (round(870 * imgsz / 1520) + 31) // 32 * 32  # the letterbox of a 1520x870 frame, as served
    x = torch.rand(1, 3, height, (imgsz + 31) // 32 * 32, device=device)

    def timed(forward) -> tuple[float, torch.Tensor]:
        with torch.inference_mode():
            for _ in range(2):
                out = forward()
            sync()
            times = []
            for _ in range(repeats):
                t = time.perf_counter()
                out = forward()
                sync()
                times.append(time.perf_counter() - t)
        return 1e3 * statistics.median(times), torch.as_tensor(out).float().to(device)

    model = YOLO(str(pt)).model.float().eval().to(device)
    fp32_ms, reference = timed(lambda: model(x)[0])
    rows = {"torch fp32": {"ms": fp32_ms, "max_box_diff_px": 0.0}}

    def row(ms: float, out: torch.Tensor) -> dict:
        return {"ms": ms, "vs_fp32": fp32_ms / ms, "max_box_diff_px": float((out[:, :4] - reference[:, :4]).abs().max())}

    if cuda:  # CPU convolutions have no fast fp16 kernels: not a CPU path
        half = copy.deepcopy(model).half()
        rows["torch fp16"] = row(*timed(lambda: half(x.half())[0]))
    else:
        rows["torch fp16"] = {"skipped": "fp16 runs on a GPU (--precision fp16)"}
    bf16 = YOLO(str(pt))
    decode_in_fp32(bf16)
    bf16_model = bf16.model.float().eval().to(device)

    def bf16_forward():
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            return bf16_model(x)[0]

    rows["torch bf16 autocast, decoded in fp32"] = row(*timed(bf16_forward))
    available = ort.get_available_providers()
    onnx = onnx_export(Path(pt))
    for provider in (("TensorrtExecutionProvider", "CUDAExecutionProvider") if cuda else ("CPUExecutionProvider",)):
        if provider not in available:
            rows[f"onnxruntime {provider}"] = {"skipped": f"not among this onnxruntime's providers {available}"}
            continue
        session = ort.InferenceSession(str(onnx), providers=[provider])
        feed = {session.get_inputs()[0].name: x.cpu().numpy()}
        rows[f"onnxruntime {provider}"] = row(*timed(lambda s=session, f=feed: s.run(None, f)[0]))
    for name, r in rows.items():
        print(f"detector {name}: " + (f"{r['ms']:.1f} ms, boxes within {r['max_box_diff_px']:.2g} px of fp32"
                                      if "ms" in r else r["skipped"]), flush=True)
    return {"input_hw": list(x.shape[2:]), "providers": available, "rows": rows}


if __name__ == "__main__":
    main()
