"""The published scoring rule, as pure functions on Python floats.

IoU is computed in float64 on `[left, top, width, height]` boxes converted to
xyxy, like the original harness: float32 rounding of the coordinates could move
an IoU across 0.5. A hit is `round(iou) == 1` with Python's round (half to even),
so an IoU of exactly 0.5 is a miss.

The field's convention (the REC papers': RefCOCO, MDETR, Grounding DINO) is Acc@0.5: a hit
when IoU >= 0.5. It differs from the task's rule at exactly one value, IoU == 0.5 (float64),
a hit there and a miss here. `accuracy_at` gives Acc@k for any k (0.5, 0.75, 0.9 in reports).

The speed score was never published; `speed_score` is the rule one later harness
used, `1 - min(30, seconds) / 30` per instance. It is an assumption.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

SPEED_CAP_S = 30.0  # seconds at which an instance's speed score reaches 0
ACCURACY_WEIGHT = 0.9  # task score = 0.9 * accuracy + 0.1 * speed score
ACC_IOU_THRESHOLDS = (0.5, 0.75, 0.9)  # Acc@k reported beside the task's accuracy
SPEED_SCORE_RULE = "1 - min(30, seconds) / 30 per instance (assumed; the original never published it)"


def iou_ltwh(a_ltwh: Sequence[float], b_ltwh: Sequence[float]) -> float:
    """IoU of two ltwh boxes in [0, 1]; 0 when they do not overlap or a box has no area.

    A negative width or height counts as an empty box.
    """
    al, at, aw, ah = (float(v) for v in a_ltwh)
    bl, bt, bw, bh = (float(v) for v in b_ltwh)
    aw, ah, bw, bh = max(aw, 0.0), max(ah, 0.0), max(bw, 0.0), max(bh, 0.0)
    inter_w = min(al + aw, bl + bw) - max(al, bl)
    inter_h = min(at + ah, bt + bh) - max(at, bt)
    inter = max(inter_w, 0.0) * max(inter_h, 0.0)
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def is_hit(iou: float) -> bool:
    """The published rule: `round(iou) == 1`, Python's round (0.5 rounds to 0)."""
    return round(iou) == 1


def accuracy(hits: Iterable[bool]) -> float:
    """Mean of hits; 0.0 for no instances."""
    hits = list(hits)
    return sum(bool(h) for h in hits) / len(hits) if hits else 0.0


def accuracy_at(ious: Iterable[float], threshold: float) -> float:
    """Acc@threshold, the field's rule: share of IoUs >= threshold; 0.0 for no instances.

    An unanswered instance enters with IoU 0.0, as in `accuracy`.
    """
    ious = list(ious)
    return sum(float(iou) >= threshold for iou in ious) / len(ious) if ious else 0.0


def mean_iou(ious: Iterable[float]) -> float:
    """Mean IoU over all instances (unanswered ones count 0.0); 0.0 for no instances."""
    ious = [float(iou) for iou in ious]
    return sum(ious) / len(ious) if ious else 0.0


def speed_score(seconds: float) -> float:
    """Assumed per-instance speed score in [0, 1]: 1 at 0 s, 0 at 30 s or slower."""
    return 1.0 - min(SPEED_CAP_S, max(float(seconds), 0.0)) / SPEED_CAP_S


def task_score(accuracy_value: float, mean_speed_score: float) -> float:
    """0.9 * accuracy + 0.1 * mean speed score."""
    return ACCURACY_WEIGHT * accuracy_value + (1.0 - ACCURACY_WEIGHT) * mean_speed_score
