"""The demo bundle served by a real `findbox serve` on CUDA, in fp16 and in bf16, answers as
the bundle in fp32 on the CPU does, and its /metrics says the models sit on the GPU."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerProcess

pytestmark = pytest.mark.gpu

SEED = 777_015  # a synth seed the demo models never trained on
SCENES = 6  # ~30 instances: one flipped near-tie moves the agreement by ~3%
SAME_BOX_IOU = 0.9
MIN_AGREEMENT = 0.9  # half precision may flip a near-tie between two candidates, rarely


@pytest.fixture(scope="module")
def scenes():
    """[(JPEG bytes, objects)]: the bytes both the server and the CPU pipeline decode."""
    from findbox.synth import SynthConfig, generate_scene_jpeg

    return [generate_scene_jpeg(SynthConfig(noise="low"), index, seed=SEED) for index in range(SCENES)]


@pytest.fixture(scope="module")
def cpu_ltwh(scenes) -> list[list[np.ndarray]]:
    """The reference: the bundle (no model options, its own settings) in fp32 on the CPU, in process."""
    from findbox.factory import load_pipeline
    from findbox.images import decode_image

    pipeline = load_pipeline(device="cpu", precision="fp32")
    return [[g.ltwh for g in pipeline.ground_captions(decode_image(data), [o.caption for o in objects])]
            for data, objects in scenes]


def model_labels(metrics_text: str) -> dict[str, dict[str, str]]:
    """stage -> labels of its findbox_model_info sample."""
    return {s.labels["stage"]: s.labels for family in text_string_to_metric_families(metrics_text)
            for s in family.samples if s.name == "findbox_model_info"}


@pytest.mark.parametrize("precision, scorer_dtype, detector_half",
                         [("fp16", "torch.float16", "True"), ("bf16", "torch.bfloat16", "False")])
def test_bundle_served_on_cuda_agrees_with_cpu_fp32(precision, scorer_dtype, detector_half, scenes, cpu_ltwh):
    from findbox.eval.metric import iou_ltwh

    # first start on a fresh machine: CUDA context, kernels and the warmup request take a while
    server = ServerProcess(["--device", "cuda", "--precision", precision], timeout=300)
    try:
        served = []
        for data, objects in scenes:
            b64 = base64.b64encode(data).decode("ascii")
            body = {"instances": [{"key": i, "caption": o.caption, "b64": b64} for i, o in enumerate(objects)]}
            r = httpx.post(server.url + "/identify", json=body, timeout=120)
            assert r.status_code == 200, r.text
            served.append(r.json()["predictions"])
        models = model_labels(httpx.get(server.url + "/metrics", timeout=10).text)
        log = server.output()
    finally:
        server.stop()

    assert "cuda" in models["detector"]["device"] and "cuda" in models["scorer"]["device"], (models, log)
    assert models["scorer"]["dtype"] == scorer_dtype and models["detector"]["half"] == detector_half, models
    ious = [iou_ltwh(box, ref) for boxes, refs in zip(served, cpu_ltwh, strict=True)
            for box, ref in zip(boxes, refs, strict=True)]
    agreement = float(np.mean([iou > SAME_BOX_IOU for iou in ious]))
    assert agreement >= MIN_AGREEMENT, f"{precision}: {agreement:.0%} of {len(ious)} boxes as on the CPU; ious {ious}"
