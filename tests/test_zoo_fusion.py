"""Score fusion end to end: a pipeline loaded with product ranking uses it (the rules: tests/test_ranking.py)."""

from __future__ import annotations

import numpy as np

from findbox.config import ScoreFusion
from findbox.ranking import Ranking


def test_pipeline_uses_its_fusion(tiny_models):
    from findbox.factory import load_pipeline
    from tests.conftest import TINY_DETECTION, make_image

    pipeline = load_pipeline(detector=str(tiny_models["detector"]), scorer=str(tiny_models["scorer"]),
                             no_upscaler=True, device="cpu", detection=dict(TINY_DETECTION),
                             score_fusion="product", fusion_weight=50.0)
    assert pipeline.ranking == Ranking(ScoreFusion.PRODUCT, 50.0)
    g = pipeline.ground_one(make_image(0), "grey missile")
    assert g.chosen == int(np.argmax(pipeline.ranking.scores(g.candidates)))
    # a large weight makes the detector's confidence dominate the tiny random scorer
    assert g.chosen == int(np.argmax(g.candidates.det_score))
