"""vlm.jsonl: the reader, the split rule and split.json, shared by detector training, crops and eval."""

from __future__ import annotations

import json

import numpy as np
import pytest

from findbox.data.vlm import Annotation, Split, VlmRecord, read_split, read_vlm_jsonl, split_index, write_split

GOOD = '{"image": "ok.jpg", "annotations": []}'


def write(tmp_path, text: str | bytes):
    path = tmp_path / "vlm.jsonl"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# --- the reader --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, images, lines",
    [
        ("", [], []),  # empty file
        ("\n\n  \n", [], []),  # only blank lines
        (GOOD + "\n", ["ok.jpg"], [1]),
        (GOOD, ["ok.jpg"], [1]),  # no final newline
        ("\n" + GOOD + "\n\n" + GOOD.replace("ok", "b") + "\n\n", ["ok.jpg", "b.jpg"], [2, 4]),  # numbers keep blanks
        ("\ufeff" + GOOD + "\n", ["ok.jpg"], [1]),  # a byte-order mark on line 1
        ('{"image": "sub/x.png", "annotations": []}\r\n', ["sub/x.png"], [1]),  # CRLF, a sub-folder
    ],
)
def test_reader_lines_and_blanks(tmp_path, text, images, lines):
    records = read_vlm_jsonl(write(tmp_path, text))
    assert [r.image for r in records] == images
    assert [r.line for r in records] == lines
    assert all(r.annotations == () and r.ltwh.shape == (0, 4) for r in records)


def test_reader_record_fields(tmp_path):
    line = {"image": "a.jpg", "annotations": [{"caption": "grey missile", "bbox": [1, 2.5, 3, 4]}, {"bbox": [0, 0, 5, 6]}]}
    (record,) = read_vlm_jsonl(write(tmp_path, json.dumps(line) + "\n"))
    assert record == VlmRecord(
        line=1,
        image="a.jpg",
        annotations=(Annotation("grey missile", (1.0, 2.5, 3.0, 4.0)), Annotation(None, (0.0, 0.0, 5.0, 6.0))),
    )
    assert record.ltwh.dtype == np.float64
    np.testing.assert_array_equal(record.ltwh, [[1, 2.5, 3, 4], [0, 0, 5, 6]])
    assert record.captions == ("grey missile", None)


@pytest.mark.parametrize(
    "line, message",
    [
        # bad json
        ('{"image": "a.jpg", "annotations": [', "expected a JSON object, got invalid JSON"),
        ("not json", "invalid JSON"),
        ('["a.jpg"]', "expected a JSON object, got list"),
        ("42", "expected a JSON object, got int"),
        # missing or wrong keys
        ('{"annotations": []}', '"image" to be a file name, got None'),
        ('{"image": "", "annotations": []}', '"image" to be a file name'),
        ('{"image": 3, "annotations": []}', '"image" to be a file name, got 3'),
        ('{"image": "a.jpg"}', '"annotations" to be a list'),
        ('{"image": "a.jpg", "annotations": {}}', '"annotations" to be a list'),
        ('{"image": "a.jpg", "annotations": ["x"]}', r"annotations\[0\].bbox: expected 4 numbers"),
        ('{"image": "a.jpg", "annotations": [{"caption": "x"}]}', r"annotations\[0\].bbox: expected 4 numbers"),
        ('{"image": "a.jpg", "annotations": [{"caption": 7, "bbox": [1, 2, 3, 4]}]}', r"caption: expected a string"),
        # bbox not 4 numbers
        ('{"image": "a.jpg", "annotations": [{"bbox": [1, 2, 3]}]}', r"annotations\[0\].bbox: expected 4 numbers"),
        ('{"image": "a.jpg", "annotations": [{"bbox": [1, 2, 3, 4, 5]}]}', "expected 4 numbers"),
        ('{"image": "a.jpg", "annotations": [{"bbox": [1, 2, "3", 4]}]}', "expected 4 numbers"),
        ('{"image": "a.jpg", "annotations": [{"bbox": [1, 2, true, 4]}]}', "expected 4 numbers"),
        ('{"image": "a.jpg", "annotations": [{"bbox": {"l": 1}}]}', "expected 4 numbers"),
        ('{"image": "a.jpg", "annotations": [{"bbox": [1, 2, 3, 4]}, {"bbox": null}]}', r"annotations\[1\].bbox"),
        ('{"image": "a.jpg", "annotations": [{"bbox": [1, 2, NaN, 4]}]}', "finite"),
        ('{"image": "a.jpg", "annotations": [{"bbox": [1, 2, Infinity, 4]}]}', "finite"),
        # image names outside images/
        ('{"image": "../a.jpg", "annotations": []}', "relative path inside images/"),
        ('{"image": "/tmp/a.jpg", "annotations": []}', "relative path inside images/"),
        ('{"image": "sub\\\\a.jpg", "annotations": []}', "relative path inside images/"),
        # the optional data-set split
        ('{"image": "a.jpg", "split": 3, "annotations": []}', 'split: expected a split name such as "val", got 3'),
        ('{"image": "a.jpg", "split": " ", "annotations": []}', "split: expected a split name"),
        ('{"image": "a.jpg", "annotations": [{"bbox": [1, 2, 3, 4], "split": ["val"]}]}',
         r"annotations\[0\].split: expected a split name"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, line, message):
    path = write(tmp_path, GOOD + "\n\n" + line + "\n")
    with pytest.raises(ValueError, match=message) as info:
        read_vlm_jsonl(path)
    assert str(info.value).startswith(f"{path}:3: ")


def test_split_is_optional_and_the_annotation_wins(tmp_path):
    lines = [{"image": "a.jpg", "annotations": [{"caption": "x", "bbox": [1, 2, 3, 4]}]},  # the task's files
             {"image": "b.jpg", "split": "testA", "annotations": [{"caption": "y", "bbox": [1, 2, 3, 4]},
                                                                  {"caption": "z", "bbox": [0, 0, 1, 1], "split": "val"}]},
             {"image": "c.jpg", "annotations": [{"caption": "w", "bbox": [1, 2, 3, 4], "split": "testB"}]}]
    a, b, c = read_vlm_jsonl(write(tmp_path, "".join(json.dumps(line) + "\n" for line in lines)))
    assert a.split is None and a.split_of(a.annotations[0]) is None
    assert a.annotations[0] == Annotation("x", (1.0, 2.0, 3.0, 4.0))  # no split: equal to one built without it
    assert b.split == "testA" and [b.split_of(ann) for ann in b.annotations] == ["testA", "val"]
    assert c.split is None and c.split_of(c.annotations[0]) == "testB"


def test_undecodable_bytes_name_the_line(tmp_path):
    path = write(tmp_path, GOOD.encode() + b"\n" + b'{"image": "\xff.jpg", "annotations": []}\n')
    with pytest.raises(ValueError, match=rf"{path}:2: expected UTF-8 text"):
        read_vlm_jsonl(path)


def test_captions_required(tmp_path):
    path = write(tmp_path, GOOD + '\n{"image": "a.jpg", "annotations": [{"bbox": [1, 2, 3, 4]}]}\n')
    assert read_vlm_jsonl(path)[1].captions == (None,)  # the detector needs only boxes
    with pytest.raises(ValueError, match=rf"{path}:2: annotations\[0\].caption: expected a string, got None"):
        read_vlm_jsonl(path, captions_required=True)


def test_duplicate_image_raises(tmp_path):
    path = write(tmp_path, '{"image": "a.jpg", "annotations": []}\n{"image": "a.jpg", "annotations": []}\n')
    with pytest.raises(ValueError, match=rf"{path}:2: image 'a.jpg' is already listed on line 1"):
        read_vlm_jsonl(path)


# --- the split ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, fraction, n_train",
    [
        (2, 0.2, 1),
        (5, 0.2, 4),
        (10, 0.2, 8),
        (8, 0.2, 6),
        (7, 0.2, 5),
        (3, 0.5, 1),
        (100, 0.1, 90),
        (10, 0.7, 3),
        (2, 0.9, 1),  # val may not take every line
        (2, 0.01, 1),  # nor train
        (100, 0.9, 10),  # 100 * (1 - 0.9) is 9.999...: the floor must not lose a line to rounding
    ],
)
def test_split_index(n, fraction, n_train):
    assert split_index(n, fraction) == n_train


@pytest.mark.parametrize("n", [1, 2, 5, 10])
def test_split_default_is_the_last_fifth(n):
    if n == 1:
        with pytest.raises(ValueError, match="at least 2 images"):
            split_index(n)
        return
    n_train = split_index(n)
    assert n_train == {2: 1, 5: 4, 10: 8}[n]
    assert n_train == split_index(n)  # deterministic


@pytest.mark.parametrize("n, fraction", [(0, 0.2), (1, 0.2), (10, 0.0), (10, 1.0), (10, -0.1)])
def test_split_index_rejects(n, fraction):
    with pytest.raises(ValueError):
        split_index(n, fraction)


# --- split.json --------------------------------------------------------------------------------


def test_split_file_round_trip(tmp_path):
    split = Split(train=("a.jpg", "b.jpg"), val=("c.jpg",), val_fraction=0.2, source="/x/vlm.jsonl",
                  skipped=({"image": "d.jpg", "line": 4, "reason": "missing"},))
    write_split(tmp_path / "split.json", split)
    assert read_split(tmp_path / "split.json") == split
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file, then renamed


def test_split_file_written_by_hand(tmp_path):
    (tmp_path / "split.json").write_text(json.dumps({"train": ["a.jpg"], "val": ["b.jpg"]}))
    split = read_split(tmp_path / "split.json")
    assert (split.train, split.val, split.val_fraction) == (("a.jpg",), ("b.jpg",), None)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"train": []}, "expected a 'val' key"),
        ({"val": []}, "expected a 'train' key"),
        ({"train": "a.jpg", "val": []}, "expected 'train' to be a list of image names"),
        ({"train": [], "val": [1]}, "expected 'val' to be a list of image names"),
        (["a.jpg"], "expected a JSON object"),
    ],
)
def test_bad_split_file(tmp_path, data, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message) as info:
        read_split(path)
    assert str(info.value).startswith(f"{path}: ")
