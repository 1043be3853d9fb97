"""The published clients' request styles against `findbox serve` on the demo bundle: same boxes, same accuracy.

    .venv/bin/python benchmarks/published_client.py --images 100 --seed 9401 --noise low

Starts `findbox serve` with its defaults (the bundled demo models) on 127.0.0.1 and sends one
fresh synthetic set three ways:
- `test_client`: as the task's published test client does, `requests.post(url, data=json.dumps(...))`
  (a string body: no Content-Type header), 44 instances with int `key`s a request, each image
  once per caption, in the set's order;
- `json_client`: the same batches with `json=` (Content-Type application/json), as findbox's own
  examples and `findbox eval --url` send;
- `finals_harness`: one instance a request with `json=` and no `key`.
Each style gets a fresh server (no image cache carried over from the style before). Writes each
style's statuses, accuracy (the task's rule) and hits, and whether every box equals the json
client's, to benchmarks/results/published_client.json. A compatibility check, not a speed one.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, write_result  # noqa: E402
from load import start_demo_server, wait_ready  # noqa: E402

BATCH = 44  # the published test client's batch


def synthetic_instances(images: int, seed: int, noise: str) -> tuple[list[dict], list[list[float]]]:
    """(instances with keys, true ltwh boxes), one instance per object, images in order."""
    from findbox.synth import SynthConfig, generate_scene_jpeg

    instances, truths = [], []
    for index in range(images):
        data, objects = generate_scene_jpeg(SynthConfig(noise=noise), index, seed)
        b64 = base64.b64encode(data).decode("ascii")
        for obj in objects:
            instances.append({"key": len(instances), "caption": obj.caption, "b64": b64})
            truths.append(list(obj.bbox_ltwh))
    return instances, truths


def send(url: str, instances: list[dict], batch: int, style: str) -> tuple[list, dict[int, int]]:
    """(boxes in order, {status: requests}) for one request style."""
    import requests

    boxes, statuses = [], {}
    with requests.Session() as http:
        for lo in range(0, len(instances), batch):
            chunk = instances[lo:lo + batch]
            if style == "test_client":
                body = {"instances": [{field: inst[field] for field in ("key", "caption", "b64")} for inst in chunk]}
                response = http.post(url + "/identify", data=json.dumps(body), timeout=600)
                assert "Content-Type" not in response.request.headers
            else:
                fields = ("key", "caption", "b64") if style == "json_client" else ("caption", "b64")
                body = {"instances": [{field: inst[field] for field in fields} for inst in chunk]}
                response = http.post(url + "/identify", json=body, timeout=600)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            predictions = response.json().get("predictions") if response.status_code == 200 else None
            boxes += predictions if predictions is not None else [None] * len(chunk)
    return boxes, statuses


def main() -> int:
    from findbox.eval.metric import iou_ltwh, is_hit

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--seed", type=int, default=9401, help="a synth seed never trained on (default 9401)")
    parser.add_argument("--noise", default="low")
    parser.add_argument("--out", default=str(RESULTS / "published_client.json"))
    args = parser.parse_args()

    instances, truths = synthetic_instances(args.images, args.seed, args.noise)
    styles = {"test_client": BATCH, "json_client": BATCH, "finals_harness": 1}
    rows, answers = {}, {}
    for style, batch in styles.items():
        with tempfile.TemporaryDirectory() as tmp:
            proc, url, _ = start_demo_server(Path(tmp), ["--device", "cpu"])
            try:
                wait_ready(url, proc)
                boxes, statuses = send(url, instances, batch, style)
            finally:
                proc.terminate()
                proc.wait(30)
        answers[style] = boxes
        hits = [box is not None and is_hit(iou_ltwh(box, truth)) for box, truth in zip(boxes, truths)]
        rows[style] = {"batch": batch, "requests": sum(statuses.values()),
                       "statuses": {str(k): v for k, v in sorted(statuses.items())},
                       "accuracy": round(sum(hits) / len(hits), 4), "hits": sum(hits)}
        print(style, rows[style], flush=True)
    for style in styles:
        rows[style]["same_boxes_as_json_client"] = answers[style] == answers["json_client"]
    write_result(args.out, {"server": "findbox serve --device cpu (demo bundle, default precision)",
                            "data": {"images": args.images, "seed": args.seed, "noise": args.noise,
                                     "instances": len(instances)}, "styles": rows})
    return 0 if all(r["statuses"] == {"200": r["requests"]} and r["same_boxes_as_json_client"]
                    for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
