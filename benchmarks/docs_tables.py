"""The figures tables of README.md and docs/*.md, rendered from the committed result files.

Each table sits between `<!-- table:NAME -->` and `<!-- /table:NAME -->` in a doc; this script
replaces what is between the markers with what `TABLES[NAME]` renders from benchmarks/results/*.json
or the demo bundle's manifest (src/findbox/assets/demo/manifest.json). A figure in a doc then has one
source, the file, and `--check` (tests/test_docs_tables.py) fails when a doc says otherwise.

    .venv/bin/python benchmarks/docs_tables.py           # rewrite the tables in place (make docs-tables)
    .venv/bin/python benchmarks/docs_tables.py --check   # exit 1 and show the difference if a table is stale
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
MANIFEST = ROOT / "src" / "findbox" / "assets" / "demo" / "manifest.json"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKED = re.compile(r"(<!-- table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /table:(?P=name) -->)", re.S)


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def _acc(v: float) -> str:
    return f"{v:.3f}"


def _bold_max(values: list[float]) -> list[str]:
    """Three decimals, the column's best in bold."""
    best = max(round(v, 3) for v in values)
    return [f"**{_acc(v)}**" if round(v, 3) == best else _acc(v) for v in values]


# --- the demo bundle (its manifest, written by `python -m findbox.train.demo`) ---------------------------

def demo_figures() -> list[str]:
    """README: the shipped bundle's figures on the recipe's fresh eval seeds (manifest `figures`)."""
    figures = _json(MANIFEST)["figures"]
    rows = ["| noise | accuracy (per seed) | detector recall (IoU > 0.5) | scorer accuracy given a covering box | "
            "instances/s (2-core CPU) |", "|---|---|---|---|---|"]
    labels = {"low": "low (the detector's training level)", "high": "high"}
    for noise, f in figures.items():
        per_seed = ", ".join(_acc(v) for v in f["per_seed"].values())
        rows.append(f"| {labels.get(noise, noise)} | **{_acc(f['accuracy'])}** ({per_seed}) | "
                    f"{_acc(f['detector_recall'])} | {_acc(f['scorer_accuracy_given_covered'])} | "
                    f"{f['instances_per_s']:.0f} |")
    return rows


def _data_cell(step: dict, folders: list[str]) -> str:
    """'folder: N images, seed S, noise' for each synth set a run trained on, as the step recorded it."""
    sets = {d[0]: d for d in step["data"]}
    return "; ".join(f"{sets[f][1]:,} images, seed {sets[f][2]}, {sets[f][3]} noise" for f in folders)


def demo_build() -> list[str]:
    """README: every training run of the shipped bundle, which recorded build step made it, on what data,
    its result and its seconds (manifest `steps` and `training`, the runs' own metrics)."""
    from findbox.train.demo import detector_runs, recipe_of, scorer_data, scorer_runs

    manifest = _json(MANIFEST)
    recipe, steps = recipe_of(manifest), manifest["steps"]
    step_of_run = {name: k for k, s in enumerate(steps, 1) for name in s["detector_runs"]}
    step_of_round = {r: k for k, s in enumerate(steps, 1) for r in s["scorer_rounds"]}
    data_of_run = {name: data for name, data, _ in detector_runs(recipe)}
    data_of_crops = {crops: data for data, crops, *_ in scorer_data(recipe)}
    rows = ["| run | build step | data | schedule | result | train s |", "|---|---|---|---|---|---|"]
    for d in manifest["training"]["detector"]:
        k = step_of_run[d["run"]]
        rows.append(f"| detector `{d['run']}` | {k} | {_data_cell(steps[k - 1], [data_of_run[d['run']]])} | "
                    f"{d['epochs']} epochs at {d['imgsz']} px | mAP50 {d['mAP50']:.3f}, recall {d['recall']:.3f} | "
                    f"{d['train_s']:.0f} |")
    for s, (epochs, lr, folders, batch_by) in zip(manifest["training"]["scorer"], scorer_runs(recipe)):
        k = step_of_round[s["round"]]
        data = _data_cell(steps[k - 1], [data_of_crops[f] for f in folders])
        rows.append(f"| scorer round {s['round']} | {k} | {data} ({s['train_crops']:,} train crops) | "
                    f"{epochs} epochs, lr {lr:g}, batches by {batch_by} | val accuracy {s['val_accuracy']:.3f} | "
                    f"{s['seconds']:.0f} |")
    total = manifest["training"]["train_seconds"]
    rows.append(f"| all training runs | | | | | **{total:.0f}** ({total / 3600:.1f} h) |")
    rows += ["", "| build step | command | scorer rounds | evaluated on seeds | this invocation's s |",
             "|---|---|---|---|---|"]
    for k, s in enumerate(steps, 1):
        rows.append(f"| {k} | `{s['command']}` | {', '.join(map(str, s['scorer_rounds']))} | "
                    f"{', '.join(map(str, s['eval_seeds']))} | {s['build_seconds']:.0f} |")
    return rows


def demo_rounds() -> list[str]:
    """docs/TRAIN_SCORER.md: the bundle after rounds 1-5 (as that build measured it) and after rounds 1-7."""
    manifest = _json(MANIFEST)
    rows = ["| bundle | eval seeds | low: accuracy / recall / scorer given covered | "
            "high: accuracy / recall / scorer given covered |", "|---|---|---|---|"]
    earlier = manifest.get("continued_from")
    entries = ([(f"rounds 1-{earlier['scorer_rounds_reused']}", earlier["figures"])] if earlier else []) + [
        (f"shipped (rounds 1-{len(manifest['training']['scorer'])})", manifest["figures"])]
    for name, figures in entries:
        cells = [" / ".join(_acc(f[k]) for k in ("accuracy", "detector_recall", "scorer_accuracy_given_covered"))
                 for f in (figures["low"], figures["high"])]
        seeds = figures["low"]["seeds"]
        rows.append(f"| {name} | {seeds[0]}-{seeds[-1]} ({figures['low']['n_instances']:,} instances) | "
                    f"{cells[0]} | {cells[1]} |")
    return rows


# --- docs/TRAIN_SCORER.md: the reduced ablation (benchmarks/ablation_scorer.py) ----------------------------

ABLATION_LABELS = {
    "bundle": "bundle (no fine-tune)",
    "a_micro12": "(a) `--batch 12` (11 negatives a loss, the original)",
    "b_gradcache128": "(b) GradCache batch 128, multi-positive (today)",
    "c_image_batches": "(c) + `--batch-by image`",
    "d_proposals": "(d) + proposal crops",
    "e_listwise": "(e) + `--listwise-weight 1`",
    "f_hard_proposals": "(f) (d) with harder proposals (conf 0.01, max_det 30)",
}


def ablation() -> list[str]:
    r = _json(RESULTS / "ablation_scorer.json")
    f, training = r["figures"], r["training"]
    columns = [(noise, ranking) for noise in ("low", "high") for ranking in ("product", "scorer")]
    cells = {}
    for noise, ranking in columns:
        variants = f[noise][ranking]["variants"]
        acc = _bold_max([variants[v]["accuracy"] for v in ABLATION_LABELS])
        given = _bold_max([variants[v]["scorer_accuracy_given_covered"] for v in ABLATION_LABELS])
        cells[noise, ranking] = [f"{a} / {g}" for a, g in zip(acc, given)]
    rows = ["| scorer | crops seen | steps | low, product | low, scorer alone | high, product | high, scorer alone |",
            "|---|---|---|---|---|---|---|"]
    for i, (key, label) in enumerate(ABLATION_LABELS.items()):
        t = training.get(key, {})
        rows.append(f"| {label} | {t.get('crops_seen', '-')} | {t.get('steps', '-')} | "
                    + " | ".join(cells[c][i] for c in columns) + " |")
    return rows


def ablation_spread() -> list[str]:
    """The spread of accuracy across the variants (product ranking, low noise), in points and instances."""
    low = _json(RESULTS / "ablation_scorer.json")["figures"]["low"]["product"]
    acc = [v["accuracy"] for v in low["variants"].values()]
    spread = max(acc) - min(acc)
    return [f"- **No variant clearly beats the bundle.** The spread is {100 * spread:.1f} points "
            f"({round(spread * low['n_instances'])} instances of {low['n_instances']}); the"]


def ablation_fusion() -> list[str]:
    """What product ranking adds over the scorer alone, per noise level, across every variant."""
    f = _json(RESULTS / "ablation_scorer.json")["figures"]
    gains = {noise: [100 * (f[noise]["product"]["variants"][v]["accuracy"] - f[noise]["scorer"]["variants"][v]["accuracy"])
                     for v in f[noise]["product"]["variants"]] for noise in ("low", "high")}
    low, high = gains["low"], gains["high"]
    return [f"- **Product ranking is still needed, but it is small:** over the scorer alone (same detections) it "
            f"adds {min(low):+.1f} to {max(low):+.1f}", f"  points at low noise and {min(high):+.1f} to {max(high):+.1f} "
            "at high noise, depending on the scorer."]


# --- docs/BENCHMARKS.md ----------------------------------------------------------------------------------

MEMORY_LABELS = {"findbox": "findbox (int8)", "findbox --crop-batch 4096": "findbox `--crop-batch 4096` (int8)",
                 "findbox fp32": "findbox `--precision fp32`", "reference": "reference (fp32)"}


def memory() -> list[str]:
    """bench_memory.py: a fresh process per row; "request adds" is the request's peak above the peak before it."""
    r = _json(RESULTS / "memory.json")
    rows = ["| contender | instances | images | loaded MB | peak MB | request adds MB | seconds |",
            "|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        rows.append(f"| {MEMORY_LABELS.get(row['contender'], row['contender'])} | {row['instances']} | {row['images']} | "
                    f"{row['rss_loaded_mb']:.0f} | {row['peak_rss_mb']:.0f} | "
                    f"{row['peak_rss_mb'] - row['peak_before_request_mb']:.0f} | {row['seconds']:.1f} |")
    return rows



def _ms(row: dict) -> str:
    return f"{row['median_ms']:.0f} ({row['min_ms']:.0f}-{row['max_ms']:.0f})"


def _provenance(r: dict) -> str:
    m = r["machine"]
    return (f"({m['cpus']}-core {m['cpu_model']}, torch threads {m['torch_threads']}; commit {r['commit'][:7]}, "
            f"{'clean tree' if r['clean_tree'] else 'tree with uncommitted changes'}, {r['date'][:16]} UTC; "
            f"`{r['command']}`)")


def detector_backend() -> list[str]:
    """detector_backend.py: the demo detector on torch and ONNX Runtime, alone and beside two concurrent loads."""
    r = _json(RESULTS / "detector_backend.json")
    rows = ["| condition | 1-min load before / after | torch ms a frame | ONNX Runtime ms a frame | onnx vs torch | "
            "frames with torch's boxes | load processes' frames/s | auto picks |", "|---|---|---|---|---|---|---|---|"]
    for name, c in r["conditions"].items():
        calls = f"{c['load_calls_per_s']:.2f}" if c["load_calls_per_s"] is not None else "-"
        diff = c["onnx"]["max_box_diff_px"]
        rows.append(f"| {name} | {c['load_1min_before']:.1f} / {c['load_1min_after']:.1f} | {_ms(c['torch'])} | "
                    f"{_ms(c['onnx'])} | **{c['onnx_vs_torch']:.2f}x** | {c['onnx']['frames_same_boxes']} of "
                    f"{r['frames']} (max diff {diff:.1g} px) | {calls} | {c['auto_picks']['backend']} |")
    d = r["detection"]
    return rows + ["", f"Demo detector at imgsz {d['imgsz']} (conf {d['conf']}, iou {d['iou']}, max_det {d['max_det']}), "
                       f"{r['frames']} synth frames {r['image_wh'][0]}x{r['image_wh'][1]}, {r['rounds']} passes per "
                       f"condition; median (min-max). " + _provenance(r)]


def scorer_attention() -> list[str]:
    """scorer_attention.py: fused attention and caption padding, each change alone."""
    r = _json(RESULTS / "scorer_attention.json")
    rows = ["| change | before ms | after ms | speedup | largest embedding difference |", "|---|---|---|---|---|"]
    for label, row in r["rows"].items():
        rows.append(f"| {label} | {_ms(row['a'])} | {_ms(row['b'])} | **{row['speedup']:.2f}x** | "
                    f"{row['max_abs_diff']:.1g} |")
    ops = r["open_clip_attention_ops"]
    return rows + ["", "open_clip ViT-B-32 (random weights), attention and softmax ops the torch profiler saw: image "
                       f"tower {', '.join(f'`{o}`' for o in ops['image'])}; text tower "
                       f"{', '.join(f'`{o}`' for o in ops['text'])}.", "",
                   f"{r['runs']} alternating calls a side after a warm-up, median (min-max); 1-min load "
                   f"{r['load_before'][0]:.1f} before, {r['load_after'][0]:.1f} after. " + _provenance(r)]


# --- docs/SCALE_OUT.md -------------------------------------------------------------------------------------

SCALE_OUT_LABELS = {"inprocess": "in-process", "ray, 1 scorer replica": "Ray, 1 scorer replica",
                    "ray, 2 scorer replicas": "Ray, 2 scorer replicas"}


def scale_out() -> list[str]:
    """scale_out.py: in-process against the Ray engine with 1 and 2 scorer replicas, 16 clients."""
    r = _json(RESULTS / "scale_out.json")
    rows = ["| contender | ready after | one client, median | clients: requests/s | instances/s | p50 / p99 | "
            "answers | accuracy | RSS, all processes (idle) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, c in r["contenders"].items():
        load = c["loaded"]
        answers = ", ".join(f"{n} × {status}" for status, n in load["statuses"].items())
        rows.append(f"| {SCALE_OUT_LABELS.get(name, name)} | {c['ready_s']:.1f} s | {c['one_client_median_ms']} ms | "
                    f"{load['requests_per_s']:.2f} ({load['clients']} clients) | {load['instances_per_s']:.1f} | "
                    f"{load['p50_ms']} / {load['p99_ms']} ms | {answers} | {load['accuracy']:.4f} | "
                    f"{c['rss_tree_mb_idle']} MB |")
    return rows


def _statuses(statuses: dict) -> str:
    return ", ".join(f"{n} × {status}" for status, n in statuses.items()) or "none"


def scale_out_faults() -> list[str]:
    """ray_faults.py: one of two scorer replicas SIGKILLed under load."""
    r = _json(RESULTS / "scale_out_faults.json")
    retry, plain = r["retrying_clients"], r["plain_clients"]
    rows = ["| what | figure |", "|---|---|",
            f"| clients (half retrying as README shows, half plain) | {r['clients']} |",
            f"| retrying clients: requests, answers | {retry['requests']}: {_statuses(retry['statuses'])} |",
            f"| retrying clients: requests lost | **{retry['lost']}** |",
            f"| plain clients: requests, answers | {plain['requests']}: {_statuses(plain['statuses'])} |",
            f"| plain clients: errors seen without retries | {plain['errors']} |",
            f"| Serve noticed the dead replica after | {r['noticed_after_s']:.1f} s |",
            f"| both scorer replicas running again after | {r['back_after_s']:.1f} s |"]
    for phase, label in (("before", "before the kill"), ("during", "one replica missing"), ("after", "after it is back")):
        f = r["phases"][phase]
        rows.append(f"| p50 / p99, requests started {label} | {f['p50_ms']} / {f['p99_ms']} ms "
                    f"({f['requests']} requests, accuracy {f['accuracy']}) |")
    b = r["detector_frames_per_call"]
    rows.append(f"| detector frames per call under this load (cross-request batching) | mean {b['mean']}, "
                f"max {b['max']} over {b['calls']} calls |")
    return rows


def scale_out_cluster() -> list[str]:
    """ray_cluster.py: two simulated nodes, no-op overhead, sleep-bound scaling, batching."""
    r = _json(RESULTS / "scale_out_cluster.json")
    two, o, sl, b = r["two_nodes"], r["overhead"], r["sleep_scaling"], r["batching"]
    rows = ["| what | figure |", "|---|---|",
            f"| two nodes: scorer replicas / nodes holding them / cluster nodes | {two['scorer_replicas']} / "
            f"{two['nodes_holding_scorer_replicas']} / {two['cluster_nodes']} |",
            f"| two nodes: requests answered | {_statuses(two['requests'])} |",
            f"| two nodes: after SIGTERM (`--address`) | exit {two['exit_code']}, "
            f"{two['nodes_alive_after_sigterm']} nodes alive, Serve applications {two['serve_applications_after_sigterm']} |"]
    for key, label in (("uvicorn_floor", "plain uvicorn, no-op (the floor)"), ("serve_one_hop", "Serve, one no-op deployment"),
                       ("serve_three_hops", "Serve, ingress -> no-op -> no-op (findbox's hops)")):
        rows.append(f"| {label}: p50 / p99 | {o[key]['p50_ms']:.2f} / {o[key]['p99_ms']:.2f} ms |")
    rows.append(f"| Ray's per-request overhead, three hops over the floor (p50) | **{o['three_hops_over_floor_ms']:.1f} ms** |")
    one, two_r = sl["1_replicas"], sl["2_replicas"]
    rows.append(f"| sleep-bound stage ({sl['ideal_calls_per_s_1_replica']:.0f} calls/s a replica at most): 1 / 2 replicas | "
                f"{one['calls_per_s']:.1f} / {two_r['calls_per_s']:.1f} calls/s (**{sl['ratio']:.2f}x**) |")
    rows.append(f"| `@serve.batch` (up to {b['max_batch_size']}), {b['clients']} callers: batch sizes seen | mean "
                f"{b['mean']}, {b['batches']} batches, {b['histogram']} |")
    return rows


# --- docs/DATA.md: a RefCOCO-sized import (benchmarks/data_import.py) ------------------------------------

def data_import() -> list[str]:
    r = _json(RESULTS / "data_import.json")
    s, goal = r["set"], r["goal"]
    return ["| set | seconds | peak RSS MB | goal | met |", "|---|---|---|---|---|",
            f"| {s['images']:,} images, {s['refs']:,} refs, {s['sentences']:,} sentences, {s['instances_annotations']:,} "
            f"instances ({s['refs_p_mb']:.0f} MB pickle, {s['instances_json_mb']:.0f} MB json) -> "
            f"{r['output']['annotations']:,} annotations, {sum(r['output']['skipped_counts'].values())} skipped | "
            f"{r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | < {goal['seconds']:.0f} s, < {goal['peak_rss_mb']:.0f} MB | "
            f"{'yes' if r['met'] else 'no'} |",
            "", f"({r['machine']['cpus']}-core {r['machine']['cpu_model']}, commit "
                f"{r['commit'][:7]}{'' if r['clean_tree'] else ' with uncommitted changes beside it'}, {r['date'][:10]})"]


TABLES = {"demo-figures": demo_figures, "demo-build": demo_build, "demo-rounds": demo_rounds,
          "ablation": ablation, "ablation-spread": ablation_spread, "ablation-fusion": ablation_fusion,
          "memory": memory, "detector-backend": detector_backend, "scorer-attention": scorer_attention,
          "scale-out": scale_out, "scale-out-faults": scale_out_faults,
          "scale-out-cluster": scale_out_cluster, "data-import": data_import}


# --- docs/OPERATIONS.md: the serving records (benchmarks/bench_timeout.py, flood.py, load.py, fuzz.py, hostile.py)

def _answers(statuses: dict) -> str:
    """'10 x 200, 110 x 503', statuses in numeric order."""
    return ", ".join(f"{n} x {status}" for status, n in sorted(statuses.items(), key=lambda s: int(s[0])))


def _probe_ms(v: float) -> str:
    """A probe time: one decimal below 20 ms, whole milliseconds above."""
    return f"{v:.1f}" if v < 20 else f"{v:.0f}"


def ops_timeout() -> list[str]:
    """bench_timeout.py: a request past its timeout, then one small request (1 new frame) as its 504 arrives."""
    r = _json(RESULTS / "ops_timeout.json")["row"]
    chunks = r["timeout_s"] / r["one_chunk_s"]
    return ["| one chunk | `--request-timeout-s` | big request | small request after it | images detected by then |",
            "|---|---|---|---|---|",
            f"| {r['one_chunk_s']:.1f} s | {r['timeout_s']:.1f} ({chunks:.0f} chunks) | {r['big_status']} at "
            f"{r['big_answered_s']:.1f} s | {r['small_status']} in {r['small_latency_s']:.1f} s | "
            f"{r['images_detected_by_then']} of {r['big_images'] + 1} |"]


def ops_flood() -> list[str]:
    """flood.py: N clients each posting one new 30 MB image to the demo server for a while, /health probed."""
    r = _json(RESULTS / "ops_flood.json")
    rows = ["| clients | answers | admitted: throughput, p50 latency | refused: p50 time to the 503 | "
            "server RSS before / peak (growth) | `/health` p50 / p99 / max |", "|---|---|---|---|---|---|"]
    for level in r["levels"]:
        statuses, h, rss = level["statuses"], level["health"], level["rss_mib"]
        only = ", nothing else" if set(statuses) <= {"200", "503"} else ""
        probes = f"all {next(iter(h['statuses']))}" if len(h["statuses"]) == 1 else _answers(h["statuses"])
        rows.append(f"| {level['clients']} | {_answers(statuses)}{only} | {level['admitted_per_s']:.2f} req/s, "
                    f"{level['admitted_latency_s']['p50']:.0f} s | {level['refused_latency_s']['p50']:.1f} s | "
                    f"{rss['before']} / {rss['peak']} MiB (+{rss['growth_peak']}) | {_probe_ms(h['p50_ms'])} / "
                    f"{_probe_ms(h['p99_ms'])} / {_probe_ms(h['max_ms'])} ms, {h['probes']} probes {probes} |")
    return rows


HEALTH_UNDER_LOAD_LABELS = {"": "the models busy", "--batch-window-ms 8000": "all held in the batch window's queue"}


def ops_health_under_load() -> list[str]:
    """health_under_load.py --out: /health and /metrics probed while half of N concurrent requests are unanswered."""
    r = _json(RESULTS / "health_under_load.json")
    rows = ["| command | requests | `/health` p50 / p99 / max | `/metrics` p50 / p99 |", "|---|---|---|---|"]
    for row in r["rows"]:
        h, m = row["/health"], row["/metrics"]
        flags = f"--pending {row['pending']}" + (f' --server-args "{row["server_args"]}"' if row["server_args"] else "")
        answers = f"all {next(iter(row['statuses']))}" if len(row["statuses"]) == 1 else _answers(row["statuses"])
        label = HEALTH_UNDER_LOAD_LABELS.get(row["server_args"])
        rows.append(f"| `benchmarks/health_under_load.py {flags}`{f' ({label})' if label else ''} | {row['pending']}, "
                    f"{answers} in {row['last_answered_s']:.1f} s | {_probe_ms(h['p50_ms'])} / {_probe_ms(h['p99_ms'])} / "
                    f"{_probe_ms(h['max_ms'])} ms ({h['probes']} probes) | {_probe_ms(m['p50_ms'])} / "
                    f"{_probe_ms(m['p99_ms'])} ms |")
    return rows


def ops_load() -> list[str]:
    """load.py: 64 clients for 5 minutes, the published client's requests, /health probed throughout."""
    r = _json(RESULTS / "ops_load.json")
    lat, rss, h, load = r["latency_ms"], r["rss_mib"], r["health"], r["load_average"]
    errors = r["requests"] - r["ok"]
    all_ok = " (all 200)" if set(r["statuses"]) == {"200"} else f" ({_answers(r['statuses'])})"
    health_ok = "all 200" if set(h["statuses"]) == {"200"} else _answers(h["statuses"])
    return ["| requests | errors | throughput | p50 / p90 / p99 | server RSS start / middle / end (peak) | "
            "`/health` p50 / p99 / max | load average |", "|---|---|---|---|---|---|---|",
            f"| {r['requests']} in {r['wall_s']:.0f} s | {errors}{all_ok} | {r['throughput_rps']:.2f} req/s "
            f"({r['instances_per_s']:.1f} instances/s) | {lat['p50'] / 1000:.1f} / {lat['p90'] / 1000:.1f} / "
            f"{lat['p99'] / 1000:.1f} s | {rss['start']:.0f} / {rss['middle']:.0f} / {rss['end']:.0f} MiB "
            f"({rss['peak']:.0f}) | {_probe_ms(h['p50_ms'])} / {_probe_ms(h['p99_ms'])} / {_probe_ms(h['max_ms'])} ms "
            f"({h['probes']} probes, {health_ok}) | {load['start'][0]:.1f} at the start, {load['end'][0]:.1f} at the end |"]


def ops_load_8() -> list[str]:
    """load.py --clients 8: the tiny models' serving path, one new 320x240 JPEG with 4 captions a request."""
    r = _json(RESULTS / "ops_load_8.json")
    lat, rss, load = r["latency_ms"], r["rss_mib"], r["load_average"]
    errors = r["requests"] - r["ok"]
    return ["| command | requests | throughput | p50 / p90 / p99 | errors | server RSS |", "|---|---|---|---|---|---|",
            f"| `{r['command'].removeprefix('.venv/bin/python ')}` | {r['requests']} | {r['throughput_rps']:.1f} req/s "
            f"({r['instances_per_s']:.1f} instances/s) | {lat['p50']:.0f} / {lat['p90']:.0f} / {lat['p99']:.0f} ms | "
            f"{errors} | {rss['start']:.1f} -> {rss['end']:.1f} MiB ({rss['growth']:+.1f}) |",
            "", f"Server RSS every 5 s: {', '.join(map(str, rss['timeline']))} MiB. Load average {load['start'][0]:.1f} at "
                f"the start, {load['end'][0]:.1f} at the end; commit {r['commit'][:7]}, "
                f"{'clean tree' if r['clean_tree'] else 'tree with uncommitted changes'}, {r['date'][:10]}."]


def ops_fuzz() -> list[str]:
    """fuzz.py: schemathesis from /openapi.json (check not_a_server_error), then the server's own 5xx count."""
    r = _json(RESULTS / "ops_fuzz.json")
    schemathesis_5xx = 0 if r["exit"] == 0 else "failed (see the record's summary)"
    return ["| command | test cases | 5xx (schemathesis / server-counted) |", "|---|---|---|",
            f"| `{r['command'].removeprefix('.venv/bin/python ')}` (load average {r['load_average']['start'][0]:.1f}) | "
            f"{r['test_cases']} in {r['seconds']:.0f} s | {schemathesis_5xx} / {r['server_errors']} |"]


def _hostile_answer(row: dict) -> str:
    """An error's detail without its location prefix (shortened past 87 characters), or what a 200 answered."""
    if row["status"] != 200:
        detail = row["detail"].split(": ", 1)[1]
        return detail if len(detail) <= 90 else detail[:87] + "..."
    first = row["first"]
    if first is None:
        return '`{"results": [], ...}`'
    n = first["candidates"]
    return (f"answered: `image_wh` {first['image_wh']}, {n} candidate{'' if n == 1 else 's'}"
            + (", the fallback box" if first["fallback"] else ""))


def ops_hostile() -> list[str]:
    """hostile.py: hand-made requests to /v1/ground of `findbox serve` with its defaults, one at a time."""
    r = _json(RESULTS / "ops_hostile.json")
    rows = ["| case | status | field | answer |", "|---|---|---|---|"]
    for row in r["rows"]:
        field = f"`{row['field']}`" if row.get("field") else ""
        rows.append(f"| {row['case']} | {row['status']} | {field} | {_hostile_answer(row)} |")
    return rows


TABLES.update({"ops-timeout": ops_timeout, "ops-flood": ops_flood, "ops-load": ops_load, "ops-fuzz": ops_fuzz,
               "ops-hostile": ops_hostile, "ops-health-under-load": ops_health_under_load,
               "ops-load-8": ops_load_8})


# --- docs/SYNTH.md: the generator's speed (benchmarks/bench_synth.py) -------------------------------------

def synth_speed() -> list[str]:
    """bench_synth.py --out: write_dataset per noise level on one core, from the process's CPU time and wall time."""
    r = _json(RESULTS / "synth.json")
    rows = ["| noise | images/s (CPU time) | images/s (wall time) | ms/image: scene / noise / JPEG |", "|---|---|---|---|"]
    for row in r["rows"]:
        rows.append(f"| {row['noise']} | {row['cpu_images_per_s']:.0f} | {row['wall_images_per_s']:.0f} | "
                    + " / ".join(f"{ms:.0f}" for ms in row["cpu_ms_scene_noise_jpeg"]) + " |")
    load, m = r["load_average"], r["machine"]
    return rows + ["", f"({r['images']} images {r['image_wh'][0]}x{r['image_wh'][1]} a level on core "
                       f"{', '.join(map(str, r['cpu_affinity']))} of a {m['cpus']}-core {m['cpu_model']}, load average "
                       f"{load['start']:.1f} at the start, {load['end']:.1f} at the end; commit {r['commit'][:7]}, "
                       f"{'clean tree' if r['clean_tree'] else 'tree with uncommitted changes'}, {r['date'][:10]}.)"]


TABLES.update({"synth-speed": synth_speed})


# --- README.md: the performance highlights (bench_pipeline.py -> cpu.json) -----------------------------------

def _ratio1(c: dict) -> str:
    """A median ratio and its range in one decimal: '3.9x (3.7-4.5)'."""
    return f"{c['ratio_vs_reference']:.1f}x ({c['ratio_min']:.1f}-{c['ratio_max']:.1f})"


def readme_performance() -> list[str]:
    """bench_pipeline.py (cpu.json): workloads (a) and (b) as ratios to the reference, (c) as p50 latency."""
    sections = _json(RESULTS / "cpu.json")["sections"]
    a, b, c = (sections[k]["contenders"] for k in ("a", "b", "c"))
    default = "findbox (int8, auto)"  # cpu.json's --precision auto ran int8 on that machine
    return ["| workload | `--precision int8` (auto's choice once a record unlocks it) | `--precision fp32` (auto without "
            "a record) | `--precision bf16` |", "|---|---|---|---|",
            "| (a) 4 captions of one image per request | **{}x** ({} the reference | {} | {} |".format(
                *_ratio1(a[default]).split("x (", 1), _ratio1(a["findbox fp32"]), _ratio1(a["findbox bf16"])),
            "| (b) 4 distinct images, one caption each | **{}x** ({} | {} | {} |".format(
                *_ratio1(b[default]).split("x (", 1), _ratio1(b["findbox fp32"]), _ratio1(b["findbox bf16"])),
            f"| (c) one instance per request, repeated images | p50 latency **{c[default]['p50_s']:.2f} s** vs "
            f"{c['reference']['p50_s']:.2f} s (image cache) | {c['findbox fp32']['p50_s']:.2f} s | |"]


TABLES.update({"readme-performance": readme_performance})


def render(text: str, where: str = "doc") -> str:
    """`text` with every marked table re-rendered; ValueError naming an unknown table."""
    def one(m: re.Match) -> str:
        name = m.group("name")
        if name not in TABLES:
            raise ValueError(f"{where}: expected a table name of {sorted(TABLES)}, got {name!r}")
        return m.group(1) + "\n".join(TABLES[name]()) + "\n" + m.group(4)

    return MARKED.sub(one, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a doc's table is stale")
    args = parser.parse_args(argv)
    stale = 0
    for doc in DOCS:
        text = doc.read_text()
        new = render(text, str(doc.relative_to(ROOT)))
        if new == text:
            continue
        if args.check:
            stale += 1
            sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True),
                                                       str(doc.relative_to(ROOT)), "rendered"))
        else:
            doc.write_text(new)
            print(f"rendered the tables of {doc.relative_to(ROOT)}")
    if stale:
        print(f"{stale} doc(s) differ from their result files: run make docs-tables", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    sys.exit(main())
