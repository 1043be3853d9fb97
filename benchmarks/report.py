"""Markdown tables from the benchmark results (benchmarks/results/*.json).

    .venv/bin/python benchmarks/report.py [--tag cpu] > benchmarks/results/cpu.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def fmt(v, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def provenance(path: Path) -> str:
    """When a results file was measured: the date and commit it records (common.write_result); for a file
    made before records carried them, its last commit, or its mtime when it changed since."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        record = {}
    if record.get("date") and record.get("commit"):
        return f"measured {record['date'][:16].replace('T', ' ')} UTC at {record['commit'][:7]}"
    root = Path(__file__).parent.parent
    try:
        changed = subprocess.run(["git", "status", "--porcelain", "--", str(path)], cwd=root, capture_output=True,
                                 text=True, timeout=10).stdout.strip()
        last = subprocess.run(["git", "log", "-1", "--format=%h %ad", "--date=format:%Y-%m-%d %H:%M", "--",
                               str(path)], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if changed or not last:  # written since the last commit: its mtime is when the benchmark wrote it
        return "written " + time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
    return f"committed {last}"


def spread(median: float, low: float, high: float, unit: str = "", digits: int = 2) -> str:
    """'median (min-max)', the form every timing and ratio of these tables takes."""
    return f"{median:.{digits}f}{unit} ({low:.{digits}f}-{high:.{digits}f})"


def contender_table(section: dict, title: str, paired: bool = True) -> list[str]:
    """paired=False: the ratio of total times (a cached request against an uncached one is no ratio to take
    the median of: the cache turns most of them into milliseconds)."""
    head = "ratio vs reference, median (min-max)" if paired else "ratio of total times vs reference"
    rows = [f"**{title}** ({section['requests']} requests per contender, {section['instances']} instances, "
            f"alternating order; load average {section['load_before'][0]:.1f} -> {section['load_after'][0]:.1f})", "",
            f"| contender | {head} | request s, median (min-max) | instances/s | "
            "peak RSS MB | same box as reference |",
            "|---|---|---|---|---|---|"]
    for name, c in section["contenders"].items():
        if "ratio_min" in c and not paired:
            ratio = f"**{c['ratio_of_totals']:.2f}x**"
            seconds = spread(c["p50_s"], c["min_s"], c["max_s"])
        elif "ratio_min" in c:
            ratio = f"**{spread(c['ratio_vs_reference'], c['ratio_min'], c['ratio_max'], 'x')}**"
            seconds = spread(c["p50_s"], c["min_s"], c["max_s"])
        else:  # results written before the ratios were paired per request
            ratio, seconds = f"**{c['ratio_vs_reference']:.2f}x** (of totals)", f"{c['p50_s']:.2f}"
        rows.append(f"| {name} | {ratio} | {seconds} | {c['instances_per_s']:.3f} | {fmt(c['peak_rss_mb'], 0)} | "
                    f"{100 * c['same_box_as_reference']:.0f}% |")
    return rows + [""]


def goals_table(r: dict) -> list[str]:
    """Issue 17's goals against the default contender (precision auto) and fp32."""
    goals = (("a", "(a) 4 captions of one image per request", 10.0), ("b", "(b) 4 distinct images per request", 2.0))
    rows = ["**Goals** (ratio vs reference, median (min-max) of the requests above)", "",
            "| goal | default (`--precision auto`) | `--precision fp32` | met by the default? |", "|---|---|---|---|"]
    for key, what, target in goals:
        contenders = r["sections"].get(key, {}).get("contenders", {})
        auto = next((c for n, c in contenders.items() if "auto" in n), None)
        fp32 = contenders.get("findbox fp32")
        if auto is None or fp32 is None or "ratio_min" not in auto:
            continue
        cell = [spread(c["ratio_vs_reference"], c["ratio_min"], c["ratio_max"], "x") for c in (auto, fp32)]
        verdict = "met" if auto["ratio_min"] >= target else (
            "missed" if auto["ratio_max"] < target else "median " + ("met" if auto["ratio_vs_reference"] >= target
                                                                      else "missed") + ", range spans it")
        rows.append(f"| {what} >= {target:g}x | {cell[0]} | {cell[1]} | {verdict} |")
    return rows + [""]


def scaling_table(rows: dict, what: str) -> list[str]:
    """Median (min-max) request seconds per point and the median of the paired ratios."""
    out = [f"| {what} | reference s | findbox s | ratio | requests |", "|---|---|---|---|---|"]
    for key, section in rows.items():
        c = section["contenders"]
        ref = c["reference"]
        fb = next(v for n, v in c.items() if n != "reference")
        if "ratio_min" in fb:
            out.append(f"| {key} | {spread(ref['p50_s'], ref['min_s'], ref['max_s'])} | "
                       f"{spread(fb['p50_s'], fb['min_s'], fb['max_s'])} | "
                       f"{spread(fb['ratio_vs_reference'], fb['ratio_min'], fb['ratio_max'], 'x')} | "
                       f"{section['requests']} |")
    return out + [""]


def stage_table(stages: dict, key: str) -> list[str]:
    out = [f"| stage | seconds per request | work per request | GFLOP per request | FLOP floor s ({'peak'}) | "
           "floor / time |", "|---|---|---|---|---|---|"]
    for stage, row in stages[key].items():
        floor = row.get("floor_s_per_request")
        out.append(f"| {stage} | {row['seconds_per_request']:.3f} | {fmt(row.get('work_per_request'), 1)} | "
                   f"{fmt(row.get('gflop_per_request'), 1)} | "
                   + (f"{floor:.3f} ({row['peak']})" if floor is not None else "-") + " | "
                   + (f"{100 * floor / row['seconds_per_request']:.0f}%" if floor and row["seconds_per_request"] > 0
                      else "-") + " |")
    return out + [""]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args()
    lines: list[str] = []
    path = RESULTS / f"{args.tag}.json"
    sources = [p for p in [path, *(RESULTS / f"{n}.json" for n in ("memory", "flops", "precision",
                                                                    "detector_export"))] if p.is_file()]
    sources += sorted(RESULTS.glob("sliced*.json"))
    lines += ["Sources (a table is only as current as its file): "
              + "; ".join(f"`{p.name}` {provenance(p)}" for p in sources) + ".", ""]
    if path.is_file():
        r = json.loads(path.read_text())
        m = r["machine"]
        lines += [f"Machine: {m.get('cpu_model')} ({m['cpus']} CPUs, torch {m['torch']}, {m['torch_threads']} threads, "
                  f"{m.get('cpu_capability')}, flags {', '.join(m.get('bf16_flags', []))}). "
                  f"Run {r['started']} - {r['finished']} at commit {r.get('commit', '?')}; findbox's default precision "
                  f"(auto) here: {r['settings'].get('auto_precision', 'fp32 (before auto)')}, the reference: "
                  f"{r['settings'].get('reference_precision', 'fp32')}.", "", f"Command: `{r['command']}`", ""]
        titles = {"a": "(a) the client's order: 4 captions of one image per request",
                  "b": "(b) 4 distinct images per request, one caption each",
                  "c": "(c) one instance per request, each image sent 4 times",
                  "variants_a": "Faster paths, workload (a)", "variants_b": "Faster paths, workload (b)"}
        for key, title in titles.items():
            if key in r["sections"]:
                lines += contender_table(r["sections"][key], title, paired=key != "c")
        lines += goals_table(r)
        if "captions" in r["sections"]:
            lines += ["**Time against captions per image** (a request of k captions of one image; 4 is workload (a))",
                      ""]
            lines += scaling_table(r["sections"]["captions"], "captions")
        if "max_det" in r["sections"]:
            lines += ["**Time against boxes per image** (a request of 4 captions of one image; 10 is workload (a))",
                      ""]
            lines += scaling_table(r["sections"]["max_det"], "max_det")
    memory = RESULTS / "memory.json"
    if memory.is_file():
        m = json.loads(memory.read_text())
        lines += ["**Peak RSS against request size** (fresh process each; 4 captions per image)", "",
                  # peak - loaded: what the request needs above the loaded models; the peak before the request
                  # can be the load itself (bf16 weights are cast from fp32 ones), so "adds" can read 0
                  "| contender | instances | images | loaded MB | peak MB | peak - loaded MB | request adds to the "
                  "peak MB | seconds |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in m["rows"]:
            lines.append(f"| {row['contender']} | {row['instances']} | {row['images']} | {row['rss_loaded_mb']:.0f} | "
                         f"{row['peak_rss_mb']:.0f} | {row['peak_rss_mb'] - row['rss_loaded_mb']:.0f} | "
                         f"{row['peak_rss_mb'] - row['peak_before_request_mb']:.0f} | {row['seconds']:.1f} |")
        lines.append("")
    flops = RESULTS / "flops.json"
    if flops.is_file():
        f = json.loads(flops.read_text())
        g = {k: v / 1e9 for k, v in f["flops"].items()}
        lines += ["**FLOPs and the matmul peak**", "",
                  f"Detector {g['detector_per_image']:.1f} GFLOP per image ({f['detector_input'][1]}x"
                  f"{f['detector_input'][0]}), image tower {g['image_tower_per_crop']:.1f} GFLOP per crop, text tower "
                  f"{g['text_tower_per_caption']:.1f} GFLOP per caption. Per instance: "
                  + ", ".join(f"{k} {v / 1e9:.0f} GFLOP" for k, v in f["flops_per_instance"].items())
                  + f". torch.mm peak ({f['threads']} threads): "
                  + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in f["matmul_peak_gflops"].items()) + ".", ""]
        if "achieved" in f:
            lines += ["| run | precision | achieved GFLOP/s | of its peak |", "|---|---|---|---|"]
            for k, row in f["achieved"].items():
                share = row.get("of_fp32_peak", row.get("of_peak"))
                lines.append(f"| {k} | {row.get('precision', 'fp32')} | {row['gflops']:.1f} | "
                             + (f"{100 * share:.0f}% of {row.get('peak') or 'fp32'}" if share is not None else "-")
                             + " |")
            lines.append("")
        for key in f.get("stages", {}):
            lines += [f"**Time per stage against its FLOP floor: {key}** (the floor: the stage's counted FLOPs "
                      "at the torch.mm peak of its precision; the detector runs fp32)", ""]
            lines += stage_table(f["stages"], key)
    precision = RESULTS / "precision.json"
    if precision.is_file():
        pr = json.loads(precision.read_text())
        for name, st in pr["sets"].items():
            lines += [f"**Same boxes as fp32?** set `{name}`: {Path(st['scorer']).name} scorer, "
                      + ("trained" if st["trained"] else "random weights (agreement only)")
                      + f"; {st['images']} images ({st['noise']} noise), {st['queries']} queries, {st['crops']} crops", "",
                      "| variant | same box as fp32 | max logit diff | median logit spread | scorer s | accuracy |",
                      "|---|---|---|---|---|---|"]
            for variant, row in st["rows"].items():
                lines.append(f"| {variant} | {100 * row['same_box_as_fp32']:.1f}% | {row['max_logit_diff']:.1e} | "
                             f"{row['median_logit_spread']:.1e} | {row['scorer_seconds']:.1f} | "
                             f"{fmt(row.get('accuracy'), 3)} |")
            lines.append("")
        if "tower" in pr:
            t = pr["tower"]
            lines += [f"**Image tower speed** ({Path(t['scorer']).name}, {t['batch']} crops of {t['size_hw'][1]}x"
                      f"{t['size_hw'][0]} per forward, median (min-max) of {t['reps']} alternating runs)", "",
                      "| variant | seconds per forward | vs fp32 |", "|---|---|---|"]
            for name, row in t["rows"].items():
                lines.append(f"| {name} | {spread(row['median_s'], row['min_s'], row['max_s'])} | "
                             f"{row['speedup_vs_fp32']:.2f}x |")
            lines.append("")
    small = RESULTS / "small_crops.json"
    if small.is_file():
        lines += small_crop_tables(json.loads(small.read_text()))
    export = RESULTS / "detector_export.json"
    if export.is_file():
        e = json.loads(export.read_text())
        d = e["detection"]
        lines += [f"**Detector: PyTorch against its ONNX Runtime export** ({Path(e['detector']).name}, imgsz "
                  f"{d['imgsz']}, conf {d['conf']}, iou {d['iou']}, max_det {d['max_det']}; one "
                  f"{e['image_wh'][0]}x{e['image_wh'][1]} frame, median (min-max) of {e['runs']} alternating runs; "
                  f"same boxes on {e['frames']} frames; run {e['started']})", "",
                  "| detector | ms per frame | vs torch | frames with the same boxes | largest box difference px |",
                  "|---|---|---|---|---|"]
        for name, row in e["contenders"].items():
            lines.append(f"| {name} | {spread(row['median_ms'], row['min_ms'], row['max_ms'], digits=0)} | "
                         f"{row['speedup_vs_torch']:.2f}x | {row['frames_same_boxes']} of {e['frames']} | "
                         f"{fmt(row['max_box_diff_px'], 4)} |")
        lines.append("")
    for sliced in sorted(RESULTS.glob("sliced*.json")):
        s = json.loads(sliced.read_text())
        lines += [f"**Sliced detection** ({Path(s['detector']).name}, imgsz {s['imgsz']}, {s['images']} images"
                  + ("" if s["trained"] else "; random weights: speed only") + f"; `{sliced.name}`)", "",
                  "| slices | ms per image | boxes per image | small-object recall | other recall |",
                  "|---|---|---|---|---|"]
        for grid, row in s["rows"].items():
            rec = row.get("recall", {})
            lines.append(f"| {grid} | {1000 * row['seconds_per_image']:.0f} | {row['boxes_per_image']:.1f} | "
                         f"{fmt(rec.get('small', {}).get('recall'))} | {fmt(rec.get('other', {}).get('recall'))} |")
        lines.append("")
    print("\n".join(lines))


def small_crop_tables(sc: dict) -> list[str]:
    """`bench_small_crops.py`: answers of the demo scorer and speed of the base-size towers per small input side."""
    lines = []
    for noise, d in sc.get("demo", {}).items():
        lines += [f"**Small crops at a smaller input: answers** (demo scorer, input {d['scorer_input'][1]}; "
                  f"{d['images']} fresh scenes at {noise} noise, {d['queries']} queries, {d['crops']} crops; "
                  "fp32)", "",
                  "| small input | crops scored small | same box as off | accuracy | scorer s |", "|---|---|---|---|---|"]
        for side, row in d["rows"].items():
            lines.append(f"| {side if side != '0' else 'off'} | {100 * row['small_share']:.0f}% | "
                         f"{100 * row['same_box_as_off']:.1f}% | {row['accuracy']:.3f} | {row['scorer_seconds']:.2f} |")
        lines.append("")
    if "base" in sc:
        b = sc["base"]
        lines += [f"**Small crops at a smaller input: speed** (base-size towers, input 224, on the demo detector's "
                  f"{b['crops']} proposals; median (min-max) of {b['reps']} alternating runs)", "",
                  "| precision | small input | crops scored small | seconds | vs off |", "|---|---|---|---|---|"]
        for precision, rows in b["rows"].items():
            for side, row in rows.items():
                lines.append(f"| {precision} | {side if side != '0' else 'off'} | {100 * row['small_share']:.0f}% | "
                             f"{spread(row['median_s'], row['min_s'], row['max_s'])} | "
                             f"{row['speedup_vs_off']:.2f}x |")
        lines.append("")
    return lines


if __name__ == "__main__":
    main()
