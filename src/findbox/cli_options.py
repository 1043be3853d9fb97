"""Model options shared by `findbox serve` and `findbox eval` (one definition, two commands)."""

from __future__ import annotations

import argparse
import dataclasses

from findbox.config import DetectorConfig, Fallback, Precision, ServeConfig, from_dict, load_toml

_DET_DEFAULTS = DetectorConfig()
_SERVE_DEFAULTS = ServeConfig()


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that choose and configure the models. Every default is None so a TOML file can set it."""
    g = parser.add_argument_group("models")
    g.add_argument("--config", metavar="FILE", help="TOML file with the same keys as these options")
    g.add_argument("--detector", metavar="PT", help="ultralytics detection checkpoint (default: the bundled demo)")
    g.add_argument("--scorer", metavar="DIR", help="transformers save_pretrained folder (default: the bundled demo)")
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
    if data.get("detector") is None:  # the bundled detector: its own settings under the user's
        from findbox.load import bundle_detection_defaults

        detection = {**bundle_detection_defaults(), **detection}
    data["detection"] = from_dict(DetectorConfig, detection, "detection")
    return from_dict(ServeConfig, data, "config")
