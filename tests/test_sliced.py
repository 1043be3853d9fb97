"""Sliced (SAHI-style) detection: tile geometry, mapping back to the image, merging, and a real run."""

import dataclasses

import numpy as np
import pytest
import torch

from findbox.boxes import Candidates
from findbox.config import DetectorConfig
from findbox.detect.ultralytics import Detector
from findbox.detect.sliced import merge_tiles, parse_grid, tile_windows
from tests.conftest import make_image


@pytest.mark.parametrize("value, grid", [("2x2", (2, 2)), ("3X2", (3, 2)), ([4, 1], (4, 1)), ((2, 3), (2, 3)),
                                         ("none", (1, 1)), (None, (1, 1)), ("1x1", (1, 1))])
def test_parse_grid(value, grid):
    assert parse_grid(value) == grid


@pytest.mark.parametrize("value", ["2", "2x", "axb", "0x2", "17x1", [2], [2, 2.0], 5])
def test_parse_grid_rejects(value):
    with pytest.raises(ValueError, match="slices"):
        parse_grid(value)


def test_config_accepts_the_cli_form():
    assert DetectorConfig(slices="2x2").slices == (2, 2)
    with pytest.raises(ValueError, match="slice_overlap"):
        DetectorConfig(slice_overlap=0.95)


def test_tile_windows_hand_made():
    # 100x60, 2x2, 20% overlap: tiles of ceil(100/1.8)=56 x ceil(60/1.8)=34, strides 44 and 26
    windows = tile_windows((100, 60), (2, 2), 0.2)
    np.testing.assert_array_equal(windows, [[0, 0, 56, 34], [44, 0, 100, 34], [0, 26, 56, 60], [44, 26, 100, 60]])


@pytest.mark.parametrize("wh, grid", [((1520, 870), (2, 2)), ((1520, 870), (3, 2)), ((7, 5), (2, 2)), ((1, 1), (2, 2))])
def test_tile_windows_cover_the_image_with_equal_tiles(wh, grid):
    windows = tile_windows(wh, grid, 0.25)
    assert len(windows) == grid[0] * grid[1]
    sizes = {(x2 - x1, y2 - y1) for x1, y1, x2, y2 in windows}
    assert len(sizes) == 1 and min(next(iter(sizes))) >= 1
    covered = np.zeros(wh[::-1], bool)
    for x1, y1, x2, y2 in windows:
        assert 0 <= x1 < x2 <= wh[0] and 0 <= y1 < y2 <= wh[1]
        covered[y1:y2, x1:x2] = True
    assert covered.all()


def test_tile_boxes_move_by_the_window_origin():
    tile = Candidates(np.array([[1, 2, 3, 4], [0, 0, 10, 10]]), [0.5, 0.4])
    window = np.array([44, 26, 100, 60])
    got = merge_tiles(Candidates.empty(), [tile], window[None], iou=0.5, max_det=10)
    np.testing.assert_array_equal(got.xyxy, [[45, 28, 47, 30], [44, 26, 54, 36]])


def test_merge_suppresses_duplicates_across_passes_and_caps():
    full = Candidates(np.array([[10, 10, 20, 20], [50, 50, 60, 60]], np.float32), np.array([0.6, 0.3], np.float32))
    tile = Candidates(np.array([[11, 10, 21, 20], [80, 5, 90, 15]], np.float32), np.array([0.9, 0.5], np.float32))
    origin = np.array([[0, 0, 100, 60]])  # a tile at the image origin: its boxes do not move
    merged = merge_tiles(full, [tile], origin, iou=0.5, max_det=10)
    np.testing.assert_array_equal(merged.det_score, np.array([0.9, 0.5, 0.3], np.float32))
    np.testing.assert_array_equal(merged.xyxy[0], [11, 10, 21, 20])
    assert len(merge_tiles(full, [tile], origin, iou=0.5, max_det=2)) == 2
    assert merge_tiles(Candidates.empty(), [], np.zeros((0, 4)), 0.5, 10).xyxy.shape == (0, 4)
    with pytest.raises(ValueError, match="expected one Candidates per window"):
        merge_tiles(full, [tile], np.zeros((2, 4)), 0.5, 10)


class _Boxes:
    def __init__(self, xyxy, conf):
        self.xyxy = torch.tensor(xyxy, dtype=torch.float32).reshape(-1, 4)
        self.conf = torch.tensor(conf, dtype=torch.float32).reshape(-1)

    def __len__(self):
        return len(self.conf)


class _Result:
    def __init__(self, boxes):
        self.boxes = boxes


class WhiteSquareYolo:
    """A stand-in detector: finds pure-white pixels, but only in inputs narrower than `sees_below_width`
    (as a real detector misses objects that shrink too much in a large input)."""

    task = "detect"

    def __init__(self, sees_below_width: int):
        self.sees_below_width = sees_below_width
        self.calls = []

    def predict(self, sources, **kwargs):
        self.calls.append([s.shape for s in sources])
        results = []
        for bgr in sources:
            ys, xs = np.nonzero((bgr == 255).all(axis=2))
            if len(xs) and bgr.shape[1] < self.sees_below_width:
                results.append(_Result(_Boxes([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], [0.8])))
            else:
                results.append(_Result(_Boxes(np.zeros((0, 4)), np.zeros(0))))
        return results


def test_small_object_found_only_in_a_tile_comes_back_in_image_pixels():
    image = np.full((60, 100, 3), 90, np.uint8)
    image[40:44, 70:75] = 255  # inside the bottom-right tile [44, 26, 100, 60] only
    yolo = WhiteSquareYolo(sees_below_width=80)
    plain = Detector(yolo, DetectorConfig(imgsz=64, conf=0.01), torch.device("cpu"))
    assert len(plain.detect([image])[0]) == 0
    sliced = Detector(yolo, DetectorConfig(imgsz=64, conf=0.01, slices="2x2"), torch.device("cpu"))
    yolo.calls.clear()
    got = sliced.detect([image, image.copy()])
    for cands in got:
        np.testing.assert_array_equal(cands.xyxy, [[70, 40, 75, 44]])
    # full images in one call, the 8 same-shape tiles of both images in another
    assert sorted(len(c) for c in yolo.calls) == [2, 8]


def test_object_seen_by_full_pass_and_tiles_is_merged_to_one_box():
    image = np.full((60, 100, 3), 90, np.uint8)
    image[10:20, 48:52] = 255  # in the overlap of the two top tiles, and in the full image
    yolo = WhiteSquareYolo(sees_below_width=1000)
    got = Detector(yolo, DetectorConfig(imgsz=64, conf=0.01, iou=0.5, slices="2x2"), torch.device("cpu")).detect([image])
    np.testing.assert_array_equal(got[0].xyxy, [[48, 10, 52, 20]])


def test_sliced_run_on_a_real_detector(tiny_pipeline):
    base = tiny_pipeline.detector
    config = dataclasses.replace(base.config, slices=(2, 2))
    sliced = Detector(base.yolo, config, base.device)
    images = [make_image(50), make_image(51, 160, 90)]
    for image, cands in zip(images, sliced.detect(images)):
        h, w = image.shape[:2]
        assert 0 < len(cands) <= config.max_det
        assert (cands.xyxy[:, [0, 2]] <= w).all() and (cands.xyxy[:, [1, 3]] <= h).all() and (cands.xyxy >= 0).all()
        assert (np.diff(cands.det_score) <= 0).all()


def test_detecting_leaves_torch_threads_alone(tiny_models):
    # ultralytics' predictor setup sets torch.set_num_threads(cpu_count - 1) process-wide; the scorer must keep its
    # threads. A fresh detector, so that its predictor is set up here.
    detector = Detector.from_file(tiny_models["detector"], DetectorConfig(imgsz=64, conf=0.01), "cpu")
    before = torch.get_num_threads()
    torch.set_num_threads(max(2, before))
    try:
        want = torch.get_num_threads()
        detector.detect([make_image(52)])
        assert torch.get_num_threads() == want
    finally:
        torch.set_num_threads(before)
