"""findbox.synth: format, determinism, geometry of boxes, captions, colours, CLI."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from findbox.images import decode_image
from findbox.synth import (
    CAMOUFLAGE,
    COLOURS,
    OBJECT_TYPES,
    NoiseLevel,
    SynthConfig,
    generate_scene,
    make_caption,
    parse_caption,
    render_clean,
    write_dataset,
)

# small images, objects 40-96 px: fast, and big enough to name colours from pixels
SMALL = SynthConfig(width=800, height=500, object_size=(0.05, 0.12))
N_SCENES = 20


@pytest.fixture(scope="module")
def clean_scenes():
    return [render_clean(SMALL, i, seed=7) for i in range(N_SCENES)]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- data set files -------------------------------------------------------------------

def test_write_is_deterministic(tmp_path):
    config = SynthConfig(width=800, height=500, object_size=(0.05, 0.12), noise="high")
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_dataset(a, config, 3, seed=11, progress=False)
    write_dataset(b, config, 3, seed=11, progress=False, workers=2)
    write_dataset(c, config, 3, seed=12, progress=False)
    files_a = _files(a)
    assert sorted(files_a) == ["images/image_0.jpg", "images/image_1.jpg", "images/image_2.jpg", "vlm.jsonl"]
    assert files_a == _files(b)
    assert files_a["images/image_0.jpg"] != _files(c)["images/image_0.jpg"]


@pytest.mark.parametrize("noise", list(NoiseLevel))
def test_format(tmp_path, noise):
    config = SynthConfig(
        width=640, height=400, object_size=(0.06, 0.12), noise=noise, min_objects=2, max_objects=5
    )
    jsonl = write_dataset(tmp_path, config, 4, seed=3, progress=False)
    assert jsonl == tmp_path / "vlm.jsonl"
    lines = jsonl.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4
    for i, line in enumerate(lines):
        record = json.loads(line)
        assert set(record) == {"image", "annotations"}
        assert record["image"] == f"image_{i}.jpg"
        with Image.open(tmp_path / "images" / record["image"]) as im:
            assert im.format == "JPEG" and im.size == (640, 400) and im.mode == "RGB"
        assert 2 <= len(record["annotations"]) <= 5
        for ann in record["annotations"]:
            assert set(ann) == {"caption", "bbox"}
            colours, object_type = parse_caption(ann["caption"])
            assert object_type in OBJECT_TYPES and set(colours) <= set(COLOURS)
            l, t, w, h = ann["bbox"]
            assert all(isinstance(v, int) for v in ann["bbox"])
            assert l >= 0 and t >= 0 and w > 0 and h > 0 and l + w <= 640 and t + h <= 400


def test_generate_scene_is_the_written_file(tmp_path):
    config = SynthConfig(width=640, height=400, object_size=(0.06, 0.12), noise="medium")
    write_dataset(tmp_path, config, 2, seed=5, progress=False)
    records = [json.loads(x) for x in (tmp_path / "vlm.jsonl").read_text().splitlines()]
    for i, record in enumerate(records):
        image, objects = generate_scene(config, i, seed=5)
        assert np.array_equal(image, decode_image((tmp_path / "images" / record["image"]).read_bytes()))
        assert [o.annotation() for o in objects] == record["annotations"]


def test_refuses_non_empty_out_unless_forced(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        write_dataset(tmp_path, SMALL, 1, seed=0, progress=False)
    write_dataset(tmp_path, SMALL, 3, seed=0, force=True, progress=False)
    write_dataset(tmp_path, SMALL, 2, seed=0, force=True, progress=False)
    assert not (tmp_path / "images" / "image_2.jpg").exists()  # outputs of the earlier run are gone
    assert (tmp_path / "notes.txt").read_text() == "keep me"  # nothing else is
    assert len((tmp_path / "vlm.jsonl").read_text().splitlines()) == 2


# --- scene geometry ---------------------------------------------------------------------

def test_boxes_tight_and_inside(clean_scenes):
    for scene in clean_scenes:
        H, W, _ = scene.image.shape
        assert (W, H) == (SMALL.width, SMALL.height) and scene.image.dtype == np.uint8
        assert SMALL.min_objects <= len(scene.objects) <= SMALL.max_objects
        for o in scene.objects:
            l, t, w, h = o.bbox_ltwh
            assert 0 <= l and 0 <= t and l + w <= W and t + h <= H
            m = o.mask
            assert m.shape == (h, w)
            assert m[0].any() and m[-1].any() and m[:, 0].any() and m[:, -1].any()
            assert 0.0 <= o.alpha.min() and o.alpha.max() <= 1.0
            # long side roughly the configured fraction of the width (rotation adds up to sqrt 2)
            assert 0.5 * SMALL.object_size[0] * W <= max(w, h) <= 1.5 * SMALL.object_size[1] * W


def test_no_overlaps(clean_scenes):
    for scene in clean_scenes:
        for a, b in itertools.combinations(scene.objects, 2):
            (al, at, aw, ah), (bl, bt, bw, bh) = a.bbox_ltwh, b.bbox_ltwh
            assert al + aw <= bl or bl + bw <= al or at + ah <= bt or bt + bh <= at, (a.caption, b.caption)


def test_noise_leaves_boxes_and_grows_with_level():
    config = SynthConfig(width=640, height=400, object_size=(0.06, 0.12))
    clean = render_clean(config, 4, seed=2)
    deviations = []
    for level in NoiseLevel:
        image, objects = generate_scene(dataclasses.replace(config, noise=level), 4, seed=2)
        assert [o.annotation() for o in objects] == [o.annotation() for o in clean.objects]
        deviations.append(float(np.abs(image.astype(np.float32) - clean.image).mean()))
    assert deviations == sorted(deviations) and deviations[0] < 2.0 < deviations[-1]


# --- captions and colours -----------------------------------------------------------------

def test_captions_unique_per_image(clean_scenes):
    for scene in clean_scenes:
        captions = [o.caption for o in scene.objects]
        assert len(captions) == len(set(captions))


def test_caption_colours_in_pixels(clean_scenes):
    """Every colour word covers a visible share of the object's whole pixels (nearest palette
    colour, before noise), and the caption's colours are most of the object."""
    names = np.array(list(COLOURS))
    palette = np.array(list(COLOURS.values()), np.float32)
    for scene in clean_scenes:
        for o in scene.objects:
            l, t, w, h = o.bbox_ltwh
            px = scene.image[t : t + h, l : l + w][o.alpha >= 0.999].astype(np.float32)
            nearest = names[((px[:, None, :] - palette[None]) ** 2).sum(-1).argmin(axis=1)]
            assert o.colours == tuple(parse_caption(o.caption)[0])
            for colour in o.colours:
                share = (nearest == colour).mean()
                assert share >= 0.025 and (nearest == colour).sum() >= 3, (o.caption, colour, share)
            assert np.isin(nearest, o.colours).mean() >= 0.5, o.caption


def test_many_distinct_captions_reachable():
    config = SynthConfig(width=800, height=500, object_size=(0.05, 0.1), min_objects=8, max_objects=8)
    objects = [o for i in range(16) for o in render_clean(config, i, seed=1).objects]
    captions = {o.caption for o in objects}
    assert len(captions) >= 60
    assert {o.object_type for o in objects} == set(OBJECT_TYPES)
    assert {len(o.colours) for o in objects} == {1, 2, 3}
    assert any(o.camouflage for o in objects)


@pytest.mark.parametrize(
    ("caption", "colours", "object_type"),
    [
        ("grey missile", ["grey"], "missile"),
        ("red and white helicopter", ["red", "white"], "helicopter"),
        ("red, white, and blue light aircraft", ["red", "white", "blue"], "light aircraft"),
        ("green and brown camouflage fighter jet", ["green", "brown"], "fighter jet"),
        ("  Black   Cargo Aircraft ", ["black"], "cargo aircraft"),
        ("fighter plane", [], "fighter plane"),
    ],
)
def test_parse_caption(caption, colours, object_type):
    assert parse_caption(caption) == (colours, object_type)


@pytest.mark.parametrize("caption", ["red balloon", "", "jet fighter"])
def test_parse_caption_rejects_unknown_types(caption):
    with pytest.raises(ValueError, match="expected a caption ending in one of"):
        parse_caption(caption)


@pytest.mark.parametrize(
    ("colours", "camouflage", "expected"),
    [
        (["grey"], False, "grey drone"),
        (["red", "white"], False, "red and white drone"),
        (["red", "white", "blue"], False, "red, white, and blue drone"),
        (["green", "brown"], True, f"green and brown {CAMOUFLAGE} drone"),
    ],
)
def test_make_caption_round_trips(colours, camouflage, expected):
    assert make_caption(colours, "drone", camouflage) == expected
    assert parse_caption(expected) == (colours, "drone")


# --- configuration and CLI -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_objects": 5, "max_objects": 2}, "min_objects <= max_objects"),
        ({"min_objects": 0}, "min_objects >= 1"),
        ({"max_objects": 40}, "cannot place 40 objects"),
        ({"noise": "extreme"}, "expected noise in"),
        ({"width": 300, "height": 200}, "at least 10 px"),
        ({"width": 32}, "width and height"),
        ({"object_size": (0.2, 0.1)}, "0 < lo <= hi"),
        ({"object_types": ("balloon",)}, "object_types"),
    ],
)
def test_config_rejects(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SynthConfig(**kwargs)


def test_config_takes_noise_strings():
    assert SynthConfig(noise="high").noise is NoiseLevel.HIGH


def test_cli(tmp_path, capsys):
    from findbox.cli import main

    out = tmp_path / "out"
    args = ["synth", str(out), "--images", "1", "--seed", "0", "--width", "640", "--height", "400",
            "--min-objects", "1", "--max-objects", "3"]
    assert main(args) == 0
    assert (out / "vlm.jsonl").exists() and (out / "images" / "image_0.jpg").exists()
    assert main(args) == 2
    assert "not empty" in capsys.readouterr().err
    assert main([*args, "--force"]) == 0
    assert main([*args[:-4], "--min-objects", "4", "--max-objects", "3", "--force"]) == 2
    assert "min_objects <= max_objects" in capsys.readouterr().err


def test_the_command_defaults_to_low_noise(tmp_path):
    """`findbox synth` with no --noise writes the README's headline level, low (it wrote clean images before)."""
    from findbox.cli import main

    small = ["--images", "1", "--seed", "3", "--width", "640", "--height", "400", "--min-objects", "1",
             "--max-objects", "2"]
    for name, noise in (("default", []), ("low", ["--noise", "low"]), ("none", ["--noise", "none"])):
        assert main(["synth", str(tmp_path / name), *small, *noise]) == 0
    image = "images/image_0.jpg"
    assert (tmp_path / "default" / image).read_bytes() == (tmp_path / "low" / image).read_bytes()
    assert (tmp_path / "default" / image).read_bytes() != (tmp_path / "none" / image).read_bytes()
