"""The batched pipeline against the per-instance reference loop, and its sharing of work."""

import numpy as np
import pytest

from findbox.config import Fallback
from findbox.pipeline import Pipeline
from findbox.testing.reference import reference_ground
from tests.conftest import CAPTIONS, make_image


def test_pipeline_equals_per_instance_loop(tiny_pipeline):
    images = [make_image(seed) for seed in range(3)]
    queries = [(i, c) for i in range(3) for c in CAPTIONS[:4]]
    batched = tiny_pipeline.ground(images, queries)
    assert any(len(g.candidates) > 1 for g in batched), "the detector must propose several boxes for this test"
    for (index, caption), got in zip(queries, batched):
        want = reference_ground(tiny_pipeline, images[index], caption)
        np.testing.assert_allclose(got.candidates.xyxy, want.candidates.xyxy)
        np.testing.assert_allclose(got.candidates.match_score, want.candidates.match_score, rtol=1e-4, atol=1e-4)
        assert got.chosen == want.chosen
        np.testing.assert_array_equal(got.xyxy, want.xyxy)


def test_four_captions_of_one_image_detect_and_embed_once(tiny_pipeline):
    image = make_image(10)
    before = tiny_pipeline.counters.images_detected, tiny_pipeline.counters.crops_embedded
    results = tiny_pipeline.ground([image], [(0, c) for c in CAPTIONS[:4]])
    n_boxes = len(results[0].candidates)
    assert n_boxes > 0
    assert tiny_pipeline.counters.images_detected - before[0] == 1
    assert tiny_pipeline.counters.crops_embedded - before[1] == n_boxes  # not 4 * n_boxes


def test_captions_are_embedded_once_and_cached(tiny_pipeline):
    scorer = tiny_pipeline.scorer
    scorer.embed_texts(["a caption never seen before"])
    misses = scorer.text_cache_misses
    tiny_pipeline.ground([make_image(1)], [(0, "a caption never seen before")] * 3)
    assert scorer.text_cache_misses == misses


def test_answer_order_and_different_captions_can_differ(tiny_pipeline):
    images = [make_image(20), make_image(21, 160, 90)]
    queries = [(1, CAPTIONS[0]), (0, CAPTIONS[1]), (1, CAPTIONS[2])]
    results = tiny_pipeline.ground(images, queries)
    assert [g.image_wh for g in results] == [(160, 90), (200, 120), (160, 90)]
    for g in results:
        assert 0 <= g.xyxy[0] <= g.xyxy[2] <= g.image_wh[0]
        assert 0 <= g.xyxy[1] <= g.xyxy[3] <= g.image_wh[1]


def test_empty_caption_takes_most_confident_box(tiny_pipeline):
    g = tiny_pipeline.ground_one(make_image(3), "   ")
    assert g.chosen == int(np.argmax(g.candidates.det_score))


@pytest.mark.parametrize("fallback, expected", [(Fallback.IMAGE, [0, 0, 200, 120]), (Fallback.ZEROS, [0, 0, 0, 0])])
def test_fallback_when_nothing_is_detected(tiny_pipeline, fallback, expected):
    from findbox.config import DetectorConfig
    from findbox.detect.ultralytics import Detector

    strict = Detector(tiny_pipeline.detector.yolo, DetectorConfig(imgsz=160, conf=0.999), tiny_pipeline.detector.device)
    pipeline = Pipeline(strict, tiny_pipeline.scorer, None, fallback)
    g = pipeline.ground_one(make_image(4), CAPTIONS[0])
    assert g.fallback and g.chosen == -1 and len(g.candidates) == 0
    np.testing.assert_allclose(g.ltwh, expected)


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 1, 3), (1, 300, 3), (40, 2, 3)])
def test_degenerate_images_and_crops_do_not_crash(tiny_pipeline, shape):
    image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    g = tiny_pipeline.ground_one(image, CAPTIONS[0])
    assert g.ltwh.shape == (4,)


def test_bad_queries_are_rejected(tiny_pipeline):
    with pytest.raises(ValueError, match="out of range"):
        tiny_pipeline.ground([make_image(0)], [(1, "x")])
    with pytest.raises(TypeError, match="caption"):
        tiny_pipeline.ground([make_image(0)], [(0, 5)])


def test_stats_report_work_stages_and_caches(tiny_pipeline):
    from findbox.cache import ImageCache

    pipeline = Pipeline(tiny_pipeline.detector, tiny_pipeline.scorer, None, image_cache=ImageCache(4))
    image = make_image(50)
    pipeline.ground([image], [(0, CAPTIONS[0]), (0, CAPTIONS[1])])
    pipeline.ground_one(image.copy(), CAPTIONS[0])
    stats = pipeline.stats()
    assert stats["counters"] == {"requests": 2, "queries": 3, "images_detected": 1,
                                 "crops_embedded": pipeline.counters.crops_embedded,
                                 "captions_embedded": pipeline.counters.captions_embedded,
                                 "fallbacks": pipeline.counters.fallbacks}
    assert stats["caches"]["image"] == {"hits": 1, "misses": 1, "entries": 1}
    assert stats["caches"]["text"] == {"hits": tiny_pipeline.scorer.text_cache_hits,
                                       "misses": tiny_pipeline.scorer.text_cache_misses}
    assert set(stats["stage_seconds"]) == {"image_cache", "detect", "crop_upscale", "embed_images", "embed_texts",
                                           "choose"}
    assert all(s >= 0 for s in stats["stage_seconds"].values())


def test_stage_timings_of_one_call(tiny_pipeline):
    timings = {}
    tiny_pipeline.ground([make_image(51)], [(0, CAPTIONS[0])], timings)
    stages = {"detect", "crop_upscale", "embed_images", "embed_texts", "choose"}
    assert set(timings) == stages | ({"image_cache"} if tiny_pipeline.image_cache is not None else set())
    assert timings["detect"] > 0


def test_warmup_is_one_counted_request(tiny_pipeline):
    pipeline = Pipeline(tiny_pipeline.detector, tiny_pipeline.scorer, None)
    pipeline.warmup()
    c = pipeline.counters
    assert (c.requests, c.queries, c.images_detected) == (1, 1, 1)


# --- bounded work per request: lazy decoding chunk by chunk, and a deadline (issue 15 items 1, 3)

def png_bytes(image_rgb: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image_rgb).save(buf, format="PNG")  # lossless: decodes to the same array
    return buf.getvalue()


class Logged:
    """Wraps a detector, logging each call; `after` runs after each call (e.g. to let a deadline pass)."""

    def __init__(self, detector, log: list, after=None):
        self.detector, self.log, self.after = detector, log, after

    def detect(self, images_rgb):
        self.log.append(("detect", len(images_rgb)))
        found = self.detector.detect(images_rgb)
        if self.after is not None:
            self.after()
        return found


def test_encoded_images_are_decoded_chunk_by_chunk_with_the_same_answers(tiny_pipeline, monkeypatch):
    from findbox.images import EncodedImage
    from findbox.pipeline import PROPOSE_CHUNK

    log: list = []
    real_decode = EncodedImage.decode

    def logged_decode(self):
        log.append(("decode", 1))
        return real_decode(self)

    monkeypatch.setattr(EncodedImage, "decode", logged_decode)
    n = PROPOSE_CHUNK + 2
    arrays = [make_image(200 + i) for i in range(n)]
    encoded = [EncodedImage.probe(png_bytes(a)) for a in arrays]
    queries = [(i, CAPTIONS[i % 4]) for i in range(n)]
    pipeline = Pipeline(Logged(tiny_pipeline.detector, log), tiny_pipeline.scorer, tiny_pipeline.upscaler)
    got = pipeline.ground(encoded, queries)
    # each chunk's images are decoded just before its detector call, never the whole request first
    assert log == [("decode", 1)] * PROPOSE_CHUNK + [("detect", PROPOSE_CHUNK)] + [("decode", 1)] * 2 + [("detect", 2)]
    want = tiny_pipeline.ground(arrays, queries)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.candidates.xyxy, w.candidates.xyxy)
        np.testing.assert_allclose(g.candidates.match_score, w.candidates.match_score, rtol=1e-4, atol=1e-4)
        assert g.image_wh == w.image_wh == (200, 120)


@pytest.mark.parametrize("pixels, want", [
    ([10] * 10, [list(range(8)), [8, 9]]),                       # PROPOSE_CHUNK images at most
    ([15_000_000, 15_000_000, 1], [[0], [1, 2]]),                 # and PROPOSE_CHUNK_PIXELS at most
    ([40_000_000, 1, 40_000_000], [[0], [1], [2]]),               # an image past the bound goes alone
    ([], []),
])
def test_chunks_bound_images_and_pixels(pixels, want):
    from findbox.pipeline import _chunks

    assert list(_chunks(list(range(len(pixels))), pixels)) == want


def test_image_that_does_not_decode_is_named_by_the_callers_index(tiny_pipeline):
    from findbox.images import EncodedImage
    from findbox.pipeline import ImageDecodeError

    data = png_bytes(make_image(60))
    truncated = EncodedImage.probe(data[: len(data) // 2])  # the header reads; the pixels do not
    good = EncodedImage.probe(data)
    with pytest.raises(ImageDecodeError) as info:
        tiny_pipeline.ground([good, good, truncated], [(0, CAPTIONS[0]), (2, CAPTIONS[1])])
    assert info.value.index == 2 and isinstance(info.value.error, ValueError)


def test_deadline_in_the_past_does_no_work(tiny_pipeline):
    import time

    from findbox.pipeline import DeadlineExceeded

    pipeline = Pipeline(tiny_pipeline.detector, tiny_pipeline.scorer, None)
    with pytest.raises(DeadlineExceeded):
        pipeline.ground([make_image(61)], [(0, CAPTIONS[0])], deadline=time.monotonic() - 1)
    assert pipeline.counters.images_detected == 0 and pipeline.counters.requests == 0


def test_deadline_passing_mid_request_drops_the_rest_within_one_chunk(tiny_pipeline):
    import time

    from findbox.pipeline import PROPOSE_CHUNK, DeadlineExceeded

    deadline = time.monotonic() + 3600.0

    def let_the_deadline_pass():
        time.sleep(max(0.0, deadline - time.monotonic()) + 0.01)

    log: list = []
    pipeline = Pipeline(Logged(tiny_pipeline.detector, log, let_the_deadline_pass), tiny_pipeline.scorer, None)
    images = [make_image(300 + i) for i in range(4 * PROPOSE_CHUNK)]
    deadline = time.monotonic() + 0.2  # read by let_the_deadline_pass when the first chunk is detected
    with pytest.raises(DeadlineExceeded):
        pipeline.ground(images, [(i, CAPTIONS[0]) for i in range(len(images))], deadline=deadline)
    # the first chunk was detected; its crops and every later chunk were dropped
    assert log == [("detect", PROPOSE_CHUNK)]
    assert pipeline.counters.crops_embedded == 0 and pipeline.counters.requests == 0
