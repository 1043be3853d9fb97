"""The training speed options (issue 27 item 4) reach the real training loops: scorer autocast precision,
its data loader workers, and the detector's image cache and loader workers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from findbox.config import Precision
from findbox.train import detector, scorer
from findbox.train.detector import Cache, cache_plan, decoded_bytes
from findbox.train.scorer import auto_training_precision, setup, train, train_step

from .test_scorer import colour_scorer, tiny_config, write_colour_crops  # noqa: F401  (colour_scorer: a fixture)

pytestmark = pytest.mark.usefixtures("one_thread")


# --- scorer: --precision -------------------------------------------------------------------------


def _linear_output_dtypes(run) -> list[torch.dtype]:
    """Record the output dtype of every nn.Linear forward of the towers (a hook sees what autocast did)."""
    seen: list[torch.dtype] = []
    for module in run.towers.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_hook(lambda m, args, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_scorer_precision_is_the_dtype_of_every_training_forward(colour_scorer, tmp_path, precision, dtype):
    crops = write_colour_crops(tmp_path / "crops")
    run = setup(tiny_config(colour_scorer, crops, tmp_path / "out", precision=precision))
    seen = _linear_output_dtypes(run)
    run.sampler.set_epoch(1)
    pixels, _ = next(iter(run.loader))
    batch = run.sampler.global_batches()[0]
    train_step(run, pixels, run.train_set.caption_ids[batch], run.train_set.image_ids[batch])
    assert seen and set(seen) == {dtype}
    # the master weights stay fp32 whatever the forward ran in
    assert {p.dtype for p in run.towers.parameters()} == {torch.float32}
    assert run.precision == Precision(precision)


@pytest.mark.parametrize("device, flags, cuda_bf16, width, expected", [
    ("cuda", set(), True, 128, Precision.BF16),
    ("cuda", set(), False, 768, Precision.FP16),
    ("cpu", {"avx2", "avx512f"}, False, 768, Precision.FP32),  # bf16 would be emulated: slower than fp32
    ("cpu", {"AMX_BF16"}, False, 768, Precision.BF16),  # base size: 2.1x faster, measured
    ("cpu", {"avx512_bf16"}, False, 1024, Precision.BF16),
    ("cpu", {"avx512_bf16"}, False, 128, Precision.FP32),  # the demo's small preset: bf16 measured slower
    ("cpu", {"avx512_bf16"}, False, 512, Precision.FP32),  # not measured
    ("cpu", {"avx512_bf16"}, False, None, Precision.FP32),
    ("mps", {"avx512_bf16"}, False, 768, Precision.FP32),
])
def test_auto_training_precision(device, flags, cuda_bf16, width, expected):
    assert auto_training_precision(device, flags, cuda_bf16, width) == expected


def test_tower_width_reads_the_init_folders_config(colour_scorer, tmp_path):
    assert scorer.tower_width(colour_scorer) == json.loads((colour_scorer / "config.json").read_text())[
        "vision_config"]["hidden_size"]
    assert scorer.tower_width(tmp_path) is None


def test_auto_on_this_cpu_trains_in_what_auto_training_precision_says_and_records_it(colour_scorer, tmp_path):
    from findbox.device import cpu_flags

    crops = write_colour_crops(tmp_path / "crops")
    out = tmp_path / "out"
    metrics = train(tiny_config(colour_scorer, crops, out, precision="auto", epochs=1, workers=1))
    expected = auto_training_precision("cpu", cpu_flags(), width=scorer.tower_width(colour_scorer))
    assert metrics["precision"] == expected.value
    record = json.loads((out / "train_config.json").read_text())
    assert record["precision"] == "auto" and record["precision_used"] == expected.value
    assert record["workers_used"] == 1
    epoch0, epoch1 = metrics["epochs"]
    assert epoch0["val_s"] > 0 and epoch1["train_s"] > 0 and epoch1["val_s"] > 0


# --- detector: --cache and loader workers -------------------------------------------------------


def test_decoded_bytes_is_the_resized_image_ultralytics_holds():
    # a 1520x870 frame at imgsz 640: long side 640, short side ceil(870 * 640 / 1520) = 367
    assert decoded_bytes([(1520, 870)], 640) == 3 * 640 * 367
    assert decoded_bytes([(100, 50), (50, 100)], 200) == 2 * 3 * 200 * 100


def test_cache_plan():
    images = [(1520, 870)] * 1000  # ~672 MB decoded at 640
    need = decoded_bytes(images, 640)
    assert cache_plan(Cache.AUTO, images, 640, 2 * need).mode == "ram"
    assert cache_plan(Cache.AUTO, images, 640, 2 * need - 1).mode == "off"
    plan = cache_plan(Cache.AUTO, images, 640, 2 * need - 1)
    assert plan.requested == "auto" and plan.need_mb == round(need / 2**20, 1) and "does not fit" in plan.reason
    assert cache_plan(Cache.RAM, images, 640, 0).mode == "ram"  # as asked: ultralytics checks once more
    assert cache_plan(Cache.OFF, images, 640, 10 * need).mode == "off"


def test_cache_and_patience_options_are_checked(tmp_path):
    paths = dict(data=str(tmp_path / "d.jsonl"), out=str(tmp_path / "o"))
    with pytest.raises(ValueError, match="cache: expected one of auto, ram, off, got 'disk'"):
        detector.DetectorTrainConfig(**paths, cache="disk")
    with pytest.raises(ValueError, match="patience: expected 1 or more epochs, got 0"):
        detector.DetectorTrainConfig(**paths, patience=0)
    assert detector.DetectorTrainConfig(**paths).patience == 100  # ultralytics' own default: the recipe unchanged
    assert detector.DetectorTrainConfig(**paths).cache is Cache.OFF  # measured no faster on the CPU


def test_loader_workers_are_as_asked_and_on_cpu_at_most_one_per_core():
    assert detector.loader_workers(8, "0", 2) == 8  # ultralytics caps GPU workers itself
    assert detector.loader_workers(8, "cpu", 2) == 2
    assert detector.loader_workers(8, None, 2) == (8 if torch.cuda.is_available() else 2)
    assert detector.loader_workers(0, "cpu", 64) == 0


@pytest.fixture
def seen_by_ultralytics(monkeypatch):
    """What ultralytics' trainer built: its train loader's workers and its dataset's cache, per stage."""
    seen: list[dict] = []
    real = detector._with_workers

    def observed(model, workers):
        def record(trainer):
            dataset = trainer.train_loader.dataset
            seen.append({"workers": trainer.train_loader.num_workers, "cache": dataset.cache,
                         "cached_images": sum(im is not None for im in dataset.ims)})

        model.add_callback("on_train_start", record)
        return real(model, workers)

    monkeypatch.setattr(detector, "_with_workers", observed)
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("cache, workers", [("ram", 1), ("off", 0)])
def test_detector_cache_and_workers_reach_ultralytics(tmp_path, seen_by_ultralytics, monkeypatch, cache, workers):
    from .test_detector_data import write_vlm_dataset

    monkeypatch.setenv("YOLO_VERBOSE", "False")
    jsonl = write_vlm_dataset(tmp_path / "data", n=8)
    out = tmp_path / "run"
    detector.train_detector(detector.DetectorTrainConfig(
        data=str(jsonl), out=str(out), model="yolov8n.yaml", stages="160:1", augs="none", batch=4, device="cpu",
        workers=workers, cache=cache, warmup_epochs=0, patience=7))
    (built,) = seen_by_ultralytics
    assert built["workers"] == workers
    assert built["cache"] == ("ram" if cache == "ram" else None)
    assert built["cached_images"] == (6 if cache == "ram" else 0)
    (stage,) = json.loads((out / "metrics.json").read_text())["stages"]
    assert stage["cache"]["mode"] == cache and stage["workers"] == workers
    assert len(stage["epoch_s"]) == 1 and stage["epoch_s"][0] > 0 and stage["epochs_run"] == 1
    assert "patience: 7" in (out / "stage1" / "args.yaml").read_text()  # the early stop reached ultralytics
    assert np.isfinite(stage["mAP50"])


def test_auto_trains_in_bf16_where_the_cpu_has_it_and_the_tower_is_wide_enough(colour_scorer, tmp_path, monkeypatch):
    """The tiny test tower stands in for a base-size one: the threshold is lowered to its width."""
    from findbox.device import cpu_has_fast_bf16

    if not cpu_has_fast_bf16():
        pytest.skip("this CPU has no bf16 matmuls in hardware")
    monkeypatch.setattr(scorer, "AUTO_BF16_MIN_WIDTH", scorer.tower_width(colour_scorer))
    crops = write_colour_crops(tmp_path / "crops")
    run = setup(tiny_config(colour_scorer, crops, tmp_path / "out", precision="auto"))
    seen = _linear_output_dtypes(run)
    run.sampler.set_epoch(1)
    pixels, _ = next(iter(run.loader))
    batch = run.sampler.global_batches()[0]
    train_step(run, pixels, run.train_set.caption_ids[batch], run.train_set.image_ids[batch])
    assert run.precision == Precision.BF16 and set(seen) == {torch.bfloat16}
