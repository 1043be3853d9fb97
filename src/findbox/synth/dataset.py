"""Write a data set in the published format: OUT/vlm.jsonl and OUT/images/image_<i>.jpg."""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
from pathlib import Path

from findbox.logs import progress as progress_bar

from findbox.synth.scene import SynthConfig, generate_scene_jpeg

JSONL_NAME = "vlm.jsonl"
IMAGES_DIR = "images"


def image_name(index: int) -> str:
    return f"image_{index}.jpg"


def _scene_record(index: int, config: SynthConfig, seed: int) -> tuple[bytes, dict]:
    data, objects = generate_scene_jpeg(config, index, seed)
    return data, {"image": image_name(index), "annotations": [o.annotation() for o in objects]}


def write_dataset(
    out_dir: str | os.PathLike,
    config: SynthConfig,
    n_images: int,
    seed: int,
    force: bool = False,
    progress: bool = True,
    workers: int = 1,
) -> Path:
    """Generate images 0..n_images-1 of `seed` into out_dir; returns the vlm.jsonl path.

    Refuses (FileExistsError) a non-empty out_dir unless `force`, which deletes the
    previous vlm.jsonl and images/*.jpg (and nothing else). Same arguments give
    byte-identical files, whatever `workers` (processes; each image depends only on
    (seed, index)). The jsonl appears only once every image is written.
    """
    if not isinstance(n_images, int) or isinstance(n_images, bool) or n_images < 1:
        raise ValueError(f"expected n_images as an int >= 1, got {n_images!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"expected seed as an int >= 0, got {seed!r}")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"expected workers as an int >= 1, got {workers!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"expected a directory for the output, got the file {out}")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise FileExistsError(
                f"output directory {out} is not empty; use --force (force=True) to replace "
                f"its {JSONL_NAME} and {IMAGES_DIR}/*.jpg"
            )
        (out / JSONL_NAME).unlink(missing_ok=True)
        if (out / IMAGES_DIR).is_dir():
            for old in (out / IMAGES_DIR).glob("*.jpg"):
                old.unlink()
    images = out / IMAGES_DIR
    images.mkdir(parents=True, exist_ok=True)

    jsonl = out / JSONL_NAME
    partial = out / (JSONL_NAME + ".partial")
    render = functools.partial(_scene_record, config=config, seed=seed)
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        records = pool.imap(render, range(n_images), chunksize=4) if pool else map(render, range(n_images))
        with open(partial, "w", encoding="utf-8") as f:
            for data, record in progress_bar(records, total=n_images, desc="synth", unit="img", disable=not progress):
                (images / record["image"]).write_bytes(data)
                f.write(json.dumps(record) + "\n")
    finally:
        if pool:
            pool.terminate()
    partial.replace(jsonl)
    return jsonl
