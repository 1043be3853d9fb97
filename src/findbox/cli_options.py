"""Model options shared by `findbox serve` and `findbox eval` (one definition, two commands)."""

from __future__ import annotations

import argparse
import dataclasses

from findbox.config import (
    DetectorConfig,
    Fallback,
    Precision,
    ScoreFusion,
    ScorerBackend,
    ServeConfig,
    from_dict,
    load_toml,
)

_DET_DEFAULTS = DetectorConfig()
_SERVE_DEFAULTS = ServeConfig()


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that choose and configure the models. Every default is None so a TOML file can set it."""
    g = parser.add_argument_group("models")
    g.add_argument("--config", metavar="FILE", help="TOML file with the same keys as these options")
    g.add_argument("--detector", metavar="PT", action="append",
                   help="ultralytics detection checkpoint; repeat to fuse several by WBF (default: the bundled demo)")
    g.add_argument("--scorer", metavar="SPEC",
                   help="transformers save_pretrained folder, open_clip:ARCH:WEIGHTS[:TOKENIZER_DIR] or a scorer "
                        ".toml (docs/ZOO.md; default: the bundled demo)")
    g.add_argument("--upscaler", metavar="PTH", help="Real-ESRGAN .pth (params or params_ema), loaded by spandrel")
    g.add_argument("--no-upscaler", action="store_true", default=None, help="score crops as cut")
    g.add_argument("--imgsz", type=int, help=f"detector input size (default {_DET_DEFAULTS.imgsz})")
    g.add_argument("--conf", type=float, help=f"detector confidence threshold (default {_DET_DEFAULTS.conf})")
    g.add_argument("--iou", type=float, help=f"detector NMS IoU (default {_DET_DEFAULTS.iou})")
    g.add_argument("--max-det", type=int, help=f"boxes per image (default {_DET_DEFAULTS.max_det})")
    g.add_argument("--augment", action="store_true", default=None, help="detector test-time augmentation")
    g.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    g.add_argument("--precision", choices=[p.value for p in Precision], help="model precision (default auto)")
    g.add_argument("--fallback", choices=[f.value for f in Fallback],
                   help="box when nothing is detected: the whole image (default) or zeros")
    g.add_argument("--prompt", help="prompt template with {} for the caption (default: the scorer family's)")
    g.add_argument("--crop-batch", type=int, help=f"crops per scorer forward (default {_SERVE_DEFAULTS.crop_batch})")
    g.add_argument("--score-fusion", choices=[f.value for f in ScoreFusion],
                   help="rank boxes by the scorer logit alone (default) or by logit + w * log(det_conf)")
    g.add_argument("--fusion-weight", type=float,
                   help=f"w of --score-fusion product (default {_SERVE_DEFAULTS.fusion_weight})")
    g.add_argument("--slices", metavar="COLSxROWS",
                   help="SAHI-style sliced detection: tiles plus the full image, e.g. 2x2 (default 1x1 = off)")
    g.add_argument("--slice-overlap", type=float,
                   help=f"overlap of neighbouring tiles, a fraction of a tile (default {_DET_DEFAULTS.slice_overlap})")
    g.add_argument("--image-cache", type=int, metavar="N",
                   help="images kept detected and embedded across requests; 0 = off "
                        f"(default {_SERVE_DEFAULTS.image_cache})")
    g.add_argument("--image-cache-mb", type=int, metavar="MB",
                   help=f"memory bound of the image cache (default {_SERVE_DEFAULTS.image_cache_mb})")
    g.add_argument("--scorer-backend", choices=[b.value for b in ScorerBackend],
                   help="run the scorer towers on torch (default) or ONNX Runtime (CPU, fp32; exported once, cached)")
    g.add_argument("--compile", action="store_true", default=None, help="torch.compile the scorer's image tower")


def config_from_args(args: argparse.Namespace, extra_keys: tuple[str, ...] = ()) -> ServeConfig:
    """defaults < TOML file < command-line flags."""
    data = load_toml(args.config) if getattr(args, "config", None) else {}
    detection = dict(data.pop("detection", {}))
    det_fields = {f.name for f in dataclasses.fields(DetectorConfig)}
    serve_fields = {f.name for f in dataclasses.fields(ServeConfig)}
    for name, value in vars(args).items():
        if value is None or name in ("config", "command", "subcommand", "_module"):
            continue
        if name in det_fields:
            detection[name] = value
        elif name in serve_fields:
            data[name] = value
    from findbox.bundle import with_bundle_defaults

    data = with_bundle_defaults({**data, "detection": detection})
    data["detection"] = from_dict(DetectorConfig, data["detection"], "detection")
    return from_dict(ServeConfig, data, "config")
