"""`findbox synth OUT --images N --seed S`: write a synthetic data set."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from findbox.cli import add_options, config_from_args
from findbox.config import option
from findbox.synth.noise import NoiseLevel
from findbox.synth.scene import SynthConfig


@dataclass
class SynthOptions:
    """The command's options; the scene settings' defaults are SynthConfig's own."""

    images: int = option(metavar="N", help="number of images")
    seed: int = option(metavar="S", help="same seed, same files (>= 0)")
    width: int = option(SynthConfig.width, help="image width (as the original)")
    height: int = option(SynthConfig.height, help="image height")
    # low, not SynthConfig's clean default: the level the demo bundle was trained at and the README's headline
    # figures were measured at, so a data set made with no --noise is the one those figures describe
    noise: NoiseLevel = option(NoiseLevel.LOW, help="camera noise: none (clean), low (the demo bundle's training "
                               "and headline evaluation level), medium, high (a hard test)")
    min_objects: int = option(SynthConfig.min_objects, help="objects per image, at least")
    max_objects: int = option(SynthConfig.max_objects, help="objects per image, at most")
    workers: int = option(1, help="processes; same files for any count")
    force: bool = option(False, help="overwrite the outputs of a non-empty OUT")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="output directory: OUT/vlm.jsonl and OUT/images/*.jpg")
    add_options(parser, SynthOptions)


def main(args: argparse.Namespace) -> int:
    from findbox.synth.dataset import write_dataset

    o = config_from_args(args, SynthOptions)
    config = SynthConfig(width=o.width, height=o.height, noise=o.noise, min_objects=o.min_objects,
                         max_objects=o.max_objects)
    path = write_dataset(args.out, config, o.images, o.seed, force=o.force, workers=o.workers)
    print(f"wrote {o.images} images and {path}")
    return 0
