"""Answer every instance, in-process (a Pipeline) or through a server's /identify.

Both send the same requests (see `data.requests_of`) and time them the same way:
a request's latency runs from the image bytes to the answer (decode included),
and each instance is charged its share (latency / instances in the request).
An image that is missing or does not decode is reported and its instances stay
unanswered (prediction None): they count as misses, never vanish.
"""

from __future__ import annotations

import base64
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from findbox.boxes import Candidates
from findbox.eval.data import Sample, requests_of
from findbox.images import decode_image
from findbox.ranking import Ranking

if TYPE_CHECKING:  # the server mode runs without torch or the models
    from findbox.pipeline import Pipeline


@dataclass
class InstanceResult:
    """What a run learned about one instance.

    pred_ltwh: the answer at the run's own conf, image pixels; None when unanswered.
    seconds: this instance's share of its request's latency; None when no request was sent.
    candidates: in-process only: every proposal at the run's conf (xyxy original pixels,
        det_score, match_score against this caption). None in server mode.
    image_wh: (W, H) of the decoded image; None when it could not be read.
    """

    sample: Sample
    pred_ltwh: tuple[float, float, float, float] | None = None
    seconds: float | None = None
    error: str | None = None
    candidates: Candidates | None = None
    image_wh: tuple[int, int] | None = None


@dataclass
class Run:
    """Every instance's result plus what describes the run as a whole.

    run_conf: detector threshold the pipeline ran at (None for a server: unknown).
    ranking: the pipeline's own `Ranking` (None for a server), so candidates can be re-chosen
        later exactly as the pipeline chose them.
    """

    mode: str
    results: list[InstanceResult]
    latencies_s: list[float] = field(default_factory=list)
    bad_images: dict[str, str] = field(default_factory=dict)
    run_conf: float | None = None
    ranking: Ranking | None = None


def _read_images(samples: list[Sample], images_dir: Path, results: list[InstanceResult]
                 ) -> tuple[dict[str, bytes], dict[str, tuple[int, int]], dict[str, str]]:
    """File bytes and (W, H) of each distinct good image, and why the bad ones are bad.

    The results of a bad image's instances get its reason as their error.
    """
    data: dict[str, bytes] = {}
    bad: dict[str, str] = {}
    wh: dict[str, tuple[int, int]] = {}
    for name in dict.fromkeys(s.image for s in samples):
        path = images_dir / name
        try:
            raw = path.read_bytes()
            image = decode_image(raw)
        except (OSError, ValueError) as exc:
            reason = f"missing: {path}" if isinstance(exc, FileNotFoundError) else f"{type(exc).__name__}: {exc}"
            bad[name] = reason
            print(f"findbox eval: bad image {name!r}, its instances count as misses ({reason})", file=sys.stderr)
            continue
        data[name] = raw
        wh[name] = (image.shape[1], image.shape[0])
    for r in results:
        if r.sample.image in bad:
            r.error = bad[r.sample.image]
    return data, wh, bad


def _progress(total: int, enabled: bool, desc: str):
    from findbox.logs import progress

    return progress(total=total, disable=not enabled, desc=desc, unit="req", dynamic_ncols=True)


def run_in_process(pipeline: Pipeline, samples: list[Sample], images_dir: str | Path, batch: int,
                   run_conf: float, progress: bool = True) -> Run:
    """Ground every sample with `pipeline` (built with detection conf = run_conf)."""
    images_dir = Path(images_dir)
    results = [InstanceResult(s) for s in samples]
    raw, wh, bad = _read_images(samples, images_dir, results)
    requests = [(name, idx) for name, idx in requests_of(samples, batch) if name not in bad]
    pipeline.warmup()  # as the server does before /health says ready: the first request is not charged for it
    latencies = []
    with _progress(len(requests), progress, "eval") as bar:
        for name, indices in requests:
            start = time.perf_counter()
            image = decode_image(raw[name])
            groundings = pipeline.ground([image], [(0, samples[i].caption) for i in indices])
            latency = time.perf_counter() - start
            latencies.append(latency)
            for i, g in zip(indices, groundings):
                r = results[i]
                r.pred_ltwh = tuple(float(v) for v in g.ltwh)
                r.seconds = latency / len(indices)
                r.candidates = g.candidates
                r.image_wh = wh[name]
            bar.update()
    return Run("in-process", results, latencies, bad, run_conf=run_conf, ranking=pipeline.ranking)


def run_server(url: str, samples: list[Sample], images_dir: str | Path, batch: int, progress: bool = True,
               timeout_s: float = 600.0) -> Run:
    """Send every request to `url`/identify, as the published client does."""
    from findbox.env import require
    require("httpx", "eval")
    import httpx

    images_dir = Path(images_dir)
    url = url.rstrip("/")
    results = [InstanceResult(s) for s in samples]
    raw, wh, bad = _read_images(samples, images_dir, results)
    requests = [(name, idx) for name, idx in requests_of(samples, batch) if name not in bad]
    b64 = {name: base64.b64encode(data).decode("ascii") for name, data in raw.items()}
    latencies = []
    try:
        with httpx.Client(timeout=timeout_s) as client:
            health = client.get(url + "/health")
            if health.status_code != 200:
                raise RuntimeError(f"{url}/health: expected 200 (models loaded), got {health.status_code} "
                                   f"{health.text[:200]}")
            with _progress(len(requests), progress, "eval") as bar:
                for name, indices in requests:
                    body = {"instances": [{"key": k, "caption": samples[i].caption, "b64": b64[name]}
                                          for k, i in enumerate(indices)]}
                    start = time.perf_counter()
                    response = client.post(url + "/identify", json=body)
                    latency = time.perf_counter() - start
                    latencies.append(latency)
                    predictions, error = _predictions(response, len(indices))
                    if error:
                        print(f"findbox eval: {name}: {error}; its {len(indices)} instances count as misses",
                              file=sys.stderr)
                    for k, i in enumerate(indices):
                        r = results[i]
                        r.seconds = latency / len(indices)
                        r.image_wh = wh[name]
                        r.error = error
                        r.pred_ltwh = None if error else predictions[k]
                    bar.update()
    except httpx.HTTPError as exc:  # unreachable, timed out, connection dropped: the run cannot go on
        raise RuntimeError(f"{url}: {type(exc).__name__}: {exc}") from exc
    return Run("server", results, latencies, bad)


def _predictions(response, n: int) -> tuple[list[tuple[float, ...]] | None, str | None]:
    """The n ltwh boxes of an /identify answer, or why there are none."""
    if response.status_code != 200:
        return None, f"/identify answered {response.status_code}: {response.text[:200]}"
    try:
        predictions = response.json()["predictions"]
        boxes = [tuple(float(v) for v in box) for box in predictions]
    except (ValueError, KeyError, TypeError) as exc:
        return None, f"/identify answered 200 without a list of boxes ({type(exc).__name__}: {exc})"
    if len(boxes) != n or any(len(b) != 4 for b in boxes):
        return None, f"/identify answered {len(boxes)} predictions for {n} instances (expected 4 numbers each)"
    return boxes, None
