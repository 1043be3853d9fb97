"""`findbox eval` end to end on tiny random models: outputs, sweep, scorer comparison, server mode."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from findbox.eval import analysis
from findbox.data.vlm import read_vlm_jsonl
from findbox.eval.data import samples_of
from findbox.eval.metric import is_hit, iou_ltwh
from tests.conftest import ServerProcess
from tests.eval.conftest import N_IMAGES, TRUTH_RANKS, model_args, predictions_equal, read_jsonl

HEADLINE_KEYS = ("accuracy", "instances_per_s", "latency_p50_s", "latency_p95_s", "task_score", "n_instances",
                 "n_bad_images")
N_INSTANCES = N_IMAGES * (len(TRUTH_RANKS) + 1) + 3  # + the missing image's one and the corrupt image's two


def test_metrics_and_predictions(in_process_eval):
    metrics = json.loads((in_process_eval / "metrics.json").read_text())
    for key in HEADLINE_KEYS:
        assert isinstance(metrics[key], (int, float)), key
    assert metrics["n_instances"] == N_INSTANCES
    assert metrics["n_bad_images"] == 2
    rows = read_jsonl(in_process_eval / "predictions.jsonl")
    assert len(rows) == N_INSTANCES
    for row in rows:
        assert set(row) >= {"image", "caption", "truth_ltwh", "pred_ltwh", "iou", "hit"}
        if row["pred_ltwh"] is not None:
            assert row["iou"] == pytest.approx(iou_ltwh(row["truth_ltwh"], row["pred_ltwh"]))
            assert row["hit"] == is_hit(row["iou"])
    assert metrics["accuracy"] == pytest.approx(sum(r["hit"] for r in rows) / len(rows))
    # the detector covers every truth made from its proposals at the run's threshold, not the tiny corner box
    d = metrics["diagnostics"]
    assert d["detector_recall"] == pytest.approx(N_IMAGES * len(TRUTH_RANKS) / N_INSTANCES)
    assert 0 < metrics["accuracy"] <= d["detector_recall"]
    assert set(metrics["breakdowns"]) >= {"object_type", "colour_count", "size", "coco_size", "caption_length",
                                          "data_split"}
    for name in ("size", "coco_size", "caption_length", "data_split"):
        assert sum(g["n"] for g in metrics["breakdowns"][name].values()) == N_INSTANCES, name
    # the field's conventions, recomputed from the predictions (unanswered rows carry IoU 0)
    ious = [r["iou"] for r in rows]
    for key, k in (("acc_50", 0.5), ("acc_75", 0.75), ("acc_90", 0.9)):
        assert metrics[key] == pytest.approx(sum(iou >= k for iou in ious) / len(ious)), key
    assert metrics["mean_iou"] == pytest.approx(np.mean(ious))
    assert metrics["acc_50"] >= metrics["accuracy"] and metrics["acc_50"] >= metrics["acc_75"] >= metrics["acc_90"]
    splits = metrics["breakdowns"]["data_split"]
    assert list(splits) == ["testA", "testB", "(none)"] and splits["(none)"]["n"] == 3  # the bad images' instances
    for split in ("testA", "testB"):
        mine = [r for r in rows if r.get("split") == split]
        assert splits[split]["n"] == len(mine) and splits[split]["accuracy"] == pytest.approx(
            sum(r["hit"] for r in mine) / len(mine))
    # the detector's AP from faster-coco-eval: every distinct truth, proposals at the run's own conf
    ap = metrics["detector_ap"]
    assert ap["n_truths"] == N_INSTANCES and ap["conf"] == metrics["run"]["run_conf"]
    assert ap["n_images"] == N_IMAGES + 2 and ap["n_detections"] > 0
    assert 0 < ap["ap50_95"] <= ap["ap50"] <= 1


def test_missing_and_corrupt_images_count_as_misses(in_process_eval):
    metrics = json.loads((in_process_eval / "metrics.json").read_text())
    assert {b["image"] for b in metrics["bad_images"]} == {"missing.jpg", "corrupt.jpg"}
    rows = [r for r in read_jsonl(in_process_eval / "predictions.jsonl") if r["image"] in ("missing.jpg", "corrupt.jpg")]
    assert len(rows) == 3
    assert all(r["pred_ltwh"] is None and r["hit"] is False and r["iou"] == 0 and r["error"] for r in rows)
    assert metrics["n_unanswered"] == 3


def test_report_references_only_existing_files(in_process_eval):
    page = (in_process_eval / "report.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert {"sweep.png", "breakdowns.png", "iou_hist.png", "failures.png"} <= set(refs)
    for ref in refs:
        assert not re.match(r"^[a-z]+://|^/", ref), f"not a relative file: {ref}"
        assert (in_process_eval / ref).is_file(), ref
        assert (in_process_eval / ref).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "missing.jpg" in page  # bad images are listed, not dropped
    for text in ("Acc@0.5", "Acc@0.75", "Acc@0.9", "mean IoU", "Detector AP (one class)", "AP50:95",
                 "by COCO size", "by caption length", "by data split", "testB"):
        assert text in page, text
    assert (in_process_eval / "overview.png").read_bytes()[:4] == b"\x89PNG"


def test_scorer_comparison_reproduces_the_run(in_process_eval):
    metrics = json.loads((in_process_eval / "metrics.json").read_text())
    rows = {row["scorer"]: row for row in metrics["scorers"]}
    assert len(rows) == 3
    run_scorer = metrics["run"]["models"]["scorer"]
    assert rows[f"{run_scorer} (run)"]["accuracy"] == pytest.approx(metrics["accuracy"])
    assert rows[run_scorer]["accuracy"] == pytest.approx(metrics["accuracy"])  # the run's scorer, loaded again
    accuracies = [row["accuracy"] for row in metrics["scorers"]]
    assert accuracies == sorted(accuracies, reverse=True)


def test_sweep_matches_real_reruns(eval_models, eval_data):
    """Re-thresholding one low-conf run gives the same answers as running the models at that conf."""
    from findbox.eval.runner import run_in_process
    from findbox.factory import load_pipeline
    from tests.conftest import TINY_DETECTION

    samples = samples_of(read_vlm_jsonl(eval_data, captions_required=True))
    images = eval_data.parent / "images"
    low = TINY_DETECTION["conf"]

    def pipeline_at(conf):  # fresh each time: a pipeline may cache an image's proposals
        return load_pipeline(detector=str(eval_models["detector"]), scorer=str(eval_models["scorer"]),
                             no_upscaler=True, device="cpu", detection={**TINY_DETECTION, "conf": conf})

    base = run_in_process(pipeline_at(low), samples, images, batch=4, run_conf=low, progress=False)
    scores = np.concatenate([r.candidates.det_score for r in base.results if r.candidates is not None])
    thresholds = [float(np.quantile(scores, 0.35)), float(np.quantile(scores, 0.75))]
    rows = {row["conf"]: row for row in analysis.sweep(base, [low, *thresholds])}
    low_preds = [s.pred_ltwh for s in analysis.score_at(base, low)]
    for conf in thresholds:
        swept = analysis.score_at(base, conf)
        rerun = run_in_process(pipeline_at(conf), samples, images, batch=4, run_conf=conf, progress=False)
        for s, r in zip(swept, rerun.results):
            assert (s.pred_ltwh is None) == (r.pred_ltwh is None)
            if s.pred_ltwh is not None:
                np.testing.assert_allclose(s.pred_ltwh, r.pred_ltwh, atol=1e-4)
        rerun_scored = analysis.score_at(rerun, conf)
        assert rows[conf]["accuracy"] == pytest.approx(np.mean([s.hit for s in rerun_scored]))
        assert rows[conf]["detector_recall"] == pytest.approx(analysis.diagnostics(rerun, rerun_scored)["detector_recall"])
        # the threshold mattered: some answer differs from the lowest threshold's
        assert any(a != s.pred_ltwh for a, s in zip(low_preds, swept))
    assert rows[thresholds[1]]["detector_recall"] < rows[low]["detector_recall"]


def test_server_and_in_process_agree(eval_models, eval_data, tmp_path):
    from findbox.cli import main

    args = model_args(eval_models)
    local = tmp_path / "local"
    assert main(["eval", str(eval_data), "--out", str(local), "--no-progress", "--no-sweep", *args]) == 0
    server = ServerProcess(args)
    try:
        remote = tmp_path / "remote"
        assert main(["eval", str(eval_data), "--out", str(remote), "--no-progress", "--server", server.url]) == 0
    finally:
        server.stop()
    m_local = json.loads((local / "metrics.json").read_text())
    m_remote = json.loads((remote / "metrics.json").read_text())
    assert m_remote["accuracy"] == m_local["accuracy"] > 0
    assert m_remote["n_instances"] == m_local["n_instances"] and m_remote["n_bad_images"] == 2
    assert predictions_equal(read_jsonl(local / "predictions.jsonl"), read_jsonl(remote / "predictions.jsonl"))
    assert "diagnostics" not in m_remote and "sweep" not in m_remote
    assert (remote / "report.html").is_file()


def test_server_mode_rejects_model_options(eval_data, tmp_path):
    from findbox.cli import main

    assert main(["eval", str(eval_data), "--out", str(tmp_path), "--server", "http://127.0.0.1:9",
                 "--conf", "0.5"]) == 2


def test_summary_prints_the_field_conventions(eval_models, eval_data, tmp_path, capsys):
    from findbox.cli import main

    assert main(["eval", str(eval_data), "--out", str(tmp_path), "--limit", "2", "--no-sweep", "--no-progress",
                 *model_args(eval_models)]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert f"Acc@0.5/.75/.9  {metrics['acc_50']:.4f} / {metrics['acc_75']:.4f} / {metrics['acc_90']:.4f}" in out
    assert f"mean IoU {metrics['mean_iou']:.4f}" in out
    assert f"detector AP50   {metrics['detector_ap']['ap50']:.4f}" in out
    assert "by COCO size" in out and "by words" in out and "by data split   testA" in out


def test_the_demo_bundle_run_names_its_models(tmp_path):
    """With no model options the run and its report name the bundle's files (they read
    `detector=–, scorer=–` before)."""
    from findbox.bundle import BUNDLE_DIR
    from findbox.cli import main

    out = tmp_path / "eval"
    assert main(["eval", "src/findbox/assets/sample/vlm.jsonl", "--out", str(out), "--device", "cpu",
                 "--no-sweep", "--failures", "0"]) == 0
    models = json.loads((out / "metrics.json").read_text())["run"]["models"]
    assert models == {"detector": f"demo bundle {BUNDLE_DIR / 'detector.pt'}",
                      "scorer": f"demo bundle {BUNDLE_DIR / 'scorer'}", "upscaler": "none"}
    page = (out / "report.html").read_text()
    assert f"detector=demo bundle {BUNDLE_DIR / 'detector.pt'}" in page and "detector=–" not in page
