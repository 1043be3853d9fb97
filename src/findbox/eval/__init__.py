"""Evaluation: the published metric and the field's (Acc@k, mean IoU, detector AP), stage diagnostics,
the conf sweep and the HTML report.

`findbox eval` (`findbox.eval.cli`) is the command. The pieces, for use from Python:

    from findbox.eval.metric import iou_ltwh, is_hit, accuracy, accuracy_at, mean_iou, speed_score, task_score
    from findbox.eval.analysis import score_at, sweep, diagnostics, breakdowns, compare_scorers
    from findbox.eval.detector_ap import detector_ap, average_precision  # faster-coco-eval ([eval])
    from findbox.eval.runner import run_in_process, run_server
"""

from findbox.eval.metric import accuracy, accuracy_at, iou_ltwh, is_hit, mean_iou, speed_score, task_score

__all__ = ["accuracy", "accuracy_at", "iou_ltwh", "is_hit", "mean_iou", "speed_score", "task_score"]
