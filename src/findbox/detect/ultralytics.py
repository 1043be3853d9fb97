"""Stage 1: propose boxes with an ultralytics detection checkpoint."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from findbox.boxes import Candidates
from findbox.config import DetectorBackend, DetectorConfig
from findbox.detect.sliced import merge_tiles, tile_windows

# images (or tiles) per predict call: bounds detector memory whatever the request size
PREDICT_BATCH = 8


class Detector:
    """Class-agnostic box proposals from any ultralytics detection model.

    A multi-class checkpoint is used class-agnostically: classes are ignored and
    NMS runs across them.
    """

    def __init__(self, yolo, config: DetectorConfig, device: torch.device, half: bool = False, bf16: bool = False):
        task = getattr(yolo, "task", "detect")
        if task != "detect":
            raise ValueError(f"detector: expected an ultralytics detection model, got task {task!r}")
        self.yolo = yolo
        self.config = config
        self.device = device
        # the torch forward under torch.autocast(bf16) (`--detector-precision bf16`); it replaces half
        self.bf16 = bf16
        self.half = half and device.type == "cuda" and not bf16
        if bf16:
            decode_in_fp32(yolo)
        # set by `--detector-backend auto` (findbox.detect.backend.load_auto): what it chose and why
        self.backend_choice = None

    @classmethod
    def from_file(
        cls, path: str | Path, config: DetectorConfig | None = None, device: torch.device | str = "cpu",
        half: bool = False, backend: DetectorBackend = DetectorBackend.TORCH, bf16: bool = False,
    ) -> "Detector":
        """An ultralytics .pt, run by torch or (backend onnx, CPU only) by ONNX Runtime on its export;
        backend auto: whichever of the two is faster here with the same boxes (`findbox.detect.backend`).
        bf16: torch's forward under torch.autocast(bf16) on the device, in place of half (backend auto then
        means torch: on the CPU the bf16 path was chosen by measurement already,
        `findbox.device.detector_auto_choice`)."""
        path = Path(path)
        device = torch.device(device)
        backend = DetectorBackend(backend)
        if not path.is_file():
            raise ValueError(f"detector: expected an ultralytics .pt file, got {str(path)!r} (not a file)")
        if bf16:
            if backend == DetectorBackend.ONNX:
                raise ValueError("detector_precision: bf16 runs on the torch backend (torch.autocast), got "
                                 "detector_backend onnx")
            backend = DetectorBackend.TORCH
        if backend == DetectorBackend.AUTO:
            from findbox.detect.backend import load_auto

            return load_auto(path, config or DetectorConfig(), device, half)
        if backend == DetectorBackend.ONNX and device.type != "cpu":
            raise ValueError(f"detector_backend: onnx runs on the cpu, got device {device}; use torch on a GPU")
        from findbox.env import ensure_offline
        ensure_offline()  # ultralytics reads the offline variables at import
        from ultralytics import YOLO

        try:
            yolo = YOLO(str(path), task="detect")
        except Exception as exc:  # ultralytics raises many types for a bad file
            raise ValueError(f"detector: could not load {str(path)!r} as an ultralytics checkpoint: {exc}") from exc
        if backend == DetectorBackend.ONNX:
            if getattr(yolo, "task", "detect") != "detect":  # checked here too: the export would hide the task
                raise ValueError(f"detector: expected an ultralytics detection model, got task {yolo.task!r}")
            yolo = YOLO(str(onnx_export(path)), task="detect")
        return cls(yolo, config or DetectorConfig(), device, half, bf16)

    @property
    def info(self) -> dict:
        names = getattr(self.yolo, "names", {}) or {}
        onnx = str(getattr(self.yolo, "model", "")).endswith(".onnx")
        info = {"kind": "ultralytics", "backend": "onnx" if onnx else "torch", "classes": len(names),
                "ckpt": str(getattr(self.yolo, "ckpt_path", "") or getattr(self.yolo, "model", "")),
                "precision": "bf16" if self.bf16 else ("fp16" if self.half else "fp32")}
        if self.backend_choice is not None:
            info["backend_choice"] = self.backend_choice.as_dict()
        return info

    def detect(self, images_rgb: list[np.ndarray]) -> list[Candidates]:
        """Proposals for each image, in batched predict calls.

        images_rgb: list of (H, W, 3) uint8 RGB arrays, any sizes.
        Returns one Candidates per image, xyxy in that image's pixels, clipped to it,
        sorted by descending det_score. With `config.slices` other than 1x1, tiles
        and the full image are predicted and merged (`findbox.detect.sliced`).
        """
        if not images_rgb:
            return []
        if tuple(self.config.slices) == (1, 1):
            found = self._predict(images_rgb)
        else:
            found = self._predict_sliced(images_rgb)
        return [cands.sorted().clip((im.shape[1], im.shape[0])) for im, cands in zip(images_rgb, found)]

    def _predict(self, images_rgb: list[np.ndarray]) -> list[Candidates]:
        """Candidates per image as ultralytics returns them: in its pixels, not clipped, not re-sorted.

        Images of one shape run together, PREDICT_BATCH at a time: ultralytics letterboxes a
        mixed-shape batch to a square, so an image's boxes would otherwise depend on what
        else the request carried (and a content-keyed cache would be wrong).
        """
        c = self.config
        out: list[Candidates] = [None] * len(images_rgb)  # type: ignore[list-item]
        by_shape: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for i, im in enumerate(images_rgb):
            by_shape[im.shape].append(i)
        for indices in by_shape.values():
            for start in range(0, len(indices), PREDICT_BATCH):
                chunk = indices[start : start + PREDICT_BATCH]
                # ultralytics reads numpy arrays as BGR (OpenCV order)
                sources = [np.ascontiguousarray(images_rgb[i][..., ::-1]) for i in chunk]
                threads = torch.get_num_threads()
                autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)
                try:
                    with autocast:  # a no-op unless bf16; the boxes come out fp32 either way
                        results = self.yolo.predict(
                            sources, imgsz=c.imgsz, conf=c.conf, iou=c.iou, max_det=c.max_det, augment=c.augment,
                            agnostic_nms=True, half=self.half, device=str(self.device), batch=len(sources),
                            verbose=False,
                        )
                finally:
                    # ultralytics' select_device sets torch to cpu_count - 1 threads for the whole process:
                    # on 2 cores that ran the scorer single-threaded, at half speed
                    torch.set_num_threads(threads)
                for i, result in zip(chunk, results):
                    out[i] = Candidates.from_ultralytics(result)
        return out

    def _predict_sliced(self, images_rgb: list[np.ndarray]) -> list[Candidates]:
        """Full images plus their tiles, batched (tiles of same-size images share a shape),
        tile boxes moved into image pixels, all merged by class-agnostic NMS at `iou`."""
        c = self.config
        windows = [tile_windows((im.shape[1], im.shape[0]), tuple(c.slices), c.slice_overlap) for im in images_rgb]
        tiles = [im[y1:y2, x1:x2] for im, wins in zip(images_rgb, windows) for x1, y1, x2, y2 in wins]
        found = self._predict(list(images_rgb) + tiles)
        tile_found = iter(found[len(images_rgb) :])
        return [
            merge_tiles(found[k], [next(tile_found) for _ in wins], wins, c.iou, c.max_det)
            for k, wins in enumerate(windows)
        ]


def decode_in_fp32(yolo) -> None:
    """Run the detection head's box decoding (the DFL expectation, anchors, strides) in fp32 under a bf16
    autocast: in bf16 a coordinate near 1000 px is rounded to a multiple of 4-8 px (8-bit mantissa), which
    moved the demo detector's boxes by up to 14 px at imgsz 1280; decoded in fp32 they move by the
    bf16 convolutions' error only. The convolutions stay bf16 (the speed)."""
    head = yolo.model.model[-1]
    if not callable(getattr(head, "_inference", None)):
        raise ValueError(f"detector_precision: bf16 needs an ultralytics Detect head with _inference, got "
                         f"{type(head).__name__}; use --detector-precision fp32")
    inference = head._inference

    def fp32(value):
        return [fp32(v) for v in value] if isinstance(value, list) else (
            value.float() if isinstance(value, torch.Tensor) else value)

    def inference_fp32(x):
        with torch.autocast(x["boxes"].device.type, enabled=False):
            return inference({k: fp32(v) for k, v in x.items()})

    head._inference = inference_fp32


def onnx_export(pt_path: Path) -> Path:
    """The ultralytics ONNX export of a .pt (dynamic batch and image size), made once and cached.

    Cached under findbox's cache folder by a hash of the .pt's bytes, so a retrained file
    gets a new export. Dynamic shapes matter: a static square export letterboxes a 1520x870
    frame to 1280x1280 and changes boxes (docs/BENCHMARKS.md).
    """
    import tempfile

    from findbox.env import cache_dir, require

    require("onnxruntime", "onnx")
    require("onnx", "onnx")
    target = cache_dir() / "onnx" / f"detector_{pt_digest(pt_path)}.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        export_onnx_file(pt_path, Path(tmp)).replace(target)  # atomic: a concurrent loader sees all or nothing
    return target


def export_onnx_file(pt_path: Path, folder: Path, imgsz: int | tuple[int, int] | None = None,
                     dynamic: bool = True) -> Path:
    """ultralytics' ONNX export of a .pt, written in `folder` (a copy of the .pt goes there first: ultralytics
    writes the export beside the file it is given); the .onnx path.

    No simplifier: onnxslim is an optional download ultralytics would otherwise ask for. torch's thread
    count is restored afterwards: the export's device selection sets cpu_count - 1 for the whole process,
    as predict's does (a benchmark that skipped this timed torch on one of 2 cores). ValueError naming the
    file when the export fails.
    """
    import shutil

    from ultralytics import YOLO

    copy = Path(folder) / Path(pt_path).name
    shutil.copyfile(pt_path, copy)
    threads = torch.get_num_threads()
    try:
        return Path(YOLO(str(copy), task="detect").export(
            format="onnx", dynamic=dynamic, simplify=False, device="cpu", verbose=False,
            **({} if imgsz is None else {"imgsz": imgsz})))
    except Exception as exc:  # ultralytics raises many types; name the file and the cause
        raise ValueError(f"detector: ONNX export of {str(pt_path)!r} failed: {exc}") from exc
    finally:
        torch.set_num_threads(threads)


def pt_digest(pt_path: Path) -> str:
    """The key of a checkpoint's cached export and backend record: a hash of its bytes."""
    import hashlib

    return hashlib.blake2b(Path(pt_path).read_bytes(), digest_size=12).hexdigest()
