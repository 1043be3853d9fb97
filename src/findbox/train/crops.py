"""`findbox crops`: cut every ground-truth box of a vlm.jsonl into a crop for scorer training.

Crops go through `findbox.crops.prepare_crops`, the function the server runs on detector
boxes (exact box rounded outwards, optional Real-ESRGAN), so the scorer trains on what it
will see. The split is the detector's (`findbox.data.vlm.split_index`: the last val_fraction
of the jsonl's lines are val), by source image, so no image feeds both sides.

Output:
    OUT/crops/{train,val}/LLLLLL_KK.png   line LLLLLL of the jsonl, annotation KK, lossless
    OUT/manifest.jsonl                    one row a crop, see `CropRow`
    OUT/crops.json                        what made the crops: source, upscaler, scale, counts, skips

A missing or undecodable image and a degenerate box are skipped, warned about and counted;
a malformed jsonl line raises ValueError naming file and line.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from findbox.cli import add_options, config_from_args
from findbox.config import Precision, _check_range, _enum, option
from findbox.data.vlm import MIN_SIDE_PX, SPLIT_RULE, VAL_FRACTION, read_vlm_jsonl, split_index

LOG = logging.getLogger("findbox.crops")

MANIFEST = "manifest.jsonl"
SPLITS = ("train", "val")
MAX_LOGGED_WARNINGS = 20  # the rest are counted in the summary and listed in crops.json


@dataclass(frozen=True)
class CropRow:
    """One crop of the manifest.

    crop: PNG path relative to the crops folder (POSIX separators).
    caption: the annotation's caption, as written in the jsonl.
    image: the source image, relative to images/ beside the jsonl.
    line: 1-based line of the source image in the jsonl.
    box_ltwh: the ground-truth box in source-image pixels, as annotated.
    crop_wh: the PNG's (width, height): the clipped box rounded outwards, times the upscaler's scale.
    split: "train" or "val".
    """

    crop: str
    caption: str
    image: str
    line: int
    box_ltwh: tuple[float, float, float, float]
    crop_wh: tuple[int, int]
    split: str


# --- reading and writing the manifest -----------------------------------------------------------


def read_manifest(crops_dir: str | Path, check_files: bool = True) -> list[CropRow]:
    """CropRows of `crops_dir/manifest.jsonl`, in file order.

    Raises ValueError naming the folder or the row: no manifest, no rows, a malformed row,
    or (with check_files) rows whose PNG is missing, listed by manifest line.
    """
    crops_dir = Path(crops_dir)
    path = crops_dir / MANIFEST
    if not path.is_file():
        raise ValueError(f"crops: expected a folder made by `findbox crops` with {MANIFEST}, got {str(crops_dir)!r}")
    rows: list[CropRow] = []
    with open(path, encoding="utf-8") as f:
        for line_no, text in enumerate(f, start=1):
            if text.strip():
                rows.append(_parse_row(text, f"{path}:{line_no}"))
    if not rows:
        raise ValueError(f"crops: {path} has no rows; expected one crop a line (is the data set empty?)")
    if check_files:
        missing = [(i + 1, r.crop) for i, r in enumerate(rows) if not (crops_dir / r.crop).is_file()]
        if missing:
            shown = ", ".join(f"line {n}: {c}" for n, c in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise ValueError(f"crops: {len(missing)} manifest row(s) name a missing file ({shown}{more}) in {crops_dir}")
    return rows


def _parse_row(text: str, where: str) -> CropRow:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: expected a JSON object, got invalid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key, kind in (("crop", str), ("caption", str), ("image", str), ("split", str)):
        if not isinstance(obj.get(key), kind):
            raise ValueError(f"{where}: {key}: expected a string, got {obj.get(key)!r}")
    if obj["split"] not in SPLITS:
        raise ValueError(f"{where}: split: expected one of {', '.join(SPLITS)}, got {obj['split']!r}")
    if not obj["caption"].strip():
        raise ValueError(f"{where}: caption: expected a non-empty caption, got {obj['caption']!r}")
    return CropRow(
        crop=obj["crop"],
        caption=obj["caption"],
        image=obj["image"],
        line=int(obj.get("line", 0)),
        box_ltwh=tuple(float(v) for v in obj.get("box_ltwh", (0, 0, 0, 0))),  # type: ignore[arg-type]
        crop_wh=tuple(int(v) for v in obj.get("crop_wh", (0, 0))),  # type: ignore[arg-type]
        split=obj["split"],
    )


# --- cutting ------------------------------------------------------------------------------------


@dataclass
class CropsReport:
    images: dict[str, int]  # source images cut, per split
    crops: dict[str, int]  # crops written, per split
    skipped_images: list[dict]  # {"image", "line", "reason"}
    skipped_boxes: list[dict]  # {"image", "line", "annotation", "reason"}

    def summary(self) -> str:
        return (
            f"{self.crops['train']} train + {self.crops['val']} val crops from "
            f"{self.images['train']} + {self.images['val']} images; "
            f"{len(self.skipped_images)} images and {len(self.skipped_boxes)} boxes skipped"
        )


def make_crops(
    jsonl_path: str | Path,
    out_dir: str | Path,
    upscaler=None,
    val_fraction: float = VAL_FRACTION,
    progress: bool = True,
    scorer_hw: tuple[int, int] | None = None,
) -> CropsReport:
    """Cut (and upscale, when `upscaler` is a `findbox.upscaler.Upscaler`) every box of the jsonl.

    scorer_hw: the scorer's input (height, width): with an upscaler, crop sides are capped at it before
        upscaling, exactly as the server does (`prepare_crops`); None = uncapped.
    Writes OUT/crops/, OUT/manifest.jsonl and OUT/crops.json (a previous OUT/crops/ is replaced).
    Raises ValueError for a malformed jsonl and when no crop could be made.
    """
    from tqdm import tqdm

    from findbox.boxes import clip_xyxy, ltwh_to_xyxy
    from findbox.crops import prepare_crops
    from findbox.images import load_image_file

    jsonl_path = Path(jsonl_path)
    out_dir = Path(out_dir)
    if not jsonl_path.is_file():
        raise ValueError(f"data: expected a vlm.jsonl file, got {str(jsonl_path)!r} (not a file)")
    records = read_vlm_jsonl(jsonl_path, captions_required=True)  # crops are for the scorer: every box needs its caption
    n_train = split_index(len(records), val_fraction)
    images_dir = jsonl_path.parent / "images"

    if (out_dir / "crops").exists():
        shutil.rmtree(out_dir / "crops")
    for split in SPLITS:
        (out_dir / "crops" / split).mkdir(parents=True, exist_ok=True)
    report = CropsReport({s: 0 for s in SPLITS}, {s: 0 for s in SPLITS}, [], [])
    warned = 0

    def warn(message: str) -> None:
        nonlocal warned
        warned += 1
        if warned <= MAX_LOGGED_WARNINGS:
            LOG.warning(message)

    scale = upscaler.scale if upscaler is not None else 1
    manifest_tmp = out_dir / (MANIFEST + ".tmp")
    with open(manifest_tmp, "w", encoding="utf-8") as manifest:
        for index, rec in enumerate(tqdm(records, desc="crops", unit="image", disable=not progress)):
            split = "train" if index < n_train else "val"
            where = f"{jsonl_path}:{rec.line}"
            source = images_dir / rec.image
            try:
                if not source.is_file():
                    raise ValueError(f"missing image file {source}")
                image = load_image_file(source)
                _check_orientation(source)
            except (ValueError, OSError) as exc:
                report.skipped_images.append({"image": rec.image, "line": rec.line, "reason": str(exc)})
                warn(f"{where}: skipped image {rec.image!r}: {exc}")
                continue
            height, width = image.shape[:2]
            xyxy = ltwh_to_xyxy(rec.ltwh.astype(np.float32))
            inside = clip_xyxy(xyxy, (width, height))
            keep = ((inside[:, 2] - inside[:, 0]) >= MIN_SIDE_PX) & ((inside[:, 3] - inside[:, 1]) >= MIN_SIDE_PX)
            for k in np.flatnonzero(~keep):
                reason = f"degenerate box {rec.ltwh[k].tolist()} (side under {MIN_SIDE_PX:g} px inside {width}x{height})"
                report.skipped_boxes.append({"image": rec.image, "line": rec.line, "annotation": int(k), "reason": reason})
                warn(f"{where}: annotations[{k}]: skipped {reason}")
            kept = np.flatnonzero(keep)
            if len(kept) == 0:
                continue
            crops = prepare_crops(image, xyxy[kept], upscaler, scorer_hw)
            for k, crop in zip(kept, crops):
                name = f"crops/{split}/{rec.line:06d}_{k:02d}.png"
                _write_png(out_dir / name, crop)
                row = CropRow(
                    crop=name,
                    caption=rec.annotations[k].caption,
                    image=rec.image,
                    line=rec.line,
                    box_ltwh=rec.annotations[k].bbox_ltwh,
                    crop_wh=(int(crop.shape[1]), int(crop.shape[0])),
                    split=split,
                )
                manifest.write(json.dumps(asdict(row)) + "\n")
                report.crops[split] += 1
            report.images[split] += 1
    manifest_tmp.replace(out_dir / MANIFEST)  # a manifest exists only once every crop it names does
    if warned > MAX_LOGGED_WARNINGS:
        LOG.warning(f"... and {warned - MAX_LOGGED_WARNINGS} more warnings (all listed in {out_dir / 'crops.json'})")

    info = {
        "source": str(jsonl_path.resolve()),
        "val_fraction": val_fraction,
        "split_rule": SPLIT_RULE,
        "upscaler": upscaler.info if upscaler is not None else None,
        "scale": scale,
        "scorer_hw": list(scorer_hw) if scorer_hw is not None else None,
        "images": report.images,
        "crops": report.crops,
        "skipped_images": report.skipped_images,
        "skipped_boxes": report.skipped_boxes,
    }
    (out_dir / "crops.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if sum(report.crops.values()) == 0:
        raise ValueError(
            f"data: no crop could be made from {jsonl_path} ({len(report.skipped_images)} of {len(records)} "
            f"images skipped); expected images in {images_dir}"
        )
    return report


def _check_orientation(path: Path) -> None:
    """Raise ValueError for an EXIF-rotated image: the server decodes it upright, but whether its
    boxes were drawn in the upright or the stored frame is unknown (the detector's conversion skips them too)."""
    from findbox.images import _pil_open

    with _pil_open(path) as im:
        orientation = im.getexif().get(0x0112, 1)
    if orientation not in (None, 1):
        raise ValueError(f"EXIF orientation {orientation}: the frame the boxes were drawn in is unknown")


def _write_png(path: Path, crop: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(crop).save(path, format="PNG", compress_level=1)  # lossless; level 1 is ~5x faster than 6


# --- command line -------------------------------------------------------------------------------


@dataclass
class CropsConfig:
    """What `findbox crops` cuts, and how it upscales."""

    data: str = option(help="vlm.jsonl, with its images in images/ beside it")
    out: str = option(help="output folder (crops/, manifest.jsonl, crops.json)")
    # None: crops as cut; give the server's upscaler so the scorer trains on what it will see
    upscaler: str | None = option(None, help="Real-ESRGAN .pth: upscale crops as the server will (default: none)")
    val_fraction: float = option(VAL_FRACTION, help="last fraction of the jsonl's lines that are val "
                                                    "(the original's split)")
    # the server caps crop sides at the scorer input before upscaling; training crops must match
    scorer_size: int | None = option(None, help="the scorer's input side in pixels (e.g. 384): with --upscaler, "
                                                "crop sides are capped at it before upscaling, as the server does")
    device: str = option("auto", help="upscaler device: auto, cpu, cuda or cuda:N")
    # fp16 on GPU as the server, fp32 on CPU
    precision: Precision = option(Precision.AUTO, choices=("auto", "fp32", "fp16", "bf16"), help="upscaler precision")
    progress: bool = option(True, help="no progress bar")

    def __post_init__(self) -> None:
        self.precision = _enum("precision", Precision, self.precision)
        if self.scorer_size is not None:
            _check_range("scorer_size", self.scorer_size, 1, 8192)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, CropsConfig)


def main(args: argparse.Namespace) -> int:
    from findbox.device import resolve_device, resolve_dtype
    from findbox.upscaler import Upscaler

    config = config_from_args(args, CropsConfig)
    upscaler = None
    if config.upscaler:
        device = resolve_device(config.device)
        upscaler = Upscaler.from_file(config.upscaler, device, resolve_dtype(config.precision, device))
    scorer_hw = (config.scorer_size, config.scorer_size) if config.scorer_size else None
    report = make_crops(config.data, config.out, upscaler, config.val_fraction, progress=config.progress,
                        scorer_hw=scorer_hw)
    print(f"findbox crops: {report.summary()} -> {Path(config.out) / MANIFEST}")
    return 0
