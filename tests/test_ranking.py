"""Ranking: score fusion, tie-break and fallback box, on hand-made candidates (no models)."""

from __future__ import annotations

import numpy as np
import pytest

from findbox.boxes import Candidates
from findbox.config import Fallback, ScoreFusion
from findbox.ranking import Ranking

SCORER, PRODUCT = ScoreFusion.SCORER, ScoreFusion.PRODUCT


def cands(match, det) -> Candidates:
    """Box k is (k, k, k + 10, k + 10), so a picked box tells which candidate won."""
    k = np.arange(len(det), dtype=np.float32)[:, None]
    return Candidates(np.hstack([k, k, k + 10, k + 10]), np.array(det), np.array(match))


@pytest.mark.parametrize("name, match, det, caption, ranking, expected", [
    ("no candidates", [], [], "grey missile", Ranking(), -1),
    ("no candidates, product", [], [], "grey missile", Ranking(PRODUCT), -1),
    ("the scorer decides", [0.1, 0.9, 0.3], [0.5, 0.1, 0.9], "grey missile", Ranking(), 1),
    ("float-noise tie: more confident box", [0.7, 0.7 + 1e-7, 0.2], [0.9, 0.1, 0.5], "grey missile", Ranking(), 0),
    ("tie relative to a large score", [1000.0, 1000.005, 0.0], [0.9, 0.1, 0.5], "grey missile", Ranking(), 0),
    ("a real difference is not a tie", [0.7, 0.7 + 1e-2, 0.2], [0.9, 0.1, 0.5], "grey missile", Ranking(), 1),
    ("all NaN: detector confidence", [np.nan, np.nan], [0.2, 0.8], "grey missile", Ranking(), 1),
    ("NaN ignored beside a score", [np.nan, 0.1, 0.3], [0.9, 0.8, 0.1], "grey missile", Ranking(), 2),
    ("empty caption: most confident", [0.1, 0.3], [0.9, 0.1], "  ", Ranking(PRODUCT), 0),
    ("scorer ignores det", [1.0, 0.9], [0.1, 0.9], "grey missile", Ranking(SCORER), 0),
    ("product lets det break a near tie", [1.0, 0.9], [0.1, 0.9], "grey missile", Ranking(PRODUCT, 1.0), 1),
    ("product weight 0 is scorer", [1.0, 0.9], [0.1, 0.9], "grey missile", Ranking(PRODUCT, 0.0), 0),
    ("product keeps a clear logit win", [5.0, 0.9], [0.1, 0.9], "grey missile", Ranking(PRODUCT, 1.0), 0),
    ("zero det conf ranks last, no -inf", [1.0, 0.0], [0.0, 0.5], "grey missile", Ranking(PRODUCT, 1.0), 1),
    ("string options", [1.0, 0.9], [0.1, 0.9], "grey missile", Ranking("product", 1, "zeros"), 1),
])
def test_pick(name, match, det, caption, ranking, expected):
    c = cands(match, det)
    xyxy, chosen = ranking.pick(c, caption, (200, 120))
    assert chosen == expected, name
    scores = ranking.scores(c)
    assert scores.shape == (len(det),)
    assert np.isfinite(scores).all() or np.isnan(match).any()  # the log floor: never -inf
    assert xyxy.shape == (4,) and xyxy.dtype == np.float32
    if chosen >= 0:
        np.testing.assert_array_equal(xyxy, c.xyxy[chosen])
        xyxy[0] = -1  # the answer is a copy: editing it leaves the candidates alone
        assert c.xyxy[chosen, 0] == chosen


@pytest.mark.parametrize("fallback, image_wh, expected", [
    (Fallback.IMAGE, (200, 120), [0, 0, 200, 120]),
    (Fallback.IMAGE, (1, 1), [0, 0, 1, 1]),
    (Fallback.ZEROS, (200, 120), [0, 0, 0, 0]),
    ("image", (1520, 870), [0, 0, 1520, 870]),
])
def test_fallback_box_when_nothing_was_detected(fallback, image_wh, expected):
    xyxy, chosen = Ranking(fallback=fallback).pick(Candidates.empty(), "grey missile", image_wh)
    assert chosen == -1 and xyxy.dtype == np.float32
    np.testing.assert_array_equal(xyxy, expected)


def test_scores_product_formula_and_scorer_identity():
    c = cands([-8.0, -9.0, -10.0], [0.5, 0.25, 1.0])
    np.testing.assert_allclose(Ranking(PRODUCT, 2.0).scores(c), [-8 + 2 * np.log(0.5), -9 + 2 * np.log(0.25), -10.0],
                               rtol=1e-6)
    assert Ranking(PRODUCT, 2.0).scores(c).dtype == np.float32
    np.testing.assert_array_equal(Ranking(SCORER).scores(c), c.match_score)


def test_product_floors_det_score_under_log():
    scores = Ranking(PRODUCT, 1.0).scores(cands([0.0, 0.0], [0.0, 1e-9]))
    np.testing.assert_allclose(scores, [np.log(1e-6)] * 2, rtol=1e-6)


def test_options_are_checked_and_converted():
    r = Ranking("product", 2, "zeros")
    assert (r.fusion, r.weight, r.fallback) == (PRODUCT, 2.0, Fallback.ZEROS)
    with pytest.raises(ValueError, match="weight"):
        Ranking(PRODUCT, -1.0)
    with pytest.raises(ValueError, match="weight"):
        Ranking(PRODUCT, float("nan"))
    with pytest.raises(ValueError):
        Ranking("best")
