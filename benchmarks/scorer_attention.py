"""Less work per crop and caption in the scorer towers, each change measured alone (issue 27 item 3).

    .venv/bin/python benchmarks/scorer_attention.py [--runs 5]

- fused attention: transformers' SDPA (`attn_implementation="sdpa"`, pinned by
  `findbox.score.transformers.ATTENTION`) against its eager attention, on base-size SigLIP and CLIP
  towers (random weights, fp32 torch: the path attention changes; the ONNX/int8 towers are exported
  graphs, unchanged by it): image tower at 1 crop and 8 crops per forward, text tower at 8 captions.
- caption padding: CLIP's text tower on 8 captions padded to the batch's longest (what findbox now
  does for CLIP) against max_length 77. SigLIP keeps max_length: it pools the last position, so
  padding changes its embeddings (tests/score/test_attention.py); measured here for scale only.
- open_clip: which attention kernels its towers reach, from the torch profiler's op names (ViT-B-32
  sizes, random weights; open_clip builds nn.MultiheadAttention, whose inference fast path runs
  PyTorch's native attention), and its image tower with that fast path against SDPA (fast path off).
Each pair alternates for `--runs` rounds after a warm-up; median (min-max) ms per call, and the
largest embedding difference between the two sides. The machine is shared: load averages recorded.
Results: benchmarks/results/scorer_attention.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import RESULTS, bench_models, load_average, write_result  # noqa: E402

from findbox.env import cache_dir, ensure_offline  # noqa: E402

CAPTIONS = ["grey missile", "red and white helicopter", "red, white, and blue light aircraft",
            "green and brown camouflage fighter jet", "yellow drone", "black cargo aircraft",
            "small grey drone near the top", "white airliner"]


def pair(name: str, a, b, runs: int) -> dict:
    """Median (min-max) ms of calling `a()` and `b()` alternately, and their largest output difference."""
    with torch.inference_mode():
        out_a, out_b = a(), b()  # warm-up
        ms = {"a": [], "b": []}
        for r in range(runs):
            for side, fn in ((("a", a), ("b", b)) if r % 2 == 0 else (("b", b), ("a", a))):
                t = time.perf_counter()
                fn()
                ms[side].append(1000 * (time.perf_counter() - t))
    row = {"max_abs_diff": float((out_a.float() - out_b.float()).abs().max())}
    for side in ("a", "b"):
        row[side] = {"median_ms": float(np.median(ms[side])), "min_ms": min(ms[side]), "max_ms": max(ms[side]),
                     "ms": ms[side]}
    row["speedup"] = row["a"]["median_ms"] / row["b"]["median_ms"]  # b against a
    print(f"  {name}: {row['a']['median_ms']:.1f} -> {row['b']['median_ms']:.1f} ms ({row['speedup']:.2f}x), "
          f"max diff {row['max_abs_diff']:.2g}", flush=True)
    return row


def transformers_pairs(folder: Path, runs: int, family: str) -> dict:
    from transformers import AutoModel

    from findbox.score.transformers import TransformersScorer

    fused = TransformersScorer.from_pretrained(folder)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True, attn_implementation="eager")
    eager = TransformersScorer(model, fused.tokenizer, fused.preprocess, fused.prompt, fused.max_text_length,
                               fused.device, text_attention_mask=fused.text_attention_mask)
    assert fused.info["attention"] == "sdpa" and eager.info["attention"] == "eager"
    g = torch.Generator().manual_seed(0)
    pixels = {n: torch.rand(n, 3, *fused.preprocess.size_hw, generator=g) for n in (1, 8)}
    rows = {}
    for n, px in pixels.items():
        rows[f"{family} image tower, {n} crop{'s' if n > 1 else ''}: eager -> sdpa"] = pair(
            f"{family} image x{n}", lambda: eager.image_features(px), lambda: fused.image_features(px), runs)
    tokens = fused.tokenize(CAPTIONS, padding="max_length")
    rows[f"{family} text tower, 8 captions at max_length {fused.max_text_length}: eager -> sdpa"] = pair(
        f"{family} text", lambda: eager.token_features(tokens), lambda: fused.token_features(tokens), runs)
    longest = fused.tokenize(CAPTIONS, padding="longest")
    label = (f"{family} text tower, 8 captions (sdpa): max_length {fused.max_text_length} -> longest "
             f"{longest['input_ids'].shape[1]} tokens")
    rows[label] = pair(f"{family} padding", lambda: fused.token_features(tokens),
                       lambda: fused.token_features(longest), runs)
    rows[label]["findbox_pads_to"] = "longest" if fused.tokenize(CAPTIONS)["input_ids"].shape[1] < \
        fused.max_text_length else "max_length"
    return rows


def open_clip_ops(runs: int) -> tuple[dict, dict]:
    """Attention op names the torch profiler sees in open_clip ViT-B-32's towers (inference mode), and its
    image tower at 8 crops with PyTorch's nn.MultiheadAttention fast path (the default) against the same
    layers with the fast path off, which then call scaled_dot_product_attention."""
    import open_clip
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    tokens = open_clip.get_tokenizer("ViT-B-32")(CAPTIONS)
    pixels = torch.rand(8, 3, 224, 224, generator=torch.Generator().manual_seed(0))

    def image(fast: bool):
        def run():
            torch.backends.mha.set_fastpath_enabled(fast)
            try:
                return model.encode_image(pixels)
            finally:
                torch.backends.mha.set_fastpath_enabled(True)
        return run

    rows = {"open_clip ViT-B-32 image tower, 8 crops: MultiheadAttention fast path -> sdpa (fast path off)":
            pair("open_clip image x8", image(True), image(False), runs)}
    found = {}
    for tower, run in (("image", lambda: model.encode_image(torch.rand(2, 3, 224, 224))),
                       ("text", lambda: model.encode_text(tokens))):
        with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        names = {e.key for e in prof.key_averages()}
        found[tower] = sorted(n for n in names if "attention" in n.lower() or "softmax" in n.lower())
        print(f"  open_clip {tower}: {found[tower]}", flush=True)
    return found, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS / "scorer_attention.json"))
    args = parser.parse_args()
    ensure_offline()
    from findbox.testing.builders import build_clip

    siglip = bench_models("base")["scorer"]
    clip = cache_dir() / "bench-models" / "clip-base"
    if not (clip / "config.json").is_file():
        build_clip(clip, preset="base", projection_dim=512)
    before = load_average()
    rows = {**transformers_pairs(siglip, args.runs, "SigLIP base"), **transformers_pairs(clip, args.runs, "CLIP base")}
    ops, open_clip_rows = open_clip_ops(args.runs)
    write_result(args.out, {"runs": args.runs, "torch_threads": torch.get_num_threads(),
                            "rows": {**rows, **open_clip_rows}, "open_clip_attention_ops": ops, "load_before": before,
                            "load_after": load_average(),
                            "note": "shared 2-core machine: other engineers' work may run beside it (load averages)"})


if __name__ == "__main__":
    main()
