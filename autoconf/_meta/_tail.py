"""Per-unit residual variance by prior level, and the empirical residual distribution per
level (the tail the stopping rule reads)."""

from __future__ import annotations

import math

import numpy as np


def binned_variance(
    level: np.ndarray, resid: np.ndarray, bins: int = 20, robust: bool = False
) -> tuple[np.ndarray, Tail]:
    """Per-unit residual variance (the mean squared residual of units at a similar prior
    level) and the empirical distribution of the standardized residuals per level bin."""
    U = level.shape[0]
    bins = max(1, min(bins, U // 5))
    edges = np.quantile(level, np.linspace(0, 1, bins + 1))
    b = np.clip(np.searchsorted(edges, level, side="right") - 1, 0, bins - 1)
    out = np.empty(U)
    samples = []
    for k in range(bins):
        sel = b == k
        r = resid[:, sel].ravel()
        if not len(r):
            samples.append(np.zeros(1))
            continue
        var = float(np.mean(r**2))
        if robust:  # (MAD) scale: configs that fail outright must not inflate the rest
            mad = float(np.median(np.abs(r - np.median(r))))
            var = max((1.4826 * mad) ** 2, 0.1 * var)
        var = max(var, 1e-12)
        out[sel] = var
        samples.append(r / math.sqrt(var))
    return out, Tail(b, samples)


class Tail:
    """Empirical residual distribution per level bin (standardized): the tail probabilities of
    the stopping rule come from what the training models' residuals did, not from a Gaussian
    (bounded residuals make a Gaussian tail far too pessimistic)."""

    def __init__(self, bin_of_unit: np.ndarray, samples: list[np.ndarray]) -> None:
        self.bin_of_unit = bin_of_unit
        self.sorted = [np.sort(z) for z in samples]
        # suffix sums for E[(Z - z0)+]
        self.suffix = [np.concatenate([np.cumsum(z[::-1])[::-1], [0.0]]) for z in self.sorted]

    def sf(self, units: np.ndarray, z0: np.ndarray) -> np.ndarray:
        """P(Z > z0) per unit; beyond the largest sample a decaying 1/(2n) keeps tails possible."""
        out = np.empty(len(units))
        bins = self.bin_of_unit[units]
        for k in np.unique(bins):
            sel = bins == k
            z = self.sorted[k]
            above = len(z) - np.searchsorted(z, z0[sel], side="right")
            beyond = np.exp(-np.maximum(z0[sel] - z[-1], 0.0)) * 0.5
            out[sel] = np.where(above > 0, above, beyond) / len(z)
        return out

    def partial(self, units: np.ndarray, z0: np.ndarray) -> np.ndarray:
        """E[(Z - z0)+] per unit."""
        out = np.empty(len(units))
        bins = self.bin_of_unit[units]
        for k in np.unique(bins):
            sel = bins == k
            z = self.sorted[k]
            i = np.searchsorted(z, z0[sel], side="right")
            out[sel] = (self.suffix[k][i] - (len(z) - i) * z0[sel]) / len(z)
        return out
