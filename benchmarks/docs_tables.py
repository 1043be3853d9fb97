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


def ablation_setup() -> list[str]:
    """The ablation's data, proposal crops and evaluation sets, as the record holds them."""
    r = _json(RESULTS / "ablation_scorer.json")
    t, c, d = r["train_data"], r["crop_sets"], r["detection"]
    gt, prop, hard = c["crops_gt"], c["crops_prop"], c["crops_prop_hard"]
    low, high = r["figures"]["low"]["product"], r["figures"]["high"]["product"]
    ev = r["eval_sets"]
    seen = {k: v["crops_seen"] for k, v in r["training"].items()}
    return [f"- data: `findbox synth` {t['images']} images, seed {t['seed']}, `--noise {t['noise']}` (the bundle's "
            f"scorer never saw this seed); `findbox crops --val-fraction 0.1`: {gt['truth_crops']['train']} truth "
            f"crops from {gt['images']['train']} train images; with `--proposals` (the bundled detector at its "
            f"serving settings `--imgsz {d['imgsz']} --conf {d['conf']} --iou {d['iou']} --max-det {d['max_det']}`) "
            f"{prop['proposal_crops']} proposal crops more, of which {prop['proposal_hits']} hit a caption's box "
            f"({prop['proposal_hits'] / prop['proposal_crops']:.0%}), so "
            f"{prop['proposal_crops'] - prop['proposal_hits']} are partial, loose or background negatives;",
            f"- (f) harder proposals: the same detector at `--conf {hard['proposal_settings']['conf']} --max-det "
            f"{hard['proposal_settings']['max_det']}` (more partial, loose and background boxes): "
            f"{hard['proposal_crops']} proposal crops, {hard['proposal_crops'] - hard['proposal_hits']} of them "
            f"negatives;",
            f"- training, all variants: `{' '.join(r['common_flags'])}`, about the same crops seen (4 epochs "
            f"of truth crops, or 2 of truth + proposals; image batches are a little under 128 crops, hence a few more "
            f"steps; (f) saw {seen.get('f_hard_proposals', '-')}); "
            f"{sum(v['seconds'] for v in r['training'].values()) / 60:.0f} min of training for the six;",
            f"- evaluation: `findbox eval` with the bundled detector at the same settings, on fresh sets of "
            f"{ev['low']['images']} images (seed {ev['low']['seed']} `--noise {ev['low']['noise']}`, "
            f"{low['n_instances']} instances; seed {ev['high']['seed']} `--noise {ev['high']['noise']}`, "
            f"{high['n_instances']} instances), every scorer ranked on **the same detections and crops** "
            f"(`--compare-scorer`), once with the bundle's `--score-fusion product --fusion-weight 1` and once with "
            f"`--score-fusion scorer`, in `--precision fp32` (exact arithmetic: a recipe comparison should not "
            f"depend on the machine's default precision). Detector recall (a box with IoU rounding to 1 among the "
            f"candidates): {low['detector_recall']:.3f} low, {high['detector_recall']:.3f} high, for all. "
            + _provenance(r)]


def ablation_spread() -> list[str]:
    """The spread of accuracy across the scorers (product ranking), in points and instances, against one accuracy's
    standard error; the best and worst at each noise level."""
    f = _json(RESULTS / "ablation_scorer.json")["figures"]
    low = f["low"]["product"]
    acc = {name: v["accuracy"] for name, v in low["variants"].items()}
    spread, p, n = max(acc.values()) - min(acc.values()), sum(acc.values()) / len(acc), low["n_instances"]
    high = [v["accuracy"] for v in f["high"]["product"]["variants"].values()]
    best, worst = max(acc, key=acc.get), min(acc, key=acc.get)
    fine_tunes = {k: v for k, v in acc.items() if k != "bundle"}
    best_fine = max(fine_tunes, key=fine_tunes.get)
    return [f"- **No variant clearly beats the bundle.** With product ranking at low noise the spread is "
            f"{100 * spread:.1f} points ({round(spread * n)} instances of {n}) and one accuracy's standard error "
            f"about {100 * (p * (1 - p) / n) ** 0.5:.1f} points, so none of these differences is established. Best: "
            f"{ABLATION_LABELS[best].split(' (')[0]} ({acc[best]:.3f}); best fine-tune: "
            f"{ABLATION_LABELS[best_fine].split(' (')[0]} ({acc[best_fine]:.3f}); worst: "
            f"{ABLATION_LABELS[worst].split(' (')[0]} ({acc[worst]:.3f}). At high noise every scorer is within "
            f"{100 * (max(high) - min(high)):.1f} points ({min(high):.3f}-{max(high):.3f})."]


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

def memory() -> list[str]:
    """bench_memory.py: a fresh process per row; "request adds" is the request's peak above the peak before it."""
    r = _json(RESULTS / "memory.json")
    auto = r.get("auto_precision", "int8")  # records made before it was recorded ran int8 under auto
    labels = {"findbox": f"findbox (default: auto = {auto})", "findbox int8": "findbox `--precision int8`",
              "findbox --crop-batch 4096": f"findbox `--crop-batch 4096` ({auto})",
              "findbox fp32": "findbox `--precision fp32`", "reference": "reference (fp32)"}
    rows = ["| contender | instances | images | loaded MB | peak MB | request adds MB | seconds |",
            "|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        rows.append(f"| {labels.get(row['contender'], row['contender'])} | {row['instances']} | {row['images']} | "
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
          "ablation": ablation, "ablation-setup": ablation_setup, "ablation-spread": ablation_spread,
          "ablation-fusion": ablation_fusion,
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
    rows = ["| clients | answers | admitted: throughput, p50 latency | refused: p50 / max time to the 503 "
            "(body sent) | 503 from headers alone: p50 / p99 | server RSS before / peak (growth) | "
            "`/health` p50 / p99 / max |", "|---|---|---|---|---|---|---|"]
    for level in r["levels"]:
        statuses, h, rss = level["statuses"], level["health"], level["rss_mib"]
        only = ", nothing else" if set(statuses) <= {"200", "503"} else ""
        probes = f"all {next(iter(h['statuses']))}" if len(h["statuses"]) == 1 else _answers(h["statuses"])
        refused = level["refused_latency_s"]
        headers = (level.get("refusal_from_headers") or {}).get("refused_ms")
        from_headers = f"{_probe_ms(headers['p50'])} / {_probe_ms(headers['p99'])} ms" if headers else "not probed"
        rows.append(f"| {level['clients']} | {_answers(statuses)}{only} | {level['admitted_per_s']:.2f} req/s, "
                    f"{level['admitted_latency_s']['p50']:.0f} s | {refused['p50']:.2f} / {refused['max']:.1f} s | "
                    f"{from_headers} | "
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


def ops_batch_window() -> list[str]:
    """batch_window.py: load.py's 8 clients against a fresh tiny server per run, each batch window in turn."""
    r = _json(RESULTS / "ops_batch_window.json")
    rows = ["| W | throughput (each run) | p50 (each run) | instances (requests) per model call | RSS growth | "
            "answers |", "|---|---|---|---|---|---|"]
    for w in r["windows_ms"]:
        runs = [run for run in r["runs"] if run["window_ms"] == w]
        statuses = {}
        for run in runs:
            for status, n in run["statuses"].items():
                statuses[status] = statuses.get(status, 0) + n
        growth = [run["rss_growth_mib"] for run in runs]
        throughput = ", ".join(f"{run['throughput_rps']:.1f}" for run in runs)
        p50 = ", ".join(f"{run['latency_ms']['p50']:.0f}" for run in runs)
        per_call = ", ".join(f"{run['instances_per_call']:.1f} ({run['requests_per_call']:.1f})" for run in runs)
        answers = ", ".join(f"{n} x {status}" for status, n in sorted(statuses.items()))
        rows.append(f"| {f'{w} ms' if w else '0 (off)'} | {throughput} req/s | {p50} ms | {per_call} | "
                    f"{min(growth):+.0f} to {max(growth):+.0f} MiB | {answers} |")
    loads = [run["load_average"]["start"][0] for run in r["runs"]]
    return rows + ["", f"{r['repeats']} runs a window, interleaved; {r['clients']} clients for {r['seconds']:.0f} s each, "
                       f"a fresh tiny server per run; load average {min(loads):.1f}-{max(loads):.1f} at the runs' "
                       f"starts. " + _provenance(r)]


def ops_memory_cap() -> list[str]:
    """bench_memory.py --cap: one request at the instance cap over distinct 40 MP images, as the server takes it."""
    rows = ["| request | outcome | peak RSS (loaded) | in the request | time |", "|---|---|---|---|---|"]
    records = [_json(RESULTS / f"memory_cap_{n}.json") for n in (16, 3)]
    for r in records:
        row = r["row"]
        outcome = row["outcome"].replace("refused ", "")
        rows.append(f"| {row['instances']} instances over {row['images']} distinct {row['megapixels']:.0f} MP images "
                    f"({row['body_mb']:.1f} MB of base64) | {outcome} | {row['peak_rss_mb']:,.0f} MB "
                    f"({row['peak_before_request_mb']:,.0f}) | +{row['peak_rss_mb'] - row['peak_before_request_mb']:,.0f} MB "
                    f"| {row['seconds']:.2f} s |")
    return rows + [""] + [_provenance(r) for r in records]


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
               "ops-load-8": ops_load_8, "ops-batch-window": ops_batch_window, "ops-memory-cap": ops_memory_cap})


# --- docs/SYNTH.md: the generator's speed (benchmarks/bench_synth.py) -------------------------------------

def synth_speed() -> list[str]:
    """bench_synth.py --out: write_dataset per noise level on one core, from the process's CPU time and wall time."""
    r = _json(RESULTS / "synth.json")
    albu = any("albumentations_cpu_ms_noise_jpeg" in row for row in r["rows"])
    rows = ["| noise | images/s (CPU time) | images/s (wall time) | ms/image: scene / noise / JPEG |"
            + (" noise + JPEG, ms/image: albumentations' chain (findbox's) |" if albu else ""),
            "|---|---|---|---|" + ("---|" if albu else "")]
    for row in r["rows"]:
        albu_ms, (_, noise_ms, jpeg_ms) = row.get("albumentations_cpu_ms_noise_jpeg"), row["cpu_ms_scene_noise_jpeg"]
        compared = f" {albu_ms:.0f} ({noise_ms + jpeg_ms:.0f}) |" if albu_ms is not None else " - |"
        rows.append(f"| {row['noise']} | {row['cpu_images_per_s']:.0f} | {row['wall_images_per_s']:.0f} | "
                    + " / ".join(f"{ms:.0f}" for ms in row["cpu_ms_scene_noise_jpeg"]) + " |"
                    + (compared if albu else ""))
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
    sections, auto, names = _cpu(), _cpu_auto(), _cpu_names()
    a, b, c = (sections[k]["contenders"] for k in ("a", "b", "c"))
    order = [auto] + [p for p in ("int8", "fp32", "bf16") if p != auto]
    notes = {"int8": " (auto's choice once a calibration record shows it keeps the answers)",
             "fp32": " (the exact path)", "bf16": ""}
    head = [f"`--precision {p}`" + (" (**the default** here: auto)" if p == auto else notes[p]) for p in order]

    def cells(section: dict) -> list[str]:
        out = [_ratio1(section[names[p]]) for p in order]
        out[0] = "**{}x** ({}".format(*out[0].split("x (", 1))
        return out

    latency = [f"{c[names[p]]['p50_s']:.2f} s" if names[p] in c else "not run" for p in order]
    latency[0] = f"p50 latency **{latency[0]}** vs {c['reference']['p50_s']:.2f} s (image cache)"
    return ["| workload | " + " | ".join(head) + " |", "|---|---|---|---|",
            "| (a) 4 captions of one image per request | {} the reference | {} | {} |".format(*cells(a)),
            "| (b) 4 distinct images, one caption each | {} | {} | {} |".format(*cells(b)),
            "| (c) one instance per request, repeated images | " + " | ".join(latency) + " |"]


TABLES.update({"readme-performance": readme_performance})


# --- docs/BENCHMARKS.md: `make bench`'s records (bench_pipeline.py -> cpu.json, bench_precision.py, bench_flops.py,
# bench_small_crops.py, bench_detector_export.py, bench_sliced.py) and the demo scorer's calibration record ---------

def _spread(median: float, low: float, high: float, unit: str = "", digits: int = 2) -> str:
    """'median (min-max)', the form every timing and ratio of cpu.json's tables takes."""
    return f"{median:.{digits}f}{unit} ({low:.{digits}f}-{high:.{digits}f})"


def _pct(v: float) -> str:
    """A share: '100%' when whole, else one decimal."""
    return "100%" if v == 1 else f"{100 * v:.1f}%"


def _cpu_auto() -> str:
    """The precision cpu.json's `--precision auto` ran: int8 in records made before auto needed a calibration
    record, fp32 since for the benchmark's random base-size scorer (it has none)."""
    return _json(RESULTS / "cpu.json")["settings"]["auto_precision"]


def _cpu_default() -> str:
    """cpu.json's contender at the defaults (precision auto)."""
    return f"findbox ({_cpu_auto()}, auto)"


def _cpu_names() -> dict[str, str]:
    """cpu.json's contender of each precision: the auto contender for the precision auto ran (that path is not
    run twice), `findbox P` for the others."""
    return {p: _cpu_default() if p == _cpu_auto() else f"findbox {p}" for p in ("fp32", "bf16", "int8")}


def _cpu_labels() -> dict[str, str]:
    """Table labels of cpu.json's contenders, in the order the tables list them."""
    auto = _cpu_auto()
    return {"reference": "reference (fp32)", _cpu_default(): f"**findbox** (default: auto = {auto})",
            **{f"findbox {p}": f"findbox `--precision {p}`" for p in ("int8", "fp32", "bf16") if p != auto},
            "findbox --image-cache 0": f"findbox `--image-cache 0` ({auto})"}


def _cpu() -> dict:
    return _json(RESULTS / "cpu.json")["sections"]


def _workload(section: dict) -> list[str]:
    """One of cpu.json's paired workloads: each contender's median ratio of the reference's request time to its own."""
    rows = ["| contender | ratio vs reference, median (min-max) | request s, median (min-max) | peak RSS MB | "
            "same box as reference |", "|---|---|---|---|---|"]
    contenders, labels = section["contenders"], _cpu_labels()
    for name in (n for n in labels if n in contenders):
        c = contenders[name]
        ratio = ("1.00x" if name == "reference"
                 else _spread(c["ratio_vs_reference"], c["ratio_min"], c["ratio_max"], "x"))
        rows.append(f"| {labels[name]} | {f'**{ratio}**' if name == _cpu_default() else ratio} | "
                    f"{_spread(c['p50_s'], c['min_s'], c['max_s'])} | {c['peak_rss_mb']:.0f} | "
                    f"{100 * c['same_box_as_reference']:.0f}% |")
    return rows


def bench_a() -> list[str]:
    """bench_pipeline.py, workload (a): the client's order, 4 captions of one image per request."""
    return _workload(_cpu()["a"])


def bench_b() -> list[str]:
    """bench_pipeline.py, workload (b): 4 distinct images per request, one caption each."""
    return _workload(_cpu()["b"])


def bench_c() -> list[str]:
    """bench_pipeline.py, workload (c): one instance per request, each image sent 4 times (the image cache's case):
    the ratio of total times, as a cached request against an uncached one is no ratio to take the median of."""
    contenders, default = _cpu()["c"]["contenders"], _cpu_default()
    labels = {**_cpu_labels(), default: f"**findbox** (default: auto = {_cpu_auto()}, image cache)",
              "findbox fp32": "findbox `--precision fp32` (image cache)"}
    rows = ["| contender | ratio of total times | latency s, median (min-max) | same box as reference |",
            "|---|---|---|---|"]
    for name in (n for n in labels if n in contenders):
        c = contenders[name]
        ratio, latency = f"{c['ratio_of_totals']:.2f}x", _spread(c["p50_s"], c["min_s"], c["max_s"])
        if name == default:
            ratio, latency = f"**{ratio}**", f"**{c['p50_s']:.2f}** ({c['min_s']:.2f}-{c['max_s']:.2f})"
        rows.append(f"| {labels[name]} | {ratio} | {latency} | {100 * c['same_box_as_reference']:.0f}% |")
    return rows


def _sweep(key: str, head: str) -> list[str]:
    """Default findbox against the reference at each value of one knob; workload (a) is the knob's default."""
    sections, knob_of_a = _cpu(), {"captions": 4, "max_det": _json(RESULTS / "cpu.json")["settings"]["max_det"]}
    runs = {int(v): s for v, s in sections[key].items()}
    runs[knob_of_a[key]] = sections["a"]
    rows = [f"| {head} | reference s | findbox s | ratio, median (min-max) |", "|---|---|---|---|"]
    for value in sorted(runs):
        ref, fb = runs[value]["contenders"]["reference"], runs[value]["contenders"][_cpu_default()]
        label = f"{value} (workload a)" if runs[value] is sections["a"] else str(value)
        rows.append(f"| {label} | {_spread(ref['p50_s'], ref['min_s'], ref['max_s'])} | "
                    f"{_spread(fb['p50_s'], fb['min_s'], fb['max_s'])} | "
                    f"{_spread(fb['ratio_vs_reference'], fb['ratio_min'], fb['ratio_max'], 'x')} |")
    return rows


def bench_captions() -> list[str]:
    """bench_pipeline.py --captions: time against captions per image."""
    return _sweep("captions", "captions of one image in one request")


def bench_max_det() -> list[str]:
    """bench_pipeline.py --max-dets: time against boxes per image."""
    return _sweep("max_det", "max_det (4 captions of one image)")


def _request_ratios(section: dict, name: str) -> list[float]:
    """Each paired request's ratio, reference seconds over the contender's."""
    ref = section["contenders"]["reference"]["request_seconds"]
    return [r / c for r, c in zip(ref, section["contenders"][name]["request_seconds"])]


def bench_goals() -> list[str]:
    """Issue 17's goals, from cpu.json (a) and (b) and precision.json's demo sets (same box as fp32, accuracy)."""
    sections, demo = _cpu(), _json(RESULTS / "precision.json")["sets"]
    demo_sets = [s for s in demo.values() if s["trained"]]
    auto, names = _cpu_auto(), _cpu_names()
    order = ("int8", "fp32", "bf16")
    head = [f"`--precision {p}`" + (" (the default here: auto)" if p == auto else "") for p in order]
    judged = ["int8"] + ([auto] if auto != "int8" else [])  # the path the goals were set for, and the default
    rows = ["| goal | " + " | ".join(head) + " | met? |", "|---|---|---|---|---|"]
    for key, goal, target in (("a", "(a) >= 10x the original's loop", 10), ("b", "(b) >= 2x", 2)):
        s = sections[key]["contenders"]
        cells = [_spread(s[names[p]]["ratio_vs_reference"], s[names[p]]["ratio_min"], s[names[p]]["ratio_max"], "x")
                 for p in order]
        cells[order.index(auto)] = "**{}x** ({}".format(*cells[order.index(auto)].split("x (", 1))
        verdicts = []
        for p in judged:
            below = sorted(r for r in _request_ratios(sections[key], names[p]) if r < target)
            if not below:
                verdict = "**met** on every request"
            elif s[names[p]]["ratio_vs_reference"] >= target:
                verdict = (f"**median met**; {len(below)} of {len(s[names[p]]['request_seconds'])} requests below "
                           f"{target}x (" + ", ".join(f"{r:.1f}x" for r in below) + ")")
            else:
                verdict = "not met"
            verdicts.append(f"{p}: {verdict}" if len(judged) > 1 else verdict)
        rows.append(f"| {goal} | " + " | ".join(cells) + f" | {'; '.join(verdicts)} |")

    def agreement(variant: str) -> str:
        same = [s["rows"][variant]["same_box_as_fp32"] for s in demo_sets]
        change = [100 * (s["rows"][variant]["accuracy"] - s["rows"]["fp32"]["accuracy"]) for s in demo_sets]
        same_cell = _pct(min(same)) if min(same) == max(same) else f"{_pct(min(same))[:-1]}-{_pct(max(same))}"
        if variant == "fp32":
            return same_cell
        return f"{same_cell}, {min(change):+.1f} to {max(change):+.1f} points"

    int8 = [s["rows"]["int8"] for s in demo_sets]
    met = all(r["same_box_as_fp32"] >= 0.99 for r in int8) and all(
        r["accuracy"] - s["rows"]["fp32"]["accuracy"] >= -0.005 for r, s in zip(int8, demo_sets))
    rows.append(f"| same box as fp32 on >= 99% of the demo bundle's instances, accuracy within 0.5 points | "
                f"{agreement('int8')} | {agreement('fp32')} | {agreement('bf16').split(',')[0]} | "
                f"{'int8: ' if len(judged) > 1 else ''}{'**met**' if met else 'not met'}"
                f"{'; fp32: **met** (the exact path)' if auto == 'fp32' else ''} (precision section) |")
    return rows


def _sci(v: float, digits: int = 1) -> str:
    """A small difference in scientific notation, `digits` after the point: 6.6e-04 -> '6.6e-4'."""
    return "0" if v == 0 else f"{v:.{digits}e}".replace("e-0", "e-").replace("e+0", "e+")


def precision_paths() -> list[str]:
    """bench_precision.py: the float paths against fp32, random base-size weights and the trained demo bundle."""
    sets = _json(RESULTS / "precision.json")["sets"]
    base, demo = sets["base_random"], sets["demo"]
    rows = [f"| variant | base size, random weights: same box as fp32 ({base['queries']} queries) | max logit diff | "
            f"demo bundle, trained: same box ({demo['queries']} queries) | demo accuracy |", "|---|---|---|---|---|"]
    for variant in ("fp32", "bf16-mixed", "bf16", "onnx"):
        b, d = base["rows"][variant], demo["rows"][variant]
        rows.append(f"| {variant} | {_pct(b['same_box_as_fp32'])} | {_sci(b['max_logit_diff'])} | "
                    f"{_pct(d['same_box_as_fp32'])} | {_acc(d['accuracy'])} |")
    return rows


PRECISION_LABELS = {"int8": "**int8** (ONNX Runtime)"}


def precision_int8() -> list[str]:
    """bench_precision.py: same box as fp32 and accuracy per variant on the demo sets, same box on random base size."""
    sets = _json(RESULTS / "precision.json")["sets"]
    demos = [(name, s) for name, s in sets.items() if s["trained"]]
    base = sets["base_random"]
    head = " | ".join(f"demo {s['noise']}: same box | accuracy" for _, s in demos)
    rows = [f"| variant | {head} | base size, random weights: same box ({base['queries']}) |",
            "|---|" + "---|---|" * len(demos) + "---|",
            "| queries | " + "".join(f"{s['queries']} | | " for _, s in demos) + "|"]
    for variant in ("fp32", "bf16", "bf16-mixed", "int8", "int8-torch"):
        bold = "**{}**" if variant == "int8" else "{}"
        cells = [bold.format(c) for _, s in demos
                 for c in (_pct(s["rows"][variant]["same_box_as_fp32"]), _acc(s["rows"][variant]["accuracy"]))]
        rows.append(f"| {PRECISION_LABELS.get(variant, variant)} | " + " | ".join(cells)
                    + f" | {100 * base['rows'][variant]['same_box_as_fp32']:.0f}% |")
    return rows


def precision_int8_120() -> list[str]:
    """bench_precision.py on the larger demo set (precision_120.json): same box as fp32 and accuracy per variant."""
    r = _json(RESULTS / "precision_120.json")
    demos = [s for s in r["sets"].values() if s["trained"]]
    variants = list(demos[0]["rows"])
    head = " | ".join(f"{s['images']} scenes {s['noise']}: same box | accuracy" for s in demos)
    rows = [f"| variant | {head} |", "|---|" + "---|---|" * len(demos),
            "| queries | " + " | ".join(f"{s['queries']} | " for s in demos) + " |"]
    for variant in variants:
        bold = "**{}**" if variant == "int8" else "{}"
        cells = [bold.format(c) for s in demos
                 for c in (_pct(s["rows"][variant]["same_box_as_fp32"]), _acc(s["rows"][variant]["accuracy"]))]
        rows.append(f"| {PRECISION_LABELS.get(variant, variant)} | " + " | ".join(cells) + " |")
    return rows


def precision_tower() -> list[str]:
    """bench_precision.py --tower-batch: one forward of the base-size image tower per variant."""
    tower = _json(RESULTS / "precision.json")["tower"]
    rows = [f"| variant | seconds per {tower['batch']} crops (range) | vs fp32 |", "|---|---|---|"]
    for variant, t in tower["rows"].items():
        label = {"onnx": "onnx (fp32)", "int8": "int8 (ONNX Runtime)"}.get(variant, variant)
        cells = [label, _spread(t["median_s"], t["min_s"], t["max_s"]), f"{t['speedup_vs_fp32']:.2f}x"]
        if variant == "int8":
            cells = [f"**{c}**" for c in cells]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


DEMO_CALIBRATION = MANIFEST.parent / "scorer" / "findbox_calibration.json"


def demo_calibration() -> list[str]:
    """`findbox calibrate`'s record shipped beside the demo scorer: each path against fp32 through the pipeline."""
    r = _json(DEMO_CALIBRATION)
    rows = ["| path | same box as fp32 | accuracy | instances/s (whole pipeline, this run) |", "|---|---|---|---|"]
    for p in r["results"]:
        backend = BACKEND_LABELS.get(p["backend"], p["backend"])
        rows.append(f"| {p['precision']} ({backend}) | {_pct(p['same_box'])} | {p['accuracy']:.4f} | "
                    f"{p['instances_per_s']:.2f} |")
    return rows


BACKEND_LABELS = {"onnxruntime": "ONNX Runtime", "onnxruntime-static": "ONNX Runtime, static scales"}


def small_crops_speed() -> list[str]:
    """bench_small_crops.py: the base-size image tower with and without --small-crop-input."""
    base = _json(RESULTS / "small_crops.json")["base"]
    rows = ["| precision | small input | crops scored small | seconds for {} crops | vs off |".format(base["crops"]),
            "|---|---|---|---|---|"]
    tokens_said = False
    for precision, sides in base["rows"].items():
        for side, t in sides.items():
            side_cell = "off" if side == "0" else side
            if side != "0" and not tokens_said:
                side_cell, tokens_said = f"{side} ({(int(side) // 16) ** 2} tokens)", True
            speedup = f"{t['speedup_vs_off']:.2f}x"
            rows.append(f"| {precision} | {side_cell} | {100 * t['small_share']:.0f}% | "
                        f"{_spread(t['median_s'], t['min_s'], t['max_s'])} | "
                        f"{speedup if side == '0' else f'**{speedup}**'} |")
    return rows


def small_crops_accuracy() -> list[str]:
    """bench_small_crops.py: the demo bundle with each small input, low and high noise, against it off."""
    demo = _json(RESULTS / "small_crops.json")["demo"]
    low, high = demo["low"]["rows"], demo["high"]["rows"]
    rows = ["| small input | low noise: crops small | same box as off | accuracy | high noise: crops small | same box | "
            "accuracy |", "|---|---|---|---|---|---|---|"]
    for side in low:
        cells = [f"{100 * r['small_share']:.0f}% | {_pct(r['same_box_as_off'])} | {_acc(r['accuracy'])}"
                 for r in (low[side], high[side])]
        rows.append(f"| {'off' if side == '0' else side} | {cells[0]} | {cells[1]} |")
    return rows


def _flops_names() -> dict[str, str]:
    """flops.json's contender of each precision (the auto contender for the precision auto ran), and auto's."""
    r = _json(RESULTS / "flops.json")
    auto = next(k for k in r["achieved"] if k.endswith(", auto)")).split("(", 1)[1].split(",")[0]
    return {"auto": auto, **{p: f"findbox ({auto}, auto)" if p == auto else f"findbox {p}"
                             for p in ("fp32", "bf16", "int8")}}


def flops_achieved() -> list[str]:
    """bench_flops.py: the arithmetic each contender achieved per request, against the matmul peak of its precision."""
    r, names = _json(RESULTS / "flops.json"), _flops_names()
    made = (r.get("date") or "")[:10]
    rows = [f"| run (`make bench`{', ' + made if made else ''}) | precision | achieved GFLOP/s | of its peak |",
            "|---|---|---|---|"]
    for workload in ("a", "b"):
        for name in ["reference"] + [names[p] for p in ("fp32", "bf16", "int8")]:
            a = r["achieved"].get(f"{workload}/{name}")
            if a is None:
                continue
            label = f"**findbox (auto = {names['auto']})**" if name.endswith(", auto)") else name
            rows.append(f"| ({workload}) {label} | {a['precision']} | {a['gflops']:.1f} | "
                        f"{100 * a['of_peak']:.0f}% |")
    return rows


FLOPS_WORK = {"detect": "image", "embed_images": "crops", "embed_texts": "captions"}


def flops_stages() -> list[str]:
    """bench_flops.py: each model stage's time per request against its floor (its FLOPs at the matmul peak)."""
    r, names = _json(RESULTS / "flops.json"), _flops_names()
    order = ("int8", "bf16", "fp32")
    label = {p: f"{p} (default)" if p == names["auto"] else p for p in order}
    rows = [f"| workload, stage | work per request | GFLOP | {label['int8']}: s | floor s | floor/time | "
            f"{label['bf16']}: s | floor/time | {label['fp32']}: s | floor s | floor/time |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for workload in ("a", "b"):
        for stage, unit in FLOPS_WORK.items():
            d, bf, fp = (r["stages"][f"{workload}/{names[p]}"][stage] for p in order)
            work = d["work_per_request"]
            unit = unit + "s" if unit == "image" and work != 1 else unit
            gflop = f"{d['gflop_per_request']:.1f}".removesuffix(".0")

            def share(s: dict) -> str:
                return f"{100 * s['floor_s_per_request'] / s['seconds_per_request']:.0f}%"

            rows.append(f"| ({workload}) {stage} | {work:g} {unit} | {gflop} | {d['seconds_per_request']:.3f} | "
                        f"{d['floor_s_per_request']:.3f} | {share(d)} | {bf['seconds_per_request']:.3f} | {share(bf)} | "
                        f"{fp['seconds_per_request']:.3f} | {fp['floor_s_per_request']:.3f} | {share(fp)} |")
    return rows


DETECTOR_EXPORT_LABELS = {"torch": "torch (`detector.pt`, as served)",
                          "torch (again)": "torch again, after the exports (the run's drift)",
                          "onnx 1280x1280": "ONNX `export(imgsz=1280, dynamic=False)`: 1280x1280 input",
                          "onnx 736x1280": "ONNX `export(imgsz=(736, 1280), dynamic=False)`",
                          "onnx dynamic": "ONNX `export(imgsz=1280, dynamic=True)`"}


def detector_export() -> list[str]:
    """bench_detector_export.py: the demo detector through torch and through three ONNX Runtime exports."""
    r = _json(RESULTS / "detector_export.json")
    rows = [f"| detector | ms per frame, {r['started'][11:16]} | vs torch | frames with the same boxes |",
            "|---|---|---|---|"]
    for name, c in r["contenders"].items():
        same, speedup = c["frames_same_boxes"] == r["frames"], f"{c['speedup_vs_torch']:.2f}x"
        frames = f"{c['frames_same_boxes']} of {r['frames']}"
        if same and c["max_box_diff_px"] > 0:
            frames += f" (max diff {_sci(c['max_box_diff_px'], 0)} px)"
        rows.append(f"| {DETECTOR_EXPORT_LABELS.get(name, name)} | "
                    f"{c['median_ms']:.0f} ({c['min_ms']:.0f}-{c['max_ms']:.0f}) | "
                    f"{f'**{speedup}**' if same and not name.startswith('torch') else speedup} | {frames if same else f'**{frames}**'} |")
    return rows


def sliced() -> list[str]:
    """bench_sliced.py at imgsz 1280 (sliced.json) and 640 (sliced_640.json): slices against small-object recall."""
    rows = None
    for name in ("sliced.json", "sliced_640.json"):
        r = _json(RESULTS / name)
        if rows is None:
            small, other = (next(iter(r["rows"].values()))["recall"][k]["objects"] for k in ("small", "other"))
            rows = [f"| imgsz | slices | ms per image | boxes per image | small-object recall ({small}) | "
                    f"other recall ({other}) |", "|---|---|---|---|---|---|"]
        for slices, row in r["rows"].items():
            rows.append(f"| {r['imgsz']} | {'off (1x1)' if slices == '1x1' else slices} | "
                        f"{1000 * row['seconds_per_image']:.0f} | {row['boxes_per_image']:.1f} | "
                        f"{row['recall']['small']['recall']:.2f} | {row['recall']['other']['recall']:.2f} |")
    return rows


TABLES.update({"bench-a": bench_a, "bench-b": bench_b, "bench-c": bench_c, "bench-captions": bench_captions,
               "bench-max-det": bench_max_det, "bench-goals": bench_goals, "precision-paths": precision_paths,
               "precision-int8-120": precision_int8_120,
               "precision-int8": precision_int8, "precision-tower": precision_tower,
               "demo-calibration": demo_calibration, "small-crops-speed": small_crops_speed,
               "small-crops-accuracy": small_crops_accuracy, "flops-achieved": flops_achieved,
               "flops-stages": flops_stages, "detector-export": detector_export, "sliced": sliced})


# --- training speed (train_speed.py): docs/TRAIN_SCORER.md and docs/TRAIN_DETECTOR.md ----------------------


def _epoch_s(values: list[float]) -> str:
    """Seconds per epoch: the median, and the range when there are several."""
    import statistics

    med = statistics.median(values)
    return f"{med:.1f}" if len(values) == 1 else f"{med:.1f} ({min(values):.1f}-{max(values):.1f})"


def _load(row: dict) -> str:
    return f"{row['load_1min_before']:.1f} / {row['load_1min_after']:.1f}"


def train_speed_scorer() -> list[str]:
    """train_speed.py: scorer epochs in fp32 against bf16 autocast, and with 0, 1, 2 loader processes."""
    r = _json(RESULTS / "train_speed.json")
    rows = ["| run | precision | loader processes | s per epoch (training steps) | s per validation | "
            "val accuracy after each epoch (in the run's precision) | saved weights' val accuracy in fp32 | "
            "1-min load before / after |", "|---|---|---|---|---|---|---|---|"]
    sections = [r.get("scorer_precision", {}).get("rows", {}), r.get("scorer_workers", {}).get("rows", {})]
    for section in sections:
        for name, row in section.items():
            accuracy = " ".join(f"{a:.3f}" for a in row["val_accuracy"][1:])
            rows.append(f"| {name} | {row['precision']} | {row['workers']} | {_epoch_s(row['train_s'])} | "
                        f"{_epoch_s(row['val_s'])} | {accuracy} | {row['served_fp32_val_accuracy']:.3f} | "
                        f"{_load(row)} |")
    data = r["scorer_data"]
    first = next(iter(sections[0].values()), None) or next(iter(sections[1].values()))
    return rows + ["", f"{first['train_crops']} train and {first['val_queries']} val crops of `findbox synth` "
                       f"({data['images']} images, seed {data['seed']}, noise {data['noise']}); s per epoch: median "
                       "(min-max) of the run's epochs; the machine is shared, so compare the minima. " + _provenance(r)]


def train_speed_scorer_base() -> list[str]:
    """train_speed.py scorer-base: fp32 against bf16 on a base-size SigLIP, time only."""
    r = _json(RESULTS / "train_speed_base.json")
    d = r["scorer_base"]
    rows = ["| run | precision | s per epoch (training steps) | steps | s per validation | 1-min load before / after |",
            "|---|---|---|---|---|---|"]
    for name, row in d["rows"].items():
        rows.append(f"| {name} | {row['precision']} | {_epoch_s(row['train_s'])} | {row['steps']} | "
                    f"{_epoch_s(row['val_s'])} | {_load(row)} |")
    best = {p: min(s for row in d["rows"].values() if row["precision"] == p for s in row["train_s"])
            for p in ("fp32", "bf16")}
    data, first = d["data"], next(iter(d["rows"].values()))
    return rows + ["", f"{d['scorer']}; {first['train_crops']} train crops of `findbox synth` ({data['images']} "
                       f"images, seed {data['seed']}), batch 32 in micro-batches of 16. Fastest epoch: fp32 "
                       f"{best['fp32']:.1f} s, bf16 {best['bf16']:.1f} s ({best['fp32'] / best['bf16']:.2f}x). "
                       + _provenance(r)]


def train_speed_detector() -> list[str]:
    """train_speed.py: detector epochs with the decoded images cached in RAM or not, and 0-2 loader processes."""
    r = _json(RESULTS / "train_speed.json")
    d = r["detector"]
    rows = ["| cache | loader processes | s per epoch (training + validation) | stage total s (with caching) | "
            "mAP50 | mAP50-95 | 1-min load before / after |", "|---|---|---|---|---|---|---|"]
    for row in d["rows"].values():
        rows.append(f"| {row['cache']['mode']} | {row['workers']} | {' / '.join(f'{s:.1f}' for s in row['epoch_s'])} | "
                    f"{row['train_s']:.1f} | {row['mAP50']:.3f} | {row['mAP50-95']:.3f} | {_load(row)} |")
    data = d["data"]
    cache = next(iter(d["rows"].values()))["cache"]
    return rows + ["", f"The demo detector fine-tuned 2 epochs at imgsz 512 (batch 8, augs v2) on `findbox synth` "
                       f"({data['images']} images, seed {data['seed']}, noise {data['noise']}: 80 train, 20 val); the "
                       f"decoded images take {cache['need_mb']:.0f} MB. " + _provenance(r)]


TABLES.update({"train-speed-scorer": train_speed_scorer, "train-speed-scorer-base": train_speed_scorer_base,
               "train-speed-detector": train_speed_detector})


def static_int8_towers() -> list[str]:
    """static_int8.py: each tower's time per row by batch size, against the int8 matmul floor."""
    r = _json(RESULTS / "static_int8.json")
    rows = ["| tower | rows per forward | scorer | ms per row, median (min-max) | of the int8 floor (torch) | "
            "of ONNX Runtime's int8 floor |", "|---|---|---|---|---|---|"]
    for tower, batches in r["speed"].items():
        for batch, contenders in batches.items():
            for name, c in contenders.items():
                shown = "1 (one row a forward, always)" if name == "int8 dynamic" else batch
                cell = _spread(1000 * c["median_s"], 1000 * c["min_s"], 1000 * c["max_s"])
                share, ort = f"{100 * c['of_int8_floor']:.0f}%", f"{100 * c['of_onnxruntime_int8_floor']:.0f}%"
                if name == "int8 static":
                    cell, share, ort = f"**{cell}**", f"**{share}**", f"**{ort}**"
                rows.append(f"| {tower} | {shown} | {name} | {cell} | {share} | {ort} |")
    s, b = r["settings"], r["batch_independence"]
    return rows + ["", f"{s['scorer']}, input {s['size_hw'][0]}x{s['size_hw'][1]}; floors (the tower's FLOPs at "
                       f"the int8 matmul peak: {r['int8_matmul_peak_gflops']:.0f} GOP/s torch._int_mm, "
                       f"{r['onnxruntime_int8_peak_gops']:.0f} GOP/s ONNX Runtime MatMulInteger): image "
                       f"{1000 * r['floor_s']['image']:.2f} / {1000 * r['floor_s']['image_onnxruntime']:.2f} ms a "
                       f"crop, text {1000 * r['floor_s']['text']:.2f} / {1000 * r['floor_s']['text_onnxruntime']:.2f} "
                       f"ms a caption. Ranges ({s['method']}) from {s['calibration_rows']['image']} crops and "
                       f"{s['calibration_rows']['text']} captions of {s['calib_frames']} synthetic scenes through the "
                       f"fp32 pipeline. Static int8, each row alone against all {b['rows'][0]} crops / {b['rows'][1]} "
                       f"captions in one forward: largest difference {b['image_max_abs_diff']:.1e} (image), "
                       f"{b['text_max_abs_diff']:.1e} (text). " + _provenance(r)]


def static_int8_tried() -> list[str]:
    """static_int8.py: the other routes to static int8 and how far each went here."""
    r = _json(RESULTS / "static_int8.json")
    labels = {"openvino_nncf": "OpenVINO with NNCF", "torch_ao_fx": "torch.ao FX graph mode (`prepare_fx`, x86)",
              "pt2e_x86_inductor": "PT2E (`torch.export` + `X86InductorQuantizer`)"}
    rows = ["| route | outcome on the image tower |", "|---|---|"]
    for key, row in r["alternatives"].items():
        outcome = "prepared (not timed)" if row["ok"] else f"`{row['error'].replace('|', '/')}`"
        rows.append(f"| {labels.get(key, key)} | {outcome} |")
    return rows


def static_int8_goals() -> list[str]:
    """Issue 27's speed goals for the int8 paths, from one bench_pipeline run (cpu_static.json: every contender
    side by side) and static_int8.json (the towers against the int8 floor)."""
    run = _json(RESULTS / "cpu_static.json")
    towers = _json(RESULTS / "static_int8.json")
    names = ("findbox int8", "findbox int8-static")  # the columns dynamic and static int8
    rows = ["| goal | dynamic int8 | static int8 | `--precision fp32` | met? |", "|---|---|---|---|---|"]
    for key, goal, target in (("b", "(b) 4 distinct images a request, one caption each: >= 4x the original loop", 4),
                              ("a", "(a) the client's order, 4 captions of one image: >= 15x", 15)):
        c = run["sections"][key]["contenders"]
        best = max(c[n]["ratio_vs_reference"] for n in names)
        # fp32: its own contender, or the auto one where auto ran fp32 (then fp32 is not run twice)
        cells = [_ratio1(c[n]) for n in (*names, "findbox fp32" if "findbox fp32" in c else "findbox (fp32, auto)")]
        rows.append(f"| {goal} | " + " | ".join(cells) + f" | {'met' if best >= target else 'not met'} "
                    f"(best median {best:.1f}x) |")
    image = towers["speed"]["image"]
    shares = {name: max(b[name]["of_int8_floor"] for b in image.values()) for name in ("int8 dynamic", "int8 static")}
    ort = {name: max(b[name]["of_onnxruntime_int8_floor"] for b in image.values())
           for name in ("int8 dynamic", "int8 static")}
    fp32_share = max(b["fp32 (torch)"]["of_int8_floor"] for b in image.values())
    fp32_ort = max(b["fp32 (torch)"]["of_onnxruntime_int8_floor"] for b in image.values())
    rows.append(f"| image tower at >= 70% of the int8 matmul floor (torch / ONNX Runtime peak) | "
                f"{100 * shares['int8 dynamic']:.0f}% / {100 * ort['int8 dynamic']:.0f}% | "
                f"{100 * shares['int8 static']:.0f}% / {100 * ort['int8 static']:.0f}% | "
                f"{100 * fp32_share:.0f}% / {100 * fp32_ort:.0f}% | "
                f"{'met' if max(ort.values()) >= 0.7 else 'not met'} |")
    loads = [run["sections"][k][f"load_{w}"][0] for k in ("a", "b") for w in ("before", "after")]
    return rows + ["", f"cpu_static.json: {run['settings']['scorer']}, {run['sections']['b']['requests']} requests a "
                       f"workload, load average {min(loads):.1f}-{max(loads):.1f}; commit {run['commit'][:7]}, "
                       f"`{run['command']}`. static_int8.json: the table above."]


TABLES.update({"static-int8-towers": static_int8_towers, "static-int8-tried": static_int8_tried,
               "static-int8-goals": static_int8_goals})



def _served(models: dict) -> str:
    """What served, from /metrics' model info: the detector's backend and precision, the scorer's path."""
    d, s = models.get("detector", {}), models.get("scorer", {})
    scorer = s.get("precision", "fp32") + (f" on {s['backend']}" if s.get("backend") else " on torch")
    return f"detector {d.get('backend', '?')} {d.get('precision', 'fp32')}; scorer {scorer}"


def client_latency() -> list[str]:
    """client_latency.py: the demo bundle through the published test client, today's default against the default
    issue 27 was filed against, side by side; the detector's fp32 floor measured in the same run."""
    r = _json(RESULTS / "client_latency.json")
    rows = ["| contender | what served | ms an instance, test client: median (each round) | finals harness, ms "
            "an instance | detect, ms a frame | vs filed default | same box as filed default | accuracy |",
            "|---|---|---|---|---|---|---|---|"]
    for name, row in r["rows"].items():
        flags = " ".join(r["contenders"][name]["args"])
        label = f"{name}" + (f" (`{flags}`)" if flags else "")
        rounds = " / ".join(f"{v:.1f}" for v in row["ms_per_instance_by_round"])
        same, moved = row.get("same_box_as_filed_default"), row.get("moved_answers") or {}
        if same is not None and moved.get("count"):
            px = moved["max_corner_px"]
            same = f"{100 * same:.1f}% ({moved['count']} moved {min(px):.2f}-{max(px):.2f} px, " \
                   f"{moved['other_object']} to another object)"
        elif same is not None:
            same = f"{100 * same:.1f}%"
        rows.append(f"| {label} | {_served(row['models'])} | **{row['ms_per_instance_median']:.1f}** ({rounds}) | "
                    f"{row['finals_ms_median']:.1f} | {row['detect_ms_per_frame']:.0f} | "
                    f"**{row.get('speedup_vs_filed_default', 1.0):.2f}x** | "
                    f"{same or '-'} | {row['accuracy']:.3f} |")
    f, data = r["detector_floor"], r["data"]
    baseline = r["baseline"] or {}
    return rows + ["", f"{data['instances']} instances of {data['images']} fresh scenes (seed {data['seed']}, noise "
                       f"{data['noise']}) in requests of {r['batch']} with no Content-Type, {r['rounds']} rounds, each "
                       f"contender a fresh server per round in rotating order after {r['warm_instances']} warm-up "
                       f"instances of other scenes; the finals harness's style (one instance a request, with the "
                       f"header) on {r['finals_instances']} instances of other scenes. Filed default: commit "
                       f"{str(baseline.get('commit'))[:7]} served from its own tree. Same box: every corner within "
                       f"{r['same_box_px']} px. Detector floor: {f['gflop_per_frame']:.1f} GFLOP a frame at imgsz "
                       f"{f['imgsz']} (input {f['input_hw'][0]}x{f['input_hw'][1]}), at the fp32 matmul rate "
                       f"measured in the run ({f['fp32_matmul_gflops']:.0f} GFLOP/s): "
                       f"**{f['floor_ms_per_frame']:.0f} ms a frame**; at the bf16 rate "
                       f"({f['bf16_matmul_gflops']:.0f} GFLOP/s): {f['bf16_floor_ms_per_frame']:.0f} ms. "
                       + _provenance(r)]


TABLES.update({"client-latency": client_latency})


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def _source(row: dict) -> str:
    """Which build measured a row: this record's work folder, or an earlier record's (its commit and date)."""
    src = row.get("source")
    return "this build" if not src else f"earlier record ({src['commit'][:7]}, {src['date'][:10]})"


def demo_build_time() -> list[str]:
    """demo_build_time.py: each training run of `make demo-models`, its FLOP floor, the shipped build's record and
    a from-nothing build's measured (or projected) minutes, with which build measured each."""
    r = _json(RESULTS / "demo_build_time.json")
    rows = ["| run | size x epochs | training samples | training TFLOP | floor, min | shipped build, min | "
            "from-nothing build, min | measured in | build / floor |", "|---|---|---|---|---|---|---|---|---|"]
    for run in r["runs"]:
        size = f"{run['imgsz']} x {run['epochs']}" if run["imgsz"] else f"x {run['epochs']}"
        measured = run["measured_s"] is not None
        mine = f"**{_minutes(run['measured_s'])}**" if measured else f"({_minutes(run['projected_s'])})"
        rows.append(f"| {run['run']} | {size} | {run['samples']} | {run['train_gflop'] / 1e3:.1f} | "
                    f"{_minutes(run['floor_s'])} | {_minutes(run['shipped_s'])} | {mine} | "
                    f"{_source(run) if measured else 'projected'} | {run['projected_s'] / run['floor_s']:.0f}x |")
    t = r["totals"]
    data = [d for d in r["data"] if d["seconds"] is not None]
    crops = [d for d in r["crops"] if d["seconds"] is not None]
    left = t["train_projected_s"] - t["train_measured_s"]
    earlier = t.get("runs_measured_earlier", 0)
    here = t["runs_measured"] - earlier
    sources = f"{here} in this record's build" + (f", {earlier} in the earlier build whose record the row names"
                                                  if earlier else "")
    return (rows + [f"| **training, all runs** | | | | **{_minutes(t['train_floor_s'])}** | "
                   f"{_minutes(t['shipped_train_s'])} | {_minutes(t['train_measured_s'])} measured"
                   + (f" + ({_minutes(left)})" if left > 0 else "") + " | | "
                   f"{t['train_projected_s'] / t['train_floor_s']:.0f}x |",
                   "", f"Bold: measured from nothing ({t['runs_measured']} of {t['runs']} runs: {sources}); in "
                       f"parentheses: projected at the build's own seconds per FLOP for runs of the same kind (or, "
                       f"with none finished yet, the shipped build's record). Floor: 3 forward passes of FLOPs per "
                       f"training sample (forward and backward; the detector's validation images once) at "
                       f"{r['fp32_matmul_gflops']:.0f} GFLOP/s, this machine's fp32 matmul rate "
                       f"measured in the run. The synth sets took {_minutes(t['data_measured_s'])} min "
                       f"({len(data)} of {len(r['data'])} sets done), cutting their crops "
                       f"{_minutes(t['crops_measured_s'])} min ({len(crops)} of {len(r['crops'])}); from the first "
                       f"synth image to the newest finished run, this record's build had run "
                       f"{_minutes(t['elapsed_s'])} min. " + _shipped_ratio(r["runs"]) + _provenance(r)]
            + _demo_built(r, t))


def _shipped_ratio(runs: list[dict]) -> str:
    """How much longer the shipped build's record of each run is than the from-nothing build's measurement."""
    ratio = {run["run"] + (f" at {run['imgsz']}" if run["imgsz"] else ""): run["shipped_s"] / run["measured_s"]
             for run in runs if run["measured_s"] and run["shipped_s"]}
    if not ratio:
        return ""
    low, high = min(ratio, key=ratio.get), max(ratio, key=ratio.get)
    return (f"The shipped build's record of a run is {ratio[low]:.1f}x ({low}) to {ratio[high]:.1f}x ({high}) "
            f"the from-nothing build's time. ")


def _demo_built(r: dict, totals: dict) -> list[str]:
    """The finished from-nothing build, or its halves (`--part`, this record's and the earlier one's it names): each
    one's wall time and held-out accuracy beside the shipped bundle's, and with both halves, the whole recipe's time."""
    builds = [b for b in [r.get("built"), *r.get("earlier_built", [])] if b]
    if not builds:
        return []
    rows = ["", "| built from nothing | noise | seeds | instances | built | shipped bundle | difference | "
                "standard error | detector recall: built / shipped |", "|---|---|---|---|---|---|---|---|---|"]
    lines = []
    for built in builds:
        part = built.get("part", "all")
        name = "the whole recipe" if part == "all" else f"the {part} half"
        for noise, f in built["figures"].items():
            rows.append(f"| {name} | {noise} | {', '.join(map(str, f['seeds']))} | {f['n_instances']} | "
                        f"{f['built']:.3f} | {f['shipped']:.3f} | {f['built'] - f['shipped']:+.3f} | "
                        f"{f['standard_error']:.3f} | {f['built_detector_recall']:.3f} / "
                        f"{f['shipped_detector_recall']:.3f} |")
        reused = f", reusing {', '.join(built['found_in_work'])}" if built["found_in_work"] else ", reusing nothing"
        if part != "all":
            from findbox.bundle import BUNDLE_DIR
            from findbox.calibration import file_sha256
            from findbox.train.demo import reused_weights

            half = "detector" if part == "scorer" else "scorer"
            same = ("the shipped bundle's" if built["reused"]["sha256"] == file_sha256(reused_weights(BUNDLE_DIR, half))
                    else f"`{built['reused'][half]}`, not the shipped one")
            reused += f" from earlier runs; the {half} is {same} (sha256 {built['reused']['sha256'][:12]})"
        src = built.get("source")
        where = "" if not src else f"; evaluated in the earlier record ({src['commit'][:7]}, {src['date'][:10]})"
        lines.append(f"{name[0].upper()}{name[1:]} (`{built['command']}`, commit {built['commit'][:7]}, "
                     f"{'clean tree' if built['clean_tree'] else 'dirty tree'}{reused}{where}) took "
                     f"**{built['wall_s'] / 3600:.2f} h** wall, {built['train_s'] / 3600:.2f} h of it training.")
    if totals.get("full_build_s"):
        lines[0] += (f" With the other half's synth sets and runs as the earlier build measured them, the whole "
                     f"recipe takes **{totals['full_build_s'] / 3600:.2f} h** on this machine class.")
    for line in lines:
        rows += ["", line]
    return rows


TABLES.update({"demo-build-time": demo_build_time})


# --- docs/BENCHMARKS.md: where every result file came from ------------------------------------------------------

def result_records() -> list[str]:
    """Every result file under benchmarks/results/ with the command, commit, clean-tree flag, machine and date it
    records (common.write_result); "not recorded" where a file predates those fields."""
    rows = ["| result file | command | commit | clean tree | machine | date (UTC) |", "|---|---|---|---|---|---|"]
    for path in sorted(RESULTS.glob("*.json")):
        r = _json(path)
        command = (r.get("command") or "not recorded").removeprefix(".venv/bin/python ")
        sha = r.get("commit")
        commit = sha[:7] + ("+dirty" if sha.endswith("+dirty") else "") if sha else "not recorded"
        clean = {True: "yes", False: "**no**", None: "not recorded"}[r.get("clean_tree")]
        if r.get("uncommitted_outputs"):
            clean += f" (results written earlier in the run: {len(r['uncommitted_outputs'])})"
        machine = r.get("machine") if isinstance(r.get("machine"), dict) else {}
        where = f"{machine['cpus']}-core {machine['cpu_model']}" if machine.get("cpu_model") else "not recorded"
        date = (r.get("date") or r.get("started") or "not recorded").replace("T", " ")[:16]
        rows.append(f"| `{path.name}` | `{command}` | {commit} | {clean} | {where} | {date} |")
    return rows


TABLES.update({"result-records": result_records})


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
