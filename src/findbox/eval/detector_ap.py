"""The detector stage's single-class AP50 and AP50:95, by faster-coco-eval's COCOeval (bbox), not by hand.

The run's proposals are scored as one class against the true boxes:

- ground truth: each image's distinct true boxes (several captions of one object, as in
  RefCOCO, are one box; a box listed twice would otherwise be a miss the detector cannot avoid),
  `[l, t, w, h]` in original pixels, a negative side counted as 0 (as `metric.iou_ltwh` does);
- detections: the image's candidates at the run's own threshold (`run_conf`, the lowest of the
  sweep): xyxy in original pixels as proposed, `det_score` as the score. Every request of an
  image sees the same proposals, so the first answered instance's candidates stand for the image;
- an image that could not be read has no detections: its boxes count as missed, as its
  instances count as misses in the accuracy.

COCOeval then does what the field's tables do: greedy matching by score at each IoU threshold
0.50:0.05:0.95, 101-point interpolated precision, AP50 at IoU 0.5 and AP50:95 the mean over the
ten thresholds. Its detections-per-image cap is raised from COCO's 100 to the most proposals any
image has, so no proposal the pipeline could pick is left out (findbox's default `max_det` is 10).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from findbox.boxes import Candidates, xyxy_to_ltwh
from findbox.eval.runner import Run

EVALUATOR = "faster-coco-eval"  # the PyPI name; imported as faster_coco_eval
COCO_MAX_DETS = (1, 10, 100)  # COCOeval's default caps; the last one is raised to fit every proposal


def _quiet(*args, **kwargs) -> None:
    """COCOeval's print function: the report prints the numbers, not its progress lines."""


def average_precision(truths_ltwh: Sequence[np.ndarray], detections: Sequence[Candidates | None]) -> dict:
    """Single-class AP of detections against truths, one entry of each per image.

    truths_ltwh: per image, (N, 4) true boxes [l, t, w, h] in the image's pixels (N may be 0).
    detections: per image, its Candidates (xyxy in the same pixels, det_score the score), or None
        for an image that was never run (its truths count as missed).
    Returns {"ap50", "ap50_95" (None when there is no true box), "n_images", "n_truths",
    "n_detections", "max_dets", "evaluator"}.
    Raises findbox.env.MissingExtra without faster-coco-eval (pip install 'findbox[eval]').
    """
    from findbox.env import require

    if len(truths_ltwh) != len(detections):
        raise ValueError(f"detections: expected one entry per image ({len(truths_ltwh)}), got {len(detections)}")
    require("faster_coco_eval", "eval")
    import faster_coco_eval
    from faster_coco_eval import COCO, COCOeval_faster

    images, truth_anns, results = [], [], []
    for image_id, (truths, cands) in enumerate(zip(truths_ltwh, detections), start=1):
        images.append({"id": image_id})
        for l, t, w, h in np.asarray(truths, dtype=np.float64).reshape(-1, 4):
            w, h = max(w, 0.0), max(h, 0.0)
            truth_anns.append({"id": len(truth_anns) + 1, "image_id": image_id, "category_id": 1,
                               "bbox": [l, t, w, h], "area": w * h, "iscrowd": 0})
        if cands is not None:
            for box, score in zip(xyxy_to_ltwh(cands.xyxy).astype(np.float64), cands.det_score):
                results.append({"image_id": image_id, "category_id": 1, "bbox": [float(v) for v in box],
                                "score": float(score)})
    most = max((len(c) for c in detections if c is not None), default=0)
    max_dets = [*COCO_MAX_DETS[:-1], max(COCO_MAX_DETS[-1], most)]
    out = {"ap50": None, "ap50_95": None, "n_images": len(images), "n_truths": len(truth_anns),
           "n_detections": len(results), "max_dets": max_dets[-1],
           "evaluator": f"{EVALUATOR} {faster_coco_eval.__version__}"}
    if not truth_anns:  # COCOeval's AP is undefined (-1) without a true box
        return out
    truth = COCO({"images": images, "annotations": truth_anns, "categories": [{"id": 1, "name": "object"}]},
                 print_function=_quiet)
    evaluator = COCOeval_faster(truth, truth.loadRes(results), iouType="bbox", print_function=_quiet)
    evaluator.params.maxDets = max_dets
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    out["ap50_95"], out["ap50"] = float(evaluator.stats[0]), float(evaluator.stats[1])
    return out


def detector_ap(run: Run) -> dict:
    """The detector's single-class AP on an in-process run's proposals (at `run.run_conf`).

    Without faster-coco-eval the answer is {"error": "...pip install 'findbox[eval]'"}, so a report
    can say so and go on.
    """
    from findbox.env import MissingExtra

    if run.run_conf is None:
        raise ValueError("run: detector AP needs an in-process run (a server does not return candidates)")
    truths: dict[str, dict[tuple[float, ...], None]] = {}
    detections: dict[str, Candidates | None] = {}
    for r in run.results:
        truths.setdefault(r.sample.image, {})[tuple(r.sample.truth_ltwh)] = None  # distinct, in data order
        if detections.get(r.sample.image) is None:
            detections[r.sample.image] = r.candidates
    names = list(truths)
    try:
        out = average_precision([np.array(list(truths[n]), dtype=np.float64) for n in names],
                                [detections[n] for n in names])
    except MissingExtra as exc:
        return {"error": str(exc)}
    return {**out, "conf": run.run_conf}
