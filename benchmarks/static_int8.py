"""Static int8 scorer towers (issue 27 item 1): time per crop and caption against the int8 matmul floor,
answers independent of the batch, the demo bundle's record, and the other ways to static int8 tried.

    .venv/bin/python benchmarks/static_int8.py [--calib-frames 4] [--batches 1,32] [--reps 5]

1. Ranges as `findbox calibrate` takes them: the base-size benchmark scorer (random weights) and
   detector run fp32 over --calib-frames synthetic scenes with `CalibrationInputs` attached, then
   `calibrate_scorer` (ONNX Runtime QDQ, MinMax, per channel).
2. Each tower on the kept crops and captions, per row, at each --batches size: fp32 on torch, dynamic
   int8 (ONNX Runtime; one crop a forward, as it runs: its scales are computed per forward) and static
   int8 (the batch as given). Runs alternate in order; medians of --reps. Each row's floor is the
   tower's FLOPs (`bench_flops.count_flops`) at this machine's int8 matmul peak (torch._int_mm, AMX
   where the CPU has it), and at ONNX Runtime's own (MatMulInteger, the kernels the int8 towers run):
   "of floor" = floor / time.
3. Batch independence: static int8 on the same crops and captions at batch 1 and at the largest batch.
4. The demo bundle: the rows of its calibration record (`findbox calibrate`, written by its build).
5. Other routes to static int8 on these towers, tried here and recorded as they came out: OpenVINO
   with NNCF (installed?), torch.ao FX graph mode, PT2E (torch.export + X86InductorQuantizer).
Results: benchmarks/results/static_int8.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_flops import count_flops, matmul_peak  # noqa: E402
from common import BENCH_DETECTION, RESULTS, bench_models, scenes, write_result  # noqa: E402

from findbox.bundle import BUNDLE_DIR  # noqa: E402
from findbox.calibration import CALIBRATION_FILE  # noqa: E402
from findbox.factory import load_pipeline  # noqa: E402
from findbox.images import decode_b64, decode_image  # noqa: E402
from findbox.score.int8_static import CalibrationInputs, calibrate_scorer  # noqa: E402
from findbox.score.onnx import OnnxScorer  # noqa: E402
from findbox.score.transformers import TransformersScorer  # noqa: E402


def collect(options: dict, frames) -> CalibrationInputs:
    """The crops and captions the fp32 pipeline feeds its scorer on `frames` (the warm-up left out)."""
    pipeline = load_pipeline(**options, precision="fp32")
    inputs = CalibrationInputs()
    inputs.attach(pipeline.scorer)
    for f in frames:
        pipeline.ground_captions(decode_image(decode_b64(f.b64)), list(f.captions))
    return inputs


def onnxruntime_int8_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best GOP/s of ONNX Runtime's CPU MatMulInteger (uint8 x int8 -> int32, the kernels its int8 towers
    run) on an n x n x n product with a constant weight: the floor of what ONNX Runtime's int8 can do here."""
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.integers(-128, 127, (n, n), dtype=np.int8), "b")
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "int8_peak",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n])],
                              [helper.make_tensor_value_info("c", TensorProto.INT32, [n, n])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"a": rng.integers(0, 255, (n, n), dtype=np.uint8)}
    session.run(None, feed)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        session.run(None, feed)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def timed_rows(fn, rows, batch: int) -> float:
    """Seconds per row of `fn` over `rows` in batches of `batch`."""
    t = time.perf_counter()
    for k in range(0, len(rows), batch):
        fn(rows[k : k + batch])
    return (time.perf_counter() - t) / len(rows)


def speed(scorers: dict, pixels: torch.Tensor, captions: list[str], batches: list[int], reps: int,
          floors: dict[str, float]) -> dict:
    """Per tower, batch and scorer: median seconds per row, its range, and the share of the int8 floor."""
    out = {}
    with torch.inference_mode():
        for scorer in scorers.values():  # warm-up: oneDNN and ORT pick kernels on the first calls
            scorer.image_features(pixels[:2])
            scorer.text_features(captions[:2])
        for tower, rows in (("image", pixels), ("text", captions)):
            for batch in batches:
                seconds = {name: [] for name in scorers}
                for r in range(reps):
                    for name in (list(scorers) if r % 2 == 0 else list(scorers)[::-1]):
                        fn = scorers[name].image_features if tower == "image" else scorers[name].text_features
                        seconds[name].append(timed_rows(fn, rows, batch))
                for name, times in seconds.items():
                    median = float(np.median(times))
                    row = {"median_s": median, "min_s": min(times), "max_s": max(times),
                           "of_int8_floor": floors[tower] / median,
                           "of_onnxruntime_int8_floor": floors[f"{tower}_onnxruntime"] / median}
                    out.setdefault(tower, {}).setdefault(str(batch), {})[name] = row
                    print(f"  {tower} batch {batch:3d} {name:13s} {1000 * median:7.2f} ms a row "
                          f"({100 * row['of_int8_floor']:.0f}% of the int8 floor, "
                          f"{100 * row['of_onnxruntime_int8_floor']:.0f}% of ONNX Runtime's)", flush=True)
    return out


def batch_independence(scorer, pixels: torch.Tensor, captions: list[str]) -> dict:
    """Largest difference between rows computed alone and in one batch with the others."""
    with torch.inference_mode():
        image_alone = torch.cat([scorer.image_features(pixels[k : k + 1]) for k in range(len(pixels))])
        text_alone = torch.cat([scorer.text_features(captions[k : k + 1]) for k in range(len(captions))])
        image = (image_alone - scorer.image_features(pixels)).abs().max().item()
        text = (text_alone - scorer.text_features(captions)).abs().max().item()
    return {"rows": [len(pixels), len(captions)], "image_max_abs_diff": image, "text_max_abs_diff": text}


def _outcome(fn) -> dict:
    """What an attempt came to: {"ok": True, ...} or the error's type and first line."""
    try:
        return {"ok": True, **(fn() or {})}
    except Exception as e:  # noqa: BLE001 - every failure is the finding
        return {"ok": False, "error": f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300] if str(e) else ''}"}


def alternatives(scorer: TransformersScorer, pixels: torch.Tensor) -> dict:
    """The other static int8 routes, on the image tower, each as far as it goes here."""
    example = (pixels[:1],)
    tower = scorer.model.vision_model.eval()

    def openvino():
        found = {m: importlib.util.find_spec(m) is not None for m in ("openvino", "nncf")}
        if not all(found.values()):
            raise ModuleNotFoundError(f"not installed here: {[m for m, ok in found.items() if not ok]}")
        return found

    def fx():
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import prepare_fx

        prepare_fx(tower, get_default_qconfig_mapping("x86"), example)

    def pt2e():  # torch moved PT2E quantisation to torchao; torch.ao's copy is tried where torchao is missing
        if importlib.util.find_spec("torchao") is not None:
            raise RuntimeError("torchao is installed: extend this benchmark to time its PT2E path")
        from torch.ao.quantization.quantize_pt2e import prepare_pt2e
        from torch.ao.quantization.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer,
            get_default_x86_inductor_quantization_config,
        )

        graph = torch.export.export(tower, example).module()
        prepare_pt2e(graph, X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config()))

    return {"openvino_nncf": _outcome(openvino), "torch_ao_fx": _outcome(fx), "pt2e_x86_inductor": _outcome(pt2e)}


def demo_record() -> dict | None:
    """The demo bundle's calibration record, less its ranges (what auto reads)."""
    path = BUNDLE_DIR / "scorer" / CALIBRATION_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return {"path": str(path), "date": record.get("date"), "instances": record.get("instances"),
            "results": record["results"], "static_calibration_rows": record.get("int8_static", {}).get(
                "calibration_rows")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scorer-preset", default="base")
    parser.add_argument("--calib-frames", type=int, default=4, help="synthetic scenes the ranges come from")
    parser.add_argument("--batches", default="1,32", help="rows per forward to time (dynamic int8: always 1)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS / "static_int8.json"))
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",") if b]
    torch.manual_seed(0)

    models = bench_models(args.scorer_preset)
    options = dict(detector=str(models["detector"]), scorer=str(models["scorer"]), no_upscaler=True, device="cpu",
                   detection=dict(BENCH_DETECTION))
    print(f"ranges: fp32 pipeline over {args.calib_frames} scenes", flush=True)
    inputs = collect(options, scenes(args.calib_frames, start=70_000))
    t = time.perf_counter()
    ranges = calibrate_scorer(TransformersScorer.from_pretrained(models["scorer"]), inputs)
    calibrate_s = time.perf_counter() - t

    fp32 = TransformersScorer.from_pretrained(models["scorer"])
    scorers = {"fp32 (torch)": fp32,
               "int8 dynamic": OnnxScorer.from_scorer(TransformersScorer.from_pretrained(models["scorer"]), int8=True),
               "int8 static": OnnxScorer.from_scorer(TransformersScorer.from_pretrained(models["scorer"]), int8=True,
                                                     static=ranges)}
    rows = max(batches)
    pixels = torch.from_numpy(np.concatenate(inputs.pixels["image"][:rows]))
    captions = inputs.captions[:rows]
    h, w = fp32.preprocess.size_hw
    flops = {"image": count_flops(fp32.image_features, torch.zeros(1, 3, h, w)),
             "text": count_flops(fp32.text_features, ["grey missile"])}
    peak, ort_peak = matmul_peak(torch.int8), onnxruntime_int8_peak()
    floors = {tower: flops[tower] / (peak * 1e9) for tower in flops}
    floors.update({f"{tower}_onnxruntime": flops[tower] / (ort_peak * 1e9) for tower in flops})
    print(f"int8 matmul peak {peak:.0f} GOP/s (torch._int_mm), {ort_peak:.0f} GOP/s (ONNX Runtime MatMulInteger); "
          f"floors: image {1000 * floors['image']:.2f} ms a crop, text {1000 * floors['text']:.2f} ms a caption",
          flush=True)

    out = {"settings": {"scorer": f"siglip-{args.scorer_preset} sizes, random weights", "size_hw": [h, w],
                        "calib_frames": args.calib_frames, "method": ranges["method"],
                        "calibration_rows": ranges["calibration_rows"], "calibrate_s": calibrate_s,
                        "batches": batches, "reps": args.reps, "rows_timed": [len(pixels), len(captions)]},
           "flops": flops, "int8_matmul_peak_gflops": peak, "onnxruntime_int8_peak_gops": ort_peak,
           "floor_s": floors}
    out["speed"] = speed(scorers, pixels, captions, batches, args.reps, floors)
    out["batch_independence"] = batch_independence(scorers["int8 static"], pixels, captions)
    print(f"static int8, alone against batched: {out['batch_independence']}", flush=True)
    out["demo"] = demo_record()
    out["alternatives"] = alternatives(fp32, pixels)
    for name, row in out["alternatives"].items():
        print(f"  {name}: {'ran' if row['ok'] else row['error']}", flush=True)
    write_result(args.out, out)


if __name__ == "__main__":
    main()
