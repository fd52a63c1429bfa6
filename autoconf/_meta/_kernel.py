"""The residual kernel: how the surrogate's per-unit residual correlates between units that
share most of their knobs, learned from the training models."""

from __future__ import annotations

import numpy as np

from .._space import SearchSpace
from .._types import Config

#: A residual correlation between two values of a dimension needs this many unit pairs.
KERNEL_MIN_PAIRS = 30
#: Below this correlation in every dimension the residuals are modelled as independent.
KERNEL_MIN_CORRELATION = 0.2


class ResidualKernel:
    """Correlation of the surrogate's per-unit residual between two units: a product over
    the unit's dimensions of a correlation between the two values, learned from the training
    models' residuals (units that differ in one dimension only). On the simulated cluster a
    T4 unit's residual correlates ~0.9 with the same unit on the next GPU type; on the Falcon
    tables, where the residual is per-config noise, no correlation reaches
    ``KERNEL_MIN_CORRELATION`` and the residuals stay independent."""

    def __init__(self, codes: np.ndarray, matrices: list[np.ndarray]) -> None:
        self.codes = codes  # units x dims: the index of each unit's value per dimension
        self.matrices = matrices  # per dimension: values x values correlation

    @classmethod
    def learn(
        cls,
        space: SearchSpace,
        dims: list[str],
        configs: list[Config],
        z: np.ndarray,
        informative: np.ndarray | None,
    ) -> ResidualKernel | None:
        """From standardized residuals ``z`` (models x units); ``informative`` masks entries
        that carry no residual (a capacity at the floor). None when no dimension correlates."""
        value_lists = [space.values(d) for d in dims]
        codes = np.array(
            [[vals.index(getattr(c, d)) for d, vals in zip(dims, value_lists)] for c in configs]
        )
        sizes = [len(vals) for vals in value_lists]
        ok = np.ones_like(z, dtype=bool) if informative is None else informative
        matrices = []
        for j, n in enumerate(sizes):
            # units grouped by their values in every other dimension: unit_at[g, a] is the
            # unit of group g with value a in dimension j (-1: not in the space)
            rest = [k for k in range(len(sizes)) if k != j]
            group = np.ravel_multi_index(tuple(codes[:, rest].T), [sizes[k] for k in rest])
            groups, group = np.unique(group, return_inverse=True)
            unit_at = np.full((len(groups), n), -1)
            unit_at[group, codes[:, j]] = np.arange(len(codes))
            R = np.eye(n)
            for a in range(n):
                for b in range(a + 1, n):
                    pair = (unit_at[:, a] >= 0) & (unit_at[:, b] >= 0)
                    ia, ib = unit_at[pair, a], unit_at[pair, b]
                    both = ok[:, ia] & ok[:, ib]
                    za, zb = z[:, ia][both], z[:, ib][both]
                    if len(za) < KERNEL_MIN_PAIRS:
                        continue
                    rho = float(np.sum(za * zb) / np.sqrt(np.sum(za**2) * np.sum(zb**2) + 1e-12))
                    R[a, b] = R[b, a] = max(rho, 0.0)
            matrices.append(_nearest_correlation(R))
        if all(np.max(R - np.eye(len(R)), initial=0.0) < KERNEL_MIN_CORRELATION for R in matrices):
            return None
        return cls(codes, matrices)

    def cross(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Correlation between every unit in ``rows`` and every unit in ``cols``."""
        out = np.ones((len(rows), len(cols)))
        for j, R in enumerate(self.matrices):
            out *= R[self.codes[rows, j]][:, self.codes[cols, j]]
        return out


def _nearest_correlation(R: np.ndarray, floor: float = 0.02) -> np.ndarray:
    """A positive-definite correlation matrix near ``R`` (eigenvalues clipped, unit diagonal),
    so that products of them are a valid kernel."""
    w, V = np.linalg.eigh(R)
    R = (V * np.maximum(w, floor)) @ V.T
    d = np.sqrt(np.diag(R))
    return R / d[:, None] / d[None, :]
