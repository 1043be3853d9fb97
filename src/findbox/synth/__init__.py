"""Synthetic flying-object scenes with captions, in the published vlm.jsonl format.

    from findbox.synth import SynthConfig, generate_scene, write_dataset
    image, objects = generate_scene(SynthConfig(noise="medium"), 0, seed=1)
    objects[0].caption, objects[0].bbox_ltwh, objects[0].mask
"""

from findbox.synth.dataset import write_dataset
from findbox.synth.noise import NOISE_SPECS, NoiseLevel, add_noise, encode_jpeg
from findbox.synth.render import Livery, sample_livery
from findbox.synth.scene import (
    CleanScene,
    SynthConfig,
    SynthObject,
    generate_scene,
    generate_scene_jpeg,
    render_clean,
)
from findbox.synth.vocab import (
    CAMOUFLAGE,
    COLOUR_NAMES,
    COLOURS,
    OBJECT_TYPES,
    is_camouflage,
    make_caption,
    parse_caption,
)

__all__ = [
    "CAMOUFLAGE",
    "COLOUR_NAMES",
    "COLOURS",
    "NOISE_SPECS",
    "OBJECT_TYPES",
    "CleanScene",
    "Livery",
    "NoiseLevel",
    "SynthConfig",
    "SynthObject",
    "add_noise",
    "encode_jpeg",
    "generate_scene",
    "generate_scene_jpeg",
    "is_camouflage",
    "make_caption",
    "parse_caption",
    "render_clean",
    "sample_livery",
    "write_dataset",
]
