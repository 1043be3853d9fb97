"""`findbox predict --engine ray`: the same JSON lines, from a pool of pipeline actors on Ray Data.

    findbox predict --engine ray frames/ --captions captions.txt --out boxes.jsonl [--actors 4]

Ray Data streams the image paths through `PipelineActor`s (each loads the models once and answers
an image as `findbox predict` does: `predict.ground_image`, `predict.grounding_record`), in the
input order, so the lines are those of the in-process engine. With `--out FILE` the lines are
appended to FILE as they come and a rerun skips the images already written there (every caption
of an image is written together, so an image is either done or not). Scheduling, retries and
back-pressure are Ray Data's.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from findbox.config import ServeConfig


class PipelineActor:
    """Loads the pipeline once; answers a batch of image paths as JSON lines (or the error per path)."""

    def __init__(self, config: ServeConfig, captions: Sequence[str], threads: int):
        import torch

        from findbox.factory import load_pipeline

        torch.set_num_threads(threads)
        self.pipeline = load_pipeline(config.pipeline)
        self.captions = list(captions)
        self.max_pixels = config.server.max_image_pixels

    def __call__(self, batch: dict) -> dict:
        from findbox.images import load_image_file
        from findbox.predict import ground_image, grounding_record

        lines, errors = [], []
        for path in batch["path"]:
            try:
                image = load_image_file(path, self.max_pixels)
            except (ValueError, OSError) as exc:
                lines.append("")
                errors.append(str(exc))
                continue
            groundings = ground_image(self.pipeline, image, self.captions)
            lines.append("\n".join(json.dumps(grounding_record(str(path), c, g))
                                   for c, g in zip(self.captions, groundings, strict=True)))
            errors.append("")
        return {"path": list(batch["path"]), "lines": lines, "error": errors}


def done_images(out: Path | None) -> set[str]:
    """Images whose lines `out` already holds (a rerun skips them). A torn last line (a run killed
    mid-write) is cut off, so that the lines appended next start on a line of their own."""
    if out is None or not out.is_file():
        return set()
    text = out.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        with out.open("r+", encoding="utf-8") as f:
            f.truncate(len(text.encode("utf-8")))
    done = set()
    for line in text.splitlines():
        try:
            done.add(json.loads(line)["image"])
        except (ValueError, KeyError, TypeError):
            continue
    return done


def run(paths: Sequence[Path], captions: Sequence[str], config: ServeConfig, out: Path | None,
        actors: int, address: str = "") -> int:
    """Answer every image of `paths` on Ray Data; lines to `out` (appended) or stdout. Returns how
    many images could not be read (each named on stderr)."""
    from findbox.env import require

    require("ray", "ray")
    import ray

    done = done_images(out)
    todo = [str(p) for p in paths if str(p) not in done]
    if done:
        print(f"findbox predict: {len(paths) - len(todo)} image(s) already in {out}, skipped", file=sys.stderr)
    if not todo:
        return 0
    started_here = not address and not ray.is_initialized()
    if started_here:
        # address "local": a cluster of its own even where another runs on this machine (ray start)
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    elif not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # lines in input order, as the in-process engine
        cpus_per_actor = max(1.0, (os.cpu_count() or 1) / actors) if started_here else 1.0
        dataset = ray.data.from_items([{"path": p} for p in todo]).map_batches(
            PipelineActor, batch_size=1, concurrency=actors, num_cpus=cpus_per_actor,
            fn_constructor_kwargs={"config": config, "captions": list(captions),
                                   "threads": max(1, int(cpus_per_actor))})
        failed = 0
        sink = out.open("a", encoding="utf-8") if out is not None else sys.stdout
        try:
            for row in dataset.iter_rows():
                if row["error"]:
                    print(f"findbox predict: {row['path']}: {row['error']}", file=sys.stderr)
                    failed += 1
                    continue
                sink.write(row["lines"] + "\n")
                sink.flush()  # an image's lines are on disk before the next: a rerun resumes after it
        finally:
            if out is not None:
                sink.close()
        return failed
    finally:
        if started_here:
            ray.shutdown()
