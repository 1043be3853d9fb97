"""The image cache: LRU bounds, content keys, and a pipeline that skips repeated images."""

import numpy as np
import pytest
import torch

from findbox.boxes import Candidates
from findbox.cache import ImageCache, ImageWork, image_key
from findbox.detect.ultralytics import Detector
from findbox.pipeline import Pipeline
from findbox.testing.reference import reference_ground
from tests.conftest import CAPTIONS, make_image


def work(n: int, dim: int = 8) -> ImageWork:
    return ImageWork(Candidates(np.zeros((n, 4)), np.ones(n)), torch.zeros(n, dim), (20, 10))


def test_key_follows_pixels_not_identity():
    a = make_image(0)
    assert image_key(a) == image_key(a.copy())
    b = a.copy()
    b[0, 0, 0] ^= 1
    assert image_key(a) != image_key(b)
    assert image_key(a[:60]) != image_key(a[60:])  # same bytes count, different pixels
    flat = np.zeros((10, 20, 3), np.uint8)
    assert image_key(flat) != image_key(flat.reshape(20, 10, 3))  # same bytes, different shape


def test_lru_evicts_oldest_by_entries():
    cache = ImageCache(max_entries=2)
    cache.put(b"a", work(1))
    cache.put(b"b", work(1))
    assert cache.get(b"a") is not None  # a is now the most recent
    cache.put(b"c", work(1))
    assert cache.get(b"b") is None and cache.get(b"a") is not None and cache.get(b"c") is not None
    assert (cache.hits, cache.misses, len(cache)) == (3, 1, 2)


def test_lru_evicts_by_bytes_and_skips_oversized_entries():
    one = work(10).nbytes
    cache = ImageCache(max_entries=100, max_bytes=2 * one + 10)
    for key in (b"a", b"b", b"c"):
        cache.put(key, work(10))
    assert len(cache) == 2 and cache.get(b"a") is None and cache.nbytes <= cache.max_bytes
    cache.put(b"huge", work(1000))
    assert cache.get(b"huge") is None and len(cache) == 2


def test_zero_entries_disables():
    cache = ImageCache(0)
    cache.put(b"a", work(1))
    assert len(cache) == 0 and cache.get(b"a") is None


@pytest.mark.parametrize("bad", [-1, 1.5, True, "4"])
def test_bad_bounds_are_rejected(bad):
    with pytest.raises(ValueError, match="max_entries"):
        ImageCache(bad)


def assert_same_choice(got, want):
    """Same box, or (random tiny models score boxes nearly alike) an equally scored one."""
    if got.chosen != want.chosen:
        scores = want.candidates.match_score
        assert abs(scores[got.chosen] - scores[want.chosen]) < 1e-4, (got.chosen, want.chosen, scores)


def test_repeated_image_skips_detector_and_scorer_work(tiny_pipeline):
    plain = tiny_pipeline
    cached = Pipeline(plain.detector, plain.scorer, plain.upscaler, plain.ranking.fallback, image_cache=ImageCache(16))
    images = [make_image(30), make_image(31)]
    first = cached.ground(images, [(0, CAPTIONS[0]), (1, CAPTIONS[1])])
    c = cached.counters
    assert (c.images_detected, c.image_cache_hits, c.image_cache_misses) == (2, 0, 2)
    crops = c.crops_embedded
    # one caption per request, the same images again (a new array with the same pixels)
    for k, caption in enumerate(CAPTIONS[:4]):
        image = images[k % 2].copy()
        got = cached.ground_one(image, caption)
        want = reference_ground(plain, image, caption)
        np.testing.assert_array_equal(got.candidates.xyxy, want.candidates.xyxy)
        np.testing.assert_allclose(got.candidates.match_score, want.candidates.match_score, rtol=1e-4, atol=1e-4)
        assert_same_choice(got, want)
    assert c.images_detected == 2 and c.crops_embedded == crops  # no detector or scorer work on a hit
    assert (c.image_cache_hits, c.image_cache_misses) == (4, 2)
    np.testing.assert_array_equal(first[0].candidates.xyxy, cached.ground_one(images[0], "x").candidates.xyxy)


def test_an_image_gets_the_same_boxes_whatever_else_the_request_carries(tiny_pipeline):
    # mixed sizes in one predict call would be letterboxed to a square; grouping by shape avoids it
    detector: Detector = tiny_pipeline.detector
    a, b = make_image(40), make_image(41, 160, 90)
    together = detector.detect([a, b, a.copy()])
    for image, got in zip([a, b, a], together):
        np.testing.assert_allclose(got.xyxy, detector.detect([image])[0].xyxy, atol=1e-3)


def test_editing_a_result_in_place_does_not_change_the_cache():
    cache = ImageCache(4)
    original = work(3)
    cache.put(b"a", original)
    original.candidates.xyxy[:] = 99  # the caller's copy
    got = cache.get(b"a")
    got.candidates.xyxy[:] = 7
    got.embeddings[:] = 7
    again = cache.get(b"a")
    assert (again.candidates.xyxy == 0).all() and (again.embeddings == 0).all()


def test_encoded_image_hit_skips_decoding(tiny_pipeline, monkeypatch):
    import io

    from PIL import Image

    from findbox.images import EncodedImage

    buf = io.BytesIO()
    Image.fromarray(make_image(70, 160, 90)).save(buf, format="PNG")
    cached = Pipeline(tiny_pipeline.detector, tiny_pipeline.scorer, None, image_cache=ImageCache(4))
    first = cached.ground_one(EncodedImage.probe(buf.getvalue()), CAPTIONS[0])

    def no_decode(self):
        raise AssertionError("a cache hit must not decode")

    monkeypatch.setattr(EncodedImage, "decode", no_decode)
    # the same bytes in a later request: keyed by the bytes, found before any decoding
    again = cached.ground_one(EncodedImage.probe(buf.getvalue()), CAPTIONS[0])
    assert cached.counters.image_cache_hits == 1 and cached.counters.images_detected == 1
    assert again.image_wh == first.image_wh == (160, 90)
    np.testing.assert_array_equal(again.xyxy, first.xyxy)


# --- the caption cache -------------------------------------------------------------------------


def test_text_cache_evicts_by_bytes_counting_the_caption_text():
    from findbox.cache import TextCache

    emb = torch.zeros(8)
    short = TextCache.entry_bytes("a", emb)
    cache = TextCache(max_entries=100, max_bytes=3 * short + 10)
    for caption in ("a", "b", "c"):
        cache.put(caption, emb)
    assert list(cache) == ["a", "b", "c"] and cache.nbytes == 3 * short
    assert cache.get("a") is not None  # now the most recent
    cache.put("d" * 100, emb)  # ~100 bytes of text: the two least recently used make room
    assert list(cache) == ["a", "d" * 100] and cache.nbytes <= cache.max_bytes
    cache.put("x" * 10_000, emb)  # larger than the whole bound: not stored, nothing evicted for it
    assert list(cache) == ["a", "d" * 100] and cache.get("x" * 10_000) is None


def test_text_cache_still_bounds_by_count_and_rejects_bad_bounds():
    from findbox.cache import TextCache

    cache = TextCache(max_entries=2)
    for caption in ("a", "b", "c"):
        cache.put(caption, torch.zeros(4))
    assert list(cache) == ["b", "c"]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="text cache: expected max_bytes"):
            TextCache(2, bad)


def test_scorer_text_cache_holds_long_captions_within_its_byte_bound(tiny_models):
    from findbox.factory import load_pipeline

    pipe = load_pipeline(detector=str(tiny_models["detector"]), scorer=str(tiny_models["scorer"]), no_upscaler=True,
                         device="cpu", precision="fp32", image_cache=0, text_cache_size=1000, text_cache_mb=1)
    scorer = pipe.scorer
    assert scorer.text_cache_bytes == 1024 * 1024
    captions = [f"{k} " + "a very long caption " * 5_000 for k in range(30)]  # ~100 KB of text each
    emb = scorer.embed_texts(captions)
    assert emb.shape == (30, scorer.embed_dim)  # every caption answered, cached or not
    assert 0 < len(scorer._text_cache) < 30 and scorer._text_cache.nbytes <= 1024 * 1024
    assert list(scorer._text_cache) == captions[-len(scorer._text_cache):]  # the most recent are kept
