"""The family-independent half of every scorer (`findbox.score.base.Scorer`), on a fake family."""

import numpy as np
import pytest
import torch

from findbox.score.base import Scorer
from findbox.score.preprocess import CropPreprocess


class MeanColour(Scorer):
    """Image feature: mean colour of the (4, 4) resized crop; text feature: a fixed vector per caption."""

    def __init__(self, max_batch: int = 32, text_cache_size: int = 4096):
        super().__init__(CropPreprocess((4, 4), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), "{}", torch.device("cpu"),
                         max_batch=max_batch, text_cache_size=text_cache_size)
        self.image_batches: list[int] = []
        self.text_batches: list[list[str]] = []

    def image_features(self, pixels):
        self.image_batches.append(len(pixels))
        return pixels.mean(dim=(2, 3)) * 2.0  # not unit length: embed_images must normalise

    def text_features(self, captions):
        self.text_batches.append(list(captions))
        return torch.tensor([[float(len(c)), 1.0, 0.0] for c in captions])

    @property
    def embed_dim(self):
        return 3

    @property
    def info(self):
        return {"kind": "fake", "family": "mean-colour", "prompt": self.prompt}

    def logit_scale_bias(self):
        return 10.0, -2.0


def crops(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(1, 255, (int(rng.integers(1, 9)), int(rng.integers(1, 9)), 3), dtype=np.uint8)
            for _ in range(n)]


def test_the_interface_cannot_be_built_without_a_family():
    with pytest.raises(TypeError, match="abstract"):
        Scorer(CropPreprocess((4, 4), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), "{}", torch.device("cpu"))


@pytest.mark.parametrize("n, max_batch, batches", [(0, 2, []), (1, 2, [1]), (5, 2, [2, 2, 1]), (4, 4, [4])])
def test_embed_images_chunks_by_max_batch_and_normalises(n, max_batch, batches):
    scorer = MeanColour(max_batch=max_batch)
    emb = scorer.embed_images(crops(n))
    assert scorer.image_batches == batches and emb.shape == (n, 3) and emb.dtype == torch.float32
    if n:
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(n))
        torch.testing.assert_close(emb, MeanColour(max_batch=n).embed_images(crops(n)))  # chunking changes nothing


def test_embed_texts_caches_distinct_captions_lru():
    scorer = MeanColour(max_batch=2, text_cache_size=2)
    emb = scorer.embed_texts(["a", "bb", "a", "ccc"])
    assert scorer.text_batches == [["a", "bb"], ["ccc"]]  # distinct misses only, in chunks of max_batch
    assert (scorer.text_cache_hits, scorer.text_cache_misses) == (1, 3)
    torch.testing.assert_close(emb[0], emb[2])
    assert list(scorer._text_cache) == ["a", "ccc"]  # the two most recently used survive
    scorer.embed_texts(["ccc", "bb"])
    assert scorer.text_batches[-1] == ["bb"] and (scorer.text_cache_hits, scorer.text_cache_misses) == (2, 4)
    assert scorer.embed_texts([]).shape == (0, 3)


def test_score_is_scaled_cosine_plus_bias():
    scorer = MeanColour()
    image_emb, text_emb = scorer.embed_images(crops(3)), scorer.embed_texts(["a", "bb"])
    logits = scorer.score(image_emb, text_emb)
    assert logits.shape == (3, 2) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, (image_emb @ text_emb.T).numpy() * 10.0 - 2.0, rtol=1e-6)
