"""Reading vlm.jsonl, the split, and the published client's request batches."""

import json

import pytest

from findbox.data.vlm import read_vlm_jsonl
from findbox.eval.data import SplitName, requests_of, samples_of, select_split


def read_jsonl(path):
    return read_vlm_jsonl(path, captions_required=True)  # as findbox eval reads it


def write_jsonl(path, n_images, captions_per_image=2):
    lines = [{"image": f"image_{i}.jpg",
              "annotations": [{"caption": f"grey missile {j}", "bbox": [i, j, 10, 10]} for j in range(captions_per_image)]}
             for i in range(n_images)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "\n")
    return path


@pytest.mark.parametrize("n, n_val", [(10, 2), (5, 1), (7, 2), (2, 1)])
def test_val_is_the_last_fifth_of_lines(tmp_path, n, n_val):
    entries = read_jsonl(write_jsonl(tmp_path / "vlm.jsonl", n))
    val = select_split(entries, SplitName.VAL)
    train = select_split(entries, SplitName.TRAIN)
    assert [e.image for e in val] == [f"image_{i}.jpg" for i in range(n - n_val, n)]
    assert [e.image for e in train] + [e.image for e in val] == [e.image for e in entries]
    assert len(select_split(entries, SplitName.ALL)) == n


def test_one_line_is_train(tmp_path):
    entries = read_jsonl(write_jsonl(tmp_path / "vlm.jsonl", 1))
    assert [e.image for e in select_split(entries, SplitName.TRAIN)] == ["image_0.jpg"]
    assert select_split(entries, SplitName.VAL) == []


def test_eval_and_detector_training_split_alike(tmp_path):
    from findbox.data.vlm import split_index

    entries = read_jsonl(write_jsonl(tmp_path / "vlm.jsonl", 13))
    assert len(select_split(entries, SplitName.TRAIN)) == split_index(13, 0.2) == 10


def test_split_file_decides(tmp_path):
    entries = read_jsonl(write_jsonl(tmp_path / "vlm.jsonl", 5))
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["image_0.jpg", "image_2.jpg", "image_4.jpg"],
                                 "val": ["image_3.jpg", "image_1.jpg"], "val_fraction": 0.2}))
    assert [e.image for e in select_split(entries, "val", split)] == ["image_1.jpg", "image_3.jpg"]
    split.write_text(json.dumps({"train": [], "val": ["other.jpg"]}))
    with pytest.raises(ValueError, match="not in the jsonl"):
        select_split(entries, "val", split)


def test_requests_keep_an_image_together_in_chunks_of_batch(tmp_path):
    samples = samples_of(read_jsonl(write_jsonl(tmp_path / "vlm.jsonl", 2, captions_per_image=5)))
    requests = list(requests_of(samples, 4))
    assert [(image, len(idx)) for image, idx in requests] == [("image_0.jpg", 4), ("image_0.jpg", 1),
                                                              ("image_1.jpg", 4), ("image_1.jpg", 1)]
    assert sorted(i for _, idx in requests for i in idx) == list(range(10))
    assert all(samples[i].image == image for image, idx in requests for i in idx)


@pytest.mark.parametrize("line, message", [
    ("not json", "invalid JSON"),
    ('{"annotations": []}', "image"),
    ('{"image": "a.jpg", "annotations": [{"caption": "x", "bbox": [1, 2, 3]}]}', "bbox"),
    ('{"image": "a.jpg", "annotations": [{"bbox": [1, 2, 3, 4]}]}', "caption"),
])
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "vlm.jsonl"
    path.write_text('{"image": "ok.jpg", "annotations": []}\n' + line + "\n")
    with pytest.raises(ValueError, match=rf"vlm.jsonl:2: .*{message}"):
        read_jsonl(path)
