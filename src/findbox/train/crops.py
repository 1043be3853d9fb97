"""`findbox crops`: cut every ground-truth box of a vlm.jsonl into a crop for scorer training,
and, with `--proposals DETECTOR.pt`, the detector's own boxes on the train images, labelled by IoU.

Crops go through `findbox.crops.prepare_crops`, the function the server runs on detector
boxes (exact box rounded outwards, optional Real-ESRGAN, each side capped at the scorer's
input before upscaling), so the scorer trains on what it will see. The split is the detector's (`findbox.data.vlm.split_index`: the last val_fraction
of the jsonl's lines are val), by source image, so no image feeds both sides.

Output:
    OUT/crops/{train,val}/LLLLLL_KK.png   line LLLLLL of the jsonl, annotation KK, lossless
    OUT/crops/train/LLLLLL_pKK.png        proposal KK of that line's image (with --proposals)
    OUT/manifest.jsonl                    one row a crop, see `CropRow`
    OUT/crops.json                        what made the crops: source, upscaler, scale, counts, skips

Images are decoded upright (`findbox.images.load_image_file`, as `findbox eval` and the server:
an EXIF-rotated phone photo is turned as a browser shows it), the frame the boxes are in.
A missing or undecodable image and a degenerate box are skipped, warned about and counted;
a malformed jsonl line raises ValueError naming file and line.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from findbox.cli import add_options, config_from_args
from findbox.config import DetectorConfig, Precision, _check_range, _enum, option
from findbox.data.vlm import MIN_SIDE_PX, SPLIT_RULE, VAL_FRACTION, json_object, read_vlm_jsonl, split_index

LOG = logging.getLogger("findbox.crops")

MANIFEST = "manifest.jsonl"
SPLITS = ("train", "val")
KINDS = ("truth", "proposal")
MAX_LOGGED_WARNINGS = 20  # the rest are counted in the summary and listed in crops.json


@dataclass(frozen=True)
class CropRow:
    """One crop of the manifest.

    crop: PNG path relative to the crops folder (POSIX separators).
    caption: the annotation's caption, as written in the jsonl; for a proposal, the caption of
        the box it hits (IoU rounds to 1, the task's rule), None when it hits none.
    image: the source image, relative to images/ beside the jsonl.
    line: 1-based line of the source image in the jsonl.
    box_ltwh: the cut box in source-image pixels: the annotation, or the detector's proposal.
    crop_wh: the PNG's (width, height): the clipped box rounded outwards, times the upscaler's scale.
    split: "train" or "val".
    kind: "truth" (an annotation) or "proposal" (a detector box).
    iou: a proposal's best IoU with the image's annotations; None for truth.
    """

    crop: str
    caption: str | None
    image: str
    line: int
    box_ltwh: tuple[float, float, float, float]
    crop_wh: tuple[int, int]
    split: str
    kind: str = "truth"
    iou: float | None = None


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
    obj = json_object(text, where)
    for key, kind in (("crop", str), ("image", str), ("split", str)):
        if not isinstance(obj.get(key), kind):
            raise ValueError(f"{where}: {key}: expected a string, got {obj.get(key)!r}")
    if obj["split"] not in SPLITS:
        raise ValueError(f"{where}: split: expected one of {', '.join(SPLITS)}, got {obj['split']!r}")
    row_kind = obj.get("kind", "truth")
    if row_kind not in KINDS:
        raise ValueError(f"{where}: kind: expected one of {', '.join(KINDS)}, got {row_kind!r}")
    # only a proposal may name no object; an annotation always has its caption
    caption = obj.get("caption")
    if not (caption is None and row_kind == "proposal") and not (isinstance(caption, str) and caption.strip()):
        raise ValueError(f"{where}: caption: expected a non-empty caption, got {caption!r}")
    iou = obj.get("iou")
    return CropRow(
        crop=obj["crop"],
        caption=obj["caption"],
        image=obj["image"],
        line=int(obj.get("line", 0)),
        box_ltwh=tuple(float(v) for v in obj.get("box_ltwh", (0, 0, 0, 0))),  # type: ignore[arg-type]
        crop_wh=tuple(int(v) for v in obj.get("crop_wh", (0, 0))),  # type: ignore[arg-type]
        split=obj["split"],
        kind=row_kind,
        iou=None if iou is None else float(iou),
    )


# --- proposals: the detector's boxes, labelled by the task's rule -------------------------------


def label_proposals(proposal_xyxy: np.ndarray, truth_xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which annotation each proposal hits: (P, 4) and (T, 4) xyxy in one image's pixels ->
    (truth index (P,) int64, -1 for none; best IoU (P,) float64).

    A hit is the task's `round(iou) == 1` (`findbox.eval.metric.is_hit`: half to even, so
    exactly 0.5 is a miss): a partial or loose box of the named object is a negative, as it
    would be scored wrong. Each proposal is labelled with its best-IoU annotation.
    """
    from findbox.boxes import box_iou
    from findbox.eval.metric import is_hit

    iou = box_iou(proposal_xyxy, truth_xyxy)
    if iou.shape[1] == 0:
        return np.full(len(iou), -1, dtype=np.int64), np.zeros(len(iou))
    best = iou.argmax(axis=1)
    best_iou = iou[np.arange(len(iou)), best]
    hit = np.asarray([is_hit(float(v)) for v in best_iou], dtype=bool)
    return np.where(hit, best, -1).astype(np.int64), best_iou


# --- cutting ------------------------------------------------------------------------------------


@dataclass
class CropsReport:
    images: dict[str, int]  # source images cut, per split
    crops: dict[str, int]  # crops written, per split
    skipped_images: list[dict]  # {"image", "line", "reason"}
    skipped_boxes: list[dict]  # {"image", "line", "annotation", "reason"}
    proposals: dict[str, int] = field(default_factory=lambda: {"crops": 0, "positive": 0})

    def summary(self) -> str:
        extra = (f" + {self.proposals['crops']} proposal crops ({self.proposals['positive']} hit a caption's box)"
                 if self.proposals["crops"] else "")
        return (
            f"{self.crops['train']} train + {self.crops['val']} val crops{extra} from "
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
    detector=None,
) -> CropsReport:
    """Cut (and upscale, when `upscaler` is a `findbox.upscaler.Upscaler`) every box of the jsonl.

    scorer_hw: the scorer's input (height, width): with an upscaler, crop sides are capped at it before
        upscaling, exactly as the server does (`prepare_crops`). Required with an upscaler, since the
        server always caps; without one, crops are the exact boxes and it is only recorded.
    detector: a `findbox.detect.ultralytics.Detector`: its proposals on each train image are cut too
        (same `prepare_crops`), labelled by `label_proposals`. Train only: the validation figure
        stays the decision among ground-truth crops.
    Writes OUT/crops/, OUT/manifest.jsonl and OUT/crops.json (a previous OUT/crops/ is replaced).
    Raises ValueError for a malformed jsonl and when no crop could be made.
    """
    from findbox.logs import progress as progress_bar

    from findbox.boxes import clip_xyxy, ltwh_to_xyxy
    from findbox.crops import prepare_crops
    from findbox.images import load_image_file

    jsonl_path = Path(jsonl_path)
    out_dir = Path(out_dir)
    if upscaler is not None and scorer_hw is None:
        raise ValueError("scorer_hw: expected the scorer's input (height, width) with an upscaler (the server caps "
                         "each crop side at it before upscaling), got None")
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
    proposals = report.proposals
    warned = 0

    def warn(message: str) -> None:
        nonlocal warned
        warned += 1
        if warned <= MAX_LOGGED_WARNINGS:
            LOG.warning(message)

    scale = upscaler.scale if upscaler is not None else 1
    manifest_tmp = out_dir / (MANIFEST + ".tmp")
    with open(manifest_tmp, "w", encoding="utf-8") as manifest:
        for index, rec in enumerate(progress_bar(records, desc="crops", unit="image", disable=not progress)):
            split = "train" if index < n_train else "val"
            where = f"{jsonl_path}:{rec.line}"
            source = images_dir / rec.image
            try:
                if not source.is_file():
                    raise ValueError(f"missing image file {source}")
                image = load_image_file(source)  # upright, as eval and the server decode it
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
            if detector is not None and split == "train":
                for row in _proposal_rows(detector, image, xyxy, rec, upscaler, scorer_hw, out_dir, split):
                    manifest.write(json.dumps(asdict(row)) + "\n")
                    proposals["crops"] += 1
                    proposals["positive"] += row.caption is not None
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
        "proposals": ({"detector": detector.info, "settings": asdict(detector.config), **proposals,
                       "rule": "positive for a caption when round(IoU) == 1 with its box (half-even: 0.5 misses)"}
                      if detector is not None else None),
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


def _proposal_rows(detector, image: np.ndarray, truth_xyxy: np.ndarray, rec, upscaler, scorer_hw,
                   out_dir: Path, split: str) -> list[CropRow]:
    """Cut and write the detector's proposals of one image; their manifest rows."""
    from findbox.boxes import xyxy_to_ltwh
    from findbox.crops import prepare_crops

    found = detector.detect([image])[0]
    if len(found.xyxy) == 0:
        return []
    hit, best_iou = label_proposals(found.xyxy, truth_xyxy)
    rows = []
    for k, crop in enumerate(prepare_crops(image, found.xyxy, upscaler, scorer_hw)):
        name = f"crops/{split}/{rec.line:06d}_p{k:02d}.png"
        _write_png(out_dir / name, crop)
        rows.append(CropRow(
            crop=name,
            caption=rec.annotations[hit[k]].caption if hit[k] >= 0 else None,
            image=rec.image,
            line=rec.line,
            box_ltwh=tuple(round(float(v), 2) for v in xyxy_to_ltwh(found.xyxy[k : k + 1])[0]),
            crop_wh=(int(crop.shape[1]), int(crop.shape[0])),
            split=split,
            kind="proposal",
            iou=round(float(best_iou[k]), 4),
        ))
    return rows


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
    scorer: str | None = option(None, metavar="SPEC", help="the scorer the crops are for (its --init folder, or "
                                "any --scorer spec): with --upscaler, crop sides are capped at its input size "
                                "before upscaling, as the server does")
    scorer_size: int | None = option(None, help="the scorer's input side in pixels (e.g. 384), instead of --scorer")
    # what the server will score: the scorer learns that a partial or loose box is not the object
    proposals: str | None = option(None, metavar="DETECTOR.pt",
                                   help="also cut this detector's boxes on the train images, positive for a caption "
                                        "only when round(IoU) == 1 with its box (default: none)")
    detection: DetectorConfig = field(default_factory=DetectorConfig)  # the proposals' settings, as the server's
    device: str = option("auto", help="upscaler and detector device: auto, cpu, cuda or cuda:N")
    # fp16 on GPU as the server, fp32 on CPU
    precision: Precision = option(Precision.AUTO, choices=("auto", "fp32", "fp16", "bf16"), help="upscaler precision")
    progress: bool = option(True, help="no progress bar")

    def __post_init__(self) -> None:
        self.precision = _enum("precision", Precision, self.precision)
        if self.scorer_size is not None:
            _check_range("scorer_size", self.scorer_size, 1, 8192)
        if self.scorer is not None and self.scorer_size is not None:
            raise ValueError(f"scorer_size: expected --scorer or --scorer-size, not both, got {self.scorer_size} "
                             f"beside --scorer {self.scorer}")
        if self.upscaler and self.scorer is None and self.scorer_size is None:
            # an uncapped crop would differ from the server's, which always caps at its scorer's input
            raise ValueError("scorer: expected --scorer SPEC (the scorer the crops are for) or --scorer-size N with "
                             "--upscaler, so crops are capped before upscaling as the server caps them; got neither")


def scorer_input_hw(spec: str) -> tuple[int, int]:
    """The (height, width) a scorer spec's crops are resized to, loaded as the server loads it (on the CPU)."""
    from findbox.score import load_scorer

    return tuple(load_scorer(spec).preprocess.size_hw)  # the model is dropped on return


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, CropsConfig)


def main(args: argparse.Namespace) -> int:
    from findbox.device import resolve_device, resolve_dtype
    from findbox.upscaler import Upscaler

    config = config_from_args(args, CropsConfig)
    upscaler = detector = None
    if config.upscaler or config.proposals:
        device = resolve_device(config.device)
    if config.upscaler:
        upscaler = Upscaler.from_file(config.upscaler, device, resolve_dtype(config.precision, device))
    if config.proposals:
        from findbox.detect.ultralytics import Detector

        detector = Detector.from_file(config.proposals, config.detection, device)
    scorer_hw = (config.scorer_size, config.scorer_size) if config.scorer_size else None
    if config.scorer:
        scorer_hw = scorer_input_hw(config.scorer)
    report = make_crops(config.data, config.out, upscaler, config.val_fraction, progress=config.progress,
                        scorer_hw=scorer_hw, detector=detector)
    print(f"findbox crops: {report.summary()} -> {Path(config.out) / MANIFEST}")
    return 0
