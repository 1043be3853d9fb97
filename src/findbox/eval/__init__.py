"""Evaluation: the published metric, stage diagnostics, the conf sweep and the HTML report.

`findbox eval` (`findbox.eval.cli`) is the command. The pieces, for use from Python:

    from findbox.eval.metric import iou_ltwh, is_hit, accuracy, speed_score, task_score
    from findbox.eval.analysis import score_at, sweep, diagnostics, breakdowns, compare_scorers
    from findbox.eval.runner import run_in_process, run_server
"""

from findbox.eval.metric import accuracy, iou_ltwh, is_hit, speed_score, task_score

__all__ = ["accuracy", "iou_ltwh", "is_hit", "speed_score", "task_score"]
