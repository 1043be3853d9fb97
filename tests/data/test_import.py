"""`findbox data import`: RefCOCO, ODVG, COCO and YOLO files written in their official layouts in tmp_path
(images of known sizes), read into a vlm.jsonl that findbox's own reader reads back; bad boxes named,
skipped and counted, or refused with --strict; malformed files refused naming the file; the refs pickle
read without running anything it asks for; an import that fails leaves no vlm.jsonl behind."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from findbox.cli import main as findbox_main
from findbox.data.importing import box_problem
from findbox.data.plain_pickle import RefusedPickle, load_plain_pickle
from findbox.data.vlm import Annotation, read_vlm_jsonl
from findbox.testing.refcoco import Ref, Scene, write_refcoco


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = findbox_main(["data", "import", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def grey(path: Path, wh: tuple[int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((wh[1], wh[0], 3), 100, np.uint8)).save(path)
    return path


def records(out: Path) -> list[tuple[str, tuple[Annotation, ...]]]:
    return [(r.image, r.annotations) for r in read_vlm_jsonl(out / "vlm.jsonl", captions_required=True)]


def lines(out: Path) -> list[dict]:
    return [json.loads(t) for t in (out / "vlm.jsonl").read_text().splitlines()]


# --- box checks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("ltwh, problem", [
    ((0, 0, 100, 50), None),  # the whole image
    ((10, 10, 1, 1), None),  # one pixel
    ((-0.5, 0, 100.5, 50.9), None),  # past the edge by less than the tolerance
    ((-2, 0, 10, 10), "out of bounds"),
    ((95, 0, 10, 10), "out of bounds"),
    ((0, 45, 10, 10), "out of bounds"),
    ((10, 10, 0, 5), "zero area"),
    ((10, 10, 5, -1), "zero area"),
    ((float("nan"), 0, 5, 5), "not finite"),
    ((0, 0, float("inf"), 5), "not finite"),
])
def test_box_problem(ltwh, problem):
    assert box_problem(ltwh, (100, 50)) == problem


# --- RefCOCO ----------------------------------------------------------------------------------------


SCENES = [
    Scene("COCO_train2014_000000000009.jpg", (640, 480), [
        Ref((10.5, 20.25, 100, 50), ("man on the left", "guy in red"), "testA", "person"),
        Ref((300, 200, 80.5, 60), ("right dog",), "testA", "dog"),
    ]),
    Scene("COCO_train2014_000000000025.jpg", (320, 240), [Ref((0, 0, 320, 240), ("whole thing",), "testB")]),
    Scene("COCO_train2014_000000000030.jpg", (200, 100), [Ref((5, 5, 20, 20), ("small cat",), "train", "cat")]),
]


@pytest.fixture
def refcoco(tmp_path) -> dict[str, Path]:
    return write_refcoco(tmp_path / "src", SCENES)


def refcoco_args(paths: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["refcoco", "--refs", str(paths["refs"]), "--instances", str(paths["instances"]),
            "--images", str(paths["images"]), "--out", str(out), *extra]


def test_refcoco_one_annotation_per_sentence_grouped_per_image(tmp_path, refcoco, capsys):
    out = tmp_path / "out"
    code, stdout, err = run(capsys, *refcoco_args(refcoco, out))
    assert code == 0, err
    assert records(out) == [
        ("COCO_train2014_000000000009.jpg", (Annotation("man on the left", (10.5, 20.25, 100.0, 50.0), "testA"),
                                              Annotation("guy in red", (10.5, 20.25, 100.0, 50.0), "testA"),
                                              Annotation("right dog", (300.0, 200.0, 80.5, 60.0), "testA"))),
        ("COCO_train2014_000000000025.jpg", (Annotation("whole thing", (0.0, 0.0, 320.0, 240.0), "testB"),)),
        ("COCO_train2014_000000000030.jpg", (Annotation("small cat", (5.0, 5.0, 20.0, 20.0), "train"),)),
    ]
    link = out / "images" / "COCO_train2014_000000000009.jpg"
    assert link.is_symlink() and link.resolve() == (refcoco["images"] / link.name).resolve()
    assert Image.open(link).size == (640, 480)
    assert "3 images, 5 annotations" in stdout
    assert json.loads((out / "import.json").read_text())["skipped"] == []


def test_refcoco_split_and_copy(tmp_path, refcoco, capsys):
    out = tmp_path / "out"
    assert run(capsys, *refcoco_args(refcoco, out, "--split", "testB", "--copy"))[0] == 0
    assert [image for image, _ in records(out)] == ["COCO_train2014_000000000025.jpg"]
    copied = out / "images" / "COCO_train2014_000000000025.jpg"
    assert copied.is_file() and not copied.is_symlink()
    code, _, err = run(capsys, *refcoco_args(refcoco, tmp_path / "o2", "--split", "test"))
    assert code == 2 and "split test: no ref has it; expected one of testA, testB, train" in err


def bad_scenes() -> list[Scene]:
    return [
        Scene("a.jpg", (100, 80), [Ref((90, 10, 20, 20), ("off the right edge",)),
                                    Ref((10, 10, 0, 20), ("no width",)),
                                    Ref((float("nan"), 10, 5, 5), ("nan box",)),
                                    Ref((10, 10, 20, 20), ("fine one", "   "))]),
        Scene("b.jpg", (50, 50), [Ref((0, 0, 60, 60), ("too big",))]),  # its only box is bad: image left out
    ]


def test_refcoco_bad_boxes_are_named_skipped_and_counted(tmp_path, capsys, caplog):
    paths = write_refcoco(tmp_path / "src", bad_scenes())
    out = tmp_path / "out"
    code, stdout, err = run(capsys, *refcoco_args(paths, out))
    assert code == 0, err
    assert records(out) == [("a.jpg", (Annotation("fine one", (10.0, 10.0, 20.0, 20.0), "train"),))]
    assert ("skipped 5 records (empty caption 1, not finite 1, out of bounds 2, zero area 1); "
            "1 images left out") in stdout
    record = json.loads((out / "import.json").read_text())
    assert record["skipped_counts"] == {"empty caption": 1, "not finite": 1, "out of bounds": 2, "zero area": 1}
    assert {(s["record"], s["reason"]) for s in record["skipped"]} == {
        ("ref_id 0 sent_id 0", "out of bounds"), ("ref_id 1 sent_id 1", "zero area"),
        ("ref_id 2 sent_id 2", "not finite"), ("ref_id 3 sent_id 4", "empty caption"),
        ("ref_id 4 sent_id 5", "out of bounds")}
    assert "skipped ref_id 0 sent_id 0 (a.jpg): out of bounds" in caplog.text


def test_strict_refuses_the_whole_import_and_writes_nothing(tmp_path, capsys):
    paths = write_refcoco(tmp_path / "src", bad_scenes())
    out = tmp_path / "out"
    code, _, err = run(capsys, *refcoco_args(paths, out, "--strict"))
    assert code == 2
    assert "--strict: refused the import: 5 records cannot be used: ref_id 0 sent_id 0: out of bounds" in err
    assert not out.exists()


def test_a_refused_import_leaves_an_earlier_vlm_jsonl_whole_and_no_temporary_file(tmp_path, refcoco, capsys):
    out = tmp_path / "out"
    assert run(capsys, *refcoco_args(refcoco, out))[0] == 0
    before = (out / "vlm.jsonl").read_bytes()
    paths = write_refcoco(tmp_path / "bad", bad_scenes())
    assert run(capsys, *refcoco_args(paths, out, "--strict"))[0] == 2
    assert (out / "vlm.jsonl").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["images", "import.json", "vlm.jsonl"]


def test_an_import_interrupted_while_writing_leaves_no_vlm_jsonl(tmp_path, refcoco, capsys, monkeypatch):
    import findbox.data.importing as importing

    def interrupted(source, target, copy):
        if target.name.endswith("25.jpg"):
            raise KeyboardInterrupt
        os.symlink(source, target)

    monkeypatch.setattr(importing, "_place", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        findbox_main(["data", "import", *refcoco_args(refcoco, out)])
    assert not (out / "vlm.jsonl").exists()
    assert [p.name for p in out.iterdir() if p.is_file()] == []  # no temporary file either


def test_check_sizes_leaves_out_an_image_whose_file_is_not_its_declared_size(tmp_path, refcoco, capsys):
    grey(refcoco["images"] / "COCO_train2014_000000000025.jpg", (321, 240))  # instances.json says 320 x 240
    assert len(records_of(run(capsys, *refcoco_args(refcoco, tmp_path / "trusting")), tmp_path / "trusting")) == 3
    out = tmp_path / "checked"
    code, stdout, _ = run(capsys, *refcoco_args(refcoco, out, "--check-sizes"))
    assert code == 0
    assert [image for image, _ in records(out)] == ["COCO_train2014_000000000009.jpg", "COCO_train2014_000000000030.jpg"]
    assert "image file's size is not the declared one 1" in stdout


def records_of(result, out: Path) -> list:
    assert result[0] == 0, result[2]
    return records(out)


def test_a_missing_image_file_is_named_and_left_out(tmp_path, refcoco, capsys):
    (refcoco["images"] / "COCO_train2014_000000000025.jpg").unlink()
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, *refcoco_args(refcoco, out))
    assert code == 0
    assert "COCO_train2014_000000000025.jpg" not in [image for image, _ in records(out)]
    assert "image file missing 1" in stdout
    assert run(capsys, *refcoco_args(refcoco, tmp_path / "o2", "--strict"))[0] == 2


@pytest.mark.parametrize("refs, instances_edit, message", [
    ({"not": "a list"}, None, "expected a list of refs, got dict"),
    ([{"ref_id": 1}], None, "refs[0]: expected a ref with ref_id, ann_id, image_id, split and sentences"),
    (None, lambda c: c["annotations"].pop(0), "ref_id 0: ann_id 1 is not in"),
    (None, lambda c: c["images"].pop(0), "ref_id 0: image_id 1 is not in"),
    (None, lambda c: c["annotations"][0].update(bbox=[1, 2, 3]), "annotation id 1: bbox: expected [x, y, w, h], got [1, 2, 3]"),
])
def test_malformed_refcoco_files_are_refused_naming_the_file(tmp_path, refcoco, capsys, refs, instances_edit, message):
    if refs is not None:
        refcoco["refs"].write_bytes(pickle.dumps(refs, protocol=2))
    if instances_edit is not None:
        coco = json.loads(refcoco["instances"].read_text())
        instances_edit(coco)
        refcoco["instances"].write_text(json.dumps(coco))
    out = tmp_path / "out"
    code, _, err = run(capsys, *refcoco_args(refcoco, out))
    assert code == 2 and message in err, err
    assert not (out / "vlm.jsonl").exists()


# --- the pickle is untrusted ---------------------------------------------------------------------


class _Hostile:
    """Unpickling this calls os.system, which would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_a_hostile_refs_pickle_is_refused_and_nothing_runs(tmp_path, refcoco, capsys, protocol):
    marker = tmp_path / "ran"
    refs = [{"ref_id": 0, "ann_id": 1, "image_id": 1, "split": "train", "sentences": [_Hostile(marker)]}]
    refcoco["refs"].write_bytes(pickle.dumps(refs, protocol=protocol))
    with pytest.raises(RefusedPickle, match=r"refs\(unc\)\.p: refused: the pickle asks for (posix|os)\.system"):
        load_plain_pickle(refcoco["refs"])
    code, _, err = run(capsys, *refcoco_args(refcoco, tmp_path / "out"))
    assert code == 2 and "refs(unc).p: refused" in err and "Nothing in it was run" in err
    assert not marker.exists()
    # the same file through pickle itself does run it: the test's pickle is really hostile
    pickle.loads(refcoco["refs"].read_bytes())
    assert marker.exists()


class _OtherCodec:
    def __reduce__(self):
        import _codecs

        return _codecs.encode, ("abc", "rot13")


def test_bytes_reconstructor_is_allowed_only_for_bytes(tmp_path):
    path = tmp_path / "codec.p"
    path.write_bytes(pickle.dumps([_OtherCodec()], protocol=2))
    with pytest.raises(RefusedPickle, match=r"codec\.p: refused: _codecs.encode\(str, 'rot13'\)"):
        load_plain_pickle(path)


def test_plain_pickles_load_and_broken_ones_are_named(tmp_path):
    plain = [{"a": 1, "b": [1.5, None, True, (b"x", "y")], 2: {"s": "ünï"}}]
    path = tmp_path / "plain.p"
    path.write_bytes(pickle.dumps(plain, protocol=2))
    assert load_plain_pickle(path) == plain
    path.write_bytes(pickle.dumps(plain)[:-5])
    with pytest.raises(ValueError, match=r"plain\.p: expected a pickle file, could not read it"):
        load_plain_pickle(path)
    path.write_bytes(pickle.dumps({1, 2}) + b"")
    assert load_plain_pickle(path) == {1, 2}
    path.write_bytes(pickle.dumps(np.zeros(2)))  # numpy asks for numpy's reconstructor: refused as well
    with pytest.raises(RefusedPickle, match="numpy"):
        load_plain_pickle(path)


def test_python2_refs_strings_decode_as_text(tmp_path):
    # a Python 2 refs file holds 8-bit str: SHORT_BINSTRING opcodes, here with UTF-8 bytes in them
    text = "café".encode()
    data = b"\x80\x02]q\x00}q\x01U\x04sentq\x02U" + bytes([len(text)]) + text + b"q\x03sa."
    path = tmp_path / "py2.p"
    path.write_bytes(data)
    assert load_plain_pickle(path) == [{"sent": "café"}]


# --- ODVG -------------------------------------------------------------------------------------------


def write_odvg(tmp_path, rows: list[dict]) -> tuple[Path, Path]:
    images = tmp_path / "odvg_images"
    grey(images / "g.jpg", (400, 300))
    grey(images / "sub" / "d.png", (200, 100))
    path = tmp_path / "train.odvg.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, images


GROUNDING = {"filename": "g.jpg", "height": 300, "width": 400, "grounding": {
    "caption": "a wire hanger with a paper cover",
    "regions": [{"bbox": [20, 15, 385, 265], "phrase": "a paper cover", "tokens_positive": [[16, 29]]},
                {"bbox": [[1, 2, 11, 22], [30, 40, 50, 60]], "phrase": "a wire hanger", "tokens_positive": [[0, 13]]}]}}
DETECTION = {"filename": "sub/d.png", "height": 100, "width": 200, "detection": {"instances": [
    {"bbox": [10, 10, 50, 40], "label": 0, "category": "dog"}, {"bbox": [60, 10, 90, 90], "label": 1}]}}


def test_odvg_grounding_and_detection_records(tmp_path, capsys):
    path, images = write_odvg(tmp_path, [GROUNDING, DETECTION])
    (tmp_path / "label_map.json").write_text(json.dumps({"0": "dog", "1": "cat"}))
    out = tmp_path / "out"
    code, _, err = run(capsys, "odvg", str(path), "--images", str(images), "--label-map",
                       str(tmp_path / "label_map.json"), "--out", str(out))
    assert code == 0, err
    assert records(out) == [
        ("g.jpg", (Annotation("a paper cover", (20.0, 15.0, 365.0, 250.0)),
                   Annotation("a wire hanger", (1.0, 2.0, 10.0, 20.0)),
                   Annotation("a wire hanger", (30.0, 40.0, 20.0, 20.0)))),
        ("sub/d.png", (Annotation("dog", (10.0, 10.0, 40.0, 30.0)), Annotation("cat", (60.0, 10.0, 30.0, 80.0)))),
    ]


def test_odvg_lines_of_one_file_are_one_image_and_bad_boxes_are_skipped(tmp_path, capsys):
    second = {"filename": "g.jpg", "height": 300, "width": 400, "grounding": {"caption": "x", "regions": [
        {"bbox": [350, 250, 450, 290], "phrase": "past the right edge"}, {"bbox": [5, 5, 5, 9], "phrase": "flat"},
        {"bbox": [5, 5, 9, 9], "phrase": "kept"}]}}
    path, images = write_odvg(tmp_path, [GROUNDING, second])
    out = tmp_path / "out"
    code, stdout, _ = run(capsys, "odvg", str(path), "--images", str(images), "--out", str(out))
    assert code == 0
    ((image, annotations),) = records(out)
    assert image == "g.jpg" and [a.caption for a in annotations][-1] == "kept" and len(annotations) == 4
    assert "skipped 2 records (out of bounds 1, zero area 1)" in stdout


@pytest.mark.parametrize("row, message", [
    ({"filename": "g.jpg", "grounding": {"regions": []}}, "expected filename, height and width"),
    ({"filename": "g.jpg", "height": 300, "width": 400}, "expected a 'grounding' or a 'detection' record"),
    ({**DETECTION, "detection": {"instances": [{"bbox": [1, 2, 3, 4], "label": 7}]}},
     "detection.instances[0]: expected a 'category' name, or a 'label' in --label-map"),
    ({**GROUNDING, "grounding": {"regions": [{"bbox": [1, 2, 3], "phrase": "p"}]}},
     "grounding.regions[0].bbox: expected [x1, y1, x2, y2], got [1, 2, 3]"),
    ({**GROUNDING, "grounding": {"regions": [{"bbox": [1, 2, 3, 4]}]}}, "grounding.regions[0]: expected a 'phrase'"),
    ({**GROUNDING, "width": 401}, "g.jpg is 401 x 300 here and 400 x 300 where it first appeared"),
])
def test_malformed_odvg_lines_are_refused_naming_file_and_line(tmp_path, capsys, row, message):
    path, images = write_odvg(tmp_path, [GROUNDING, row])
    code, _, err = run(capsys, "odvg", str(path), "--images", str(images), "--out", str(tmp_path / "out"))
    assert code == 2 and f"train.odvg.jsonl:2: {message}" in err, err
    assert not (tmp_path / "out" / "vlm.jsonl").exists()


# --- COCO -------------------------------------------------------------------------------------------


def write_coco(tmp_path, annotations: list[dict]) -> tuple[Path, Path]:
    images = tmp_path / "val2017"
    grey(images / "000000000139.jpg", (640, 426))
    grey(images / "000000000285.jpg", (586, 640))
    grey(images / "000000000632.jpg", (320, 200))
    coco = {"images": [{"id": 139, "file_name": "000000000139.jpg", "width": 640, "height": 426},
                       {"id": 285, "file_name": "000000000285.jpg", "width": 586, "height": 640},
                       {"id": 632, "file_name": "000000000632.jpg", "width": 320, "height": 200}],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "supercategory": "person"},
                           {"id": 23, "name": "bear", "supercategory": "animal"}]}
    path = tmp_path / "instances_val2017.json"
    path.write_text(json.dumps(coco))
    return path, images


COCO_ANNS = [
    {"id": 1, "image_id": 139, "category_id": 1, "bbox": [412.8, 157.61, 53.05, 138.01], "area": 1, "iscrowd": 0},
    {"id": 2, "image_id": 285, "category_id": 23, "bbox": [0, 50.1, 586, 589.9], "area": 1, "iscrowd": 0},
    {"id": 3, "image_id": 139, "category_id": 1, "bbox": [384.43, 172.21, 15.12, 35.74], "area": 1, "iscrowd": 0},
    {"id": 4, "image_id": 139, "category_id": 1, "bbox": [0, 0, 100, 100], "area": 1, "iscrowd": 1},
]


def test_coco_caption_is_the_category_and_images_without_boxes_are_background(tmp_path, capsys):
    path, images = write_coco(tmp_path, COCO_ANNS)
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "coco", "--instances", str(path), "--images", str(images), "--out", str(out))
    assert code == 0, err
    assert records(out) == [
        ("000000000139.jpg", (Annotation("person", (412.8, 157.61, 53.05, 138.01)),
                              Annotation("person", (384.43, 172.21, 15.12, 35.74)))),
        ("000000000285.jpg", (Annotation("bear", (0.0, 50.1, 586.0, 589.9)),)),
        ("000000000632.jpg", ()),  # no annotation: a background image
    ]
    assert "skipped 1 records (crowd box (iscrowd 1) 1)" in stdout


def test_coco_images_of_another_import_keep_every_object_of_those_images(tmp_path, capsys):
    """The detector's data for a RefCOCO split: every object of that split's images, from instances.json."""
    paths = write_refcoco(tmp_path / "src", SCENES)
    coco = json.loads(paths["instances"].read_text())
    coco["annotations"].append({"id": 99, "image_id": 1, "category_id": 1, "bbox": [500, 300, 40, 40], "iscrowd": 0})
    paths["instances"].write_text(json.dumps(coco))  # an object of image 1 that no ref points to
    assert run(capsys, *refcoco_args(paths, tmp_path / "testA", "--split", "testA"))[0] == 0
    out = tmp_path / "det"
    code, _, err = run(capsys, "coco", "--instances", str(paths["instances"]), "--images", str(paths["images"]),
                       "--images-of", str(tmp_path / "testA" / "vlm.jsonl"), "--out", str(out))
    assert code == 0, err
    ((image, annotations),) = records(out)
    assert image == "COCO_train2014_000000000009.jpg"
    assert [a.bbox_ltwh for a in annotations] == [(10.5, 20.25, 100.0, 50.0), (300.0, 200.0, 80.5, 60.0),
                                                  (500.0, 300.0, 40.0, 40.0)]


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.pop("categories"), "expected a COCO instances object with 'images', 'annotations' and 'categories'"),
    (lambda c: c["annotations"].append({"id": 9, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}),
     "annotation id 9: image_id 1 is not among the file's images"),
    (lambda c: c["annotations"].append({"id": 9, "image_id": 139, "category_id": 5, "bbox": [0, 0, 1, 1]}),
     "annotation id 9: category_id 5 is not among the file's categories"),
    (lambda c: c["images"].append({"id": 7, "file_name": "../x.jpg", "width": 1, "height": 1}),
     "image id 7: expected an image path relative to the image folder, got '../x.jpg'"),
    (lambda c: c["images"].append({"id": 8, "file_name": "z.jpg", "width": 0, "height": 5}),
     "image id 8: expected a positive image width and height, got 0 x 5"),
])
def test_malformed_coco_files_are_refused_naming_the_entry(tmp_path, capsys, edit, message):
    path, images = write_coco(tmp_path, list(COCO_ANNS))
    coco = json.loads(path.read_text())
    edit(coco)
    path.write_text(json.dumps(coco))
    code, _, err = run(capsys, "coco", "--instances", str(path), "--images", str(images), "--out", str(tmp_path / "o"))
    assert code == 2 and message in err, err


# --- YOLO -------------------------------------------------------------------------------------------


def write_yolo(tmp_path) -> Path:
    root = tmp_path / "ds"
    grey(root / "images" / "train" / "a.jpg", (200, 100))
    grey(root / "images" / "train" / "b.jpg", (64, 64))  # no label file: background
    grey(root / "images" / "val" / "c.png", (100, 50))
    (root / "labels" / "train").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    (root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n1 0.1 0.1 0.2 0.2\n")
    # a polygon row (segmentation labels) and a box past the image's right edge
    (root / "labels" / "val" / "c.txt").write_text("1 0.1 0.2 0.3 0.2 0.3 0.6\n0 0.95 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: drone\n  1: bird\n")
    return root / "data.yaml"


def test_yolo_caption_is_the_class_name(tmp_path, capsys):
    data = write_yolo(tmp_path)
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "yolo", str(data), "--out", str(out))
    assert code == 0, err
    assert records(out) == [
        ("train/a.jpg", (Annotation("drone", (80.0, 30.0, 40.0, 40.0), "train"),
                         Annotation("bird", (0.0, 0.0, 40.0, 20.0), "train"))),
        ("train/b.jpg", ()),
        ("val/c.png", (Annotation("bird", (10.0, 10.0, 20.0, 20.0), "val"),)),
    ]
    assert "skipped 1 records (out of bounds 1)" in stdout
    code, _, _ = run(capsys, "yolo", str(data), "--split", "val", "--out", str(tmp_path / "val"))
    assert code == 0 and [image for image, _ in records(tmp_path / "val")] == ["val/c.png"]


@pytest.mark.parametrize("label, message", [
    ("5 0.5 0.5 0.1 0.1", "a.txt:1: class 5 is not in the yaml's names (0..1)"),
    ("0 0.5 0.5 0.1", "a.txt:1: expected 'class cx cy w h' or 'class x1 y1 x2 y2 ...'"),
    ("zero 0.5 0.5 0.1 0.1", "a.txt:1: expected numbers 'class cx cy w h'"),
])
def test_malformed_yolo_labels_are_refused_naming_file_and_line(tmp_path, capsys, label, message):
    data = write_yolo(tmp_path)
    (data.parent / "labels" / "train" / "a.txt").write_text(label + "\n")
    code, _, err = run(capsys, "yolo", str(data), "--out", str(tmp_path / "out"))
    assert code == 2 and message in err, err


def test_the_imported_data_trains_the_detector_conversion(tmp_path, capsys):
    """The image names an import writes are ones the detector's YOLO conversion accepts (no images/ folder)."""
    from findbox.train.yolo_data import convert_vlm_to_yolo

    out = tmp_path / "out"
    assert run(capsys, "yolo", str(write_yolo(tmp_path)), "--out", str(out))[0] == 0
    dataset = convert_vlm_to_yolo(out / "vlm.jsonl", tmp_path / "yolo")
    assert dataset.report.boxes == 3 and not dataset.split.skipped
