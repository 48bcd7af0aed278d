"""Bayesian optimisation: the default (ALGORITHM_UNSPECIFIED) tuning algorithm.

A GP-UCB bandit in the style of Google Vizier's default designer, stateless:

1. Initial design — the centre of the space first, then a randomly shifted Kronecker (R_d)
   low-discrepancy sequence, until ``max(3, d // 2 + 1)`` trials have completed.
2. Model — a Matérn-5/2 ARD Gaussian process (:mod:`mlengine.tuning.gp`) on the encoded
   features with an integrated constant mean, fitted on warped outputs: oriented so higher is
   better, the half below the median compressed logarithmically ("log_tail"), standardised.
   Failed trials are imputed with the worst warped value, so the model learns to stay away
   from a crashing region.
3. Acquisition — every suggestion maximises UCB (beta 1.8) on the model conditioned on the
   pending trials and on the suggestions already made in the same call, each fantasised at its
   predicted mean ("kriging believer"): its variance collapses, so the next suggestion goes
   elsewhere. Asking for five in one call and asking five times with the earlier ones pending
   therefore behave alike. (Vizier's pure exploration for the rest of a batch is available as
   ``pure_exploration=True``.) A trust region (L-inf balls around the observations, radius 0.2
   growing to the whole box after ``5 (d + 1)`` trials) keeps early suggestions near the data.
4. Search — an evolutionary search in the encoded space that respects the parameter kinds
   (:mod:`mlengine.tuning.acquisition`), then decoding; suggestions equal to a seen one are
   skipped.

Everything derives from ``(seed, history, pending, count)``; a restarted server continues the
same search.

Why these choices — measured with ``benchmarks/tuning.py``'s problems (branin, hartmann6,
mixed), 50 trials, mean normalised regret NR@30/NR@50 over the three (random = 1, optimum =
0); q=5 is rounds of five, each asked with the earlier ones pending unless said otherwise.
docs/tuning.md ("Benchmark") has the method and the final table against optuna.

* Rest of a batch by UCB on fantasies, not pure exploration: with one call for five
  (seeds 0-9) q=5 0.147/0.055 against 0.477/0.145. Pure exploration spends four of every
  five trials on the most uncertain corners of the promising region.
* "log_tail" output warping instead of "half_rank" (seeds 0-19): q=5 0.112/0.025 against
  0.161/0.025; q=1 a tie, 0.055/0.027 against 0.058/0.030.
* Length-scale prior median 0.25·sqrt(d), not 0.125·sqrt(d) (seeds 0-9): q=1 0.031/0.023
  against 0.098/0.083, q=5 0.116/0.021 against 0.092/0.051. The shorter prior makes the model
  more local: slightly better early in batches, but more studies stall in a local optimum.
* Integrated constant mean (prior variance 1), not a mean fixed at the average of the outputs
  (``GPPrior.mean_variance = 0``; seeds 0-9): 0.031/0.023 and 0.116/0.021 against 0.091/0.014
  and 0.232/0.098. A fixed mean makes unseen regions (an untried category) look better, which
  rescues a stalled study now and then but wastes trials in batches.
* Tried and dropped, no measurable effect (seeds 0-9, every cell within 0.003): a minimum
  distance between batch points in length-scale units (fantasies already keep them apart), and
  a pure-exploration threshold at the mean of the observation of highest UCB.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtri  # type: ignore[import-untyped]

from mlengine.domain.errors import InvalidArgument
from mlengine.tuning.acquisition import FeatureLayout, SearchBudget, maximize
from mlengine.tuning.base import Trial, seen_keys
from mlengine.tuning.gp import GaussianProcess, GPPrior, fit_gp
from mlengine.tuning.random_search import RandomSearch
from mlengine.tuning.space import DimensionKind, Key, Params, SearchSpace

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class BayesianConfig:
    """Tuning knobs; the defaults are what the benchmarks in docs/tuning.md were run with."""

    # Completed trials before the GP takes over: max(min_initial, dims // 2 + 1) by default.
    min_initial_trials: int = 3
    ucb_beta: float = 1.8
    # Pure exploration stays where mean + pe_beta * std >= tau, tau the best lower confidence
    # bound (mean - pe_beta * std) over the observations; outside it is penalised by
    # pe_penalty per standard unit.
    pe_beta: float = 1.8
    pe_penalty: float = 10.0
    # Suggestions after the first of a call: UCB on the GP with the earlier ones fantasised
    # (False, as when they are asked one call at a time), or pure exploration (True, Vizier's
    # GP-UCB-PE; measured much worse here, see the module docstring).
    pure_exploration: bool = False
    output_warping: str = "log_tail"
    failure_imputation: str = "worst"
    # Trust region (as Vizier): only points within an L-inf radius of an observed point, the
    # radius growing from tr_min_radius to 0.5 with n / (tr_dim_factor * (d + 1)).
    trust_region: bool = True
    tr_min_radius: float = 0.2
    tr_dim_factor: float = 5.0
    gp_restarts: int = 2
    gp_maxiter: int = 80
    prior: GPPrior = field(default_factory=GPPrior)
    budget: SearchBudget = field(default_factory=SearchBudget)


class BayesianOptimizer:
    """GP-UCB-PE suggester; implements :class:`mlengine.tuning.base.Suggester`."""

    def __init__(self, config: BayesianConfig | None = None) -> None:
        self.config = config or BayesianConfig()

    def suggest(
        self,
        space: SearchSpace,
        *,
        maximize: bool,
        history: Sequence[Trial],
        pending: Sequence[Params],
        count: int,
        seed: int,
    ) -> list[Params]:
        if count <= 0:
            return []
        rng = np.random.default_rng([seed % 2**63, len(history), len(pending), count])
        seen = seen_keys(space, history, pending)
        completed = [t for t in history if _is_value(t.value)]
        n_initial = max(self.config.min_initial_trials, len(space.dims) // 2 + 1)
        if len(completed) < n_initial:
            out = _initial_design(space, seen, count, seed)
        else:
            out = _ModelRound(self.config, space, maximize, history, pending, seen, rng).run(count)
        if len(out) < count:
            # Every candidate was taken (a small finite space): fill from the unseen rest.
            out += RandomSearch().suggest(
                space,
                maximize=maximize,
                history=history,
                pending=[*pending, *out],
                count=count - len(out),
                seed=seed,
            )
        return out


def _is_value(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _encodable(space: SearchSpace, params: Params) -> bool:
    """False for a trial of a resumed study whose spec has changed since."""
    try:
        space.key(params)
    except InvalidArgument:
        return False
    return True


def _initial_design(
    space: SearchSpace,
    seen: set[Key],
    count: int,
    seed: int,
) -> list[Params]:
    """The centre, then a low-discrepancy sequence (fixed by ``seed``) skipping seen points."""
    out: list[Params] = []
    chosen = set(seen)
    centre = space.decode(np.full(space.n_features, 0.5))
    n_points = len(seen) + count + 16
    candidates = [centre, *_from_unit(space, _r_sequence(len(space.dims), n_points, seed))]
    for params in candidates:
        key = space.key(params)
        if key not in chosen:
            chosen.add(key)
            out.append(params)
            if len(out) == count:
                return out
    return out


def _r_sequence(n_dims: int, n_points: int, seed: int) -> FloatArray:
    """The first ``n_points`` of a randomly shifted Kronecker (R_d) sequence in ``[0, 1)^d``.

    Point ``k`` is ``frac(shift + k * alpha)`` with ``alpha_j = phi^-(j+1)`` and ``phi`` the
    generalised golden ratio (``phi^(d+1) = phi + 1``): as even as a Sobol sequence for the
    few points an initial design needs, and extendable one point at a time.
    """
    phi = 2.0
    for _ in range(50):  # Newton's method on phi^(d+1) - phi - 1
        phi -= (phi ** (n_dims + 1) - phi - 1) / ((n_dims + 1) * phi**n_dims - 1)
    alpha = phi ** -np.arange(1.0, n_dims + 1.0)
    shift = np.random.default_rng(seed % 2**63).random(n_dims)
    k = np.arange(1.0, n_points + 1.0)[:, None]
    out: FloatArray = np.mod(shift + k * alpha, 1.0)
    return out


def _from_unit(space: SearchSpace, u: FloatArray) -> list[Params]:
    """Decode points with one unit coordinate per parameter (a category is picked by ``u``)."""
    x = np.zeros((u.shape[0], space.n_features))
    start = 0
    for j, dim in enumerate(space.dims):
        if dim.kind is DimensionKind.CATEGORICAL:
            hot = np.minimum((u[:, j] * dim.width).astype(np.int64), dim.width - 1)
            x[np.arange(u.shape[0]), start + hot] = 1.0
        else:
            x[:, start] = u[:, j]
        start += dim.width
    return space.decode_many(x)


def warp_outputs(y: FloatArray, method: str) -> FloatArray:
    """Warp higher-is-better values to a standardised, roughly Gaussian scale (order kept)."""
    n = y.size
    if n == 0:
        return y
    if method == "rank":
        z: FloatArray = ndtri((_ranks(y) - 0.5) / n)
    elif method == "half_rank":
        z = _half_rank(y)
    elif method == "log_tail":
        z = _log_tail(y)
    else:
        z = y.copy()
    std = float(np.std(z))
    if not math.isfinite(std) or std < 1e-12:
        return np.zeros_like(y)
    out: FloatArray = (z - np.mean(z)) / std
    return out


def _ranks(y: FloatArray) -> FloatArray:
    """Ranks 1..n of ``y``, ties sharing their average rank."""
    _values, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    average: FloatArray = (upper - (counts - 1) / 2.0)[inverse]
    return average


def _half_rank(y: FloatArray) -> FloatArray:
    """Keep the better half linear; map the worse half onto a Gaussian tail by rank.

    A few catastrophic values (a diverged run) would otherwise squash the interesting range of
    the good half to nothing once standardised.
    """
    median = float(np.median(y))
    good = y[y >= median]
    scale = float(np.sqrt(np.mean((good - median) ** 2))) if good.size > 1 else 0.0
    if scale <= 0.0:
        scale = float(np.std(y)) or 1.0
    bad = y < median
    if not np.any(bad):
        return y.copy()
    ranks = _ranks(y)[bad]
    n = y.size
    # Quantiles of the whole sample below the median, as if it were N(median, scale^2).
    q = (ranks - 0.5) / n
    z = y.copy()
    z[bad] = median + scale * ndtri(np.minimum(q, 0.5))
    # Never move a bad value up: only compress the tail.
    z[bad] = np.maximum(z[bad], y[bad])
    return z


def _log_tail(y: FloatArray) -> FloatArray:
    """Compress values below the median logarithmically (in units of the spread above it)."""
    median = float(np.median(y))
    spread = float(np.max(y) - median) or float(np.std(y)) or 1.0
    t = (y - median) / spread
    z = np.where(t >= 0, t, -np.log1p(-np.minimum(t, 0.0)))
    out: FloatArray = median + spread * z
    return out


class _ModelRound:
    """One suggestion call once the GP is in charge."""

    def __init__(
        self,
        config: BayesianConfig,
        space: SearchSpace,
        maximize: bool,
        history: Sequence[Trial],
        pending: Sequence[Params],
        seen: set[Key],
        rng: np.random.Generator,
    ) -> None:
        self.config = config
        self.space = space
        self.rng = rng
        self.seen = seen
        self.layout = FeatureLayout(space)
        x, y = self._training_data(history, maximize)
        self.x_obs = x
        self.gp = fit_gp(
            x,
            y,
            self.layout.groups,
            self.layout.categorical_groups,
            rng,
            prior=config.prior,
            restarts=config.gp_restarts,
            maxiter=config.gp_maxiter,
        )
        self.x_pending = (
            space.encode_many(list(pending)) if pending else np.zeros((0, space.n_features))
        )
        numeric = np.ones(space.n_features, dtype=bool)
        for start, width in self.layout.blocks:
            numeric[start : start + width] = False
        self.numeric = np.flatnonzero(numeric)
        n_dims = len(space.dims)
        growth = len(history) / (config.tr_dim_factor * (n_dims + 1))
        self.radius = config.tr_min_radius + (0.5 - config.tr_min_radius) * min(1.0, growth)
        mean, std = self.gp.predict(x)
        self.incumbents = x[np.argsort(-mean)[:5]]
        self.tau = float(np.max(mean - config.pe_beta * std))

    def _training_data(
        self, history: Sequence[Trial], maximize: bool
    ) -> tuple[FloatArray, FloatArray]:
        usable = [t for t in history if _encodable(self.space, t.params)]
        ok = [t for t in usable if _is_value(t.value)]
        failed = [t for t in usable if not _is_value(t.value)]
        sign = 1.0 if maximize else -1.0
        y = sign * np.array([t.value for t in ok], dtype=np.float64)
        z = warp_outputs(y, self.config.output_warping)
        x = self.space.encode_many([t.params for t in ok])
        if failed and self.config.failure_imputation != "ignore":
            worst = float(np.min(z))
            fill = worst - (0.5 if self.config.failure_imputation == "below_worst" else 0.0)
            x = np.vstack([x, self.space.encode_many([t.params for t in failed])])
            z = np.concatenate([z, np.full(len(failed), fill)])
            std = float(np.std(z)) or 1.0
            z = (z - np.mean(z)) / std
        return x, z

    def run(self, count: int) -> list[Params]:
        out: list[Params] = []
        chosen: list[FloatArray] = []
        for i in range(count):
            fantasy = np.vstack([self.x_pending, *chosen]) if chosen else self.x_pending
            conditioned = self.gp.condition_on(fantasy)
            if i == 0 or not self.config.pure_exploration:
                acquisition = _ucb(conditioned, self.config.ucb_beta)
            else:
                acquisition = _pure_exploration(
                    self.gp, conditioned, self.config.pe_beta, self.tau, self.config.pe_penalty
                )
            if self.config.trust_region:
                trusted = np.vstack([self.x_obs, fantasy])
                acquisition = _trust_region(acquisition, trusted, self.radius, self.numeric)
            candidates = maximize(
                acquisition,
                self.layout,
                self.rng,
                anchors=self.incumbents,
                budget=self.config.budget,
            )
            found = self._first_unseen(candidates)
            if found is None:
                break
            out.append(found[0])
            chosen.append(found[1][None, :])
        return out

    def _first_unseen(self, candidates: FloatArray) -> tuple[Params, FloatArray] | None:
        for params in self.space.decode_many(candidates):
            key = self.space.key(params)
            if key not in self.seen:
                self.seen.add(key)
                return params, self.space.encode(params)
        return None


def _ucb(gp: GaussianProcess, beta: float) -> Callable[[FloatArray], FloatArray]:
    def acquisition(x: FloatArray) -> FloatArray:
        mean, std = gp.predict(x)
        out: FloatArray = mean + beta * std
        return out

    return acquisition


def _pure_exploration(
    base: GaussianProcess,
    conditioned: GaussianProcess,
    beta: float,
    tau: float,
    penalty: float,
) -> Callable[[FloatArray], FloatArray]:
    def acquisition(x: FloatArray) -> FloatArray:
        mean, std = base.predict(x)
        explore = conditioned.predict_std(x)
        out: FloatArray = explore + penalty * np.minimum(mean + beta * std - tau, 0.0)
        return out

    return acquisition


def _trust_region(
    acquisition: Callable[[FloatArray], FloatArray],
    trusted: FloatArray,
    radius: float,
    features: NDArray[np.int64],
) -> Callable[[FloatArray], FloatArray]:
    """``acquisition`` inside the union of L-inf balls around ``trusted``; below it outside."""
    if features.size == 0 or radius >= 0.5:
        return acquisition
    anchors = trusted[:, features]

    def wrapped(x: FloatArray) -> FloatArray:
        gap = np.abs(x[:, None, features] - anchors[None, :, :]).max(axis=2).min(axis=1)
        value = acquisition(x)
        out: FloatArray = np.where(gap <= radius, value, -1e6 - gap)
        return out

    return wrapped
