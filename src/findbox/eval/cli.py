"""`findbox eval`: score a model (in-process) or a running server on a vlm.jsonl data set.

    findbox eval data/vlm.jsonl --out runs/eval --detector det.pt --scorer siglip/   # in-process
    findbox eval data/vlm.jsonl --out runs/eval --server http://127.0.0.1:5004       # a server

Writes DIR/metrics.json, DIR/predictions.jsonl, DIR/report.html and its PNG plots.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from findbox.cli import CommandError, add_model_options, flag_of, option_names, serve_config_from_args
from findbox.config import PipelineConfig
from findbox.eval.analysis import DEFAULT_SWEEP
from findbox.eval.data import SplitName


def _thresholds(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or not all(0.0 <= v < 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"expected thresholds in [0, 1), got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DATA_JSONL", help="vlm.jsonl; images are read from images/ beside it")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for metrics.json, predictions.jsonl, "
                        "report.html")
    parser.add_argument("--server", metavar="URL", help="evaluate a running server (headline numbers only) instead "
                        "of loading the models")
    parser.add_argument("--batch", type=int, default=4, help="instances per request, one image's captions "
                        "(default %(default)s, like the published client)")
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N images of the split")
    parser.add_argument("--split", choices=[s.value for s in SplitName],
                        help="which lines: val = the last 20%% (default with --split-file), all (default otherwise)")
    parser.add_argument("--split-file", metavar="SPLIT_JSON", help="split.json of a detector run: use exactly its "
                        "train / val image names")
    parser.add_argument("--images", metavar="DIR", help="image folder (default: images/ beside DATA_JSONL)")
    parser.add_argument("--compare-scorer", action="append", default=[], metavar="SPEC",
                        help="also rank this scorer (a folder or any --scorer spec) on the same detections and "
                        "crops (repeatable)")
    parser.add_argument("--sweep", type=_thresholds, default=list(DEFAULT_SWEEP), metavar="C1,C2,...",
                        help="detector thresholds to sweep; the models run once at the lowest of these and --conf "
                        f"(default {','.join(f'{c:g}' for c in DEFAULT_SWEEP)})")
    parser.add_argument("--no-sweep", action="store_true", help="run at exactly --conf (timing of that threshold)")
    parser.add_argument("--failures", type=int, default=16, metavar="N",
                        help="misses in the gallery (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    # the same model options and --config TOML as `findbox serve` (its server keys are not used here)
    add_model_options(parser)


def main(args: argparse.Namespace) -> int:
    try:
        return _main(args)
    except RuntimeError as exc:  # the server under evaluation unreachable or not ready (eval.runner)
        raise CommandError(str(exc)) from exc


def _main(args: argparse.Namespace) -> int:
    from findbox.eval import analysis, metric, report
    from findbox.data.vlm import read_vlm_jsonl
    from findbox.eval.data import samples_of, select_split

    if args.batch < 1:
        raise ValueError(f"--batch: expected a positive number of instances, got {args.batch}")
    if args.server:
        given = [flag_of(PipelineConfig, d) for d in option_names(PipelineConfig) if getattr(args, d, None) is not None]
        given += ["--config"] if getattr(args, "config", None) else []
        if given:
            raise ValueError(f"--server evaluates the server's own models; drop the model options {', '.join(given)}")
        if args.compare_scorer:
            raise ValueError("--compare-scorer needs the detections, which only an in-process run has; drop --server")

    data = Path(args.data)
    images_dir = Path(args.images) if args.images else data.parent / "images"
    split = SplitName(args.split) if args.split else (SplitName.VAL if args.split_file else SplitName.ALL)
    entries = select_split(read_vlm_jsonl(data, captions_required=True), split, args.split_file)  # an instance needs its caption
    if args.limit is not None:
        entries = entries[: max(args.limit, 0)]
    samples = samples_of(entries)
    if not samples:
        raise ValueError(f"{data}: no instances in split {split.value!r}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    progress = not args.no_progress
    print(f"findbox eval: {len(samples)} instances on {len(entries)} images ({split.value}) from {data}",
          file=sys.stderr)

    run_info = {"data": str(data), "images": str(images_dir), "split": split.value,
                "split_file": args.split_file, "limit": args.limit, "batch": args.batch}
    if args.server:
        from findbox.eval.runner import run_server

        run = run_server(args.server, samples, images_dir, args.batch, progress)
        conf = None
        run_info.update(mode="server", server=args.server)
    else:
        run, conf, pipeline, config = _run_in_process(args, samples, images_dir, progress)
        run_info.update(mode="in-process", conf=conf, run_conf=run.run_conf,
                        models=_models_loaded(config),
                        device=str(pipeline.scorer.device),
                        # the model paths are in "models", as loaded (the config holds None for the bundle's)
                        config={k: v for k, v in dataclasses.asdict(config).items()
                                if k not in ("detector", "scorer", "upscaler")})
    run_info["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")

    scored = analysis.score_at(run, conf)
    metrics = analysis.headline(run, scored)
    metrics["speed_score_rule"] = metric.SPEED_SCORE_RULE
    metrics["run"] = run_info
    metrics["bad_images"] = [{"image": k, "reason": v} for k, v in run.bad_images.items()]
    metrics["breakdowns"] = analysis.breakdowns([r.sample for r in run.results], scored)
    if conf is not None:
        from findbox.eval.detector_ap import detector_ap

        metrics["diagnostics"] = analysis.diagnostics(run, scored)
        metrics["detector_ap"] = detector_ap(run)  # {"error": ...} without faster-coco-eval: said, not fatal
        if not args.no_sweep:
            metrics["sweep"] = analysis.sweep(run, [t for t in args.sweep if t >= run.run_conf] + [conf])
            # WBF fuses the members' boxes before the threshold: weaker boxes move the fused ones
            run_info["sweep_exact"] = not isinstance(config.detector, list)
        if args.compare_scorer:
            metrics["scorers"] = _compare(args, run, conf, pipeline, config, images_dir, progress)

    try:
        report.write_metrics(out / "metrics.json", metrics)
        report.write_predictions(out / "predictions.jsonl", run, scored)
        html_path = report.write_report(out, metrics, run, scored, images_dir, args.failures)
    except OSError as exc:
        # a full disk names no file ("[Errno 28] No space left on device"): say where, and that the files are partial
        raise CommandError(f"--out {out}: could not write the results ({exc.strerror or exc}); the files written "
                           f"there so far are incomplete") from exc
    _print_summary(metrics, out, html_path)
    return 0


def _run_in_process(args, samples, images_dir, progress):
    from findbox.eval.runner import run_in_process
    from findbox.factory import load_pipeline

    config = serve_config_from_args(args).pipeline
    conf = config.detection.conf
    run_conf = conf if args.no_sweep else min([conf, *args.sweep])
    run_config = dataclasses.replace(config, detection=dataclasses.replace(config.detection, conf=run_conf))
    pipeline = load_pipeline(run_config)
    run = run_in_process(pipeline, samples, images_dir, args.batch, run_conf, progress)
    return run, conf, pipeline, config


def _models_loaded(config) -> dict:
    """The models the run loaded: each as given, or the demo bundle's file where none was given
    (the report would otherwise show "detector=–" for the bundle); the upscaler "none" when off."""
    from findbox.factory import resolve_model_paths

    paths = resolve_model_paths(config)
    models = {}
    for part in ("detector", "scorer", "upscaler"):
        given = getattr(config, part)
        if part == "upscaler" and paths["upscaler"] is None:
            models[part] = "none"
        elif given is not None:
            models[part] = given
        else:
            models[part] = f"demo bundle {paths[part]}"
    return models


def _compare(args, run, conf, pipeline, config, images_dir, progress) -> list[dict]:
    from findbox.eval.analysis import compare_scorers

    from findbox.factory import load_configured_scorer  # any scorer spec: folder, open_clip:..., .toml
    run_scorer = pipeline.scorer
    scorers = {f"{config.scorer or 'bundled'} (run)": run_scorer}
    for spec in args.compare_scorer:  # in the run's arithmetic: precision, backend, small crop input
        scorers[spec] = load_configured_scorer(spec, config, run_scorer.device)
    return compare_scorers(run, conf, scorers, images_dir, pipeline.upscaler, progress)


# the breakdowns the text summary prints (accuracy by group); all of them are in metrics.json and the HTML
BREAKDOWN_LINES = (("coco_size", "by COCO size"), ("caption_length", "by words"), ("data_split", "by data split"))


def _print_summary(m: dict, out: Path, html_path: Path) -> None:
    def f(v):
        return "n/a" if v is None else f"{v:.4f}"

    lines = [f"accuracy        {f(m['accuracy'])}  ({m['n_hits']}/{m['n_instances']}, "
             f"{m['n_bad_images']} bad images; the task's rule: round(IoU) == 1)",
             f"Acc@0.5/.75/.9  {f(m['acc_50'])} / {f(m['acc_75'])} / {f(m['acc_90'])}  (IoU >= k, the field's rule)   "
             f"mean IoU {f(m['mean_iou'])}",
             f"task score      {f(m['task_score'])}  (speed score {f(m['speed_score'])}, assumed rule)",
             f"instances/s     {f(m['instances_per_s'])}",
             f"latency p50/p95 {f(m['latency_p50_s'])} / {f(m['latency_p95_s'])} s"]
    d = m.get("diagnostics")
    if d:
        lines.append(f"detector recall {f(d['detector_recall'])}   scorer accuracy | covered "
                     f"{f(d['scorer_accuracy_given_covered'])}")
    ap = m.get("detector_ap")
    if ap is not None and "error" in ap:
        lines.append(f"detector AP     n/a: {ap['error']}")
    elif ap is not None:
        lines.append(f"detector AP50   {f(ap['ap50'])}   AP50:95 {f(ap['ap50_95'])}  (one class, proposals at conf > "
                     f"{ap['conf']:g}, {ap['evaluator']})")
    for name, title in BREAKDOWN_LINES:
        groups = m["breakdowns"].get(name)
        if groups:
            lines.append(f"{title:<16}" + "  ".join(f"{k} {f(v['accuracy'])} (n={v['n']})" for k, v in groups.items()))
    for row in m.get("scorers", []):
        lines.append(f"scorer          {f(row['accuracy'])}  {row['scorer']}")
    lines.append(f"wrote {out / 'metrics.json'}, {out / 'predictions.jsonl'}, {html_path}")
    print("\n".join(lines))
