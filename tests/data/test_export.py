"""`findbox data export` and `findbox predict --format coco`: import -> export -> import gives the same
records for every pairing; the written files are what Grounding DINO's and COCO's readers expect;
predictions become COCO results that a COCO evaluator loads against the exported instances."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from findbox.cli import main as findbox_main
from findbox.data.vlm import read_vlm_jsonl
from findbox.testing.refcoco import write_refcoco
from tests.conftest import tiny_serve_args
from tests.data.test_import import COCO_ANNS, SCENES, refcoco_args, write_coco, write_yolo


def cli(capsys, *argv: str) -> str:
    code = findbox_main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def records(jsonl: Path) -> list[tuple]:
    """What a vlm.jsonl says, without its line numbers."""
    return [(r.image, r.split, r.annotations) for r in read_vlm_jsonl(jsonl, captions_required=True)]


def imported(tmp_path, capsys, source: str) -> Path:
    """A vlm.jsonl imported from one of the test_import layouts."""
    out = tmp_path / f"in_{source}"
    if source == "refcoco":
        cli(capsys, "data", "import", *refcoco_args(write_refcoco(tmp_path / "src", SCENES), out))
    elif source == "coco":
        path, images = write_coco(tmp_path, COCO_ANNS)
        cli(capsys, "data", "import", "coco", "--instances", str(path), "--images", str(images), "--out", str(out))
    else:
        cli(capsys, "data", "import", "yolo", str(write_yolo(tmp_path)), "--out", str(out))
    return out / "vlm.jsonl"


@pytest.mark.parametrize("source", ["refcoco", "coco", "yolo"])
@pytest.mark.parametrize("target", ["odvg", "odvg-detection", "coco"])
def test_import_export_import_gives_the_same_records(tmp_path, capsys, source, target):
    first = imported(tmp_path, capsys, source)
    images = str(first.parent / "images")
    if target == "coco":
        cli(capsys, "data", "export", "coco", str(first), "--out", str(tmp_path / "instances.json"))
        cli(capsys, "data", "import", "coco", "--instances", str(tmp_path / "instances.json"), "--images", images,
            "--out", str(tmp_path / "again"))
    else:
        kind = ["--kind", "detection"] if target == "odvg-detection" else []
        cli(capsys, "data", "export", "odvg", str(first), "--out", str(tmp_path / "x.odvg.jsonl"), *kind)
        cli(capsys, "data", "import", "odvg", str(tmp_path / "x.odvg.jsonl"), "--images", images,
            "--out", str(tmp_path / "again"))
    assert records(tmp_path / "again" / "vlm.jsonl") == records(first)
    assert len(records(first)) >= 3


def test_odvg_export_is_grounding_dinos_layout(tmp_path, capsys):
    first = imported(tmp_path, capsys, "refcoco")
    out = tmp_path / "g.odvg.jsonl"
    cli(capsys, "data", "export", "odvg", str(first), "--out", str(out))
    row = json.loads(out.read_text().splitlines()[0])
    assert (row["filename"], row["width"], row["height"]) == ("COCO_train2014_000000000009.jpg", 640, 480)
    caption = row["grounding"]["caption"]
    assert caption == "man on the left. guy in red. right dog"
    for region in row["grounding"]["regions"]:
        (start, end), = region["tokens_positive"]
        assert caption[start:end] == region["phrase"]  # mmdetection's ODVGDataset reads phrases by these spans
    assert row["grounding"]["regions"][2]["bbox"] == [300.0, 200.0, 380.5, 260.0]  # x1, y1, x2, y2

    cli(capsys, "data", "export", "odvg", str(first), "--kind", "detection", "--out", str(tmp_path / "d.odvg.jsonl"))
    label_map = json.loads((tmp_path / "d.label_map.json").read_text())
    instances = [i for line in (tmp_path / "d.odvg.jsonl").read_text().splitlines()
                 for i in json.loads(line)["detection"]["instances"]]
    assert all(label_map[str(i["label"])] == i["category"] for i in instances)
    assert len(label_map) == 5  # one label per distinct caption


def test_coco_export_loads_in_a_coco_evaluator(tmp_path, capsys):
    coco_eval = pytest.importorskip("faster_coco_eval")
    first = imported(tmp_path, capsys, "coco")
    cli(capsys, "data", "export", "coco", str(first), "--out", str(tmp_path / "instances.json"))
    gt = coco_eval.COCO(str(tmp_path / "instances.json"))
    assert sorted(c["name"] for c in gt.loadCats(gt.getCatIds())) == ["bear", "person"]
    assert len(gt.getAnnIds()) == 3 and len(gt.getImgIds()) == 3


def test_an_image_missing_at_export_is_named(tmp_path, capsys):
    first = imported(tmp_path, capsys, "coco")
    (first.parent / "images" / "000000000285.jpg").unlink()
    code = findbox_main(["data", "export", "coco", str(first), "--out", str(tmp_path / "i.json")])
    assert code == 2 and "line 2: image '000000000285.jpg': no file" in capsys.readouterr().err
    assert not (tmp_path / "i.json").exists()


# --- predictions --------------------------------------------------------------------------------------


@pytest.fixture
def scene_set(tmp_path, capsys) -> Path:
    """Two images of known sizes imported from a COCO file whose categories are the captions asked."""
    from tests.conftest import make_image

    images = tmp_path / "imgs"
    images.mkdir()
    for k, (w, h) in enumerate([(160, 120), (200, 100)]):
        Image.fromarray(make_image(k, w, h)).save(images / f"{k:012d}.png")
    coco = {"images": [{"id": 10 + k, "file_name": f"{k:012d}.png", "width": w, "height": h}
                       for k, (w, h) in enumerate([(160, 120), (200, 100)])],
            "annotations": [{"id": 1, "image_id": 10, "category_id": 3, "bbox": [10, 10, 30, 30], "iscrowd": 0},
                            {"id": 2, "image_id": 11, "category_id": 4, "bbox": [50, 20, 40, 30], "iscrowd": 0}],
            "categories": [{"id": 3, "name": "grey missile"}, {"id": 4, "name": "yellow drone"}]}
    (tmp_path / "gt.json").write_text(json.dumps(coco))
    return tmp_path / "gt.json"


def test_predict_format_coco_is_every_candidate_as_a_coco_result(tmp_path, capsys, tiny_models, scene_set):
    images = scene_set.parent / "imgs"
    args = [str(images), "--caption", "grey missile", "--caption", "yellow drone", *tiny_serve_args(tiny_models),
            "--precision", "fp32"]
    lines = [json.loads(t) for t in cli(capsys, "predict", *args).splitlines()]
    cli(capsys, "predict", *args, "--format", "coco", "--coco-instances", str(scene_set), "--out",
        str(tmp_path / "results.json"))
    results = json.loads((tmp_path / "results.json").read_text())
    want = [{"image_id": 10 + int(Path(line["image"]).stem), "category_id": {"grey missile": 3, "yellow drone": 4}[
        line["caption"]], "bbox": c["box_ltwh"], "score": c["score"]} for line in lines for c in line["candidates"]]
    assert results == want and len(want) > 0

    # without instances: ultralytics' image id rule (the numeric stem) and captions numbered in order
    plain = json.loads(cli(capsys, "predict", *args, "--format", "coco"))
    assert [(r["image_id"], r["category_id"]) for r in plain] == [
        (int(Path(line["image"]).stem), 1 + ["grey missile", "yellow drone"].index(line["caption"]))
        for line in lines for _ in line["candidates"]]

    # the same results from the JSON lines afterwards (what --engine ray users do)
    (tmp_path / "boxes.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    cli(capsys, "data", "import", "coco", "--instances", str(scene_set), "--images", str(images),
        "--out", str(tmp_path / "data"))
    cli(capsys, "data", "export", "coco", str(tmp_path / "data" / "vlm.jsonl"), "--out", str(tmp_path / "gt2.json"),
        "--predictions", str(tmp_path / "boxes.jsonl"), "--results", str(tmp_path / "results2.json"))
    results2 = json.loads((tmp_path / "results2.json").read_text())
    gt2 = json.loads((tmp_path / "gt2.json").read_text())
    assert [(r["bbox"], r["score"]) for r in results2] == [(r["bbox"], r["score"]) for r in results]
    image_ids = {im["file_name"]: im["id"] for im in gt2["images"]}
    assert {r["image_id"] for r in results2} <= set(image_ids.values())

    coco_eval = pytest.importorskip("faster_coco_eval")
    gt = coco_eval.COCO(str(scene_set))
    predictions = gt.loadRes(str(tmp_path / "results.json"))  # refuses results whose image ids are not the file's
    assert len(predictions.getAnnIds()) == len(results)
    evaluator = coco_eval.COCOeval_faster(gt, predictions, "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert len(evaluator.stats) >= 12


def test_coco_results_refuse_an_image_or_caption_the_instances_lack(tmp_path, capsys, scene_set):
    first_line = {"image": "elsewhere/zzz.png", "caption": "grey missile", "box_ltwh": [0, 0, 1, 1],
                  "fallback": False, "candidates": [{"box_ltwh": [0, 0, 1, 1], "det_conf": 0.5, "score": 1.0}],
                  "chosen": 0}
    cli(capsys, "data", "import", "coco", "--instances", str(scene_set), "--images", str(scene_set.parent / "imgs"),
        "--out", str(tmp_path / "data"))
    for line, message in [(first_line, "image 'elsewhere/zzz.png' matches no file_name"),
                          ({**first_line, "image": "imgs/000000000000.png", "caption": "cat"},
                           "caption 'cat' is no category"),
                          ({"image": "x.png"}, "expected a findbox predict line with image, caption and candidates")]:
        (tmp_path / "p.jsonl").write_text(json.dumps(line) + "\n")
        code = findbox_main(["data", "export", "coco", str(tmp_path / "data" / "vlm.jsonl"), "--out",
                             str(tmp_path / "gt.json"), "--predictions", str(tmp_path / "p.jsonl"),
                             "--results", str(tmp_path / "r.json")])
        assert code == 2 and f"p.jsonl:1: {message}" in capsys.readouterr().err
