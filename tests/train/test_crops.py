import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from findbox.testing.builders import build_compact_upscaler
from findbox.cli import main as cli_main
from findbox.images import load_image_file
from findbox.train.crops import make_crops, read_manifest
from findbox.upscaler import Upscaler

# line -> (image name, [(caption, ltwh)]); 5 lines: the last 20% (line 5) is val
LINES = [
    ("a.png", [("red square", [2, 3, 10, 6]), ("blue circle", [20.5, 10.2, 7.1, 9.9])]),
    ("b.png", [("red square", [0, 0, 64, 48])]),
    ("missing.png", [("blue circle", [1, 1, 5, 5])]),  # no such file: skipped, counted
    ("c.png", [("green star", [60, 40, 10, 10]), ("blue circle", [5, 5, 0, 8])]),  # clipped; degenerate
    ("d.png", [("green star", [8, 8, 16, 4]), ("red square", [30, 20, 1, 1])]),
]


def write_dataset(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for name, anns in LINES:
        if name != "missing.png":
            Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / "images" / name)
        lines.append(json.dumps({"image": name, "annotations": [{"caption": c, "bbox": b} for c, b in anns]}))
    (root / "vlm.jsonl").write_text("\n".join(lines) + "\n")
    return root / "vlm.jsonl"


# (line, annotation) -> expected (w, h) at scale 1: the box rounded outwards, clipped to 64x48
EXPECTED_WH = {(1, 0): (10, 6), (1, 1): (8, 11), (2, 0): (64, 48), (4, 0): (4, 8), (5, 0): (16, 4), (5, 1): (1, 1)}


def test_crops_sizes_pixels_split_and_skips(tmp_path):
    jsonl = write_dataset(tmp_path / "data")
    report = make_crops(jsonl, tmp_path / "out", progress=False)
    rows = read_manifest(tmp_path / "out")
    got = {(r.line, int(r.crop[-6:-4])): r for r in rows}
    assert {k: r.crop_wh for k, r in got.items()} == EXPECTED_WH
    assert {r.split for r in rows if r.line == 5} == {"val"} and {r.split for r in rows if r.line < 5} == {"train"}
    assert report.crops == {"train": 4, "val": 2} and report.images == {"train": 3, "val": 1}
    assert len(report.skipped_images) == 1 and report.skipped_images[0]["image"] == "missing.png"
    assert len(report.skipped_boxes) == 1 and report.skipped_boxes[0]["line"] == 4
    row = got[(1, 1)]
    assert (row.caption, row.image, row.box_ltwh) == ("blue circle", "a.png", (20.5, 10.2, 7.1, 9.9))
    image = load_image_file(tmp_path / "data" / "images" / "a.png")
    crop = np.asarray(Image.open(tmp_path / "out" / row.crop))
    assert np.array_equal(crop, image[10:21, 20:28])  # floor/ceil of the box: the exact pixels, lossless
    info = json.loads((tmp_path / "out" / "crops.json").read_text())
    assert info["scale"] == 1 and info["crops"] == {"train": 4, "val": 2}


def test_crops_with_upscaler_are_four_times_larger(tmp_path):
    jsonl = write_dataset(tmp_path / "data")
    upscaler = Upscaler.from_file(build_compact_upscaler(tmp_path / "up.pth", num_feat=8, num_conv=2))
    make_crops(jsonl, tmp_path / "out", upscaler=upscaler, progress=False, scorer_hw=(48, 64))  # no crop is larger
    rows = read_manifest(tmp_path / "out")
    assert {(r.line, int(r.crop[-6:-4])): r.crop_wh for r in rows} == {
        k: (w * 4, h * 4) for k, (w, h) in EXPECTED_WH.items()
    }
    for r in rows:
        assert Image.open(tmp_path / "out" / r.crop).size == r.crop_wh


def test_upscaled_crops_are_capped_at_the_scorers_input_as_the_server_caps_them(tmp_path, tiny_models, capsys):
    from findbox.crops import prepare_crops
    from findbox.score import load_scorer

    jsonl = write_dataset(tmp_path / "data")
    up = ["--upscaler", str(tiny_models["upscaler"]), "--device", "cpu", "--no-progress"]
    # the scorer's own input size (32 x 32 for the tiny one), read from the scorer the crops are for
    assert cli_main(["crops", "--data", str(jsonl), "--out", str(tmp_path / "out"), *up,
                     "--scorer", str(tiny_models["scorer"])]) == 0
    rows = {(r.line, int(r.crop[-6:-4])): r for r in read_manifest(tmp_path / "out")}
    assert rows[(2, 0)].crop_wh == (32 * 4, 32 * 4)  # the whole 64 x 48 image: both sides capped at 32 first
    assert rows[(1, 0)].crop_wh == (10 * 4, 6 * 4)  # within the scorer input: upscaled as cut
    scorer = load_scorer(tiny_models["scorer"])
    upscaler = Upscaler.from_file(tiny_models["upscaler"])
    image = load_image_file(tmp_path / "data" / "images" / "b.png")
    served = prepare_crops(image, np.array([[0, 0, 64, 48]], np.float32), upscaler, scorer.preprocess.size_hw)[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / rows[(2, 0)].crop)), served)
    assert json.loads((tmp_path / "out" / "crops.json").read_text())["scorer_hw"] == [32, 32]
    # --scorer-size gives the side by hand; without either, an upscaler is refused rather than left uncapped
    assert cli_main(["crops", "--data", str(jsonl), "--out", str(tmp_path / "o2"), *up, "--scorer-size", "16"]) == 0
    assert {r.crop_wh for r in read_manifest(tmp_path / "o2") if r.line == 2} == {(16 * 4, 16 * 4)}
    capsys.readouterr()
    assert cli_main(["crops", "--data", str(jsonl), "--out", str(tmp_path / "o3"), *up]) == 2
    assert "--scorer" in capsys.readouterr().err
    with pytest.raises(ValueError, match="scorer_hw: expected the scorer's input"):
        make_crops(jsonl, tmp_path / "o4", upscaler=upscaler, progress=False)


def test_cli_writes_crops_and_exits_2_on_bad_input(tmp_path, capsys):
    jsonl = write_dataset(tmp_path / "data")
    assert cli_main(["crops", "--data", str(jsonl), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert len(read_manifest(tmp_path / "out")) == 6
    assert cli_main(["crops", "--data", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o2")]) == 2
    assert "data: expected a vlm.jsonl file" in capsys.readouterr().err
    assert cli_main(["crops", "--data", str(jsonl), "--out", str(tmp_path / "o3"), "--val-fraction", "1.5"]) == 2


def test_exif_rotated_image_is_cut_upright(tmp_path):
    """A phone photo stored sideways: its boxes are in the upright frame eval and the server decode."""
    jsonl = write_dataset(tmp_path / "data")
    path = tmp_path / "data" / "images" / "a.png"
    upright = np.asarray(Image.open(path))  # 64 wide, 48 high as shown; line 1's boxes are in this frame
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to show": the file holds the image turned the other way
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90).save(path, exif=exif)
    assert Image.open(path).size == (48, 64) and np.array_equal(load_image_file(path), upright)
    report = make_crops(jsonl, tmp_path / "out", progress=False)
    assert [s["image"] for s in report.skipped_images] == ["missing.png"]
    rows = {int(r.crop[-6:-4]): r for r in read_manifest(tmp_path / "out") if r.line == 1}
    assert {k: r.crop_wh for k, r in rows.items()} == {0: EXPECTED_WH[(1, 0)], 1: EXPECTED_WH[(1, 1)]}
    crop = np.asarray(Image.open(tmp_path / "out" / rows[1].crop))
    assert np.array_equal(crop, upright[10:21, 20:28])  # the same pixels as before the file was turned


def test_no_usable_image_raises(tmp_path):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "images" / "bad.jpg").write_bytes(b"not a jpeg")
    lines = [{"image": n, "annotations": [{"caption": "x", "bbox": [0, 0, 4, 4]}]} for n in ("bad.jpg", "gone.jpg")]
    (root / "vlm.jsonl").write_text("\n".join(json.dumps(x) for x in lines))
    with pytest.raises(ValueError, match="no crop could be made"):
        make_crops(root / "vlm.jsonl", tmp_path / "out", progress=False)


def test_read_manifest_errors(tmp_path):
    with pytest.raises(ValueError, match="manifest.jsonl"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no rows"):
        read_manifest(tmp_path)
    row = {"crop": "crops/train/x.png", "caption": "red", "image": "a.png", "split": "train"}
    (tmp_path / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=r"missing file \(line 1: crops/train/x.png\)"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.jsonl").write_text(json.dumps(dict(row, split="test")) + "\n")
    with pytest.raises(ValueError, match="split: expected one of train, val"):
        read_manifest(tmp_path)
