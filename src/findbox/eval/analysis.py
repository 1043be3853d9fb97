"""From a run's results to numbers: headline, stage diagnostics, the conf sweep, scorer comparison.

In-process runs keep every proposal of the lowest threshold with its match
score, so the answer at any higher detector threshold is re-derived without
running a model: drop the candidates at or below it (ultralytics keeps
`conf > threshold`), then let the run's `Ranking` (the pipeline's own) pick
among the rest or answer its fallback box. NMS is greedy from the most confident box and `max_det`
keeps the most confident ones, so the boxes above a threshold are the same
whether or not weaker ones were proposed too (SAHI slices merge by NMS as well).
The exception is a WBF ensemble of detectors: weaker member boxes move the fused
ones, so there the sweep is an approximation.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from findbox.boxes import Candidates, xyxy_to_ltwh
from findbox.eval import metric
from findbox.eval.data import Sample
from findbox.eval.runner import InstanceResult, Run
from findbox.ranking import Ranking

DEFAULT_SWEEP = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
SIZE_BINS = ("small", "medium", "large")  # terciles of true-box area over the evaluated instances
# COCO's object sizes by true-box area in original pixels: small < 32², medium < 96², large the rest
COCO_SMALL_MAX_PX2 = 32.0**2
COCO_MEDIUM_MAX_PX2 = 96.0**2
# caption length in words (whitespace-split): (label, fewest, most); RefCOCO's captions are ~3.5 words,
# RefCOCOg's ~8.4, the task's synthetic ones 2-4
CAPTION_LENGTH_BINS = (("0", 0, 0), ("1-2", 1, 2), ("3-4", 3, 4), ("5-8", 5, 8), ("9-16", 9, 16),
                       ("17+", 17, None))
NO_SPLIT = "(none)"  # the group of instances without a data-set split when others have one


def acc_key(threshold: float) -> str:
    """The metrics.json key of Acc@threshold: 0.5 -> "acc_50", 0.75 -> "acc_75", 0.9 -> "acc_90"."""
    return f"acc_{round(threshold * 100)}"


def iou_summary(scored: Sequence[Scored]) -> dict:
    """Acc@0.5, Acc@0.75, Acc@0.9 (IoU >= k, the field's rule) and mean IoU; unanswered instances count IoU 0."""
    ious = [s.iou for s in scored]
    out = {acc_key(k): metric.accuracy_at(ious, k) for k in metric.ACC_IOU_THRESHOLDS}
    out["mean_iou"] = metric.mean_iou(ious)
    return out


@dataclass(frozen=True)
class Scored:
    """One instance's answer at one detector threshold.

    covered: some kept proposal is a hit against the truth (None when candidates are unknown).
    n_kept: proposals above the threshold (None when unknown).
    """

    pred_ltwh: tuple[float, float, float, float] | None
    iou: float
    hit: bool
    covered: bool | None = None
    n_kept: int | None = None
    fallback: bool | None = None


def above(candidates: Candidates, conf: float) -> Candidates:
    """The candidates the detector keeps at threshold `conf` (compared in float32, as ultralytics does)."""
    return candidates[candidates.det_score > np.float32(conf)]


def pick_at(ranking: Ranking, candidates: Candidates, caption: str, conf: float,
            image_wh: tuple[int, int]) -> tuple[np.ndarray, Candidates, int]:
    """The pipeline's answer had the detector run at `conf`: (xyxy (4,) float32, kept candidates, chosen or -1)."""
    kept = above(candidates, conf)
    xyxy, chosen = ranking.pick(kept, caption, image_wh)
    return xyxy, kept, chosen


def _covered(truth_ltwh, candidates_xyxy: np.ndarray) -> bool:
    return any(metric.is_hit(metric.iou_ltwh(truth_ltwh, box)) for box in xyxy_to_ltwh(candidates_xyxy))


def _score_pred(truth_ltwh, pred_ltwh, **extra) -> Scored:
    iou = metric.iou_ltwh(truth_ltwh, pred_ltwh) if pred_ltwh is not None else 0.0
    return Scored(pred_ltwh, iou, metric.is_hit(iou), **extra)


def score_at(run: Run, conf: float | None = None) -> list[Scored]:
    """Every instance scored at detector threshold `conf` (None: the run's own answers).

    A threshold needs an in-process run; it must not be below the run's own conf.
    """
    if conf is None:
        return [_score_pred(r.sample.truth_ltwh, r.pred_ltwh) for r in run.results]
    if run.run_conf is None:
        raise ValueError("conf: re-thresholding needs an in-process run (a server does not return candidates)")
    if conf < run.run_conf:
        raise ValueError(f"conf: expected a threshold >= the run's conf {run.run_conf}, got {conf}")
    return [_rescore(r, conf, run) for r in run.results]


def _rescore(r: InstanceResult, conf: float, run: Run) -> Scored:
    if r.candidates is None:  # unanswered: a miss the detector is charged with
        return Scored(None, 0.0, False, covered=False, n_kept=0, fallback=False)
    xyxy, kept, chosen = pick_at(run.ranking, r.candidates, r.sample.caption, conf, r.image_wh)
    pred = tuple(float(v) for v in xyxy_to_ltwh(xyxy))
    return _score_pred(r.sample.truth_ltwh, pred, covered=_covered(r.sample.truth_ltwh, kept.xyxy),
                       n_kept=len(kept), fallback=chosen < 0)


# --- headline ------------------------------------------------------------------------------------


def headline(run: Run, scored: Sequence[Scored]) -> dict:
    """accuracy (the task's rule), Acc@k and mean IoU, throughput, latency percentiles and the task score.

    The speed score is assumed (see metric).
    """
    acc = metric.accuracy(s.hit for s in scored)
    seconds = [r.seconds for r in run.results if r.seconds is not None]
    latencies = np.asarray(run.latencies_s, dtype=np.float64)
    speed = float(np.mean([metric.speed_score(s) for s in seconds])) if seconds else 0.0
    return {
        "accuracy": acc,
        **iou_summary(scored),
        "instances_per_s": len(seconds) / float(latencies.sum()) if latencies.sum() > 0 else 0.0,
        "latency_p50_s": float(np.percentile(latencies, 50)) if len(latencies) else None,
        "latency_p95_s": float(np.percentile(latencies, 95)) if len(latencies) else None,
        "speed_score": speed,
        "task_score": metric.task_score(acc, speed),
        "n_instances": len(scored),
        "n_hits": sum(s.hit for s in scored),
        "n_images": len({r.sample.image for r in run.results}),
        "n_requests": len(run.latencies_s),
        "n_bad_images": len(run.bad_images),
        "n_unanswered": sum(r.pred_ltwh is None for r in run.results),
    }


# --- diagnostics -----------------------------------------------------------------------------------


def _caption_parser() -> Callable[[str], tuple[list[str], str]] | None:
    """findbox.synth's parse_caption when installed (it is optional to this module)."""
    for module in ("findbox.synth", "findbox.synth.vocab"):
        try:
            return importlib.import_module(module).parse_caption
        except (ImportError, AttributeError):
            continue
    return None


def caption_groups(captions: Sequence[str]) -> tuple[list[str], list[str]]:
    """(object type, colour-word count) per caption; "other" when a caption does not parse.

    Without findbox.synth the type is the caption's last word and the count "?".
    """
    parse = _caption_parser()
    types, counts = [], []
    for caption in captions:
        if parse is None:
            words = caption.split()
            types.append(words[-1].lower() if words else "other")
            counts.append("?")
            continue
        try:
            colours, object_type = parse(caption)
        except (ValueError, TypeError):
            types.append("other")
            counts.append("?")
            continue
        types.append(object_type)
        counts.append(str(len(colours)))
    return types, counts


def size_groups(samples: Sequence[Sample]) -> tuple[list[str], dict[str, list[float]]]:
    """small / medium / large by terciles of the true box area (px²), and each bin's area range."""
    areas = np.array([max(s.truth_ltwh[2], 0.0) * max(s.truth_ltwh[3], 0.0) for s in samples], dtype=np.float64)
    if not len(areas):
        return [], {}
    q1, q2 = np.quantile(areas, [1 / 3, 2 / 3])
    bins = np.where(areas <= q1, 0, np.where(areas <= q2, 1, 2))
    ranges = {}
    for k, name in enumerate(SIZE_BINS):
        inside = areas[bins == k]
        if len(inside):
            ranges[name] = [float(inside.min()), float(inside.max())]
    return [SIZE_BINS[b] for b in bins], ranges


def coco_size_groups(samples: Sequence[Sample]) -> list[str]:
    """COCO's small / medium / large per instance, by true-box area in original pixels (w, h < 0 count 0)."""
    groups = []
    for s in samples:
        area = max(s.truth_ltwh[2], 0.0) * max(s.truth_ltwh[3], 0.0)
        groups.append("small" if area < COCO_SMALL_MAX_PX2 else "medium" if area < COCO_MEDIUM_MAX_PX2 else "large")
    return groups


def caption_length_groups(captions: Sequence[str]) -> list[str]:
    """The `CAPTION_LENGTH_BINS` label of each caption's word count (whitespace-split)."""
    labels = []
    for caption in captions:
        n = len(caption.split())
        labels.append(next(label for label, lo, hi in CAPTION_LENGTH_BINS if n >= lo and (hi is None or n <= hi)))
    return labels


def _group_stats(scored: Sequence[Scored]) -> dict:
    stats = {"n": len(scored), "accuracy": metric.accuracy(s.hit for s in scored),
             acc_key(0.5): metric.accuracy_at((s.iou for s in scored), 0.5),
             "mean_iou": metric.mean_iou(s.iou for s in scored)}
    if scored and scored[0].covered is not None:
        covered = [s for s in scored if s.covered]
        stats["detector_recall"] = len(covered) / len(scored)
        stats["scorer_accuracy_given_covered"] = metric.accuracy(s.hit for s in covered) if covered else None
    return stats


def breakdowns(samples: Sequence[Sample], scored: Sequence[Scored]) -> dict:
    """Accuracy, Acc@0.5, mean IoU (and, in-process, recall and scorer accuracy) per group of instances.

    Groups: object type, colour count, size (terciles), COCO size (`coco_size`), caption length in
    words and, when some instance has one, the data set's own split (`data_split`; NO_SPLIT for
    the instances without one). A breakdown lists only the groups that have instances.
    """
    types, counts = caption_groups([s.caption for s in samples])
    sizes, size_ranges = size_groups(samples)
    coco_order = ("small", "medium", "large")
    length_order = [label for label, _, _ in CAPTION_LENGTH_BINS]
    groupings = [
        ("object_type", types, None),
        ("colour_count", counts, lambda k: (k == "?", k)),
        ("size", sizes, SIZE_BINS.index),
        ("coco_size", coco_size_groups(samples), coco_order.index),
        ("caption_length", caption_length_groups([s.caption for s in samples]), length_order.index),
    ]
    if any(s.split is not None for s in samples):
        splits = [s.split if s.split is not None else NO_SPLIT for s in samples]
        groupings.append(("data_split", splits, lambda k: (k == NO_SPLIT, k)))
    out = {}
    for name, keys, order in groupings:
        groups: dict[str, list[Scored]] = {}
        for key, s in zip(keys, scored):
            groups.setdefault(key, []).append(s)
        if order is None:  # most common first
            ordered = sorted(groups, key=lambda k: (-len(groups[k]), k))
        else:
            ordered = sorted(groups, key=order)
        out[name] = {k: _group_stats(groups[k]) for k in ordered}
    out["size_area_px2"] = size_ranges
    return out


def diagnostics(run: Run, scored: Sequence[Scored]) -> dict:
    """Stage diagnostics at one threshold. Needs candidates (an in-process run).

    detector_recall: share of truths some proposal covers (IoU > 0.5): the accuracy ceiling.
    scorer_accuracy_given_covered: of those, the share the scorer picked right.
    """
    covered = [s for s in scored if s.covered]
    hits_uncovered = sum(s.hit and not s.covered for s in scored)
    kept = [s.n_kept for s in scored if s.n_kept is not None]
    return {
        "detector_recall": len(covered) / len(scored) if scored else 0.0,
        "scorer_accuracy_given_covered": metric.accuracy(s.hit for s in covered) if covered else None,
        "fallback_rate": float(np.mean([bool(s.fallback) for s in scored])) if scored else 0.0,
        "mean_candidates": float(np.mean(kept)) if kept else 0.0,
        "misses": {
            "unanswered": sum(s.pred_ltwh is None for s in scored),
            "no_covering_proposal": sum(not s.covered and not s.hit and s.pred_ltwh is not None for s in scored),
            "wrong_pick": sum(s.covered and not s.hit for s in scored),
        },
        "hits_without_covering_proposal": hits_uncovered,  # the fallback box happened to hit
    }


def sweep(run: Run, thresholds: Sequence[float]) -> list[dict]:
    """Accuracy, recall, fallback rate and proposals per instance at each threshold, from one run."""
    rows = []
    for conf in sorted(set(float(t) for t in thresholds)):
        scored = score_at(run, conf)
        d = diagnostics(run, scored)
        rows.append({"conf": conf, "accuracy": metric.accuracy(s.hit for s in scored),
                     "detector_recall": d["detector_recall"],
                     "scorer_accuracy_given_covered": d["scorer_accuracy_given_covered"],
                     "fallback_rate": d["fallback_rate"], "mean_candidates": d["mean_candidates"]})
    return rows


# --- scorer comparison -------------------------------------------------------------------------------


def compare_scorers(run: Run, conf: float, scorers: dict[str, object], images_dir, upscaler=None,
                    progress: bool = True) -> list[dict]:
    """Rank scorers on the same detections and the same crops, best accuracy first.

    scorers: name -> a scorer (`embed_images`, `embed_texts`, `score`). Each image's proposals above `conf` are
    cut (and upscaled with `upscaler`) once; every scorer embeds those crops and
    chooses among them exactly as the pipeline would.
    """
    from pathlib import Path

    from findbox.logs import progress as progress_bar

    from findbox.crops import prepare_crops
    from findbox.images import load_image_file

    if run.ranking is None:
        raise ValueError("run: comparing scorers needs an in-process run (a server does not return candidates)")
    # one crop set serves every scorer: cap sides at the largest scorer input, so none sees less than it would served
    scorer_hw = max((tuple(s.preprocess.size_hw) for s in scorers.values()), default=None)
    by_image: dict[str, list[InstanceResult]] = {}
    for r in run.results:
        by_image.setdefault(r.sample.image, []).append(r)
    hits = {name: [] for name in scorers}
    covered_hits = {name: [] for name in scorers}
    embed_s = dict.fromkeys(scorers, 0.0)
    n_crops = 0
    for image_name, results in progress_bar(by_image.items(), disable=not progress, desc="scorers", unit="img"):
        answered = [r for r in results if r.candidates is not None]
        for r in results:
            if r.candidates is None:
                for name in scorers:
                    hits[name].append(False)
        if not answered:
            continue
        # one image's requests all see the same proposals; cut them once for every scorer
        kept = above(answered[0].candidates, conf)
        image = load_image_file(Path(images_dir) / image_name)
        crops = prepare_crops(image, kept.xyxy, upscaler, scorer_hw)
        n_crops += len(crops)
        captions = list(dict.fromkeys(r.sample.caption for r in answered))
        covered = [_covered(r.sample.truth_ltwh, kept.xyxy) for r in answered]
        for name, scorer in scorers.items():
            start = time.perf_counter()
            image_emb = scorer.embed_images(crops)
            embed_s[name] += time.perf_counter() - start
            logits = scorer.score(image_emb, scorer.embed_texts(captions))
            for r, is_covered in zip(answered, covered):
                cands = kept.with_match_score(logits[:, captions.index(r.sample.caption)])
                xyxy, _ = run.ranking.pick(cands, r.sample.caption, r.image_wh)
                hit = metric.is_hit(metric.iou_ltwh(r.sample.truth_ltwh, xyxy_to_ltwh(xyxy)))
                hits[name].append(hit)
                if is_covered:
                    covered_hits[name].append(hit)
    rows = [{
        "scorer": name,
        "accuracy": metric.accuracy(hits[name]),
        "scorer_accuracy_given_covered": metric.accuracy(covered_hits[name]) if covered_hits[name] else None,
        "ms_per_crop": 1000.0 * embed_s[name] / n_crops if n_crops else None,
        "n_crops": n_crops,
    } for name in scorers]
    return sorted(rows, key=lambda row: -row["accuracy"])
