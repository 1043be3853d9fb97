"""vlm.jsonl -> YOLO conversion: box maths, the split, and bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from findbox.data.vlm import read_vlm_jsonl
from findbox.train.yolo_data import convert_vlm_to_yolo, ltwh_to_yolo, read_image_wh, yolo_label_text

COLOURS = [(220, 40, 40), (40, 180, 60), (50, 80, 220), (230, 200, 40), (200, 60, 200), (30, 200, 210)]


def draw_scene(size_wh: tuple[int, int], seed: int) -> tuple[Image.Image, list[list[float]]]:
    """A gradient sky with 2-3 coloured rectangles/ellipses; returns the image and their ltwh boxes."""
    rng = np.random.default_rng(seed)
    w, h = size_wh
    ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    sky = (np.array([90, 140, 200], np.float32) * (1 - ramp) + np.array([200, 220, 240], np.float32) * ramp)
    image = Image.fromarray(np.broadcast_to(sky, (h, w, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    boxes = []
    for k in range(int(rng.integers(2, 4))):
        bw, bh = int(rng.integers(w // 8, w // 3)), int(rng.integers(h // 8, h // 3))
        left, top = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        shape = draw.rectangle if k % 2 == 0 else draw.ellipse
        shape([left, top, left + bw - 1, top + bh - 1], fill=COLOURS[int(rng.integers(len(COLOURS)))])
        boxes.append([float(left), float(top), float(bw), float(bh)])
    return image, boxes


def write_vlm_dataset(root: Path, n: int = 8, sizes=((320, 192), (288, 224))) -> Path:
    """n generated images in root/images and root/vlm.jsonl; image sizes alternate between `sizes`."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        image, boxes = draw_scene(sizes[i % len(sizes)], seed=i)
        name = f"image_{i}.jpg"
        image.save(root / "images" / name, quality=92)
        anns = [{"caption": "red box", "bbox": b} for b in boxes]
        lines.append(json.dumps({"image": name, "annotations": anns}))
    (root / "vlm.jsonl").write_text("\n".join(lines) + "\n")
    return root / "vlm.jsonl"


# --- box maths ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ltwh, image_wh, xywhn, clipped",
    [
        # inside, on a 1520x870 frame
        ([100, 50, 200, 100], (1520, 870), [200 / 1520, 100 / 870, 200 / 1520, 100 / 870], False),
        # same box, another image size: normalised by THAT image's size
        ([100, 50, 200, 100], (640, 480), [200 / 640, 100 / 480, 200 / 640, 100 / 480], False),
        # whole image
        ([0, 0, 320, 192], (320, 192), [0.5, 0.5, 1.0, 1.0], False),
        # reaches past the right/bottom edge: clipped to [280, 320] x [150, 192]
        ([280, 150, 100, 100], (320, 192), [300 / 320, 171 / 192, 40 / 320, 42 / 192], True),
        # starts left of/above the image: clipped to [0, 30] x [0, 20]
        ([-10, -5, 40, 25], (320, 192), [15 / 320, 10 / 192, 30 / 320, 20 / 192], True),
        # exactly one pixel is kept
        ([5, 5, 1, 1], (320, 192), [5.5 / 320, 5.5 / 192, 1 / 320, 1 / 192], False),
        # float coordinates
        ([10.5, 20.25, 30.5, 40.5], (100, 100), [0.2575, 0.405, 0.305, 0.405], False),
    ],
)
def test_ltwh_to_yolo_kept(ltwh, image_wh, xywhn, clipped):
    out = ltwh_to_yolo(np.array([ltwh], float), image_wh)
    assert out.kept.tolist() == [True]
    assert out.clipped.tolist() == [clipped]
    np.testing.assert_allclose(out.xywhn[0], xywhn, atol=1e-6)
    assert ((out.xywhn >= 0) & (out.xywhn <= 1)).all()


@pytest.mark.parametrize(
    "ltwh, image_wh",
    [
        ([10, 10, 0, 20], (320, 192)),  # zero width
        ([10, 10, 20, 0], (320, 192)),  # zero height
        ([10, 10, 0.5, 20], (320, 192)),  # under a pixel
        ([10, 10, -5, 20], (320, 192)),  # negative width
        ([400, 10, 20, 20], (320, 192)),  # wholly right of the image
        ([-50, 10, 20, 20], (320, 192)),  # wholly left of the image
        ([319.5, 10, 20, 20], (320, 192)),  # half a pixel left inside after clipping
    ],
)
def test_ltwh_to_yolo_degenerate(ltwh, image_wh):
    out = ltwh_to_yolo(np.array([ltwh], float), image_wh)
    assert out.kept.tolist() == [False]
    assert out.xywhn.shape == (0, 4)


def test_ltwh_to_yolo_mixed_and_empty():
    out = ltwh_to_yolo(np.array([[0, 0, 10, 10], [5, 5, 0, 0], [300, 180, 50, 50]], float), (320, 192))
    assert out.kept.tolist() == [True, False, True]
    assert out.clipped.tolist() == [False, False, True]
    assert out.xywhn.shape == (2, 4)
    empty = ltwh_to_yolo(np.zeros((0, 4)), (320, 192))
    assert empty.xywhn.shape == (0, 4) and yolo_label_text(empty.xywhn) == ""


def test_label_text_format():
    assert yolo_label_text(np.array([[0.5, 0.25, 0.125, 1.0]])) == "0 0.500000 0.250000 0.125000 1.000000\n"


# --- the whole conversion ----------------------------------------------------------------------


def test_convert_writes_labels_normalised_by_each_image(tmp_path):
    jsonl = write_vlm_dataset(tmp_path / "data", n=5, sizes=((320, 192), (200, 300)))
    result = convert_vlm_to_yolo(jsonl, tmp_path / "yolo")
    assert result.split.train == tuple(f"image_{i}.jpg" for i in range(4))  # last 20% of lines = val
    assert result.split.val == ("image_4.jpg",)
    records = read_vlm_jsonl(jsonl)
    for rec in records:
        split = "val" if rec.image == "image_4.jpg" else "train"
        link = tmp_path / "yolo" / "images" / split / rec.image
        assert link.resolve() == (tmp_path / "data" / "images" / rec.image).resolve()  # linked, not copied
        rows = np.loadtxt(tmp_path / "yolo" / "labels" / split / rec.image.replace(".jpg", ".txt"), ndmin=2)
        w, h = Image.open(link).size
        expected = ltwh_to_yolo(rec.ltwh, (w, h)).xywhn
        np.testing.assert_allclose(rows[:, 1:], expected, atol=2e-6)
        assert (rows[:, 0] == 0).all()
    assert result.report.images == {"train": 4, "val": 1}
    assert result.report.boxes == sum(len(r.ltwh) for r in records)
    yaml_text = result.data_yaml.read_text()
    assert "train: images/train" in yaml_text and "0: object" in yaml_text


def test_convert_is_repeatable_and_replaces_old_files(tmp_path):
    jsonl = write_vlm_dataset(tmp_path / "data", n=4)
    first = convert_vlm_to_yolo(jsonl, tmp_path / "yolo")
    (tmp_path / "yolo" / "labels" / "train" / "stale.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    second = convert_vlm_to_yolo(jsonl, tmp_path / "yolo")
    assert first.split == second.split
    assert not (tmp_path / "yolo" / "labels" / "train" / "stale.txt").exists()
    assert (tmp_path / "data" / "images" / "image_0.jpg").is_file()  # removing links never touches the images


def test_background_clipped_and_degenerate_are_counted(tmp_path, caplog):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (64, 48), (120, 130, 140)).save(root / "images" / f"im{i}.png")
    lines = [
        {"image": "im0.png", "annotations": []},  # background image
        {"image": "im1.png", "annotations": [{"bbox": [50, 40, 30, 30]}, {"bbox": [1, 1, 0, 5]}]},
        {"image": "im2.png", "annotations": [{"caption": "x", "bbox": [2, 2, 10, 10]}]},
    ]
    (root / "vlm.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")  # a trailing blank line is fine
    with caplog.at_level(logging.WARNING):
        result = convert_vlm_to_yolo(root / "vlm.jsonl", tmp_path / "yolo", val_fraction=0.34)
    r = result.report
    assert (r.background_images, r.boxes, r.boxes_clipped, r.boxes_degenerate) == (1, 2, 1, 1)
    assert (tmp_path / "yolo" / "labels" / "train" / "im0.txt").read_text() == ""
    assert "vlm.jsonl:2" in caplog.text and "degenerate" in caplog.text
    assert "1 boxes clipped" in r.summary() and "1 degenerate" in r.summary()


def test_missing_and_corrupt_images_are_skipped_with_line(tmp_path, caplog):
    jsonl = write_vlm_dataset(tmp_path / "data", n=6)
    (tmp_path / "data" / "images" / "image_1.jpg").unlink()
    (tmp_path / "data" / "images" / "image_2.jpg").write_bytes(b"not a jpeg at all")
    with caplog.at_level(logging.WARNING):
        result = convert_vlm_to_yolo(jsonl, tmp_path / "yolo")
    assert "image_1.jpg" not in result.split.train and "image_2.jpg" not in result.split.train
    assert [(s["image"], s["line"]) for s in result.split.skipped] == [("image_1.jpg", 2), ("image_2.jpg", 3)]
    assert f"{jsonl}:2: skipped image 'image_1.jpg': missing image file" in caplog.text
    assert f"{jsonl}:3: skipped image 'image_2.jpg': not a readable image" in caplog.text
    # the split is by line, so the skipped images do not move the others
    assert result.split.val == ("image_4.jpg", "image_5.jpg")  # floor(0.8 * 6) = 4 train lines
    assert not (tmp_path / "yolo" / "labels" / "train" / "image_1.txt").exists()


def test_no_usable_image_raises(tmp_path):
    jsonl = write_vlm_dataset(tmp_path / "data", n=3)
    for p in (tmp_path / "data" / "images").iterdir():
        p.unlink()
    with pytest.raises(ValueError, match="no usable train image"):
        convert_vlm_to_yolo(jsonl, tmp_path / "yolo")


def test_truncated_images_are_refused_and_rotated_ones_read_upright(tmp_path):
    image, _ = draw_scene((64, 48), seed=0)
    good = tmp_path / "good.jpg"
    image.save(good)
    assert read_image_wh(good) == (64, 48)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(ValueError, match="truncated JPEG"):
        read_image_wh(truncated)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: stored 64x48, shown 48x64
    rotated = tmp_path / "rotated.jpg"
    image.save(rotated, exif=exif)
    assert read_image_wh(rotated) == (48, 64)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (9, 40)).save(tiny)
    with pytest.raises(ValueError, match="under 10 px"):
        read_image_wh(tiny)


@pytest.mark.parametrize("suffix", ["jpg", "png"])
def test_exif_rotated_image_is_labelled_in_the_frame_ultralytics_reads(tmp_path, suffix):
    """A phone photo stored sideways: its boxes are in the upright frame (as eval and the server
    decode it), and ultralytics reads its pixels upright too, so the label must be in that frame."""
    from ultralytics.data.utils import verify_image_label
    from ultralytics.utils.patches import imread

    from findbox.images import load_image_file

    upright, boxes = draw_scene((48, 80), seed=3)  # 48 wide, 80 high as shown
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to show": the file holds the image turned the other way
    upright.transpose(Image.Transpose.ROTATE_90).save(root / "images" / f"phone.{suffix}", exif=exif, quality=95)
    other, other_boxes = draw_scene((64, 48), seed=4)
    other.save(root / "images" / "plain.png")
    lines = [{"image": f"phone.{suffix}", "annotations": [{"caption": "x", "bbox": b} for b in boxes]},
             {"image": "plain.png", "annotations": [{"caption": "x", "bbox": b} for b in other_boxes]}]
    (root / "vlm.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    decoded = load_image_file(root / "images" / f"phone.{suffix}")
    assert decoded.shape == (80, 48, 3)  # eval and the server see it upright

    result = convert_vlm_to_yolo(root / "vlm.jsonl", tmp_path / "yolo", val_fraction=0.5)
    assert result.split.train == (f"phone.{suffix}",) and result.report.skipped == []
    image_file = tmp_path / "yolo" / "images" / "train" / f"phone.{suffix}"
    label_file = tmp_path / "yolo" / "labels" / "train" / "phone.txt"
    rows = np.loadtxt(label_file, ndmin=2)
    np.testing.assert_allclose(rows[:, 1:], ltwh_to_yolo(np.array(boxes), (48, 80)).xywhn, atol=2e-6)
    # ultralytics' own reader: the same upright pixels, and the label it accepts is for that frame
    pixels = imread(str(image_file))[..., ::-1]
    assert pixels.shape == decoded.shape
    assert np.abs(pixels.astype(int) - decoded.astype(int)).mean() < 1.0  # the same decode (JPEG: within rounding)
    checked = verify_image_label((str(image_file), str(label_file), "", False, 1, 0, 0, True))
    assert tuple(checked[2]) == (80, 48) and len(checked[1]) == len(boxes)  # (H, W): upright


# the reader's own table of bad lines is in tests/data/test_vlm.py
@pytest.mark.parametrize(
    "line, message",
    [
        ('{"image": "a.jpg", "annotations": [', "invalid JSON"),
        ('{"image": "a.jpg", "annotations": [{"bbox": [1, 2, 3]}]}', r"annotations\[0\].bbox: expected 4 numbers"),
        ('{"image": "../a.jpg", "annotations": []}', "relative path inside images/"),
        ('{"image": "images/a.jpg", "annotations": []}', '"images" or "labels" folder'),
        ('{"image": "sub/labels/a.jpg", "annotations": []}', '"images" or "labels" folder'),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "vlm.jsonl"
    path.write_text('{"image": "ok.jpg", "annotations": []}\n\n' + line + "\n")
    with pytest.raises(ValueError, match=message) as info:
        convert_vlm_to_yolo(path, tmp_path / "yolo")
    assert str(info.value).startswith(f"{path}:3: ")
    assert not (tmp_path / "yolo").exists()  # refused before any file is written


def test_duplicate_image_and_shared_label_raise(tmp_path):
    path = tmp_path / "vlm.jsonl"
    path.write_text('{"image": "a.jpg", "annotations": []}\n{"image": "a.jpg", "annotations": []}\n')
    with pytest.raises(ValueError, match=rf"{path}:2: image 'a.jpg' is already listed on line 1"):
        convert_vlm_to_yolo(path, tmp_path / "yolo", val_fraction=0.5)
    (tmp_path / "images").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "images" / "a.jpg")
    Image.new("RGB", (32, 32)).save(tmp_path / "images" / "a.png")
    path.write_text('{"image": "a.jpg", "annotations": []}\n{"image": "a.png", "annotations": []}\n')
    with pytest.raises(ValueError, match="would share the label file a.txt"):
        convert_vlm_to_yolo(path, tmp_path / "yolo", val_fraction=0.5)


def test_one_line_cannot_be_split(tmp_path):
    jsonl = write_vlm_dataset(tmp_path / "data", n=1)
    with pytest.raises(ValueError, match="expected at least 2 images to split into train and val, got 1"):
        convert_vlm_to_yolo(jsonl, tmp_path / "yolo")
