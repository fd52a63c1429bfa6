"""Calibration of the posterior stopping rule on the training models: pseudo-searches whose
states say how often a predicted gap meant the incumbent was already within 5 % of the optimum."""

from __future__ import annotations

import numpy as np

#: The stopping rule's tolerance: the incumbent within this fraction of the optimum.
STOP_WITHIN = 0.05
#: Pseudo-search depth per training model when calibrating the stopping rule.
STOP_STATE_DEPTH = 100


def pseudo_search_states(S: np.ndarray, sign: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """States of pseudo-searches on the training models, for calibrating the stopping rule.

    Each training model in turn is the target: its configs are measured in the order of the
    other models' mean (what the search does before its observations say otherwise), and after
    each measurement the state records the *predicted gap* (the best unmeasured config's
    prediction, the others' mean shifted by the level seen so far, relative to the incumbent)
    , whether the incumbent is truly within 5% of that model's optimum and its relative regret."""
    K, U = S.shape
    gaps, within, regret = [], [], []
    for k in range(K):
        rest = sign * (S.sum(0) - S[k]) / (K - 1)
        y = sign * S[k]
        order = np.argsort(-rest, kind="stable")
        opt = float(y.max())
        bound = opt - STOP_WITHIN * abs(opt)
        inc = -np.inf
        resid = 0.0
        # best unmeasured prediction: the first unmeasured config in the order, found by a
        # running pointer (rest is sorted along the order)
        for n in range(min(U - 1, STOP_STATE_DEPTH)):
            u = order[n]
            inc = max(inc, float(y[u]))
            resid += float(y[u] - rest[u])
            level = resid / (n + 1)
            nxt = float(rest[order[n + 1]]) + level
            gaps.append((nxt - inc) / max(abs(inc), 1e-12))
            within.append(inc >= bound - 1e-12)
            regret.append((opt - inc) / max(abs(inc), 1e-12))
    return np.array(gaps), np.array(within, dtype=float), np.array(regret)
