"""The math of the ``meta`` sampler: Bayesian optimization over a discrete space with a learned
prior. The Optuna adapter is :mod:`autoconf.samplers._meta`; its stopping rule
:mod:`autoconf.stopping._posterior`.

The surrogate is a Bayesian linear model of a config's *score* (see ``autoconf.prior``)::

    score(c) = mu(c) + b0 + b1 * mu(c) + b2 * g(c) + sum_k w_k * D_k(c) + sum_d v_d[c_d]
               + sum_d t_d * log2(c_d) + e(c)

``mu`` is the prior's mean over the training models, ``g`` what a regression on the target's
kops features and the configs' GPU specs predicts (``Prior.predict_from_features``; its weight
``b2`` learned from the target's measurements; at a target load the leading ``mu(c)`` is instead
whichever of ``mu``, ``(mu + g) / 2``, ``g`` and the same two for ``g`` plus each config's own
bias (``FeaturePrediction.per_config``) the target's measurements are likeliest under, so that a
model far bigger than its history follows its features from the first measurement),
``D_k`` each training model's deviation from ``mu``: the posterior over ``w`` re-weights the
training models by how well they explain the target's observations so far (a Gaussian process
whose kernel is the empirical covariance across models). ``v`` are main effects of each
dimension's values (what a plain BO learns when the knowledge base is empty), ``t`` a trend in
the log of every ordered knob with three or more values (batch size, cores: a rise measured over
batch sizes 2-16 extrapolates to 32, which one-hot effects cannot), and ``e`` a
per-config residual whose variance is the training models' leave-one-out residual variance at
that prior level (heteroscedastic, so the tail is covered).
Where the training models' residuals correlate between units that differ in one knob (on the
simulated cluster: the same unit on a neighbouring GPU type), ``e`` is a Gaussian process
whose kernel is that learned correlation (:class:`ResidualKernel`), so a measurement also
informs the units that share most of its knobs; elsewhere (the Falcon tables) it stays
independent. With the kernel, the scales of ``e`` and of ``v`` are chosen with the prior mean
by the target's evidence (a family whose knobs barely matter narrows its siblings' spread).
The posterior is refit from the study's trials at every suggestion (no state kept between
trials, so threads and processes sharing a storage see the same history).

Acquisition:

* without a target load (maximise the score): the upper bound ``mean + 0.3 sd`` (UCB), first
  among the configs one knob away from a *surprise* (a measurement more than 2 residual sds
  above the fit; only with independent residuals): on the Falcon tables good configs come in
  blocks that no training table shares, and a surprise is the only sign of one;
* at a target load (minimise cost): the score is one replica's log capacity at the SLO, modelled
  per *base config* (every dimension but replicas). The replicas a load needs follow from it
  (throughput is about linear in replicas), cost is known in advance, so the acquisition is the
  expected improvement in cost times the probability that the config serves the load. That
  probability is the capacity posterior's times the probability that the config meets the SLO
  at all (:mod:`._floor`): a config that misses it at any load (a slow GPU under a tight SLO)
  is a threshold the history's floor patterns predict, not a size the regression can spread.

Running trials are pending: they are never re-suggested and are told their posterior mean
(constant liar), so that K parallel workers spread out. Measured configs are never suggested,
nor configs an out-of-memory rules out (:mod:`autoconf._implied`; at a target load their base
configs are modelled at the capacity floor). A crash or a timeout implies nothing beyond itself.

Rooms: ``_surrogate`` (the linear model and its fit), ``_floor`` (whether a config meets the
SLO at all), ``_kernel`` (the residual kernel),
``_tail`` (residual variance and tails per prior level), ``_posterior`` (the surrogate refit on
a study's trials), ``_acquisition`` (which config next).
"""

from ._acquisition import acquisition
from ._posterior import Posterior, PosteriorState, objective_sign
from ._surrogate import Surrogate

__all__ = ["Posterior", "PosteriorState", "Surrogate", "acquisition", "objective_sign"]
