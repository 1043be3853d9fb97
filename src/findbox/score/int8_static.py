"""Static int8 scorer towers: activation scales fixed by calibration, so crops batch freely.

Dynamic int8 (`findbox.score.int8`) quantises each forward's activations with a scale computed
from that forward, so every crop must run alone for its score not to depend on its batch mates.
Static int8 fixes every activation's scale once, from crops and captions of the user's own data
(collected by `findbox calibrate` while it runs the fp32 pipeline): then a crop's arithmetic is
the same whether it runs alone or with 31 others, and a request's crops, and those of requests
gathered together, go through one forward.

ONNX Runtime's `quantize_static` (QDQ format) on the exported fp32 towers (`findbox.score.onnx`):
int8 weights with one scale per output channel, uint8 activations with calibrated ranges, only
the linear layers (MatMul with a constant weight) and the patch convolution quantised, as in the
dynamic path; attention products, softmax, layer norms and GELU stay fp32. The calibration
record keeps only the ranges (`calibrate_ranges`: a few kB), under "int8_static"; the quantised
towers are built from them on first load into the export cache (`static_tower_paths`), so a record
never carries a model and a base-size scorer's folder does not grow by its int8 copy.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

# the record's backend name of this path (`findbox.calibration.Measured.backend`) and the scorer's info
STATIC_BACKEND = "onnxruntime-static"
# bump when the quantised graphs built from stored ranges change meaning: cached towers of older builds are
# then rebuilt (the version is part of their file name)
STATIC_VERSION = 2  # 2: linear layers' outputs left in fp32 (`_quant_options`)
# how the ranges are computed; MinMax: the measured extremes (docs/BENCHMARKS.md compares the others tried)
DEFAULT_METHOD = "MinMax"
# crops and captions kept for calibration (evenly over the run): enough for stable ranges, bounded memory
CALIBRATION_CROPS = 256
CALIBRATION_CAPTIONS = 256


def _quant_options(method: str) -> dict:
    """quantize_static's arguments of this path, less the model, output and data."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    return {"quant_format": QuantFormat.QDQ, "per_channel": True, "reduce_range": False,
            "activation_type": QuantType.QUInt8, "weight_type": QuantType.QInt8,
            "op_types_to_quantize": ["MatMul", "Conv", "Gemm"],
            "calibrate_method": CalibrationMethod[method],
            # the linear layers only: attention's two activation x activation products stay fp32; a linear
            # layer's output stays fp32 (no QuantizeLinear after it), so ONNX Runtime runs each as one fused
            # int8 product into fp32 instead of requantising its output (static_int8.json: v1 against v2)
            "extra_options": {"MatMulConstBOnly": True, "OpTypesToExcludeOutputQuantization": ["MatMul"]}}


class _Feeds:
    """A CalibrationDataReader over a list of feed dicts (ONNX Runtime asks for `get_next`)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._feeds = iter(feeds)

    def get_next(self):
        return next(self._feeds, None)


def tower_feeds(tower: str, inputs: Iterable, batch: int = 16) -> list[dict[str, np.ndarray]]:
    """Calibration inputs as the tower's feeds in batches: pixels (n, 3, H, W) float32 for an image
    tower, token dicts ({input name: (m, L) int64}) for the text tower."""
    rows = list(inputs)
    if tower.startswith("image"):
        return [{"pixel_values": np.ascontiguousarray(np.concatenate(rows[k : k + batch]).astype(np.float32))}
                for k in range(0, len(rows), batch)]
    return [{name: np.concatenate([r[name] for r in rows[k : k + batch]]).astype(np.int64) for name in rows[0]}
            for k in range(0, len(rows), batch)]


def calibrate_ranges(paths: dict[str, Path], feeds: dict[str, list[dict[str, np.ndarray]]],
                     method: str = DEFAULT_METHOD) -> dict:
    """The activation ranges of each fp32 tower in `paths` ({"image": ..., "text": ..., "image_<side>": ...})
    on its calibration `feeds`: the "int8_static" entry of a calibration record, JSON-ready.

    A tower without feeds is left out (it then has no static path: `static_tower_paths` refuses it).
    """
    from findbox.env import require

    require("onnxruntime", "onnx")
    import onnx
    import onnxruntime
    import torch
    from onnxruntime.quantization import quantize_static

    from findbox.logs import quantization_quiet
    from findbox.score.onnx import EXPORT_VERSION, OPSET

    towers = {}
    with tempfile.TemporaryDirectory(prefix="findbox-int8-static-") as tmp:
        for tower, path in paths.items():
            if not feeds.get(tower):
                continue
            cache = Path(tmp) / f"{tower}.ranges.json"
            with quantization_quiet():
                quantize_static(onnx.load(str(path)), str(Path(tmp) / f"{tower}.onnx"), _Feeds(feeds[tower]),
                                calibration_cache_path=str(cache), **_quant_options(method))
            towers[tower] = json.loads(cache.read_text())
    return {"method": method, "version": STATIC_VERSION, "calibration_rows": {t: sum(len(next(iter(f.values())))
                                                                                    for f in feeds[t]) for t in towers},
            # the ranges name the exported graph's tensors: an export by another torch may name them otherwise
            "export": {"torch": torch.__version__, "opset": OPSET, "export_version": EXPORT_VERSION},
            "onnxruntime": onnxruntime.__version__, "towers": towers}


def calibrate_scorer(scorer, inputs: "CalibrationInputs", method: str = DEFAULT_METHOD) -> dict:
    """The "int8_static" entry of a record for a transformers `scorer` (fp32, on torch, not the one `inputs`
    watched: that one's tower calls are wrapped): its towers exported as `--scorer-backend onnx` does
    and calibrated on what `inputs` kept."""
    import onnx

    from findbox.score.onnx import exported_towers

    towers = exported_towers(scorer)
    text_inputs = [i.name for i in onnx.load(str(towers["text"])).graph.input]
    return calibrate_ranges(towers, inputs.feeds(scorer, text_inputs), method)


def ranges_fit_this_export(static: dict) -> str | None:
    """None when stored ranges were made for exports like this findbox's; else why not (for the log)."""
    import torch

    from findbox.score.onnx import EXPORT_VERSION, OPSET

    here = {"torch": torch.__version__, "opset": OPSET, "export_version": EXPORT_VERSION}
    if static.get("export") != here:
        return f"ranges made for exports of {static.get('export')}, this export is {here}"
    if static.get("version") != STATIC_VERSION:
        return f"ranges of static version {static.get('version')}, this findbox builds version {STATIC_VERSION}"
    return None


def static_tower_paths(paths: dict[str, Path], static: dict) -> dict[str, Path]:
    """{"image": fp32.onnx, ...} -> the same towers quantised with the stored ranges, built beside them once.

    Each output is `<name>.static<version>-<digest>.onnx`, the digest that of the tower's ranges and
    method, so other ranges (a new calibration) build a tower of their own. Raises ValueError naming a
    tower the ranges do not cover (e.g. a `--small-crop-input` size that was not calibrated).
    """
    from findbox.env import require

    require("onnxruntime", "onnx")
    import onnx
    from onnxruntime.quantization import quantize_static

    from findbox.logs import quantization_quiet
    from findbox.score.onnx import atomic_file

    missing = sorted(set(paths) - set(static.get("towers", {})))
    if missing:
        raise ValueError(f"precision int8: the calibration record has static ranges for "
                         f"{sorted(static.get('towers', {}))}, not for {missing}; run `findbox calibrate` with "
                         f"these settings (e.g. --small-crop-input) again")
    out = {}
    for tower, path in paths.items():
        ranges = json.dumps(static["towers"][tower], sort_keys=True)
        digest = hashlib.sha256(f"{static['method']}:{ranges}".encode()).hexdigest()[:16]
        target = path.with_name(f"{path.stem}.static{STATIC_VERSION}-{digest}.onnx")
        if not target.is_file():
            # servers on one cache may build at once: each writes files of its own (see quantize_onnx_towers)
            with atomic_file(target) as tmp, tempfile.TemporaryDirectory(prefix="findbox-int8-static-") as folder, \
                    quantization_quiet():
                cache = Path(folder) / "ranges.json"
                cache.write_text(ranges)
                # no data reader: the ranges come from the cache file, exactly as calibration computed them
                quantize_static(onnx.load(str(path)), str(tmp), None, calibration_cache_path=str(cache),
                                **_quant_options(static["method"]))
        out[tower] = target
    return out


class CalibrationInputs:
    """What a scorer's towers were fed during a run: up to `crops` pixel rows per input size and up to
    `captions` distinct captions, a uniform sample over the whole run (reservoir, fixed seed: the same
    run keeps the same rows). `attach` wraps a scorer's tower calls, as `--compile` wraps them."""

    def __init__(self, crops: int = CALIBRATION_CROPS, captions: int = CALIBRATION_CAPTIONS, seed: int = 0):
        self.limits = {"crops": crops, "captions": captions}
        self.pixels: dict[str, list[np.ndarray]] = {}  # tower name -> rows (1, 3, H, W)
        self.captions: list[str] = []
        self._seen = {"captions": 0}
        self._rng = np.random.default_rng(seed)
        self._size_hw = None
        self.paused = False  # while True (e.g. the pipeline's synthetic warm-up), nothing is kept

    def _keep(self, kept: list, item, key: str, limit: int) -> None:
        seen = self._seen.get(key, 0)
        self._seen[key] = seen + 1
        if len(kept) < limit:
            kept.append(item)
        elif (k := int(self._rng.integers(0, seen + 1))) < limit:
            kept[k] = item

    def attach(self, scorer):
        """Record `scorer`'s tower inputs from now on; returns it."""
        image_features, text_features = scorer.image_features, scorer.text_features
        self._size_hw = tuple(scorer.preprocess.size_hw)
        distinct: set[str] = set()

        def image_rows(pixels):
            if self.paused:
                return image_features(pixels)
            h, w = pixels.shape[-2:]
            tower = "image" if (h, w) == self._size_hw else f"image_{h}"
            rows = pixels.detach().float().cpu().numpy()
            for k in range(len(rows)):
                self._keep(self.pixels.setdefault(tower, []), rows[k : k + 1], tower, self.limits["crops"])
            return image_features(pixels)

        def text_rows(captions):
            for caption in captions if not self.paused else ():
                if caption not in distinct:
                    distinct.add(caption)
                    self._keep(self.captions, caption, "captions", self.limits["captions"])
            return text_features(captions)

        scorer.image_features, scorer.text_features = image_rows, text_rows
        return scorer

    def feeds(self, scorer, text_inputs: list[str]) -> dict[str, list[dict[str, np.ndarray]]]:
        """Per tower, the calibration feeds: the kept pixels, and the kept captions tokenised as the ONNX text
        tower takes them (`text_inputs`: its input names) with `scorer`'s tokenizer, prompt and length."""
        from findbox.score.transformers import tokenize_prompted

        out = {tower: tower_feeds(tower, rows) for tower, rows in self.pixels.items()}
        if self.captions:
            tokens = tokenize_prompted(scorer.tokenizer, scorer.prompt, self.captions, scorer.max_text_length)
            rows = [{name: tokens[name][k : k + 1].numpy() for name in text_inputs} for k in range(len(self.captions))]
            out["text"] = tower_feeds("text", rows)
        return out


_warned: set[str] = set()


def stored_ranges(scorer_dir) -> dict | None:
    """The "int8_static" ranges of a scorer folder's calibration record (`findbox calibrate`), when the record
    was made on these weights (`findbox.calibration.read_calibration`), holds them, and they name this
    findbox's exported tensors; else None (a record whose ranges do not fit is said once, in the log)."""
    import logging

    from findbox.calibration import read_calibration

    record = read_calibration(scorer_dir)
    static = record.extra.get("int8_static") if record is not None else None
    if not isinstance(static, dict) or not static.get("towers"):
        return None
    why = ranges_fit_this_export(static)
    if why is not None:
        if why not in _warned:
            _warned.add(why)
            logging.getLogger("findbox").warning("static int8 ranges of %s not used (%s); int8 runs dynamic until "
                                                 "`findbox calibrate` runs again", scorer_dir, why)
        return None
    return static
