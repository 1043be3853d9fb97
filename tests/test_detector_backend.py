"""`--detector-backend auto`: torch or ONNX Runtime chosen by measurement, recorded, reused; explicit wins."""

import json
import os

import numpy as np
import pytest

from findbox.boxes import Candidates
from findbox.config import DetectorBackend, DetectorConfig, PipelineConfig
from findbox.detect.backend import AGREE_PX, decide_backend, match_boxes, record_path
from findbox.detect.ultralytics import Detector

from .conftest import TINY_DETECTION

SETTINGS = DetectorConfig(**TINY_DETECTION)


def cands(*xyxy) -> Candidates:
    xyxy = np.array(xyxy, np.float32).reshape(-1, 4)
    return Candidates(xyxy=xyxy, det_score=np.linspace(0.9, 0.5, len(xyxy)).astype(np.float32))


A = cands([10, 10, 50, 40], [100, 20, 160, 80])


@pytest.mark.parametrize("torch_s, onnx_s, onnx_found, backend, reason", [
    ([0.25, 0.26, 0.24], [0.15, 0.16, 0.14], [A, A], DetectorBackend.ONNX, "onnx 1.67x faster, same boxes"),
    ([0.15, 0.16], [0.25, 0.26], [A, A], DetectorBackend.TORCH, "torch 1.65x faster"),
    # faster but its boxes moved by more than the tolerance: torch, and the reason says where
    ([0.25], [0.15], [A, cands([10, 10, 50, 40], [100, 20, 160 + 2 * AGREE_PX, 80])], DetectorBackend.TORCH,
     "onnx boxes differ from torch's on frame 1 (by 1 px, above 0.5)"),
    ([0.25], [0.15], [cands([10, 10, 50, 40]), A], DetectorBackend.TORCH,
     "onnx boxes differ from torch's on frame 0 (1 boxes against 2)"),
    # the same boxes listed in another order (near-equal confidences) are the same boxes
    ([0.25], [0.15], [A, A[np.array([1, 0])]], DetectorBackend.ONNX, "same boxes"),
    ([0.25], [0.15], [Candidates.empty(), Candidates.empty()], DetectorBackend.ONNX, "same boxes"),
])
def test_decision_from_timings_and_boxes(torch_s, onnx_s, onnx_found, backend, reason):
    torch_found = [A, A] if len(onnx_found[0]) or len(onnx_found[1]) else onnx_found
    choice = decide_backend(torch_s, onnx_s, torch_found, onnx_found)
    assert choice.backend == backend and reason in choice.reason
    assert choice.torch_ms == pytest.approx(1000 * np.median(torch_s))


def test_decision_needs_both_timings():
    with pytest.raises(ValueError, match="decide_backend: expected timings of both backends"):
        decide_backend([0.1], [], [A], [A])


def test_boxes_within_the_tolerance_agree():
    assert match_boxes(A, cands([10.4, 10, 50, 40], [100, 20, 160, 79.6])) == pytest.approx(0.4, abs=1e-5)
    assert match_boxes(A, cands([10, 10, 50, 40])) is None


def test_record_is_keyed_by_checkpoint_imgsz_and_machine(tiny_models, tmp_path):
    from findbox.detect.backend import machine

    pt, here = tiny_models["detector"], machine()
    other_pt = tmp_path / "copy.pt"
    other_pt.write_bytes(pt.read_bytes() + b"\0")
    keys = {record_path(pt, 160, here), record_path(pt, 320, here), record_path(other_pt, 160, here),
            record_path(pt, 160, {**here, "torch_threads": here["torch_threads"] + 1}),
            record_path(pt, 160, {**here, "cpu_flags_digest": "0" * 16})}
    assert len(keys) == 5


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FINDBOX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
def test_auto_measures_once_then_reads_its_record(tiny_models, cache, monkeypatch):
    import findbox.detect.backend as backend

    pt = tiny_models["detector"]
    first = Detector.from_file(pt, SETTINGS, "cpu", backend="auto")
    choice = first.backend_choice
    assert choice is not None and not choice.from_record and choice.imgsz == SETTINGS.imgsz
    assert choice.torch_ms > 0 and choice.onnx_ms > 0 and first.info["backend"] == choice.backend.value
    # the decision follows the measurement it records
    if choice.backend == DetectorBackend.ONNX:
        assert choice.onnx_ms < choice.torch_ms and choice.max_diff_px <= AGREE_PX
    record = json.loads(open(choice.record).read())
    assert record["choice"]["backend"] == choice.backend.value and record["choice"]["torch_ms"] == choice.torch_ms
    assert len(record["torch_ms_per_call"]) == len(record["onnx_ms_per_call"]) >= 2 * record["frames"]
    mtime = os.stat(choice.record).st_mtime_ns

    def measure(*args, **kwargs):
        raise AssertionError("a recorded choice was measured again")

    monkeypatch.setattr(backend, "measure", measure)
    second = Detector.from_file(pt, SETTINGS, "cpu", backend="auto")
    again = second.backend_choice
    assert again.from_record and again.record == choice.record and second.info["backend"] == choice.backend.value
    assert (again.backend, again.torch_ms, again.onnx_ms, again.measured_at) == (
        choice.backend, choice.torch_ms, choice.onnx_ms, choice.measured_at)
    assert os.stat(choice.record).st_mtime_ns == mtime  # not rewritten
    assert "(cached)" in again.describe() and "(cached)" not in choice.describe()


@pytest.mark.slow
def test_an_unreadable_record_is_measured_again(tiny_models, cache):
    pt = tiny_models["detector"]
    choice = Detector.from_file(pt, SETTINGS, "cpu", backend="auto").backend_choice
    with open(choice.record, "w") as f:
        f.write('{"version": 1, "choice": {"backend": "tensorrt"')  # cut short
    again = Detector.from_file(pt, SETTINGS, "cpu", backend="auto").backend_choice
    assert not again.from_record and json.loads(open(again.record).read())["version"] == 1


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_an_explicit_backend_is_not_measured(tiny_models, cache, backend):
    from findbox.factory import load_detector

    config = PipelineConfig(detector=str(tiny_models["detector"]), scorer=str(tiny_models["scorer"]), device="cpu",
                            precision="fp32", detection=dict(TINY_DETECTION), detector_backend=backend)
    detector = load_detector(config)
    assert detector.info["backend"] == backend and detector.backend_choice is None
    assert not list(cache.rglob("*.backend.json"))


def test_auto_is_the_default_and_says_so_without_the_onnx_extra(tiny_models, cache, monkeypatch):
    import findbox.env
    from findbox.factory import load_detector
    from findbox.serve.app import describe_models

    def require(module, extra):
        raise findbox.env.MissingExtra(f"expected the optional package {module!r} to be installed, got none")

    monkeypatch.setattr(findbox.env, "require", require)
    config = PipelineConfig(detector=str(tiny_models["detector"]), scorer=str(tiny_models["scorer"]), device="cpu",
                            precision="fp32", detection=dict(TINY_DETECTION))
    assert config.detector_backend == DetectorBackend.AUTO
    detector = load_detector(config)
    assert detector.info["backend"] == "torch" and "the onnx extra is not installed" in detector.backend_choice.reason
    line = describe_models(config, detector)
    assert "; backend torch (auto: the onnx extra is not installed" in line
    assert not list(cache.rglob("*.backend.json"))


@pytest.mark.slow
def test_ready_line_names_the_measured_choice(tiny_models, cache):
    from findbox.factory import load_detector
    from findbox.serve.app import describe_models

    config = PipelineConfig(detector=str(tiny_models["detector"]), scorer=str(tiny_models["scorer"]), device="cpu",
                            precision="fp32", detection=dict(TINY_DETECTION))
    detector = load_detector(config)
    c = detector.backend_choice
    line = describe_models(config, detector)
    assert f"; backend {c.backend.value} (auto: " in line
    assert f"torch {c.torch_ms:.0f} ms, onnx {c.onnx_ms:.0f} ms a frame at imgsz {TINY_DETECTION['imgsz']}" in line


@pytest.mark.slow
def test_serve_says_the_choice_in_its_ready_line(tiny_models, cache):
    from .conftest import ServerProcess, tiny_serve_args

    server = ServerProcess(tiny_serve_args(tiny_models, upscaler=False))
    try:
        ready = next(line for line in server.output().splitlines() if "models loaded; ready:" in line)
    finally:
        server.stop()
    record = json.loads(next(cache.rglob("*.backend.json")).read_text())["choice"]
    assert f"; backend {record['backend']} (auto: {record['reason']}; torch {record['torch_ms']:.0f} ms" in ready
