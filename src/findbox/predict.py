"""`findbox predict IMAGE... --caption TEXT`: ground captions in image files, no server.

    findbox predict scene.jpg --caption "grey missile" --caption "yellow drone"
    findbox predict frames/ 'more/*.png' --captions captions.txt --save runs/drawn

Loads the models once (the same model options and --config TOML as `findbox serve`;
none = the bundled demo), asks every caption of an image in one `Pipeline.ground` call
(the image is detected and its crops embedded once) and prints one JSON line per
(image, caption) on stdout:

    {"image": "scene.jpg", "caption": "grey missile", "box_ltwh": [l, t, w, h], "fallback": false,
     "candidates": [{"box_ltwh": [...], "det_conf": 0.91, "score": 7.3}, ...], "chosen": 0}

Boxes are in pixels of the original image, rounded to 0.01 px; `score` is the scorer's
logit for the caption, `det_conf` the detector's confidence; `chosen` indexes
`candidates` (-1 when nothing was detected and `box_ltwh` is the fallback box).
An unreadable image is named on stderr, the others are still answered, and the exit
status is then 1. `--format coco` writes one COCO results list instead (every candidate as
{image_id, category_id, bbox, score}; `findbox.data.coco.coco_results`).
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from findbox.cli import add_model_options, serve_config_from_args

# a findbox synth scene shipped for the README's quick start: images/ and its vlm.jsonl (the true boxes)
SAMPLE_DIR = Path(__file__).parent / "assets" / "sample"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
PROGRESS_MIN_IMAGES = 5  # below this a progress bar is only noise between the JSON lines
# RGB per caption, in caption order (the page's palette order: red, blue, green, orange, purple, teal)
PALETTE = [(230, 40, 40), (30, 110, 230), (20, 170, 70), (245, 140, 0), (150, 60, 200), (0, 160, 170)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files, folders (their .jpg/.jpeg/.png/.bmp/.webp files, not recursive) or "
                             "globs such as 'frames/*.jpg' (quoted; ** recurses)")
    parser.add_argument("--caption", action="append", default=[], metavar="TEXT",
                        help="a caption to find in every image; repeat for several")
    parser.add_argument("--captions", metavar="FILE", help="a text file of captions, one per line (blank lines "
                        "skipped); adds to --caption")
    parser.add_argument("--save", metavar="DIR", help="also write each image as DIR/NAME.png with the chosen box "
                        "of every caption drawn")
    parser.add_argument("--engine", choices=("inprocess", "ray"), default="inprocess",
                        help="inprocess (default), or ray: a pool of pipeline actors on Ray Data, for many "
                             "images (the [ray] extra; same lines)")
    parser.add_argument("--out", metavar="FILE", help="append the lines to FILE instead of stdout; with --engine "
                        "ray a rerun skips the images FILE already holds")
    parser.add_argument("--format", choices=("jsonl", "coco"), default="jsonl",
                        help="jsonl: the JSON lines above (default); coco: one COCO results JSON list, every "
                             "candidate as {image_id, category_id, bbox, score = the caption's scorer logit}, written "
                             "when all images are done (--out FILE is then replaced, not appended to)")
    parser.add_argument("--coco-instances", metavar="INSTANCES_JSON",
                        help="--format coco: take image ids (by file_name) and category ids (by name = caption) from "
                             "this COCO instances file; without it an image's id is its file stem (as an int where "
                             "it is a number) and captions are categories 1, 2, ... in order")
    parser.add_argument("--actors", type=int, default=1, metavar="N",
                        help="--engine ray: pipeline actors (each loads the models once; default 1)")
    parser.add_argument("--ray-address", default="", metavar="ADDR",
                        help="--engine ray: the Ray cluster to join (auto, HOST:6379); default a local one")
    add_model_options(parser)


def read_captions(given: Sequence[str], captions_file: str | None) -> list[str]:
    """--caption values, then the lines of --captions FILE; duplicates kept once, in order."""
    captions = list(given)
    if captions_file is not None:
        text = Path(captions_file).read_text(encoding="utf-8")  # FileNotFoundError names the file
        captions += [line.strip() for line in text.splitlines() if line.strip()]
    if not captions:
        raise ValueError("captions: expected at least one --caption TEXT or a non-empty --captions FILE, got none")
    return list(dict.fromkeys(captions))


def expand_image_paths(inputs: Sequence[str]) -> tuple[list[Path], list[str]]:
    """IMAGE arguments -> (image paths in order, without repeats; inputs that named no image).

    A folder gives its image files (by suffix, sorted); a path that does not exist is
    read as a glob. A named file is taken whatever its suffix: reading it decides.
    """
    paths: list[Path] = []
    unmatched: list[str] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.exists():
            found = [path]
        else:
            found = [Path(p) for p in sorted(glob.glob(text, recursive=True))
                     if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES]
        if not found:
            unmatched.append(text)
        paths += found
    return list(dict.fromkeys(paths)), unmatched


def _rounded(values: np.ndarray, digits: int) -> list[float | None]:
    # JSON has no NaN: a value the scorer did not produce is null
    return [round(float(v), digits) if math.isfinite(float(v)) else None for v in np.asarray(values).reshape(-1)]


def grounding_record(image: str, caption: str, grounding) -> dict:
    """One output line: a `findbox.pipeline.Grounding` as plain JSON types."""
    cands = grounding.candidates
    return {
        "image": image,
        "caption": caption,
        "box_ltwh": _rounded(grounding.ltwh, 2),
        "fallback": bool(grounding.fallback),
        "candidates": [
            {"box_ltwh": _rounded(ltwh, 2), "det_conf": _rounded(det, 4)[0], "score": _rounded(score, 4)[0]}
            for ltwh, det, score in zip(cands.ltwh, cands.det_score, cands.match_score)
        ],
        "chosen": int(grounding.chosen),
    }


def ground_image(pipeline, image_rgb: np.ndarray, captions: Sequence[str]) -> list:
    """Every caption of one image in one `Pipeline.ground` call (detected and embedded once): what
    each engine of `findbox predict` does per image, so that their answers are the same."""
    return pipeline.ground([image_rgb], [(0, caption) for caption in captions])


def _font(size: int):
    """DejaVuSans (`findbox.env.dejavu_ttf`) when installed, else PIL's own font."""
    from PIL import ImageFont

    from findbox.env import dejavu_ttf

    ttf = dejavu_ttf()
    return ImageFont.truetype(str(ttf), size) if ttf is not None else ImageFont.load_default()


def draw_groundings(image_rgb: np.ndarray, captions: Sequence[str], groundings: Sequence):
    """(H, W, 3) uint8 RGB -> PIL image with each caption's chosen box and the caption drawn.

    Box i and its label take PALETTE[i]; a fallback box is labelled "(nothing detected)".
    Line width and text size follow the image's shorter side, so they read the same at any size.
    """
    from PIL import Image, ImageDraw

    out = Image.fromarray(image_rgb)
    draw = ImageDraw.Draw(out)
    w, h = out.size
    line = max(2, round(min(w, h) / 300))
    font = _font(max(12, round(min(w, h) / 40)))
    for i, (caption, g) in enumerate(zip(captions, groundings, strict=True)):
        colour = PALETTE[i % len(PALETTE)]
        x1, y1, x2, y2 = (float(v) for v in g.xyxy)
        # the outline hugs the box from outside, pulled in where the box meets the image's edge
        outline = [max(0.0, x1 - line), max(0.0, y1 - line), min(w - 1.0, x2 + line - 1), min(h - 1.0, y2 + line - 1)]
        draw.rectangle(outline, outline=colour, width=line)
        label = caption + (" (nothing detected)" if g.fallback else "")
        _, _, text_w, text_h = draw.textbbox((0, 0), label, font=font)
        pad = line
        # above the box when it fits, else just inside its top; never past the right edge
        tx = max(0.0, min(x1 - line, w - text_w - 2 * pad))
        ty = y1 - line - text_h - 2 * pad if y1 - line - text_h - 2 * pad >= 0 else max(0.0, y1)
        draw.rectangle([tx, ty, tx + text_w + 2 * pad, ty + text_h + 2 * pad], fill=colour)
        draw.text((tx + pad, ty + pad), label, fill=(255, 255, 255), font=font)
    return out


def _save_name(path: Path, taken: set[str]) -> str:
    """NAME.png from the image's name; a second image of the same name gets NAME-2.png."""
    name, n = f"{path.stem}.png", 1
    while name in taken:
        n += 1
        name = f"{path.stem}-{n}.png"
    taken.add(name)
    return name


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm  # tqdm.write: lines printed between a bar's redraws

    from findbox.logs import progress

    captions = read_captions(args.caption, args.captions)
    paths, unmatched = expand_image_paths(args.images)
    for text in unmatched:
        print(f"findbox predict: {text}: no image file there (expected a file, a folder of "
              f"{'/'.join(sorted(s[1:] for s in IMAGE_SUFFIXES))} files or a matching glob)", file=sys.stderr)
    config = serve_config_from_args(args)
    save_dir = Path(args.save) if args.save else None
    if save_dir is not None:
        save_dir.mkdir(parents=True, exist_ok=True)

    coco = args.format == "coco"
    instances = _coco_instances(args.coco_instances) if coco else None
    if args.coco_instances and not coco:
        raise ValueError("coco_instances: --coco-instances goes with --format coco")
    if args.engine == "ray":
        if coco:
            raise ValueError("format: --format coco collects the answers in this process; with --engine ray write "
                             "JSON lines (--out FILE) and convert them with findbox data export coco --predictions")
        if save_dir is not None:
            raise ValueError("save: --save draws in this process; with --engine ray, run without --save")
        if args.actors < 1:
            raise ValueError(f"actors: expected at least 1, got {args.actors}")
        from findbox import predict_ray

        for note in caption_notes(captions):
            print(f"findbox predict: {note}", file=sys.stderr)
        failed = len(unmatched) + predict_ray.run(paths, captions, config, Path(args.out) if args.out else None,
                                                  args.actors, args.ray_address)
        return _finish(failed, len(paths) + len(unmatched))

    from findbox.factory import load_pipeline
    from findbox.images import load_image_file

    out = open(args.out, "a", encoding="utf-8") if args.out and not coco else sys.stdout
    answers: list[tuple[str, dict]] = []  # --format coco: (where, line), written at the end
    pipeline = load_pipeline(config.pipeline)  # once, for every image
    for note in caption_notes(captions, pipeline.scorer):
        print(f"findbox predict: {note}", file=sys.stderr)
    failed = len(unmatched)
    taken: set[str] = set()
    for path in progress(paths, desc="predict", unit="img", disable=len(paths) < PROGRESS_MIN_IMAGES):
        try:
            image = load_image_file(path, config.server.max_image_pixels)
        except (ValueError, OSError) as exc:
            tqdm.write(f"findbox predict: {path}: {exc}", file=sys.stderr)
            failed += 1
            continue
        groundings = ground_image(pipeline, image, captions)
        for caption, g in zip(captions, groundings, strict=True):
            if coco:
                answers.append((str(path), grounding_record(str(path), caption, g)))
            else:
                tqdm.write(json.dumps(grounding_record(str(path), caption, g)), file=out)
        if save_dir is not None:
            draw_groundings(image, captions, groundings).save(save_dir / _save_name(path, taken))
    if coco:
        _write_coco_results(answers, instances, args.out)
    out.flush()
    if out is not sys.stdout:
        out.close()
    return _finish(failed, len(paths) + len(unmatched))


def _coco_instances(path: str | None) -> dict | None:
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        instances = json.load(f)
    if not isinstance(instances, dict) or not all(isinstance(instances.get(k), list) for k in ("images", "categories")):
        raise ValueError(f"{path}: expected a COCO instances object with 'images' and 'categories' lists")
    return instances


def _write_coco_results(answers: list[tuple[str, dict]], instances: dict | None, out: str | None) -> None:
    """The answers as one COCO results list, on stdout or replacing `out` (atomically)."""
    from findbox.data.coco import coco_results
    from findbox.data.export_cli import write_atomic

    results, fallbacks = coco_results(answers, instances)
    text = json.dumps(results)
    if out:
        write_atomic(Path(out), text + "\n")
    else:
        print(text)
    if fallbacks:
        print(f"findbox predict: {fallbacks} answer(s) had nothing detected: a fallback box is no detection and is "
              "not in the COCO results", file=sys.stderr)


def _finish(failed: int, inputs: int) -> int:
    """The exit status, with a word on stderr when some of the `inputs` (files and unmatched arguments)
    were not answered."""
    if failed == inputs and failed:
        print(f"findbox predict: none of the {inputs} input(s) could be read", file=sys.stderr)
    elif failed:
        print(f"findbox predict: {failed} of {inputs} input(s) could not be read; the other {inputs - failed} "
              "were answered", file=sys.stderr)
    return 1 if failed else 0


def caption_notes(captions: Sequence[str], scorer=None) -> list[str]:
    """One note per caption that is not read as given: empty (ranking.choose answers it with the
    detector's most confident box) or, where `scorer` can count its tokens, cut to its text length."""
    notes = []
    for caption in captions:
        if not caption.strip():
            notes.append("empty caption: the detector's most confident box answers it")
            continue
        tokens, limit = scorer.caption_tokens(caption) if hasattr(scorer, "caption_tokens") else (0, 0)
        if tokens > limit:
            notes.append(f"caption {caption[:40]!r}{'...' if len(caption) > 40 else ''} ({len(caption)} characters) "
                         f"is cut to the scorer's {limit} tokens (it has {tokens} with the prompt)")
    return notes
