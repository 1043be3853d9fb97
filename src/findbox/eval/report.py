"""Outputs of `findbox eval`: metrics.json, predictions.jsonl, PNG plots, report.html, overview.png.

report.html is self-contained: inline CSS, and images only as PNG files in the
same folder, referenced by relative name, so the folder opens offline anywhere.
"""

from __future__ import annotations

import html
import json
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from findbox.eval.analysis import Scored, acc_key
from findbox.eval.metric import ACC_IOU_THRESHOLDS, SPEED_SCORE_RULE
from findbox.eval.runner import Run

GREEN, RED, YELLOW = "#1ca01c", "#e0201c", "#f0c419"


def write_predictions(path: Path, run: Run, scored: Sequence[Scored]) -> None:
    """One JSON row per instance, in data order. pred_ltwh is null for an unanswered instance."""
    with open(path, "w", encoding="utf-8") as f:
        for r, s in zip(run.results, scored):
            row = {"image": r.sample.image, "caption": r.sample.caption, "truth_ltwh": list(r.sample.truth_ltwh),
                   "pred_ltwh": list(s.pred_ltwh) if s.pred_ltwh is not None else None,
                   "iou": s.iou, "hit": s.hit}
            if r.sample.split is not None:
                row["split"] = r.sample.split
            if s.covered is not None:
                row["covered"] = s.covered
            if r.error:
                row["error"] = r.error
            f.write(json.dumps(row) + "\n")


def write_metrics(path: Path, metrics: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
        f.write("\n")


# --- plots ---------------------------------------------------------------------------------------


def _plt():
    from findbox.env import require
    require("matplotlib", "eval")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_sweep(path: Path, rows: list[dict], conf: float | None) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=110)
    x = [r["conf"] for r in rows]
    ax.plot(x, [r["accuracy"] for r in rows], "o-", color="#1f5fbf", label="accuracy")
    ax.plot(x, [r["detector_recall"] for r in rows], "s--", color="#7a7a7a", label="detector recall (ceiling)")
    ax.plot(x, [r["scorer_accuracy_given_covered"] if r["scorer_accuracy_given_covered"] is not None else np.nan
                for r in rows], "^:", color="#b05a00", label="scorer accuracy | covered")
    if conf is not None:
        ax.axvline(conf, color="black", lw=0.8, alpha=0.6)
        ax.annotate(f"--conf {conf:g}", (conf, 1.02), xycoords=("data", "axes fraction"), ha="center", fontsize=8)
    ax.set_xlabel("detector confidence threshold")
    ax.set_ylabel("share of instances")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title("Accuracy against detector threshold (one run, re-thresholded)", fontsize=10, pad=14)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# breakdowns in the order the plot and the report show them; a missing one (data_split without splits) is skipped
BREAKDOWN_PANELS = (("object_type", "by object type"), ("colour_count", "by number of colour words"),
                    ("size", "by size (terciles)"), ("coco_size", "by COCO size (true-box area)"),
                    ("caption_length", "by caption length (words)"), ("data_split", "by data split"))


def plot_breakdowns(path: Path, breakdowns: dict) -> None:
    plt = _plt()
    panels = [(name, title) for name, title in BREAKDOWN_PANELS if breakdowns.get(name)]
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    row_heights = [max(2.0, 0.32 * max(len(breakdowns[name]) for name, _ in panels[r * cols:(r + 1) * cols]) + 1.0)
                   for r in range(rows)]
    fig, axes = plt.subplots(rows, cols, figsize=(12, sum(row_heights)), dpi=110, squeeze=False,
                             gridspec_kw={"height_ratios": row_heights})
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (name, title) in zip(axes.flat, panels):
        groups = breakdowns[name]
        labels = [f"{k} (n={v['n']})" for k, v in groups.items()]
        y = np.arange(len(labels))
        ax.barh(y, [v["accuracy"] for v in groups.values()], color="#1f5fbf", alpha=0.85, label="accuracy")
        ax.plot([v["acc_50"] for v in groups.values()], y, "o", color="#b05a00", markersize=4, label="Acc@0.5")
        recall = [v.get("detector_recall") for v in groups.values()]
        if any(r is not None for r in recall):
            ax.plot([r if r is not None else np.nan for r in recall], y, "k|", markersize=14, mew=2,
                    label="detector recall")
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.grid(axis="x", alpha=0.3)
        ax.set_title(title, fontsize=10)
    axes.flat[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_iou_histogram(path: Path, scored: Sequence[Scored]) -> None:
    plt = _plt()
    ious = [s.iou for s in scored if s.pred_ltwh is not None]
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=110)
    ax.hist(ious, bins=np.linspace(0, 1, 21), color="#1f5fbf", alpha=0.85)
    ax.axvline(0.5, color=RED, lw=1)
    ax.set_xlabel("IoU of the prediction with the truth (hit: IoU > 0.5; Acc@0.5: IoU >= 0.5)")
    ax.set_ylabel("instances")
    ax.set_title(f"IoU of {len(ious)} answered instances", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _round_robin_by_image(run: Run, indices: list[int]) -> list[int]:
    """Each image's first miss, then each image's second, ...: a gallery of many images, not one."""
    per_image: dict[str, list[int]] = {}
    for i in indices:
        per_image.setdefault(run.results[i].sample.image, []).append(i)
    queues = list(per_image.values())
    out = []
    for k in range(max((len(q) for q in queues), default=0)):
        out.extend(q[k] for q in queues if k < len(q))
    return out


def pick_failures(run: Run, scored: Sequence[Scored], limit: int) -> list[int]:
    """Indices of misses to show: wrong picks and detector misses alternately, spread over images."""
    misses = [i for i, s in enumerate(scored) if not s.hit and s.pred_ltwh is not None]
    wrong_pick = _round_robin_by_image(run, [i for i in misses if scored[i].covered])
    others = _round_robin_by_image(run, [i for i in misses if not scored[i].covered])
    picked = []
    while len(picked) < limit and (wrong_pick or others):
        for queue in (wrong_pick, others):
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return picked


def miss_cause(s: Scored) -> str:
    if s.pred_ltwh is None:
        return "unanswered"
    if s.covered is None:
        return "miss"
    if s.covered:
        return "wrong pick"
    return "fallback, nothing detected" if s.fallback else "no covering proposal"


def plot_failures(path: Path, run: Run, scored: Sequence[Scored], indices: list[int], images_dir: Path,
                  conf: float | None) -> None:
    """Grid of image regions: truth green, prediction red, other proposals above conf dashed yellow."""
    from matplotlib.patches import Rectangle

    from findbox.images import load_image_file

    plt = _plt()
    cols = 4
    rows = max(1, (len(indices) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.3 * rows), dpi=100, squeeze=False)
    cache: dict[str, np.ndarray] = {}
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, indices):
        r, s = run.results[i], scored[i]
        if r.sample.image not in cache:
            cache[r.sample.image] = load_image_file(images_dir / r.sample.image)
        image = cache[r.sample.image]
        h, w = image.shape[:2]
        boxes = [r.sample.truth_ltwh, s.pred_ltwh]
        x1 = min(b[0] for b in boxes)
        y1 = min(b[1] for b in boxes)
        x2 = max(b[0] + b[2] for b in boxes)
        y2 = max(b[1] + b[3] for b in boxes)
        margin = 0.3 * max(x2 - x1, y2 - y1) + 16
        x1, y1 = int(max(0, x1 - margin)), int(max(0, y1 - margin))
        x2, y2 = int(min(w, x2 + margin)), int(min(h, y2 + margin))
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        ax.imshow(image[y1:y2, x1:x2], extent=(x1, x2, y2, y1), interpolation="nearest")
        if r.candidates is not None and conf is not None:
            for box in r.candidates.xyxy[r.candidates.det_score > np.float32(conf)]:
                ax.add_patch(Rectangle((box[0], box[1]), box[2] - box[0], box[3] - box[1], fill=False,
                                       ec=YELLOW, lw=0.8, ls="--"))
        for (l, t, bw, bh), colour in ((r.sample.truth_ltwh, GREEN), (s.pred_ltwh, RED)):
            ax.add_patch(Rectangle((l, t), bw, bh, fill=False, ec=colour, lw=1.8))
        ax.set_xlim(x1, x2)
        ax.set_ylim(y2, y1)
        title = "\n".join(textwrap.wrap(r.sample.caption, 34)[:2])
        ax.set_title(f"{title}\nIoU {s.iou:.2f} · {miss_cause(s)}", fontsize=8)
    if not indices:
        axes[0, 0].text(0.5, 0.5, "no failures to show", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --- html ----------------------------------------------------------------------------------------


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    if hasattr(value, "value"):  # an Enum
        return str(value.value)
    return str(value)


def _table(rows: list[dict], columns: list[str] | None = None) -> str:
    if not rows:
        return "<p>none</p>"
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(row.get(c)))}</td>" for c in columns) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _kv_table(items: dict) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
                               for k, v in items.items()) + "</table>"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1150px;
color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:13px} th,td{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f6f8} .big td{font-size:16px} img{max-width:100%;border:1px solid #eee}
.note{color:#666;font-size:12px} .cards{display:flex;gap:12px;flex-wrap:wrap}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:22px} .card span{color:#666;font-size:12px}
"""


def _detector_ap_html(ap: dict) -> str:
    if "error" in ap:
        return f"<p>not computed: {html.escape(ap['error'])}</p>"
    return ("<p class=note>The detector's proposals at conf &gt; " + html.escape(f"{ap['conf']:g}") + " (the run's "
            "own threshold) against the distinct true boxes of each image, as one class; COCOeval (bbox) of "
            + html.escape(ap["evaluator"]) + ": AP50 at IoU 0.5, AP50:95 the mean over IoU 0.50:0.05:0.95.</p>"
            + _kv_table({"AP50": ap["ap50"], "AP50:95": ap["ap50_95"], "images": ap["n_images"],
                         "true boxes": ap["n_truths"], "proposals": ap["n_detections"],
                         "proposals per image counted (max)": ap["max_dets"]}))


def write_html(path: Path, metrics: dict, run: Run, scored: Sequence[Scored], failures: list[int],
               plots: dict[str, str]) -> None:
    """The report; `plots` maps a plot's role to its PNG file name in the same folder."""
    m = metrics
    cards = [("accuracy", m["accuracy"]), *((f"Acc@{k:g}", m[acc_key(k)]) for k in ACC_IOU_THRESHOLDS),
             ("mean IoU", m["mean_iou"]), ("task score", m["task_score"]), ("instances / s", m["instances_per_s"]),
             ("latency p50 (s)", m["latency_p50_s"]), ("latency p95 (s)", m["latency_p95_s"]),
             ("instances", m["n_instances"]), ("bad images", m["n_bad_images"])]
    parts = [f"<h1>findbox eval: {html.escape(m['run']['data'])}</h1>",
             f"<p class=note>{html.escape(m['run']['mode'])} · split {html.escape(str(m['run']['split']))} · "
             f"{m['n_images']} images · {m['n_requests']} requests of up to {m['run']['batch']} instances · "
             f"{html.escape(m['run']['finished'])}</p>",
             "<div class=cards>" + "".join(f"<div class=card><b>{html.escape(_fmt(v))}</b><span>{html.escape(k)}"
                                          "</span></div>" for k, v in cards) + "</div>",
             "<p class=note>Accuracy is the task's rule: a hit when round(IoU) == 1 (Python's round, so IoU must be "
             "above 0.5). Acc@k is the field's (the REC papers'): a hit when IoU &gt;= k; Acc@0.5 differs from the "
             "accuracy only at IoU exactly 0.5. Mean IoU counts an unanswered instance as 0.</p>",
             f"<p class=note>Speed score: {html.escape(SPEED_SCORE_RULE)}; an instance's seconds are its share of its "
             f"request's latency. Task score = 0.9 accuracy + 0.1 mean speed score.</p>"]
    run_info = {k: v for k, v in m["run"].items() if k not in ("data",)}
    parts += ["<h2>Run</h2>", _kv_table(run_info)]
    if "diagnostics" in m:
        d = m["diagnostics"]
        parts += ["<h2>Stages</h2>",
                  "<p class=note>Detector recall: share of true boxes some proposal covers with IoU &gt; 0.5 "
                  "(the accuracy ceiling). Scorer accuracy | covered: of those, the share the scorer picked right."
                  "</p>",
                  _kv_table({"detector recall": d["detector_recall"],
                             "scorer accuracy | covered": d["scorer_accuracy_given_covered"],
                             "fallback rate (no proposal)": d["fallback_rate"],
                             "proposals per instance": d["mean_candidates"],
                             **{f"misses: {k.replace('_', ' ')}": v for k, v in d["misses"].items()},
                             "hits without a covering proposal": d["hits_without_covering_proposal"]})]
    if "detector_ap" in m:
        parts += ["<h3>Detector AP (one class)</h3>", _detector_ap_html(m["detector_ap"])]
    if m.get("sweep"):
        parts += ["<h2>Detector threshold sweep</h2>",
                  f"<p class=note>One run at conf {m['run']['run_conf']:g}; each threshold drops the proposals at or "
                  "below it and re-takes the scorer's argmax (or the fallback box). No model was re-run.</p>",
                  f"<img src=\"{plots['sweep']}\" alt=\"sweep\">", _table(m["sweep"])]
    if m.get("scorers"):
        parts += ["<h2>Scorers on the same detections and crops</h2>", _table(m["scorers"])]
    b = m["breakdowns"]
    parts += ["<h2>Breakdowns</h2>", f"<img src=\"{plots['breakdowns']}\" alt=\"breakdowns\">"]
    for name, title in BREAKDOWN_PANELS:
        if not b.get(name):
            continue
        rows = [{name: k, **v} for k, v in b[name].items()]
        parts += [f"<h3>{html.escape(title)}</h3>", _table(rows)]
        if name == "size" and b.get("size_area_px2"):
            parts.append("<p class=note>Size bins are terciles of the true box area: " + html.escape(
                ", ".join(f"{k} {v[0]:.0f}–{v[1]:.0f} px²" for k, v in b["size_area_px2"].items())) + "</p>")
        if name == "coco_size":
            parts.append("<p class=note>COCO's sizes by true-box area in original pixels: small &lt; 32², "
                         "medium &lt; 96², large the rest.</p>")
    parts += ["<h2>IoU of the predictions</h2>", f"<img src=\"{plots['iou']}\" alt=\"IoU histogram\">"]
    parts += ["<h2>Failures</h2>",
              "<p class=note>Truth green, prediction red, other proposals above the threshold dashed yellow.</p>",
              f"<img src=\"{plots['failures']}\" alt=\"failure gallery\">",
              _table([{"image": run.results[i].sample.image, "caption": run.results[i].sample.caption,
                       "truth_ltwh": list(run.results[i].sample.truth_ltwh), "pred_ltwh": list(scored[i].pred_ltwh),
                       "iou": scored[i].iou, "cause": miss_cause(scored[i])} for i in failures])]
    parts += ["<h2>Bad images</h2>", _table(m["bad_images"]) if m["bad_images"] else "<p>none</p>"]
    page = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>findbox eval</title><style>{CSS}</style>"
            f"</head><body>{''.join(parts)}</body></html>\n")
    path.write_text(page, encoding="utf-8")


def render_overview(path: Path, metrics: dict, plots: dict[str, Path]) -> None:
    """One PNG of the report's essentials (headline, sweep, IoU, breakdowns, failures), for sharing.

    plots: role -> PNG file, as written by `write_report`; missing roles are skipped.
    """
    import matplotlib.image as mpimg

    plt = _plt()
    width_in, dpi = 12.0, 100
    pair = [mpimg.imread(plots[k]) for k in ("sweep", "iou") if k in plots]
    singles = [mpimg.imread(plots[k]) for k in ("breakdowns", "failures") if k in plots]
    header_in = 1.5
    pair_in = (width_in / len(pair)) * min(im.shape[0] / im.shape[1] for im in pair) if pair else 0.0
    single_in = [width_in * im.shape[0] / im.shape[1] for im in singles]
    height_in = header_in + pair_in + sum(single_in)
    fig = plt.figure(figsize=(width_in, height_in), dpi=dpi)
    m, run = metrics, metrics["run"]
    headline = (f"accuracy {m['accuracy']:.4f}   Acc@0.5 {m['acc_50']:.4f}   mean IoU {m['mean_iou']:.4f}   "
                f"task score {m['task_score']:.4f}   "
                f"{m['instances_per_s']:.2f} instances/s   latency p50 {_fmt(m['latency_p50_s'])} s, "
                f"p95 {_fmt(m['latency_p95_s'])} s")
    counts = (f"{run['mode']} · split {run['split']} · {m['n_instances']} instances on {m['n_images']} images · "
              f"{m['n_bad_images']} bad images · requests of up to {run['batch']}")
    fig.text(0.01, 1 - 0.35 / height_in, f"findbox eval: {run['data']}", fontsize=14, weight="bold", va="center")
    fig.text(0.01, 1 - 0.75 / height_in, headline, fontsize=12, va="center")
    lines = [counts]
    if "diagnostics" in m:
        d = m["diagnostics"]
        ap = m.get("detector_ap", {})
        ap_text = "" if "ap50" not in ap else f" · detector AP50 {_fmt(ap['ap50'])}, AP50:95 {_fmt(ap['ap50_95'])}"
        lines.append(f"detector recall {_fmt(d['detector_recall'])} · scorer accuracy | covered "
                     f"{_fmt(d['scorer_accuracy_given_covered'])} · fallback rate {_fmt(d['fallback_rate'])}{ap_text}")
    fig.text(0.01, 1 - 1.15 / height_in, "\n".join(lines), fontsize=9, color="#555", va="center")
    top = height_in - header_in
    for k, im in enumerate(pair):
        ax = fig.add_axes((k / len(pair), (top - pair_in) / height_in, 1 / len(pair), pair_in / height_in))
        ax.imshow(im)
        ax.axis("off")
    top -= pair_in
    for im, h in zip(singles, single_in):
        ax = fig.add_axes((0, (top - h) / height_in, 1, h / height_in))
        ax.imshow(im)
        ax.axis("off")
        top -= h
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def write_report(out_dir: Path, metrics: dict, run: Run, scored: Sequence[Scored], images_dir: Path,
                 n_failures: int = 16) -> Path:
    """All plots and report.html into out_dir; returns the HTML path."""
    plots = {"breakdowns": "breakdowns.png", "iou": "iou_hist.png", "failures": "failures.png"}
    conf = metrics["run"].get("conf")
    if metrics.get("sweep"):
        plots["sweep"] = "sweep.png"
        plot_sweep(out_dir / plots["sweep"], metrics["sweep"], conf)
    plot_breakdowns(out_dir / plots["breakdowns"], metrics["breakdowns"])
    plot_iou_histogram(out_dir / plots["iou"], scored)
    failures = pick_failures(run, scored, n_failures)
    plot_failures(out_dir / plots["failures"], run, scored, failures, images_dir, conf)
    path = out_dir / "report.html"
    write_html(path, metrics, run, scored, failures, plots)
    render_overview(out_dir / "overview.png", metrics, {k: out_dir / v for k, v in plots.items()})
    return path
