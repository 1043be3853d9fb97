"""`findbox predict`: JSON lines, --save pictures, folders, globs, captions files, bad images.

Runs the command in-process on the tiny random-weight models (tests/conftest.py); the last
test runs the bundled demo on the sample image the README uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from findbox.boxes import box_iou, ltwh_to_xyxy
from findbox.cli import main as findbox_main
from findbox.pipeline import Pipeline
from findbox.predict import PALETTE, SAMPLE_DIR, expand_image_paths, read_captions
from tests.conftest import CAPTIONS, make_image, tiny_serve_args


# the captions the README's quick start asks of the shipped sample
README_CAPTIONS = ["grey and orange fighter plane", "brown missile", "orange, black, and blue drone"]


def write_png(path: Path, seed: int) -> np.ndarray:
    image = make_image(seed, 200, 120)
    Image.fromarray(image).save(path)
    return image


def predict(args: list[str], capsys) -> tuple[int, list[dict], str]:
    code = findbox_main(["predict", *args])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


@pytest.fixture
def model_args(tiny_models) -> list[str]:
    # fp32 like the tiny_pipeline fixture the answers are compared with (auto may pick bf16 or int8 per CPU)
    return [*tiny_serve_args(tiny_models), "--precision", "fp32"]


def test_one_json_line_per_image_and_caption_equal_to_the_pipeline(tmp_path, model_args, tiny_pipeline, capsys,
                                                                   monkeypatch):
    images = {tmp_path / f"scene{k}.png": write_png(tmp_path / f"scene{k}.png", seed=k) for k in range(2)}
    captions = CAPTIONS[:3]
    calls = []
    ground = Pipeline.ground
    monkeypatch.setattr(Pipeline, "ground", lambda self, imgs, queries, *a, **k: calls.append(len(queries))
                        or ground(self, imgs, queries, *a, **k))

    code, lines, err = predict([*map(str, images), *[a for c in captions for a in ("--caption", c)], *model_args],
                               capsys)

    assert code == 0, err
    assert calls == [3, 3], "all captions of an image go through one ground call"
    assert [(line["image"], line["caption"]) for line in lines] == [(str(p), c) for p in images for c in captions]
    for line, (path, caption) in zip(lines, [(p, c) for p in images for c in captions]):
        assert set(line) == {"image", "caption", "box_ltwh", "fallback", "candidates", "chosen"}
        want = ground(tiny_pipeline, [images[path]], [(0, caption)])[0]
        np.testing.assert_allclose(line["box_ltwh"], want.ltwh, atol=0.01)
        assert line["chosen"] == want.chosen and line["fallback"] == want.fallback
        assert len(line["candidates"]) == len(want.candidates) > 0
        for got, xyxy, det, score in zip(line["candidates"], want.candidates.xyxy, want.candidates.det_score,
                                         want.candidates.match_score):
            assert set(got) == {"box_ltwh", "det_conf", "score"}
            np.testing.assert_allclose(ltwh_to_xyxy(got["box_ltwh"]), xyxy, atol=0.02)
            assert got["det_conf"] == pytest.approx(float(det), abs=1e-4)
            assert got["score"] == pytest.approx(float(score), abs=1e-3)
        if not line["fallback"]:
            assert line["candidates"][line["chosen"]]["box_ltwh"] == line["box_ltwh"]


def test_save_draws_the_chosen_box_on_a_png(tmp_path, model_args, capsys):
    path = tmp_path / "scene.jpg"
    Image.fromarray(make_image(3, 200, 120)).save(path, quality=95)
    original = np.asarray(Image.open(path).convert("RGB"))
    code, lines, err = predict([str(path), "--caption", CAPTIONS[0], "--save", str(tmp_path / "out"), *model_args],
                               capsys)
    assert code == 0, err
    saved = tmp_path / "out" / "scene.png"
    drawn = np.asarray(Image.open(saved))
    assert Image.open(saved).format == "PNG" and drawn.shape == original.shape
    l, t, w, h = lines[0]["box_ltwh"]
    # the outline runs just outside the box: its left edge, inside the image, is in the caption's colour
    x = max(0, int(np.floor(l)) - 1)
    rows = slice(max(0, int(t)), min(original.shape[0], int(t + h)))
    assert (drawn[rows, x] == PALETTE[0]).all(axis=-1).mean() > 0.5
    assert (drawn[rows, x] != original[rows, x]).any()


def test_a_bad_image_is_named_and_the_others_still_answered(tmp_path, model_args, capsys):
    good = [tmp_path / "a.png", tmp_path / "c.png"]
    for k, path in enumerate(good):
        write_png(path, seed=20 + k)
    bad = tmp_path / "b.jpg"
    bad.write_bytes(b"not a jpeg at all")
    missing = tmp_path / "nowhere.png"
    code, lines, err = predict([str(good[0]), str(bad), str(missing), str(good[1]), "--caption", CAPTIONS[1],
                                *model_args], capsys)
    assert code == 1
    assert [line["image"] for line in lines] == [str(p) for p in good]
    assert f"{bad}: not a decodable image" in err
    assert f"{missing}: no image file there" in err


def test_a_folder_and_a_captions_file(tmp_path, model_args, capsys):
    folder = tmp_path / "frames"
    folder.mkdir()
    for name, seed in (("b.jpg", 31), ("a.png", 30)):
        Image.fromarray(make_image(seed, 200, 120)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    captions_file = tmp_path / "captions.txt"
    captions_file.write_text(f"{CAPTIONS[2]}\n\n  {CAPTIONS[4]}  \n")
    code, lines, err = predict([str(folder), "--captions", str(captions_file), *model_args], capsys)
    assert code == 0, err
    assert [(Path(line["image"]).name, line["caption"]) for line in lines] == [
        ("a.png", CAPTIONS[2]), ("a.png", CAPTIONS[4]), ("b.jpg", CAPTIONS[2]), ("b.jpg", CAPTIONS[4])]


def test_no_caption_is_refused_before_loading_models(tmp_path, capsys):
    write_png(tmp_path / "a.png", seed=1)
    code = findbox_main(["predict", str(tmp_path / "a.png"), "--detector", str(tmp_path / "no-such.pt")])
    assert code == 2
    assert "expected at least one --caption" in capsys.readouterr().err


def test_expand_image_paths_globs_folders_and_repeats(tmp_path):
    for name in ("x1.jpg", "x2.PNG", "y.webp", "z.gif"):
        (tmp_path / name).write_bytes(b"")
    paths, unmatched = expand_image_paths([str(tmp_path / "x*"), str(tmp_path), str(tmp_path / "q*.jpg")])
    assert [p.name for p in paths] == ["x1.jpg", "x2.PNG", "y.webp"]  # folder repeats x1, x2 once
    assert unmatched == [str(tmp_path / "q*.jpg")]
    assert read_captions(["a", "b"], None) == ["a", "b"]
    with pytest.raises(ValueError, match="captions: expected"):
        read_captions([], None)


def test_the_demo_bundle_finds_the_readme_captions_in_the_shipped_sample(capsys):
    """The README's example: the bundled models on the sample image, against its annotations."""
    annotations = json.loads((SAMPLE_DIR / "vlm.jsonl").read_text().splitlines()[0])
    truth = {a["caption"]: a["bbox"] for a in annotations["annotations"]}
    captions = README_CAPTIONS
    image = SAMPLE_DIR / "images" / annotations["image"]
    code, lines, err = predict([str(image), *[a for c in captions for a in ("--caption", c)], "--device", "cpu"],
                               capsys)
    assert code == 0, err
    for line in lines:
        iou = box_iou(ltwh_to_xyxy(line["box_ltwh"]), ltwh_to_xyxy(truth[line["caption"]]))[0, 0]
        assert iou > 0.5, f"{line['caption']}: IoU {iou:.2f} with the annotated box"
