"""Static int8: fixed activation scales, so a request's crops (and captions) go through one forward and each
still scores exactly as it would alone."""

import importlib.util

import numpy as np
import pytest
import torch

from findbox.score.transformers import TransformersScorer
from tests.conftest import CAPTIONS

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnx extra not installed")


class CountingSession:
    """An ONNX Runtime session that counts its runs and the rows they held."""

    def __init__(self, session):
        self.session, self.rows = session, []

    def run(self, outputs, feeds):
        self.rows.append(len(next(iter(feeds.values()))))
        return self.session.run(outputs, feeds)


def crops(count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 255, (int(rng.integers(8, 70)), int(rng.integers(8, 70)), 3), dtype=np.uint8)
            for _ in range(count)]


@pytest.fixture(scope="module")
def static_scorer(tiny_models, tmp_path_factory):
    """The tiny random-weight scorer's towers, quantised with ranges calibrated on crops and captions
    the way `findbox calibrate` collects them (the fp32 scorer's tower inputs)."""
    import onnx

    from findbox.score.int8_static import CalibrationInputs, calibrate_ranges
    from findbox.score.onnx import OnnxScorer, exported_towers

    cache = tmp_path_factory.mktemp("onnx")
    fp32 = TransformersScorer.from_pretrained(tiny_models["scorer"])
    inputs = CalibrationInputs()
    inputs.attach(fp32)
    fp32.embed_images(crops(48, seed=1))
    fp32.embed_texts(CAPTIONS)
    source = TransformersScorer.from_pretrained(tiny_models["scorer"])
    towers = exported_towers(source, cache)
    ranges = calibrate_ranges(towers, inputs.feeds(source, [i.name for i in onnx.load(str(towers["text"])).graph.input]))
    assert ranges["calibration_rows"] == {"image": 48, "text": len(CAPTIONS)}
    return OnnxScorer.from_scorer(source, cache, int8=True, static=ranges)


def test_a_crop_scores_exactly_the_same_at_batch_1_and_batch_32(static_scorer):
    scorer = static_scorer
    assert scorer.info["backend"] == "onnxruntime-static" and scorer.info["precision"] == "int8"
    scorer._image = CountingSession(scorer._image)
    batch = crops(32, seed=2)
    together = scorer.embed_images(batch)
    assert scorer._image.rows == [32]  # one forward for the 32 crops, not one per crop (dynamic int8)
    alone = torch.cat([scorer.embed_images([crop]) for crop in batch])
    assert scorer._image.rows == [32] + [1] * 32
    torch.testing.assert_close(together, alone, atol=0, rtol=0)
    # and a crop keeps its embedding whatever its batch mates: very different companions move no scale
    loud = [np.full((25, 25, 3), v, np.uint8) for v in (0, 255)]
    torch.testing.assert_close(scorer.embed_images([*loud, batch[5]])[-1:], alone[5:6], atol=0, rtol=0)


def test_a_caption_embeds_exactly_the_same_alone_and_batched(static_scorer):
    scorer = static_scorer
    scorer._text_cache.clear()
    together = scorer.embed_texts(CAPTIONS)
    scorer._text_cache.clear()
    alone = torch.cat([scorer.embed_texts([c]) for c in CAPTIONS])
    torch.testing.assert_close(together, alone, atol=0, rtol=0)


def test_static_int8_stays_close_to_fp32(static_scorer, tiny_models):
    """Calibrated scales keep the embeddings near fp32's (random weights: a loose, sanity bound)."""
    fp32 = TransformersScorer.from_pretrained(tiny_models["scorer"])
    batch = crops(16, seed=3)
    cosine = torch.nn.functional.cosine_similarity(fp32.embed_images(batch), static_scorer.embed_images(batch))
    assert cosine.min() > 0.95, cosine


def test_ranges_that_miss_a_tower_are_refused_naming_it(static_scorer, tmp_path):
    from findbox.score.int8_static import static_tower_paths

    with pytest.raises(ValueError, match=r"static ranges for \['image', 'text'\], not for \['image_32'\]"):
        static_tower_paths({**static_scorer.paths, "image_32": tmp_path / "image_32.onnx"},
                           {"method": "MinMax", "towers": {"image": {}, "text": {}}})
