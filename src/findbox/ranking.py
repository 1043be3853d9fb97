"""Choosing the answer among an image's candidates: score fusion, tie-break, fallback box.

One `Ranking` is held by the pipeline and by an evaluation run, and the reference
loop uses the pipeline's: eval's re-chosen answers (conf sweep, scorer comparison)
are the server's answers by construction. Pure: no model runs here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from findbox.boxes import Candidates
from findbox.config import Fallback, ScoreFusion

# det_score floor under log: a zero confidence ranks last without producing -inf
MIN_DET_SCORE = 1e-6

TIE_TOLERANCE = 1e-5  # relative; float32 batching noise is ~1e-7


@dataclass(frozen=True)
class Ranking:
    """How the winning candidate is chosen, and what answers when there is none.

    fusion: scorer ranks by match_score alone (as the original); product adds
        weight * log(det_score).
    weight: >= 0; the exponent of det_score under product (0 equals scorer).
    fallback: the box when nothing was detected: the whole image or zeros.
    """

    fusion: ScoreFusion = ScoreFusion.SCORER
    weight: float = 1.0
    fallback: Fallback = Fallback.IMAGE

    def __post_init__(self):
        # strings from a TOML file or a caller become Enums here, once
        object.__setattr__(self, "fusion", ScoreFusion(self.fusion))
        object.__setattr__(self, "fallback", Fallback(self.fallback))
        weight = float(self.weight)
        if not weight >= 0.0:
            raise ValueError(f"ranking.weight: expected a number >= 0, got {self.weight!r}")
        object.__setattr__(self, "weight", weight)

    def scores(self, candidates: Candidates) -> np.ndarray:
        """(N,) float32 ranking value per candidate; the highest wins.

        scorer:  match_score (the scorer logit), as the original ranked.
        product: match_score + weight * log(det_score); for a sigmoid scorer with a very
                 negative logit, logit ~ log sigmoid(logit), so this ranks like
                 p_match * det_conf ** weight.
        """
        if self.fusion == ScoreFusion.SCORER:
            return candidates.match_score
        det = np.log(np.maximum(candidates.det_score, np.float32(MIN_DET_SCORE)))
        return (candidates.match_score + np.float32(self.weight) * det).astype(np.float32)

    def choose(self, candidates: Candidates, caption: str) -> int:
        """Index of the winning candidate: highest `scores`; -1 when there is none.

        An empty caption describes nothing, so the most confident detection wins; so does
        it when no candidate has a finite score (e.g. all NaN).
        """
        if len(candidates) == 0:
            return -1
        if not caption.strip():
            return int(np.argmax(candidates.det_score))
        scores = np.asarray(self.scores(candidates), dtype=np.float64)
        best = np.nanmax(scores) if np.isfinite(scores).any() else np.nan
        if not np.isfinite(best):
            return int(np.argmax(candidates.det_score))
        # Scores equal within float noise (identical boxes give identical crops) are a tie, and
        # batch size alone can reorder them at the 1e-7 level: break ties by detector confidence
        # so that batched and one-at-a-time runs pick the same box.
        tied = scores >= best - TIE_TOLERANCE * max(1.0, abs(best))
        return int(np.flatnonzero(tied)[np.argmax(candidates.det_score[tied])])

    def fallback_xyxy(self, image_wh: tuple[int, int]) -> np.ndarray:
        """(4,) float32 xyxy in image pixels: the whole image, or zeros."""
        w, h = image_wh
        if self.fallback == Fallback.IMAGE:
            return np.array([0, 0, w, h], dtype=np.float32)
        return np.zeros(4, dtype=np.float32)

    def pick(self, candidates: Candidates, caption: str, image_wh: tuple[int, int]) -> tuple[np.ndarray, int]:
        """(xyxy (4,) float32 in original-image pixels, chosen index or -1 for the fallback box).

        image_wh: (W, H) of the image, for the fallback box. The box is a copy: a caller may edit it.
        """
        chosen = self.choose(candidates, caption)
        if chosen < 0:
            return self.fallback_xyxy(image_wh), -1
        return candidates.xyxy[chosen].copy(), chosen
