"""Dynamic int8 scorers (`--precision int8`): the linear layers of both towers in int8, on the CPU.

"Dynamic" quantisation stores each linear layer's weights as int8 (one scale per output
channel) and quantises its input per forward at run time, so it needs no calibration data.
Attention products, layer norms, GELU and the embeddings stay fp32. As that input scale is
one per forward, int8 scorers run each crop and caption in a forward of its own
(`one_forward_per_row`): a crop's score never depends on what it was batched with. This is
the int8 path of a scorer without static ranges; where `findbox calibrate` stored them,
`--precision int8` runs the static towers of `findbox.score.int8_static` instead (scales fixed
once, so crops and captions batch). Two implementations of the dynamic path:

- `quantize_onnx_towers`: ONNX Runtime's `quantize_dynamic` on the exported towers
  (`findbox.score.onnx`): the faster here (VNNI kernels, fused graph), the int8 default.
- `quantize_torch_linears`: torch's `quantize_dynamic` on the model in place: for scorers
  that have no ONNX export (SigLIP 2) or when the onnx extra is not installed.
open_clip scorers have no int8 path (open_clip reads its linear layers' weight dtype, which
int8 linears do not have): `--precision auto` gives them bf16 or fp32, `int8` is refused.

Agreement with fp32 is measured by benchmarks/bench_precision.py and tested by tests/test_precision.py.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from findbox.score.base import Scorer


def quantize_torch_linears(scorer: Scorer) -> Scorer:
    """Replace every `torch.nn.Linear` of `scorer.model` by torch's dynamic int8 linear; returns `scorer`.

    The scorer must hold fp32 weights on the CPU (torch's quantised kernels are CPU-only).
    """
    from findbox.score.transformers import TransformersScorer

    if not isinstance(scorer, TransformersScorer):  # open_clip reads Linear.weight.dtype, which int8 linears lack
        raise ValueError(f"precision int8: runs transformers scorers (SigLIP, SigLIP 2, CLIP), got "
                         f"{type(scorer).__name__}; use --precision bf16 or fp32")
    model = scorer.model
    if scorer.device.type != "cpu" or scorer.dtype != torch.float32:
        raise ValueError(f"precision int8: expected fp32 weights on the cpu, got {scorer.dtype} on {scorer.device}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's notice that it moves to torchao
        scorer.model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    return one_forward_per_row(scorer)


def one_forward_per_row(scorer: Scorer) -> Scorer:
    """`scorer` with towers that run each crop and each caption in a forward of its own; returns it.

    Dynamic int8 quantises a forward's activations with one scale for the whole batch, so a
    crop's embedding would otherwise depend on the crops batched with it (other images, other
    requests, what the cache held). Both int8 implementations apply it.
    """
    image_features, text_features = scorer.image_features, scorer.text_features

    def image_rows(pixels: torch.Tensor) -> torch.Tensor:
        return torch.cat([image_features(pixels[k : k + 1]) for k in range(len(pixels))]) if len(pixels) else \
            image_features(pixels)

    def text_rows(captions: list[str]) -> torch.Tensor:
        return torch.cat([text_features([caption]) for caption in captions]) if captions else text_features(captions)

    scorer.image_features, scorer.text_features = image_rows, text_rows  # as --compile wraps image_features
    return scorer


def quantize_onnx_towers(paths: dict[str, Path]) -> dict[str, Path]:
    """{"image": fp32.onnx, "text": ..., "image_<side>": ...} -> the same towers with int8 linear layers, written
    beside them once.

    Each output is `<name>.int8.onnx` in the export's folder, so the export cache key covers it.
    """
    from findbox.env import require

    require("onnxruntime", "onnx")
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from findbox.logs import quantization_quiet
    from findbox.score.onnx import atomic_file

    out = {}
    for tower, path in paths.items():
        target = path.with_name(f"{path.stem}.int8.onnx")
        if not target.is_file():
            # servers on one cache may quantise at once: each writes a file of its own, and the model goes in
            # loaded, because from a path ONNX Runtime writes a fixed "<name>-inferred.onnx" beside it
            with atomic_file(target) as tmp, quantization_quiet():
                # per-channel int8 weights: one scale per output feature keeps small rows exact enough
                quantize_dynamic(onnx.load(str(path)), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        out[tower] = target
    return out


def onnx_int8_available(scorer: Scorer) -> bool:
    """Whether `scorer` can run as int8 ONNX towers: a transformers model ONNX exports, and the onnx extra."""
    from findbox.score.transformers import TransformersScorer

    return type(scorer) is TransformersScorer and int8_backend(scorer.model.config.model_type) == "onnxruntime"


def int8_backend(model_type: str | None, onnx: bool = False) -> str:
    """What runs a transformers scorer's int8 towers here: "onnxruntime" (exported towers, the onnx extra
    installed) or "torch" (the fallback). model_type: the folder's config.json `model_type`; onnx: the
    ONNX backend asked for explicitly. Known before loading, so a calibration record can be looked up for it."""
    import importlib.util

    if onnx:
        return "onnxruntime"
    exportable = model_type != "siglip2"  # SigLIP 2 NaFlex towers are not exported
    installed = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
    return "onnxruntime" if exportable and installed else "torch"


def folder_model_type(scorer_dir: str | Path) -> str | None:
    """The `model_type` of a save_pretrained folder's config.json; None when it has none."""
    import json

    try:
        return json.loads((Path(scorer_dir) / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def quantize_int8(scorer: Scorer, onnx: bool = False, static: dict | None = None) -> Scorer:
    """`scorer` (fp32, CPU) -> its int8 version: ONNX Runtime towers where they can run, else torch's.

    onnx: the ONNX backend was asked for explicitly, so its int8 towers are required (errors name the extra).
    ONNX Runtime is preferred even on the torch backend because it is the faster int8 here
    (docs/BENCHMARKS.md); both keep the source's preprocessing, prompt and logit. static: a calibration
    record's static int8 ranges (`findbox.score.int8_static`): ONNX Runtime towers with fixed activation
    scales, crops batched; where they do not cover a tower this run needs, dynamic int8, with a warning.
    """
    if onnx or onnx_int8_available(scorer):
        from findbox.score.onnx import OnnxScorer

        if static is not None:
            try:
                return OnnxScorer.from_scorer(scorer, int8=True, static=static)
            except ValueError as exc:  # e.g. a --small-crop-input size the record was not calibrated with
                import logging

                logging.getLogger("findbox").warning("%s; int8 runs dynamic", exc)
        return OnnxScorer.from_scorer(scorer, int8=True)
    return quantize_torch_linears(scorer)
