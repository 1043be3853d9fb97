"""`--detector-backend onnx`: the ultralytics ONNX export run by ONNX Runtime gives the torch boxes."""

import numpy as np
import pytest

from findbox.bundle import bundled_paths
from findbox.config import DetectorBackend, DetectorConfig
from findbox.detect.ultralytics import Detector

SETTINGS = DetectorConfig(imgsz=640, conf=0.05, iou=0.3, max_det=12)


@pytest.fixture(scope="module")
def scenes():
    from findbox.synth import SynthConfig, generate_scene

    # two frame sizes: the export is dynamic, so neither is letterboxed to a square
    return [generate_scene(SynthConfig(noise="low"), 0, seed=777_003)[0],
            generate_scene(SynthConfig(noise="low", width=800, height=600), 1, seed=777_003)[0]]


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory):
    import os

    before = os.environ.get("FINDBOX_CACHE")
    os.environ["FINDBOX_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        os.environ.pop("FINDBOX_CACHE")
    else:
        os.environ["FINDBOX_CACHE"] = before


@pytest.mark.slow
def test_onnx_detector_finds_the_torch_boxes(scenes, onnx_cache):
    pt = bundled_paths()["detector"]
    torch_det = Detector.from_file(pt, SETTINGS, "cpu")
    onnx_det = Detector.from_file(pt, SETTINGS, "cpu", backend=DetectorBackend.ONNX)
    assert onnx_det.info["backend"] == "onnx" and torch_det.info["backend"] == "torch"
    for got, want in zip(onnx_det.detect(scenes), torch_det.detect(scenes)):
        assert len(want) > 0 and len(got) == len(want)
        np.testing.assert_allclose(got.xyxy, want.xyxy, atol=0.5)  # pixels
        np.testing.assert_allclose(got.det_score, want.det_score, atol=2e-3)


def test_onnx_export_is_made_once_and_cached(onnx_cache):
    from findbox.detect.ultralytics import onnx_export
    from findbox.env import cache_dir

    first = onnx_export(bundled_paths()["detector"])
    assert first.parent == cache_dir() / "onnx" and first.stat().st_size > 0
    mtime = first.stat().st_mtime_ns
    assert onnx_export(bundled_paths()["detector"]) == first and first.stat().st_mtime_ns == mtime


def test_onnx_backend_is_refused_off_the_cpu():
    with pytest.raises(ValueError, match="detector_backend: onnx runs on the cpu"):
        Detector.from_file(bundled_paths()["detector"], SETTINGS, "cuda", backend="onnx")


def test_detector_backend_is_a_pipeline_option():
    from findbox.config import PipelineConfig

    assert PipelineConfig(detector_backend="onnx").detector_backend == DetectorBackend.ONNX
    with pytest.raises(ValueError, match="detector_backend: expected one of torch, onnx, auto"):
        PipelineConfig(detector_backend="tensorrt")


def test_exporting_leaves_torch_threads_alone(tmp_path, monkeypatch):
    """ultralytics' export runs select_device, which sets torch to cpu_count - 1 threads for the process."""
    import torch

    from findbox.detect.ultralytics import onnx_export

    monkeypatch.setenv("FINDBOX_CACHE", str(tmp_path))  # a fresh cache: the export runs
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert onnx_export(bundled_paths()["detector"]).parent == tmp_path / "onnx"
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
