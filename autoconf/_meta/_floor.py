"""Whether a config meets the SLO at all: the hurdle in front of the capacity model.

A config whose p99 misses the SLO even at the lightest load (a slow GPU under a tight SLO, many
instances sharing one GPU, too few cores) has no capacity at the SLO: its score sits at the
capacity floor. That is a threshold, not a size: the log-capacity regression can only read a
floor as a capacity far below its neighbours and move its level and spread for every config.
What predicts a floor is which configs floored on the training models that behave like the
target. So ``P(floor)`` of every unit is a Bayesian average over the training models' floor
patterns: each model starts with its kops-feature similarity to the target times the similarity
of its SLO to the target's (:func:`slo_similarity`), and is re-weighted by
how well its pattern matches the target's measured floors and non-floors (a mismatch at one
config has probability :data:`FLOOR_MISMATCH`). The probability that a config serves a load is
then ``(1 - P(floor))`` times the capacity model's.
"""

from __future__ import annotations

import math

import numpy as np

#: The chance that a training model's floor pattern disagrees with the target's at one config.
#: Measured (meta only, shipped knowledge; results/shipped/README.md, stop 23): 0.1 and 0.03.
FLOOR_MISMATCH = 0.1


def slo_similarity(
    train_slo_ms: np.ndarray | None, target_slo_ms: float | None
) -> np.ndarray | None:
    """How alike each training model's SLO is to the target's: a Gaussian in log SLO whose
    width is the training SLOs' own spread (None where either is unknown or all are equal). A
    model of the same size under a far looser SLO meets it on GPUs where the target cannot."""
    if train_slo_ms is None or target_slo_ms is None or target_slo_ms <= 0:
        return None
    x = np.log(train_slo_ms)
    sd = float(x.std())
    if sd <= 0:
        return None
    return np.exp(-0.5 * ((x - math.log(target_slo_ms)) / sd) ** 2)


class FloorModel:
    """``P(floor)`` per unit from the training models' floors (``floors``: K x U booleans) and
    each model's prior weight (``weights``: K, relative: only their ratios count)."""

    def __init__(self, floors: np.ndarray, weights: np.ndarray) -> None:
        self.floors = floors.astype(float)
        self.log_weights = np.log(np.maximum(weights, 1e-300))

    def probability(self, units: np.ndarray, floored: np.ndarray) -> np.ndarray:
        """``P(floor)`` of every unit given the target's measured ``units`` and whether each
        ``floored``."""
        log_w = self.log_weights.copy()
        if len(units):
            agree = (self.floors[:, units] == floored[None, :].astype(float)).sum(1)
            log_w += agree * math.log1p(-FLOOR_MISMATCH) + (len(units) - agree) * math.log(
                FLOOR_MISMATCH
            )
        w = np.exp(log_w - log_w.max())
        return (w / w.sum()) @ self.floors
