"""Markdown tables from the benchmark results (benchmarks/results/*.json).

    .venv/bin/python benchmarks/report.py [--tag cpu] > benchmarks/results/cpu.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def fmt(v, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def contender_table(section: dict, title: str) -> list[str]:
    rows = [f"**{title}** ({section['requests']} requests, {section['instances']} instances; load average "
            f"{section['load_before'][0]:.1f} -> {section['load_after'][0]:.1f})", "",
            "| contender | ratio vs reference | instances/s | p50 request s | p95 request s | peak RSS MB | same box |",
            "|---|---|---|---|---|---|---|"]
    for name, c in section["contenders"].items():
        rows.append(f"| {name} | **{c['ratio_vs_reference']:.2f}x** | {c['instances_per_s']:.3f} | {c['p50_s']:.2f} | "
                    f"{c['p95_s']:.2f} | {fmt(c['peak_rss_mb'], 0)} | {100 * c['same_box_as_reference']:.0f}% |")
    return rows + [""]


def scaling_table(rows: dict, what: str) -> list[str]:
    """The fastest of each point's requests (noise on a shared machine only ever adds time)."""
    out = [f"| {what} | reference s | findbox s | ratio | requests |", "|---|---|---|---|---|"]
    for key, section in rows.items():
        ref = min(section["contenders"]["reference"]["request_seconds"])
        fb = min(section["contenders"]["findbox"]["request_seconds"])
        out.append(f"| {key} | {ref:.2f} | {fb:.2f} | {ref / fb:.2f}x | {section['requests']} |")
    return out + [""]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tag", default="cpu")
    args = parser.parse_args()
    lines: list[str] = []
    path = RESULTS / f"{args.tag}.json"
    if path.is_file():
        r = json.loads(path.read_text())
        m = r["machine"]
        lines += [f"Machine: {m.get('cpu_model')} ({m['cpus']} CPUs, torch {m['torch']}, {m['torch_threads']} threads, "
                  f"{m.get('cpu_capability')}, flags {', '.join(m.get('bf16_flags', []))}). "
                  f"Run {r['started']} - {r['finished']}.", "", f"Command: `{r['command']}`", ""]
        titles = {"a": "(a) the client's order: 4 captions of one image per request",
                  "b": "(b) 4 distinct images per request, one caption each",
                  "c": "(c) one instance per request, each image sent 4 times",
                  "variants_a": "Faster paths, workload (a)", "variants_b": "Faster paths, workload (b)"}
        for key, title in titles.items():
            if key in r["sections"]:
                lines += contender_table(r["sections"][key], title)
        if "captions" in r["sections"]:
            lines += ["**Time against captions per image** (a request of k captions of one image; fastest of "
                      "the requests)", ""]
            lines += scaling_table(r["sections"]["captions"], "captions")
        if "max_det" in r["sections"]:
            lines += ["**Time against boxes per image** (a request of 4 captions of one image; fastest of "
                      "the requests)", ""]
            lines += scaling_table(r["sections"]["max_det"], "max_det")
    memory = RESULTS / "memory.json"
    if memory.is_file():
        m = json.loads(memory.read_text())
        lines += ["**Peak RSS against request size** (fresh process each; 4 captions per image)", "",
                  "| contender | instances | images | loaded MB | peak MB | request adds MB | seconds |",
                  "|---|---|---|---|---|---|---|"]
        for row in m["rows"]:
            lines.append(f"| {row['contender']} | {row['instances']} | {row['images']} | {row['rss_loaded_mb']:.0f} | "
                         f"{row['peak_rss_mb']:.0f} | {row['peak_rss_mb'] - row['peak_before_request_mb']:.0f} | "
                         f"{row['seconds']:.1f} |")
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
            lines += ["| run | achieved GFLOP/s | of peak |", "|---|---|---|"]
            for k, row in f["achieved"].items():
                share = row.get("of_fp32_peak", row.get("of_peak"))
                lines.append(f"| {k} | {row['gflops']:.1f} | {100 * share:.0f}% |")
            lines.append("")
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
    sliced = RESULTS / "sliced.json"
    if sliced.is_file():
        s = json.loads(sliced.read_text())
        lines += [f"**Sliced detection** ({Path(s['detector']).name}, imgsz {s['imgsz']}, {s['images']} images"
                  + ("" if s["trained"] else "; random weights: speed only") + ")", "",
                  "| slices | ms per image | boxes per image | small-object recall | other recall |",
                  "|---|---|---|---|---|"]
        for grid, row in s["rows"].items():
            rec = row.get("recall", {})
            lines.append(f"| {grid} | {1000 * row['seconds_per_image']:.0f} | {row['boxes_per_image']:.1f} | "
                         f"{fmt(rec.get('small', {}).get('recall'))} | {fmt(rec.get('other', {}).get('recall'))} |")
        lines.append("")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
