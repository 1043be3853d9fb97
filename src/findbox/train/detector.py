"""`findbox train detector`: train the single-class YOLO box proposer.

The original recipe (shared/reference/FACTS.md, "Training recipes"): start from a YOLOv9e
checkpoint; AdamW, lr0 1e-3, nominal batch 64, cosine LR, one class; 55 epochs at imgsz
1280, then 7 more at 1600 from the first stage's best weights (small objects gain from
resolution); augmentation set V1 or V2 (`findbox.train.augs`).

    findbox train detector --data data/vlm.jsonl --out runs/det --model yolov9e.pt

Outputs in --out DIR:
    yolo_data/         the data set in YOLO form: links to the images, one label file each
    split.json         train and val image names (`findbox.data.vlm.read_split`)
    stage1/, stage2/   ultralytics run folders: weights/{best,last}.pt, results.csv, plots
    detector.pt        best weights of the last stage; `ultralytics.YOLO(path)` loads it
    metrics.json       the run's settings, the data counts, and per stage mAP50, mAP50-95,
                       precision, recall and the confidences they were measured at

`--resume` continues an interrupted run: finished stages are skipped, the unfinished
one continues from its last.pt through ultralytics' own resume.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import enum
import importlib.util
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from findbox.cli import add_options, options_from_args
from findbox.cli import config_from_args as cli_config
from findbox.config import Precision, option
from findbox.train.augs import AugPreset, build_augs, describe_augs
from findbox.data.vlm import VAL_FRACTION, read_split, write_split
from findbox.logs import progress_shown
from findbox.train.yolo_data import convert_vlm_to_yolo

LOG = logging.getLogger(__name__)

VAL_CONF = 0.001  # ultralytics' own validation threshold: mAP needs the whole precision-recall curve
VAL_IOU = 0.7  # ultralytics' default NMS IoU during validation
RECIPE = {  # fixed by the original recipe, so not flags
    "optimizer": "AdamW",  # explicit: "auto" would choose the optimizer and lr itself and ignore lr0
    "lr0": 1e-3,
    "cos_lr": True,
    "nbs": 64,  # nominal batch: gradients accumulate to 64 images a step, whatever --batch is
    "single_cls": True,  # one class, "object": the scorer decides which object the caption means
    "conf": VAL_CONF,
    "iou": VAL_IOU,
    "plots": True,  # kept in stageN/: PR curves, label statistics, example batches
}


# --- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    imgsz: int
    epochs: int


DEFAULT_STAGES = (Stage(1280, 55), Stage(1600, 7))  # the original: 55 epochs at 1280, 7 more at 1600


def parse_stages(text: str) -> tuple[Stage, ...]:
    """"1280:55,1600:7" -> (Stage(1280, 55), Stage(1600, 7))."""
    stages = []
    for part in text.split(","):
        imgsz, sep, epochs = part.strip().partition(":")
        try:
            stage = Stage(int(imgsz), int(epochs))
        except ValueError:
            stage = None
        if not sep or stage is None or stage.imgsz < 32 or stage.epochs < 1:
            raise ValueError(f"stages: expected IMGSZ:EPOCHS[,IMGSZ:EPOCHS...] (e.g. 1280:55,1600:7), got {text!r}")
        stages.append(stage)
    return tuple(stages)


def format_stages(stages: tuple[Stage, ...]) -> str:
    return ",".join(f"{s.imgsz}:{s.epochs}" for s in stages)


class Cache(str, enum.Enum):
    """Where the decoded training images are kept between epochs (ultralytics' `cache`)."""

    AUTO = "auto"  # RAM when they fit (`cache_plan`), else decoded from disk every time
    RAM = "ram"
    OFF = "off"


# auto caches only when twice the estimate is available (ultralytics' own check keeps the same margin: the
# loader's batches, the model and its optimizer need memory too)
CACHE_MARGIN = 1.0


@dataclass(frozen=True)
class CachePlan:
    """What a stage was given for `cache`, and the figures behind the choice (recorded in metrics.json)."""

    requested: str  # auto, ram or off
    mode: str  # what ultralytics was given: "ram" or "off"
    need_mb: float  # the decoded images at the stage's size (`decoded_bytes`)
    available_mb: float
    reason: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def decoded_bytes(image_wh: list[tuple[int, int]], imgsz: int) -> int:
    """Bytes of the images held in RAM at a stage's imgsz: ultralytics resizes each so its long side is imgsz
    before caching (`BaseDataset.load_image`), 3 bytes a pixel."""
    total = 0
    for width, height in image_wh:
        ratio = imgsz / max(width, height)
        total += 3 * min(math.ceil(width * ratio), imgsz) * min(math.ceil(height * ratio), imgsz)
    return total


def cache_plan(requested: "Cache", image_wh: list[tuple[int, int]], imgsz: int, available_bytes: int) -> CachePlan:
    """auto -> ram when the decoded images (train and val, both cached) fit twice into the available memory;
    ram and off as given (ultralytics itself still refuses a RAM cache that does not fit). A pure function."""
    need = decoded_bytes(image_wh, imgsz)
    figures = dict(requested=requested.value, need_mb=round(need / 2**20, 1),
                   available_mb=round(available_bytes / 2**20, 1))
    if requested is not Cache.AUTO:
        return CachePlan(mode=requested.value, reason="as asked", **figures)
    if need * (1 + CACHE_MARGIN) <= available_bytes:
        return CachePlan(mode=Cache.RAM.value, reason=f"fits: {1 + CACHE_MARGIN:g}x the decoded images is available",
                         **figures)
    return CachePlan(mode=Cache.OFF.value, reason=f"does not fit: less than {1 + CACHE_MARGIN:g}x the decoded images "
                                                   "is available", **figures)


def available_memory() -> int:
    """Bytes of memory available to new allocations now (psutil, which ultralytics also uses)."""
    import psutil

    return int(psutil.virtual_memory().available)


def loader_workers(requested: int, device: str | None, cpus: int) -> int:
    """Data loader processes per device: `requested`, at most one per core on the CPU. ultralytics itself runs
    none on the CPU (it assumes the model's step dominates), so decoding and augmenting sat on the training
    thread; measured in benchmarks/train_speed.py. On GPUs ultralytics' own cap (cores / devices) applies."""
    if _cuda_devices(device):
        return requested
    return min(requested, cpus)


# what ultralytics' amp setting can train in (`_amp_setting`); the serving-only precisions are refused
TRAIN_PRECISIONS = (Precision.AUTO, Precision.FP32, Precision.FP16, Precision.BF16)


@dataclass
class DetectorTrainConfig:
    data: str = option(metavar="VLM_JSONL", help="vlm.jsonl with images/ beside it (not needed with --resume)")
    out: str = option(metavar="DIR", help="run folder: data, stages, detector.pt, metrics.json")
    # the original started from YOLOv9e weights; a .yaml starts from random weights
    model: str = option("yolov9e.pt", help="start weights (.pt) or a model .yaml for random weights")
    stages: tuple[Stage, ...] = option(DEFAULT_STAGES, show=format_stages,
                                       help="IMGSZ:EPOCHS list, each stage from the previous one's best")
    # the note's later set; strong noise helped most on the noisy test
    augs: AugPreset = option(AugPreset.V2, help="albumentations preset")
    # split over devices; nbs=64 keeps the effective batch at 64
    batch: int = option(16, help="images a step over all devices (nbs accumulates)")
    # the original's 64
    nbs: int = option(64, help="nominal batch: images per optimizer step via accumulation")
    # ultralytics' warmup (at least 100 steps); 0 turns it off, for fine-tuning weights that are already trained
    warmup_epochs: float = option(3.0, help="LR warmup epochs (ultralytics warms at least 100 steps; 0 for none, "
                                            "when --model is already trained)")
    # ultralytics' own default (100): within the recipe's 55 + 7 epochs it never stops; best.pt is kept either way
    patience: int = option(100, help="stop a stage once validation fitness has not improved for this many epochs "
                                     "(ultralytics' early stop; its best epoch's weights are kept either way)")
    val_fraction: float = option(VAL_FRACTION, help="last fraction of lines used for val")  # the original's split
    # "0,1" trains on both with DDP
    device: str | None = option(None, help="cpu, 0, or 0,1 for DDP over two GPUs (default: first GPU, else CPU)")
    workers: int = option(8, help="dataloader workers per device (on the CPU at most one per core)")
    # off: on 2 CPU cores caching measured no faster (benchmarks/train_speed.py: 22.3 vs 23.0 s an epoch at 512)
    # and it changes ultralytics' mosaic draws (no recent-image buffer), so it is not the default
    cache: Cache = option(Cache.OFF, help="keep the decoded, resized images in RAM between epochs: auto = when "
                                          "twice their size is available (recorded in metrics.json), ram, off")
    precision: Precision = option(Precision.AUTO, choices=tuple(p.value for p in TRAIN_PRECISIONS),
                                  help="training precision; auto = bf16 on a GPU that has it, else fp32")
    resume: bool = option(False, help="continue the interrupted run in --out")

    # what a resumed run must keep; device, workers, batch, precision and cache may change
    RUN_FIELDS = ("data", "model", "stages", "augs", "val_fraction")

    def __post_init__(self) -> None:
        # absolute paths, so that a resumed run (maybe from another folder) compares equal
        if self.data:
            self.data = str(Path(self.data).resolve())
        if self.out:
            self.out = str(Path(self.out).resolve())
        if not self.model.endswith((".yaml", ".yml")) and Path(self.model).is_file():
            self.model = str(Path(self.model).resolve())
        if isinstance(self.stages, str):
            self.stages = parse_stages(self.stages)
        self.stages = tuple(self.stages)
        if not self.stages:
            raise ValueError("stages: expected at least one IMGSZ:EPOCHS stage, got none")
        try:
            self.augs = AugPreset(self.augs)
        except ValueError:
            raise ValueError(f"augs: expected one of {', '.join(p.value for p in AugPreset)}, got {self.augs!r}") from None
        allowed = ", ".join(p.value for p in TRAIN_PRECISIONS)
        try:
            self.precision = Precision(self.precision)
        except ValueError:
            raise ValueError(f"precision: expected one of {allowed}, got {self.precision!r}") from None
        if self.precision not in TRAIN_PRECISIONS:
            raise ValueError(f"precision: expected one of {allowed} (ultralytics trains in these; int8 and "
                             f"bf16-mixed are serving precisions of the scorer), got {self.precision.value!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction: expected a value in (0, 1), got {self.val_fraction}")
        if self.nbs < 1:
            raise ValueError(f"nbs: expected a positive number of images, got {self.nbs}")
        if self.patience < 1:
            raise ValueError(f"patience: expected 1 or more epochs, got {self.patience}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs: expected 0 or more, got {self.warmup_epochs}")
        if self.batch < 1:
            raise ValueError(f"batch: expected a positive number of images, got {self.batch}")
        if self.workers < 0:
            raise ValueError(f"workers: expected 0 or more, got {self.workers}")
        try:
            self.cache = Cache(self.cache)
        except ValueError:
            raise ValueError(f"cache: expected one of {', '.join(c.value for c in Cache)}, got {self.cache!r}") from None

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "resume"}
        d.update(stages=format_stages(self.stages), augs=self.augs.value, precision=self.precision.value,
                 cache=self.cache.value)
        return d


# --- the run -----------------------------------------------------------------------------------


def train_detector(cfg: DetectorTrainConfig) -> dict:
    """Convert the data, train every stage, write detector.pt and metrics.json; returns metrics.json's content."""
    out = Path(cfg.out).resolve()
    state_path = out / "metrics.json"
    _check_multi_gpu(cfg.device)
    if cfg.resume:
        state = _read_state(state_path)
        _check_same_run(cfg, state["config"], out)
    else:
        if state_path.exists() or (out / "stage1").exists():
            raise ValueError(f"{out} already holds a detector run; pass --resume to continue it, or choose another --out")
        state = None
    start_weights = _resolve_model(cfg.model)  # fail before any work when the weights are missing
    amp = _amp_setting(cfg.precision, cfg.device)
    out.mkdir(parents=True, exist_ok=True)

    # --- data: vlm.jsonl -> YOLO files + split.json
    dataset = convert_vlm_to_yolo(cfg.data, out / "yolo_data", cfg.val_fraction)  # logs its own summary
    if cfg.resume and (out / "split.json").exists():
        before = read_split(out / "split.json")
        if (before.train, before.val) != (dataset.split.train, dataset.split.val):
            raise ValueError(f"--resume: {cfg.data} now splits differently from {out / 'split.json'}; start a new --out")
    write_split(out / "split.json", dataset.split)

    # --- model and recipe
    augs = build_augs(cfg.augs)
    LOG.info(f"albumentations preset {cfg.augs.value} ({len(augs)} transforms):\n{describe_augs(augs)}")
    LOG.info(
        f"recipe: model {cfg.model}, stages {format_stages(cfg.stages)}, batch {cfg.batch}, "
        f"device {cfg.device or 'auto'}, amp {amp}, {RECIPE}"
    )
    if state is None:
        state = {"config": cfg.to_dict(), "data": dataset.report.to_dict(), "stages": []}
        _write_json(state_path, state)
    if progress_shown():  # --quiet keeps ultralytics' epoch bars and tables off too
        _show_ultralytics_progress()

    # --- stages: each starts from the best weights of the one before
    weights = start_weights
    for index, stage in enumerate(cfg.stages, start=1):
        name = f"stage{index}"
        stage_dir = out / name
        best = stage_dir / "weights" / "best.pt"
        if any(s["name"] == name for s in state["stages"]) and best.is_file():
            LOG.info(f"{name}: finished earlier, skipped ({best})")
            weights = str(best)
            continue
        cache = cache_plan(cfg.cache, dataset.report.image_wh, stage.imgsz, available_memory())
        workers = loader_workers(cfg.workers, cfg.device, _cpu_count())
        LOG.info(f"{name}: imgsz {stage.imgsz}, {stage.epochs} epochs, from {weights}; cache {cache.mode} "
                 f"({cache.reason}: {cache.need_mb:.0f} MB decoded, {cache.available_mb:.0f} MB available), "
                 f"{workers} loader workers")
        started = time.time()
        metrics = _run_stage(weights, stage, stage_dir, dataset.data_yaml, cfg, augs, amp, cache.mode, workers)
        if not best.is_file():
            raise RuntimeError(f"{name}: ultralytics finished without writing {best}")
        record = {"name": name, "imgsz": stage.imgsz, "epochs": stage.epochs, "weights": str(best.relative_to(out))}
        epoch_s = _epoch_seconds(stage_dir)
        record.update(metrics, train_s=round(time.time() - started, 1), cache=cache.to_dict(), workers=workers,
                      epoch_s=epoch_s, epochs_run=None if epoch_s is None else len(epoch_s))
        state["stages"] = [s for s in state["stages"] if s["name"] != name] + [record]
        _write_json(state_path, state)
        LOG.info(f"{name}: {_format_metrics(record)}")
        weights = str(best)

    # --- save
    shutil.copyfile(weights, out / "detector.pt")
    state["detector"] = "detector.pt"
    _write_json(state_path, state)
    LOG.info(f"wrote {out / 'detector.pt'} and {state_path}")
    return state


def _run_stage(weights, stage, stage_dir, data_yaml, cfg, augs, amp, cache: str = "off", workers: int = 0) -> dict:
    """Train one stage (or finish it from its last.pt on --resume); returns its validation metrics.

    cache: "ram" or "off" (`cache_plan`); workers: loader processes (`loader_workers`)."""
    from findbox.env import ensure_offline
    ensure_offline()  # ultralytics reads the offline variables at import
    from ultralytics import YOLO

    last = stage_dir / "weights" / "last.pt"
    with _amp_check_skipped(amp is True):
        if cfg.resume and last.is_file():
            model = _with_workers(YOLO(str(last)), workers)
            ckpt = model.ckpt or {}
            if ckpt.get("epoch", -1) >= 0 and ckpt.get("optimizer") is not None:
                LOG.info(f"{stage_dir.name}: resuming from {last} (epoch {ckpt['epoch'] + 1} of {stage.epochs} done)")
                # ultralytics restores every other setting from the checkpoint
                model.train(
                    resume=True,
                    data=str(data_yaml),
                    device=cfg.device,
                    workers=workers,
                    batch=cfg.batch,
                    cache=_ultralytics_cache(cache),
                    save_dir=str(stage_dir),
                )
                return _metrics_from(model.metrics)
            # last.pt was stripped: ultralytics finished the stage, the run stopped before recording it
            best = stage_dir / "weights" / "best.pt"
            LOG.info(f"{stage_dir.name}: already trained, validating {best}")
            val = YOLO(str(best)).val(
                data=str(data_yaml),
                imgsz=stage.imgsz,
                batch=cfg.batch,
                device=_first_device(cfg.device),
                conf=VAL_CONF,
                iou=VAL_IOU,
                plots=False,
                project=str(stage_dir),
                name="val",
                exist_ok=True,
            )
            return _metrics_from(val)

        model = _with_workers(YOLO(weights), workers)
        model.train(
            data=str(data_yaml),
            epochs=stage.epochs,
            imgsz=stage.imgsz,
            batch=cfg.batch,
            device=cfg.device,
            workers=workers,
            cache=_ultralytics_cache(cache),
            amp=amp,
            augmentations=augs,
            project=str(stage_dir.parent),
            name=stage_dir.name,
            exist_ok=True,  # this run owns DIR/stageN; a fresh run refused to start over an old one
            warmup_epochs=cfg.warmup_epochs,
            patience=cfg.patience,
            **{**RECIPE, "nbs": cfg.nbs},
        )
        return _metrics_from(model.metrics)


def _ultralytics_cache(mode: str) -> str | bool:
    """Our cache mode -> ultralytics' `cache` value."""
    return "ram" if mode == Cache.RAM.value else False


def _with_workers(model, workers: int):
    """`model`, set to run `workers` loader processes also on the CPU, where ultralytics' trainer sets 0
    when it starts; the callback runs right after that, before any loader is built."""
    def restore(trainer) -> None:
        trainer.args.workers = workers

    model.add_callback("on_pretrain_routine_start", restore)
    return model


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _epoch_seconds(stage_dir: Path) -> list[float] | None:
    """Seconds of each epoch of a stage (ultralytics' results.csv `time` column is cumulative), or None."""
    import csv

    path = stage_dir / "results.csv"
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        times = [float(row["time"]) for row in csv.DictReader(f, skipinitialspace=True) if row.get("time")]
    return [round(b - a, 1) for a, b in zip([0.0] + times, times)] or None


def _metrics_from(metrics) -> dict:
    """ultralytics' DetMetrics (one process) or its checkpoint dict (DDP) -> our metrics record."""
    if hasattr(metrics, "box"):
        box = metrics.box
        record = {"mAP50": box.map50, "mAP50-95": box.map, "precision": box.mp, "recall": box.mr}
        pr_conf = None
        if len(box.f1_curve) and box.f1_curve.max() > 0:  # P and R are reported where the smoothed mean F1 peaks
            from ultralytics.utils.metrics import smooth

            pr_conf = float(box.px[int(smooth(box.f1_curve.mean(0), 0.1).argmax())])
    elif isinstance(metrics, dict):
        keys = {"mAP50": "mAP50(B)", "mAP50-95": "mAP50-95(B)", "precision": "precision(B)", "recall": "recall(B)"}
        record = {ours: metrics.get(f"metrics/{theirs}") for ours, theirs in keys.items()}
        pr_conf = None  # the DDP checkpoint keeps the numbers, not the curves
    else:
        raise RuntimeError(f"expected validation metrics from ultralytics, got {type(metrics).__name__}")
    record = {k: (None if v is None else round(float(v), 5)) for k, v in record.items()}
    record.update(conf=VAL_CONF, iou=VAL_IOU, pr_conf=None if pr_conf is None else round(pr_conf, 4))
    return record


def _format_metrics(record: dict) -> str:
    return ", ".join(f"{k} {record[k]}" for k in ("mAP50", "mAP50-95", "precision", "recall", "pr_conf"))


# --- ultralytics settings ----------------------------------------------------------------------


def _resolve_model(model: str) -> str:
    """A local .pt, or a model .yaml (random weights). Never a hub name: ultralytics would download it."""
    if model.endswith((".yaml", ".yml")):
        return model  # a file, or one of ultralytics' bundled configs (yolov8n.yaml, yolov9e.yaml, ...)
    path = Path(model)
    if path.is_file():
        return str(path.resolve())
    raise ValueError(
        f"model: expected a local ultralytics .pt file or a model .yaml, got {model!r} (no such file); "
        "findbox never downloads weights: pass the path of your checkpoint, or e.g. yolov9e.yaml for random weights"
    )


def _cuda_devices(device: str | None) -> list[str]:
    """The CUDA device ids a `device` string asks for; [] for the CPU (or MPS)."""
    if device is None:
        import torch

        return ["0"] if torch.cuda.is_available() else []
    text = str(device).strip().lower().replace("cuda:", "").replace("cuda", "0")
    if text in ("cpu", "mps", ""):
        return []
    return [d.strip() for d in text.split(",") if d.strip()]


def _first_device(device: str | None) -> str | None:
    ids = _cuda_devices(device)
    return ids[0] if ids else (device or "cpu")


def _amp_setting(precision: Precision, device: str | None) -> bool | str:
    """ultralytics' `amp` value. Its fp16 AMP check downloads a model, so the GPU default is bf16."""
    ids = _cuda_devices(device)
    if not ids:
        if precision in (Precision.FP16, Precision.BF16):
            raise ValueError(f"precision: {precision.value} needs a CUDA device, got device {device or 'cpu'}")
        return False
    if precision is Precision.FP32:
        return False
    if precision is Precision.BF16:
        return "bf16"
    if precision is Precision.AUTO:
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else False
    if len(ids) > 1:  # the DDP workers would run the check in their own processes
        raise ValueError(
            "precision: fp16 on several devices would run ultralytics' AMP check, which downloads a model; "
            "use bf16 (or fp32) for multi-GPU training"
        )
    return True  # fp16 AMP; _amp_check_skipped keeps ultralytics off the network


@contextlib.contextmanager
def _amp_check_skipped(active: bool):
    """Skip ultralytics' fp16 AMP self-test (it downloads yolo26n.pt) and assume AMP works."""
    if not active:
        yield
        return
    from findbox.env import ensure_offline
    ensure_offline()  # ultralytics reads the offline variables at import
    import ultralytics.engine.trainer as trainer_module

    original = trainer_module.check_amp
    trainer_module.check_amp = lambda model: True
    try:
        yield
    finally:
        trainer_module.check_amp = original


def _check_multi_gpu(device: str | None) -> None:
    if len(_cuda_devices(device)) > 1 and importlib.util.find_spec("cloudpickle") is None:
        raise ValueError(
            f"device {device}: multi-GPU training goes through ultralytics' DDP launcher, which needs the "
            "cloudpickle package (>=3.1.1); it is not installed, and findbox never installs packages at run time: "
            "pip install 'findbox[train]'"
        )


def _show_ultralytics_progress() -> None:
    """findbox keeps ultralytics quiet by default (YOLO_VERBOSE=False); training shows its progress bars."""
    os.environ["YOLO_VERBOSE"] = "True"  # read at import by DDP worker processes
    from findbox.env import ensure_offline
    ensure_offline()  # ultralytics reads the offline variables at import
    import ultralytics.utils as uu

    uu.VERBOSE = True
    uu.LOGGER.setLevel(logging.INFO)
    for handler in uu.LOGGER.handlers:
        handler.setLevel(logging.INFO)


# --- run state ---------------------------------------------------------------------------------


def _read_state(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"--resume: expected a run to continue in {path.parent}, found no {path.name}")
    with open(path, encoding="utf-8") as f:
        state = json.load(f)
    if not isinstance(state, dict) or "config" not in state or "stages" not in state:
        raise ValueError(f"--resume: {path} is not a findbox detector run's metrics.json")
    return state


def _check_same_run(cfg: DetectorTrainConfig, stored: dict, out: Path) -> None:
    given = cfg.to_dict()
    for name in DetectorTrainConfig.RUN_FIELDS:
        if given[name] != stored.get(name):
            raise ValueError(
                f"--resume: the run in {out} used {name}={stored.get(name)!r}, got {given[name]!r}; "
                "resume with the run's settings or start a new --out"
            )


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# --- command line ------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, DetectorTrainConfig)
    first = DEFAULT_STAGES[0]
    parser.add_argument("--imgsz", type=int,
                        help=f"one stage at this size (instead of --stages; default {first.imgsz})")
    parser.add_argument("--epochs", type=int,
                        help=f"one stage of this many epochs (instead of --stages; default {first.epochs})")


def config_from_args(args: argparse.Namespace) -> DetectorTrainConfig:
    """Flags over --config FILE.toml over defaults. With --resume, what both leave out comes from
    the run's metrics.json."""
    given = options_from_args(args, DetectorTrainConfig)
    if "stages" in given and (args.imgsz or args.epochs):
        raise ValueError("stages: give either --stages or --imgsz/--epochs, got both")
    if args.imgsz or args.epochs:
        given["stages"] = (Stage(args.imgsz or DEFAULT_STAGES[0].imgsz, args.epochs or DEFAULT_STAGES[0].epochs),)
    if given.get("resume"):
        if "out" not in given:
            raise ValueError("out: expected --out DIR, the run to resume")
        stored = _read_state(Path(given["out"]).resolve() / "metrics.json")["config"]
        names = {f.name for f in dataclasses.fields(DetectorTrainConfig)}
        given = {**{k: v for k, v in stored.items() if k in names}, **given}
    elif "data" not in given:
        raise ValueError("data: expected --data VLM_JSONL (only --resume may leave it out)")
    return cli_config(args, DetectorTrainConfig, given)


def main(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    state = train_detector(cfg)
    last = state["stages"][-1]
    print(f"detector: {Path(cfg.out) / 'detector.pt'}  ({_format_metrics(last)})")
    return 0
