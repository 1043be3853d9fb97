"""`findbox train detector`: options, run bookkeeping, and CPU smoke runs (slow)."""

from __future__ import annotations

import argparse
import json
import socket

import numpy as np
import pytest

from findbox.cli import main as findbox_main
from findbox.config import Precision
from findbox.train import detector
from findbox.train.detector import DetectorTrainConfig, Stage, parse_stages, train_detector

from .test_detector_data import draw_scene, write_vlm_dataset


@pytest.mark.parametrize(
    "text, stages",
    [
        ("1280:55,1600:7", (Stage(1280, 55), Stage(1600, 7))),
        ("320:1", (Stage(320, 1),)),
        (" 640:3 , 800:2 ", (Stage(640, 3), Stage(800, 2))),
    ],
)
def test_parse_stages(text, stages):
    assert parse_stages(text) == stages


@pytest.mark.parametrize("text", ["", "1280", "1280:", "a:5", "1280:0", "16:5", "1280:55;1600:7"])
def test_parse_stages_rejects(text):
    with pytest.raises(ValueError, match="IMGSZ:EPOCHS"):
        parse_stages(text)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    detector.add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults_are_the_original_recipe(tmp_path):
    cfg = detector.config_from_args(_parse(["--data", str(tmp_path / "vlm.jsonl"), "--out", str(tmp_path / "o")]))
    assert cfg.stages == (Stage(1280, 55), Stage(1600, 7))
    assert cfg.model == "yolov9e.pt" and cfg.val_fraction == 0.2
    assert detector.RECIPE["optimizer"] == "AdamW" and detector.RECIPE["lr0"] == 1e-3
    assert detector.RECIPE["cos_lr"] is True and detector.RECIPE["nbs"] == 64 and detector.RECIPE["single_cls"] is True


def test_imgsz_epochs_make_one_stage_and_exclude_stages(tmp_path):
    base = ["--data", str(tmp_path / "v.jsonl"), "--out", str(tmp_path / "o")]
    assert detector.config_from_args(_parse(base + ["--imgsz", "320", "--epochs", "2"])).stages == (Stage(320, 2),)
    assert detector.config_from_args(_parse(base + ["--epochs", "3"])).stages == (Stage(1280, 3),)
    with pytest.raises(ValueError, match="either --stages or --imgsz"):
        detector.config_from_args(_parse(base + ["--stages", "320:1", "--imgsz", "320"]))


def test_warmup_epochs_flag(tmp_path):
    base = ["--data", str(tmp_path / "v.jsonl"), "--out", str(tmp_path / "o")]
    assert detector.config_from_args(_parse(base)).warmup_epochs == 3.0  # ultralytics' default
    assert detector.config_from_args(_parse(base + ["--warmup-epochs", "0"])).warmup_epochs == 0.0
    with pytest.raises(ValueError, match="warmup_epochs"):
        detector.config_from_args(_parse(base + ["--warmup-epochs", "-1"]))


def test_resume_takes_what_the_flags_leave_out_from_the_run(tmp_path):
    stored = DetectorTrainConfig(data=str(tmp_path / "v.jsonl"), out=str(tmp_path / "o"), model="yolov8n.yaml",
                                 stages="160:2,192:1", augs="v1", batch=4, device="cpu", workers=0)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "metrics.json").write_text(json.dumps({"config": stored.to_dict(), "stages": []}))
    cfg = detector.config_from_args(_parse(["--out", str(tmp_path / "o"), "--resume", "--workers", "2"]))
    assert cfg.resume and cfg.workers == 2
    for name in ("data", "model", "stages", "augs", "val_fraction", "batch", "device", "precision"):
        assert getattr(cfg, name) == getattr(stored, name), name


def test_missing_pt_is_refused_without_download(tmp_path):
    with pytest.raises(ValueError, match="never downloads weights"):
        detector._resolve_model("yolov9e.pt")  # not a local file here
    assert detector._resolve_model("yolov8n.yaml") == "yolov8n.yaml"


@pytest.mark.parametrize(
    "precision, device, amp",
    [
        (Precision.AUTO, "cpu", False),
        (Precision.FP32, "cpu", False),
        (Precision.FP32, "0", False),
        (Precision.BF16, "0", "bf16"),
        (Precision.BF16, "0,1", "bf16"),
        (Precision.FP16, "0", True),
    ],
)
def test_amp_setting(precision, device, amp):
    assert detector._amp_setting(precision, device) == amp


@pytest.mark.parametrize(
    "precision, device, message",
    [(Precision.FP16, "cpu", "needs a CUDA device"), (Precision.FP16, "0,1", "downloads a model")],
)
def test_amp_setting_rejects(precision, device, message):
    with pytest.raises(ValueError, match=message):
        detector._amp_setting(precision, device)


def test_refuses_to_overwrite_a_run_and_to_resume_nothing(tmp_path):
    jsonl = write_vlm_dataset(tmp_path / "data", n=4)
    (tmp_path / "run").mkdir()
    with pytest.raises(ValueError, match="found no metrics.json"):
        train_detector(DetectorTrainConfig(data=str(jsonl), out=str(tmp_path / "run"), resume=True))
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({"config": {}, "stages": []}))
    with pytest.raises(ValueError, match="already holds a detector run"):
        train_detector(DetectorTrainConfig(data=str(jsonl), out=str(tmp_path / "run")))


def test_bad_jsonl_line_surfaces_through_the_command(tmp_path, capsys):
    jsonl = write_vlm_dataset(tmp_path / "data", n=4)
    with open(jsonl, "a") as f:
        f.write('{"image": "image_9.jpg", "annotations": [{"bbox": [1, 2]}]}\n')
    argv = ["train", "detector", "--data", str(jsonl), "--model", "yolov8n.yaml", "--out", str(tmp_path / "run")]
    assert findbox_main(argv) == 2  # a message naming file and line, no traceback
    assert f"{jsonl}:5: annotations[0].bbox" in capsys.readouterr().err


# --- CPU smoke runs ----------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach another machine fails the test (local sockets stay allowed)."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refuse(address)
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setenv("YOLO_VERBOSE", "False")  # restored after the test; the trainer turns it on


@pytest.mark.slow
def test_cli_trains_a_loadable_detector(tmp_path, no_network, tiny_models, monkeypatch):
    jsonl = write_vlm_dataset(tmp_path / "data", n=8)
    out = tmp_path / "run"
    argv = ["train", "detector", "--data", str(jsonl), "--model", "yolov8n.yaml", "--epochs", "1",
            "--imgsz", "160", "--batch", "4", "--augs", "v1", "--device", "cpu", "--workers", "0", "--out", str(out),
            "--warmup-epochs", "0"]
    assert findbox_main(argv) == 0

    metrics = json.loads((out / "metrics.json").read_text())
    (stage,) = metrics["stages"]
    assert stage["name"] == "stage1" and stage["imgsz"] == 160 and stage["epochs"] == 1
    for key in ("mAP50", "mAP50-95", "precision", "recall"):
        assert 0.0 <= stage[key] <= 1.0
    assert stage["conf"] == detector.VAL_CONF
    assert metrics["data"]["images"] == {"train": 6, "val": 2} and metrics["config"]["augs"] == "v1"
    split = json.loads((out / "split.json").read_text())
    assert split["val"] == ["image_6.jpg", "image_7.jpg"]
    assert (out / "stage1" / "results.csv").is_file() and list((out / "stage1").glob("*.png"))  # plots kept
    assert "warmup_epochs: 0" in (out / "stage1" / "args.yaml").read_text()  # the flag reached ultralytics

    from ultralytics import YOLO

    model = YOLO(str(out / "detector.pt"))
    assert model.task == "detect" and len(model.names) == 1
    image, _ = draw_scene((320, 192), seed=99)
    results = model.predict(np.asarray(image)[..., ::-1].copy(), imgsz=160, conf=0.0, device="cpu", verbose=False)
    assert results[0].boxes.xyxy.shape[1] == 4

    # the trained checkpoint is served as is (by a real server on loopback)
    monkeypatch.undo()
    import httpx

    from findbox.images import encode_jpeg_b64
    from tests.conftest import ServerProcess

    server = ServerProcess(["--detector", str(out / "detector.pt"), "--scorer", str(tiny_models["scorer"]),
                            "--no-upscaler", "--device", "cpu", "--imgsz", "160", "--conf", "0.0001"])
    try:
        b64 = encode_jpeg_b64(np.asarray(image))
        r = httpx.post(server.url + "/identify", json={"instances": [{"caption": "red box", "b64": b64}] * 4},
                       timeout=60)
        assert r.status_code == 200, r.text
        assert len(r.json()["predictions"]) == 4
    finally:
        server.stop()


class _Interrupted(Exception):
    pass


@pytest.mark.slow
def test_two_stages_resume_after_interruption(tmp_path, no_network, monkeypatch):
    from ultralytics.engine.trainer import BaseTrainer

    jsonl = write_vlm_dataset(tmp_path / "data", n=8)
    cfg = dict(data=str(jsonl), out=str(tmp_path / "run"), model="yolov8n.yaml", stages="160:2,192:1",
               augs="none", batch=4, device="cpu", workers=0)

    real_save = BaseTrainer.save_model

    def save_then_stop(self):  # the machine "dies" right after stage 1's first checkpoint
        real_save(self)
        raise _Interrupted

    monkeypatch.setattr(BaseTrainer, "save_model", save_then_stop)
    with pytest.raises(_Interrupted):
        train_detector(DetectorTrainConfig(**cfg))
    monkeypatch.setattr(BaseTrainer, "save_model", real_save)
    run = tmp_path / "run"
    assert json.loads((run / "metrics.json").read_text())["stages"] == []
    assert (run / "stage1" / "weights" / "last.pt").is_file() and not (run / "detector.pt").exists()

    with pytest.raises(ValueError, match="used model="):  # a resumed run keeps its recipe
        train_detector(DetectorTrainConfig(**{**cfg, "model": "yolov8s.yaml"}, resume=True))

    state = train_detector(DetectorTrainConfig(**cfg, resume=True))
    assert [s["name"] for s in state["stages"]] == ["stage1", "stage2"]
    epochs_logged = (run / "stage1" / "results.csv").read_text().strip().splitlines()[1:]
    assert len(epochs_logged) == 2  # epoch 1 before the interruption, epoch 2 after resuming
    assert (run / "detector.pt").read_bytes() == (run / "stage2" / "weights" / "best.pt").read_bytes()
    args = (run / "stage2" / "args.yaml").read_text()
    assert "stage1/weights/best.pt" in args  # stage 2 started from stage 1's best weights

    state_again = train_detector(DetectorTrainConfig(**cfg, resume=True))  # nothing left: both stages skipped
    assert state_again["stages"] == state["stages"]
