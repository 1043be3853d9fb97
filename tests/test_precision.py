"""Precision paths (fp32, bf16, int8, auto) on the trained demo bundle, and the automatic choice per CPU."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from findbox.bundle import bundled_paths
from findbox.config import Precision, ScorerBackend
from findbox.device import BF16_FLAGS, VNNI_FLAGS, choose_precision, cpu_flags, resolve_precision

ZEN4 = {"avx2", "avx512f", "avx512_bf16", "avx512_vnni"}
SAPPHIRE_RAPIDS = {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile"}
AMX_ONLY = {"avx2", "amx_bf16", "amx_tile"}
CASCADE_LAKE = {"avx2", "avx512f", "avx512_vnni"}  # int8 dot products, no bf16
PLAIN = {"sse4_2", "avx", "avx2", "fma"}


@pytest.mark.parametrize(
    "device_type, flags, backend, expected",
    [
        ("cuda", set(), ScorerBackend.TORCH, Precision.FP16),
        ("cuda", PLAIN, ScorerBackend.TORCH, Precision.FP16),  # the CPU's flags do not matter on a GPU
        # int8 dot products (VNNI, AMX-int8) come first: the faster tower with the demo's answers kept
        ("cpu", SAPPHIRE_RAPIDS, ScorerBackend.TORCH, Precision.INT8),
        ("cpu", ZEN4, ScorerBackend.TORCH, Precision.INT8),
        ("cpu", {"AVX512_VNNI"}, ScorerBackend.TORCH, Precision.INT8),  # flags compare case-insensitively
        ("cpu", CASCADE_LAKE, ScorerBackend.TORCH, Precision.INT8),
        ("cpu", {"avx_vnni", "avx2"}, ScorerBackend.TORCH, Precision.INT8),  # Alder Lake's 256-bit VNNI
        # bf16 in hardware without int8 dot products
        ("cpu", AMX_ONLY, ScorerBackend.TORCH, Precision.BF16),
        ("cpu", {"avx2", "AVX512_BF16"}, ScorerBackend.TORCH, Precision.BF16),
        ("cpu", PLAIN, ScorerBackend.TORCH, Precision.FP32),
        ("cpu", set(), ScorerBackend.TORCH, Precision.FP32),
        # ONNX Runtime has no bf16 path here: int8 where VNNI exists, else fp32
        ("cpu", ZEN4, ScorerBackend.ONNX, Precision.INT8),
        ("cpu", AMX_ONLY, ScorerBackend.ONNX, Precision.FP32),
        ("cpu", PLAIN, ScorerBackend.ONNX, Precision.FP32),
        ("mps", ZEN4, ScorerBackend.TORCH, Precision.FP32),
    ],
)
def test_auto_precision_per_machine(device_type, flags, backend, expected):
    assert choose_precision(device_type, flags, backend) == expected


@pytest.mark.parametrize("flags, expected", [(ZEN4, Precision.BF16), (SAPPHIRE_RAPIDS, Precision.BF16),
                                             (CASCADE_LAKE, Precision.FP32), (PLAIN, Precision.FP32)])
def test_auto_for_a_scorer_without_int8(flags, expected):
    # open_clip scorers have no int8 path: the next choice of the same machine
    assert choose_precision("cpu", flags, ScorerBackend.TORCH, int8_scorer=False) == expected


def test_int8_refuses_open_clip_naming_the_option(tmp_path):
    from findbox.score import load_scorer
    from findbox.score.int8 import quantize_int8
    from findbox.testing.builders import build_open_clip

    scorer = load_scorer(build_open_clip(tmp_path / "oc", "tiny-clip"))
    with pytest.raises(ValueError, match="precision int8: runs transformers scorers.*bf16 or fp32"):
        quantize_int8(scorer)


def test_explicit_precision_is_kept_and_auto_reads_this_cpu():
    cpu = torch.device("cpu")
    for precision in Precision:
        if precision != Precision.AUTO:
            assert resolve_precision(precision, cpu) == precision
    flags = cpu_flags()
    assert all(isinstance(f, str) for f in flags)
    assert resolve_precision(Precision.AUTO, cpu) == choose_precision("cpu", flags)
    # torch's own detection agrees with the flags: a CPU it calls bf16- or VNNI-capable is never given fp32
    if torch.cpu._is_avx512_bf16_supported():
        assert flags & BF16_FLAGS and resolve_precision(Precision.AUTO, cpu) in (Precision.BF16, Precision.INT8)
    if torch.cpu._is_vnni_supported():
        assert flags & VNNI_FLAGS and resolve_precision(Precision.AUTO, cpu) == Precision.INT8
    if not flags & (BF16_FLAGS | VNNI_FLAGS):
        assert resolve_precision(Precision.AUTO, cpu) == Precision.FP32


# --- each path on the trained demo bundle, against fp32, on scenes it never trained on

N_SCENES = 4  # per noise level: 8 scenes, ~40 instances
SAME_BOX = 0.95  # the test's floor; bench_precision.py measures the 99% goal on more scenes


@pytest.fixture(scope="module")
def demo_bundle():
    if bundled_paths()["scorer"] is None:
        pytest.skip("no bundled demo models installed")


@pytest.fixture(scope="module")
def scenes(demo_bundle):
    from findbox.synth import SynthConfig, generate_scene

    # low noise as the bundle was trained, and high noise, the hard case the issue asks about
    return [generate_scene(SynthConfig(noise=noise), index, seed=777_017)
            for noise in ("low", "high") for index in range(N_SCENES)]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    """A fresh cache folder for the ONNX exports these tests make."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("FINDBOX_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    monkeypatch.undo()


def answers(pipeline, scenes) -> tuple[np.ndarray, np.ndarray]:
    """(boxes (n, 4) xyxy, hits (n,) bool) over every object of every scene."""
    from findbox.eval.metric import iou_ltwh, is_hit

    boxes, hits = [], []
    for image, objects in scenes:
        for obj, g in zip(objects, pipeline.ground_captions(image, [o.caption for o in objects])):
            boxes.append(g.xyxy)
            hits.append(is_hit(iou_ltwh(g.ltwh, obj.bbox_ltwh)))
    return np.asarray(boxes), np.asarray(hits)


@pytest.fixture(scope="module")
def fp32_answers(scenes):
    from findbox.factory import load_pipeline

    return answers(load_pipeline(device="cpu", precision="fp32", image_cache=0), scenes)


def check_agrees_with_fp32(pipeline, scenes, fp32_answers):
    boxes, hits = answers(pipeline, scenes)
    ref_boxes, ref_hits = fp32_answers
    same = np.mean([np.array_equal(a, b) for a, b in zip(boxes, ref_boxes)])
    assert same >= SAME_BOX, f"same box as fp32 on {same:.1%} of {len(boxes)} instances"
    # accuracy may differ only by the instances whose box changed
    assert abs(hits.mean() - ref_hits.mean()) <= 1 - same + 1e-9, (hits.mean(), ref_hits.mean())
    assert hits.mean() > 0.5  # and the path still works: far above chance (1 in 3-8)


@pytest.mark.parametrize("precision", ["bf16", "int8", "auto"])
def test_precision_path_agrees_with_fp32_on_the_demo_bundle(precision, scenes, fp32_answers, onnx_cache, caplog):
    from findbox.factory import load_pipeline

    with caplog.at_level(logging.INFO, logger="findbox"):
        pipeline = load_pipeline(device="cpu", precision=precision, image_cache=0)
    chosen = resolve_precision(Precision(precision), torch.device("cpu"))
    assert f"precision {chosen.value}{' (auto)' if precision == 'auto' else ''} on cpu" in caplog.text
    if chosen == Precision.BF16:
        assert pipeline.scorer.dtype == torch.bfloat16
    if chosen == Precision.INT8:
        assert pipeline.scorer.info.get("precision") == "int8"  # ONNX Runtime's int8 towers: the int8 default
    check_agrees_with_fp32(pipeline, scenes, fp32_answers)


def test_torch_int8_path_agrees_with_fp32_on_the_demo_bundle(scenes, fp32_answers):
    """torch's dynamic int8, what int8 runs where ONNX Runtime cannot (SigLIP 2, no onnx extra)."""
    from findbox.factory import load_pipeline
    from findbox.score.int8 import quantize_torch_linears

    pipeline = load_pipeline(device="cpu", precision="fp32", image_cache=0)
    quantize_torch_linears(pipeline.scorer)
    linears = [m for m in pipeline.scorer.model.modules() if type(m) is torch.nn.Linear]
    assert not linears, f"{len(linears)} linear layers left in fp32"
    check_agrees_with_fp32(pipeline, scenes, fp32_answers)


def test_int8_on_the_onnx_backend_and_auto_there(demo_bundle, onnx_cache, caplog):
    from findbox.factory import load_pipeline

    pipeline = load_pipeline(device="cpu", precision="int8", scorer_backend="onnx", image_cache=0)
    assert pipeline.scorer.info["backend"] == "onnxruntime" and pipeline.scorer.info["precision"] == "int8"
    assert all(p.name.endswith(".int8.onnx") for p in pipeline.scorer.paths.values())
    with caplog.at_level(logging.INFO, logger="findbox"):
        auto = load_pipeline(device="cpu", scorer_backend="onnx", image_cache=0)
    chosen = choose_precision("cpu", cpu_flags(), ScorerBackend.ONNX)
    assert f"precision {chosen.value} (auto) on cpu" in caplog.text
    assert auto.scorer.info.get("precision", "fp32") == chosen.value
