"""Score fusion: ranking by the scorer logit alone or combined with the detector confidence."""

from __future__ import annotations

import numpy as np
import pytest

from findbox.boxes import Candidates
from findbox.config import ScoreFusion
from findbox.pipeline import choose, rank_scores


def cands(match, det):
    return Candidates(np.zeros((len(match), 4)) + [0, 0, 1, 1], np.array(det), np.array(match))


@pytest.mark.parametrize("name, match, det, fusion, weight, expected", [
    ("scorer ignores det", [1.0, 0.9], [0.1, 0.9], ScoreFusion.SCORER, 1.0, 0),
    ("product lets det break a near tie", [1.0, 0.9], [0.1, 0.9], ScoreFusion.PRODUCT, 1.0, 1),
    ("product weight 0 is scorer", [1.0, 0.9], [0.1, 0.9], ScoreFusion.PRODUCT, 0.0, 0),
    ("product keeps a clear logit win", [5.0, 0.9], [0.1, 0.9], ScoreFusion.PRODUCT, 1.0, 0),
    ("zero det conf ranks last, no -inf", [1.0, 0.0], [0.0, 0.5], ScoreFusion.PRODUCT, 1.0, 1),
    ("string option", [1.0, 0.9], [0.1, 0.9], "product", 1.0, 1),
])
def test_choose_with_fusion(name, match, det, fusion, weight, expected):
    c = cands(match, det)
    assert choose(c, "grey missile", fusion, weight) == expected
    scores = rank_scores(c, fusion, weight)
    assert scores.shape == (len(match),) and np.isfinite(scores).all()


def test_rank_scores_product_formula():
    c = cands([-8.0, -9.0, -10.0], [0.5, 0.25, 1.0])
    np.testing.assert_allclose(rank_scores(c, ScoreFusion.PRODUCT, 2.0), [-8 + 2 * np.log(0.5), -9 + 2 * np.log(0.25),
                                                                         -10.0], rtol=1e-6)
    np.testing.assert_array_equal(rank_scores(c), c.match_score)


def test_choose_keeps_its_old_contract():
    assert choose(cands([0.1, 0.3], [0.9, 0.1]), "grey missile") == 1  # the logit, as before
    assert choose(cands([0.1, 0.3], [0.9, 0.1]), "  ", ScoreFusion.PRODUCT) == 0  # empty caption: det conf
    assert choose(Candidates.empty(), "grey missile", ScoreFusion.PRODUCT) == -1


def test_pipeline_uses_its_fusion(tiny_models):
    from findbox.factory import load_pipeline
    from tests.conftest import TINY_DETECTION, make_image

    pipeline = load_pipeline(detector=str(tiny_models["detector"]), scorer=str(tiny_models["scorer"]),
                             no_upscaler=True, device="cpu", detection=dict(TINY_DETECTION),
                             score_fusion="product", fusion_weight=50.0)
    assert pipeline.score_fusion == ScoreFusion.PRODUCT and pipeline.fusion_weight == 50.0
    g = pipeline.ground_one(make_image(0), "grey missile")
    assert g.chosen == int(np.argmax(rank_scores(g.candidates, ScoreFusion.PRODUCT, 50.0)))
    # a large weight makes the detector's confidence dominate the tiny random scorer
    assert g.chosen == int(np.argmax(g.candidates.det_score))
