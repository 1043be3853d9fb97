"""`findbox calibrate` and what `--precision auto` does with its record, through real commands and servers.

A scorer folder without a record never runs int8 (or bf16) under auto: the ready line of a real
`findbox serve` says fp32 and names `findbox calibrate`. After `findbox calibrate` on data where
the faster paths give fp32's answers, auto runs int8 and the ready line says so. The data here
makes agreement certain, not likely: the detector keeps one box per image (--max-det 1), so every
precision must answer with it; the record still comes from the real command's measurement.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from findbox.calibration import CALIBRATION_FILE
from findbox.config import Precision
from findbox.device import BF16_FLAGS, MIN_SPEEDUP, VNNI_FLAGS, cpu_flags
from tests.conftest import CAPTIONS, ServerProcess, make_image, tiny_serve_args

pytestmark = pytest.mark.skipif(not cpu_flags() & VNNI_FLAGS, reason="auto unlocks int8 only on a CPU with VNNI")


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory) -> dict[str, str]:
    """The environment of the commands: a fresh cache folder for the ONNX exports they make."""
    return {**os.environ, "FINDBOX_CACHE": str(tmp_path_factory.mktemp("cache"))}


VAL_IMAGES = 12


@pytest.fixture(scope="module")
def val_data(tmp_path_factory) -> Path:
    """A small vlm.jsonl: 12 images, 2 captions each, one true box per caption (enough instances for the
    record's speeds to order the paths, as auto takes a path only where it ran 5% faster than fp32)."""
    root = tmp_path_factory.mktemp("val")
    (root / "images").mkdir()
    lines = []
    for k in range(VAL_IMAGES):
        name = f"v{k}.jpg"
        Image.fromarray(make_image(100 + k)).save(root / "images" / name, quality=95)
        annotations = [{"bbox": [10 + 30 * j, 20, 40, 30], "caption": CAPTIONS[(k + j) % len(CAPTIONS)]}
                       for j in range(2)]
        lines.append(json.dumps({"image": name, "annotations": annotations}))
    (root / "vlm.jsonl").write_text("\n".join(lines) + "\n")
    return root / "vlm.jsonl"


def calibrate(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "findbox.cli", "calibrate", "--no-progress", *args],
                          capture_output=True, text=True, env=env, timeout=600)


def ready_line(server: ServerProcess) -> str:
    return next(line for line in server.output().splitlines() if "models loaded; ready:" in line)


@pytest.fixture(scope="module")
def calibrated_scorer(tiny_models, val_data, cache_env, tmp_path_factory) -> Path:
    """A copy of the tiny scorer, calibrated by the real command on data where every precision agrees."""
    scorer = tmp_path_factory.mktemp("calibrated") / "scorer"
    shutil.copytree(tiny_models["scorer"], scorer)
    args = tiny_serve_args({**tiny_models, "scorer": scorer}, upscaler=False)
    done = calibrate(["--data", str(val_data), *args, "--max-det", "1"], cache_env)
    assert done.returncode == 0, done.stderr[-3000:]
    # what auto runs depends on the measured speeds too (a path 5% faster than fp32): either is an answer
    assert re.search(r"--precision auto now runs (int8|fp32) here", done.stdout), done.stdout
    return scorer


def timeless_copy(scorer: Path, folder: Path) -> Path:
    """The scorer with its real record, less the record's timings: auto then goes by agreement alone, in the
    fixed order (static int8 first), whatever speeds this machine measured for tiny towers."""
    from findbox.calibration import Calibration, write_calibration

    shutil.copytree(scorer, folder)
    record = Calibration.from_json(json.loads((folder / CALIBRATION_FILE).read_text()), "record")
    untimed = tuple(dataclasses.replace(m, instances_per_s=None) for m in record.results)
    write_calibration(folder, Calibration(record.weights, untimed, record.machine_flags, record.instances,
                                          record.extra))
    return folder


def test_a_scorer_without_a_record_never_runs_int8_under_auto(tiny_models, cache_env):
    assert not (Path(tiny_models["scorer"]) / CALIBRATION_FILE).exists()
    server = ServerProcess(tiny_serve_args(tiny_models, upscaler=False))
    try:
        line = ready_line(server)
    finally:
        server.stop()
    unlock = "int8 or bf16" if cpu_flags() & BF16_FLAGS else "int8"
    assert line.endswith(f"precision fp32 (auto; uncalibrated: `findbox calibrate` can unlock {unlock}) on cpu"), line


def test_after_calibrate_where_int8_agrees_auto_runs_int8(calibrated_scorer, tiny_models, cache_env, tmp_path):
    record = json.loads((calibrated_scorer / CALIBRATION_FILE).read_text())
    measured = {(r["precision"], r["backend"]): r for r in record["results"]}
    assert measured[("int8", "onnxruntime")]["same_box"] == 1.0 and ("int8", "torch") in measured
    assert measured[("int8", "onnxruntime-static")]["same_box"] == 1.0  # static int8, measured as its own path
    assert record["instances"] == 2 * VAL_IMAGES and record["data"]["images"] == VAL_IMAGES
    assert set(record["machine_flags"]) == cpu_flags() & (BF16_FLAGS | VNNI_FLAGS)
    server = ServerProcess(tiny_serve_args({**tiny_models, "scorer": calibrated_scorer}, upscaler=False))
    try:
        line, log = ready_line(server), server.output()
    finally:
        server.stop()
    # both int8 rows kept the answers: auto runs the one the record timed faster, if it ran 5% faster than fp32
    # (static and dynamic int8 run the tiny towers at about fp32's speed, so any of the three may be it)
    fp32 = measured[("fp32", "torch")]["instances_per_s"]
    fastest = max((r for r in record["results"] if r["precision"] == "int8" and r["backend"] != "torch"),
                  key=lambda r: r["instances_per_s"])
    if fastest["instances_per_s"] >= MIN_SPEEDUP * fp32:
        assert (f"precision int8 (auto; calibrated on {fastest['backend']}: 100.0% of fp32's boxes on "
                f"{2 * VAL_IMAGES} instances) on cpu") in line
        assert f"precision int8: scorer towers on {fastest['backend']}" in log  # what runs is what the line says
    else:
        assert "precision fp32 (auto; calibrated: no path that kept fp32's answers ran 5% faster" in line, line
    # the same agreement without the timings: int8 is unlocked by the measurement of this checkpoint
    untimed = timeless_copy(calibrated_scorer, tmp_path / "scorer")
    server = ServerProcess(tiny_serve_args({**tiny_models, "scorer": untimed}, upscaler=False))
    try:
        line, log = ready_line(server), server.output()
    finally:
        server.stop()
    assert (f"precision int8 (auto; calibrated on onnxruntime-static: 100.0% of fp32's boxes on {2 * VAL_IMAGES} "
            f"instances) on cpu") in line
    assert "precision int8: scorer towers on onnxruntime-static" in log


@pytest.mark.skipif(not cpu_flags() & BF16_FLAGS, reason="the bf16 detector is measured only where the CPU has bf16")
def test_calibrate_measures_the_detector_in_bf16_on_this_checkpoint(calibrated_scorer, tiny_models):
    """A row of its own: the detector in bf16 (the scorer fp32), naming the checkpoint by sha256, timed."""
    from findbox.calibration import DETECTOR_BF16, detector_sha256

    record = json.loads((calibrated_scorer / CALIBRATION_FILE).read_text())
    rows = [r for r in record["results"] if r["backend"] == DETECTOR_BF16]
    assert len(rows) == 1 and rows[0]["precision"] == "bf16", record["results"]
    assert rows[0]["detector"] == detector_sha256(tiny_models["detector"])
    assert 0.0 <= rows[0]["same_box"] <= 1.0 and rows[0]["instances_per_s"] > 0
    assert all("detector" not in r for r in record["results"] if r["backend"] != DETECTOR_BF16)


def test_calibrate_stores_static_scales_and_explicit_int8_uses_them(calibrated_scorer, tiny_models, val_data,
                                                                     cache_env, monkeypatch):
    """The record keeps the static ranges of both towers, calibrated on the run's crops and captions; an explicit
    --precision int8 then runs static (crops batched), and a scorer without them runs dynamic int8."""
    from findbox.config import PipelineConfig
    from findbox.factory import load_pipeline
    from findbox.serve.app import describe_models

    record = json.loads((calibrated_scorer / CALIBRATION_FILE).read_text())
    static = record["int8_static"]
    assert set(static["towers"]) == {"image", "text"} and static["method"] == "MinMax"
    # the data's crops (one box per image) and its distinct captions, not the pipeline's warm-up
    captions = {a["caption"] for line in val_data.read_text().splitlines() for a in json.loads(line)["annotations"]}
    assert static["calibration_rows"] == {"image": VAL_IMAGES, "text": len(captions)}
    assert list(record)[-1] == "int8_static"  # the bulky part last, after what people read
    monkeypatch.setenv("FINDBOX_CACHE", cache_env["FINDBOX_CACHE"])
    kwargs = {"detector": str(tiny_models["detector"]), "device": "cpu", "no_upscaler": True, "precision": "int8"}
    static_pipeline = load_pipeline(scorer=str(calibrated_scorer), **kwargs)
    assert static_pipeline.scorer.info["backend"] == "onnxruntime-static"
    assert all(".static" in p.name for p in static_pipeline.scorer.paths.values())
    assert "precision int8 (onnxruntime-static: scales from the calibration record) on cpu" in describe_models(
        PipelineConfig(scorer=str(calibrated_scorer), **kwargs))
    assert load_pipeline(scorer=str(tiny_models["scorer"]), **kwargs).scorer.info["backend"] == "onnxruntime"
    assert describe_models(PipelineConfig(scorer=str(tiny_models["scorer"]), **kwargs)).endswith("precision int8 on cpu")


def test_a_record_whose_static_int8_changed_answers_runs_dynamic_int8_under_auto(calibrated_scorer, tmp_path):
    """Static int8 below the rule and dynamic int8 within it: auto runs int8, the dynamic towers. The record's
    timings are dropped (`timeless_copy`), so the choice goes by agreement alone: with them, whether dynamic int8
    ran 5% faster than fp32 on tiny towers depends on the machine (on a 2-core AMD EPYC no path did)."""
    from findbox.calibration import Calibration, write_calibration
    from findbox.config import PipelineConfig
    from findbox.device import resolve_device
    from findbox.factory import int8_static_ranges, precision_choice

    folder = timeless_copy(calibrated_scorer, tmp_path / "scorer")
    record = Calibration.from_json(json.loads((folder / CALIBRATION_FILE).read_text()), "record")
    worse = tuple(type(m)(m.precision, m.backend, 0.98, m.accuracy) if m.backend == "onnxruntime-static" else m
                  for m in record.results)
    write_calibration(folder, Calibration(record.weights, worse, record.machine_flags, record.instances, record.extra))
    cpu = resolve_device("cpu")
    auto = PipelineConfig(scorer=str(folder), device="cpu")
    choice = precision_choice(auto, cpu, str(folder))
    assert choice.precision == Precision.INT8 and choice.backend == "onnxruntime", choice
    assert int8_static_ranges(auto, cpu, str(folder)) is None  # auto: dynamic towers
    explicit = PipelineConfig(scorer=str(folder), device="cpu", precision="int8")
    assert int8_static_ranges(explicit, cpu, str(folder)) == record.extra["int8_static"]  # explicit: the scales


def test_a_record_of_other_weights_is_ignored(calibrated_scorer, tiny_models, tmp_path, caplog):
    """A record copied beside other weights (another seed of the same architecture) unlocks nothing."""
    from findbox.config import PipelineConfig
    from findbox.serve.app import describe_models
    from findbox.testing.builders import build_siglip

    other = build_siglip(tmp_path / "other", CAPTIONS, preset="tiny", seed=1)
    shutil.copy(calibrated_scorer / CALIBRATION_FILE, other / CALIBRATION_FILE)
    config = PipelineConfig(detector=str(tiny_models["detector"]), scorer=str(other), device="cpu", no_upscaler=True)
    with caplog.at_level(logging.WARNING, logger="findbox"):
        line = describe_models(config)
    assert "precision fp32 (auto; uncalibrated: `findbox calibrate` can unlock" in line
    assert "ignored: it was measured on other weights" in caplog.text
    # the calibrated folder itself still reads its record (what it unlocks depends on the measured speeds)
    assert "(auto; calibrated" in describe_models(
        PipelineConfig(detector=str(tiny_models["detector"]), scorer=str(calibrated_scorer), device="cpu"))


def test_a_record_whose_int8_changed_answers_keeps_fp32(calibrated_scorer, tiny_models, tmp_path):
    """The rule, on the real record: int8 measured below 99% of fp32's boxes is not used."""
    from findbox.calibration import Calibration, write_calibration
    from findbox.config import PipelineConfig
    from findbox.factory import precision_choice
    from findbox.device import resolve_device

    folder = tmp_path / "scorer"
    shutil.copytree(calibrated_scorer, folder)
    record = Calibration.from_json(json.loads((folder / CALIBRATION_FILE).read_text()), "record")
    worse = tuple(m if m.precision == "fp32" else type(m)(m.precision, m.backend, 0.98, m.accuracy)
                  for m in record.results)
    write_calibration(folder, Calibration(record.weights, worse, record.machine_flags, record.instances))
    choice = precision_choice(PipelineConfig(scorer=str(folder), device="cpu"), resolve_device("cpu"), str(folder))
    assert choice.precision == Precision.FP32
    assert "no faster precision kept fp32's answers (int8 on onnxruntime 98.0% of fp32's boxes" in choice.note


def test_calibrate_refuses_what_it_cannot_measure(tiny_models, val_data, cache_env, tmp_path):
    from findbox.testing.builders import build_open_clip

    args = tiny_serve_args(tiny_models, upscaler=False)
    done = calibrate(["--data", str(val_data), *args, "--precision", "int8"], cache_env)
    assert done.returncode == 2 and "--precision: calibrate measures every precision" in done.stderr
    done = calibrate(["--data", str(val_data), *args, "--detector-precision", "bf16"], cache_env)
    assert done.returncode == 2 and "--detector-precision: calibrate measures the detector" in done.stderr
    spec = build_open_clip(tmp_path / "oc", "tiny-clip")
    done = calibrate(["--data", str(val_data), "--detector", str(tiny_models["detector"]), "--scorer", spec],
                     cache_env)
    assert done.returncode == 2 and "--scorer: expected a transformers save_pretrained folder" in done.stderr
    assert not any(Path(tiny_models["scorer"]).glob(CALIBRATION_FILE))


def test_calibrate_without_crops_measures_no_static_int8_and_says_why(tiny_models, val_data, cache_env, tmp_path):
    """A detector that proposes nothing on the data leaves the image tower without calibration crops: the
    static row is not measured and no ranges are kept (before: `calibrate` stopped with exit 2 there)."""
    scorer = tmp_path / "scorer"
    shutil.copytree(tiny_models["scorer"], scorer)
    args = tiny_serve_args({**tiny_models, "scorer": scorer}, upscaler=False)
    done = calibrate(["--data", str(val_data), *args, "--conf", "0.999"], cache_env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no static int8: the fp32 run fed the image tower no crops to calibrate it on" in done.stderr
    record = json.loads((scorer / CALIBRATION_FILE).read_text())
    assert "int8_static" not in record
    assert ("int8", "onnxruntime-static") not in {(r["precision"], r["backend"]) for r in record["results"]}
    assert ("int8", "onnxruntime") in {(r["precision"], r["backend"]) for r in record["results"]}
