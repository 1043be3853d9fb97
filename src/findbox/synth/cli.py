"""`findbox synth OUT --images N --seed S`: write a synthetic data set."""

from __future__ import annotations

import argparse
import sys

from findbox.synth.noise import NoiseLevel


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="output directory: OUT/vlm.jsonl and OUT/images/*.jpg")
    parser.add_argument("--images", type=int, required=True, metavar="N", help="number of images")
    parser.add_argument("--seed", type=int, required=True, metavar="S", help="same seed, same files (>= 0)")
    parser.add_argument("--width", type=int, default=1520, help="image width (default: 1520, as the original)")
    parser.add_argument("--height", type=int, default=870, help="image height (default: 870)")
    parser.add_argument(
        "--noise", choices=[n.value for n in NoiseLevel], default=NoiseLevel.NONE.value,
        help="camera noise: none (clean), low, medium, high (a hard test; default: none)",
    )
    parser.add_argument("--min-objects", type=int, default=3, help="objects per image, at least (default: 3)")
    parser.add_argument("--max-objects", type=int, default=8, help="objects per image, at most (default: 8)")
    parser.add_argument("--workers", type=int, default=1, help="processes; same files for any count (default: 1)")
    parser.add_argument("--force", action="store_true", help="overwrite the outputs of a non-empty OUT")


def main(args: argparse.Namespace) -> int:
    from findbox.synth.dataset import write_dataset
    from findbox.synth.scene import SynthConfig

    try:
        config = SynthConfig(
            width=args.width, height=args.height, noise=args.noise,
            min_objects=args.min_objects, max_objects=args.max_objects,
        )
        path = write_dataset(args.out, config, args.images, args.seed, force=args.force, workers=args.workers)
    except (ValueError, TypeError, FileExistsError) as e:
        print(f"findbox synth: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.images} images and {path}")
    return 0
