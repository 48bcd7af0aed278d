"""Gaussian-process regression used by the Bayesian optimiser.

The model is ``y = m + f(x) + noise`` on encoded features in ``[0, 1]``:

* ``f`` has a Matérn-5/2 kernel with automatic relevance determination. Features are grouped
  and every group shares one length-scale (a categorical parameter's one-hot columns form one
  group, every other parameter is a group of one column).
* ``m`` is a constant mean, integrated out analytically (a Gaussian prior on ``m`` is the same as
  adding a constant to the kernel), so far from the data the prediction reverts to the weighted
  average of the observations instead of to an arbitrary zero.
* Hyper-parameters (length-scales, signal variance, noise variance) are the maximum a-posteriori
  estimate: log marginal likelihood plus log-normal priors, maximised with L-BFGS-B and analytic
  gradients from a few starting points.

Everything is plain numpy/scipy; a fit on 100 observations in 10 dimensions takes tens of
milliseconds, so a stateless optimiser can afford to refit on every suggestion.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import linalg, optimize  # type: ignore[import-untyped]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

_SQRT5 = math.sqrt(5.0)
_LOG_2PI = math.log(2.0 * math.pi)
# Jitter added to the kernel diagonal when a Cholesky factorisation fails, relative to the
# signal variance; tried in increasing order.
_JITTERS = (0.0, 1e-8, 1e-6, 1e-4, 1e-2)


@dataclass(frozen=True)
class GPPrior:
    """Log-normal priors and hard bounds of the hyper-parameters (in standardised units).

    Length-scales are measured in encoded-feature units (the search box is the unit cube).
    The length-scale prior's median grows like ``sqrt(dimension)`` — the larger the space, the
    smoother a function must be to be learnable from few points.
    """

    lengthscale_log_median: float = math.log(0.25)
    lengthscale_log_median_per_log_dim: float = 0.5
    lengthscale_log_std: float = 1.0
    # One-hot blocks: two categories are sqrt(2) apart, so this median makes them correlate
    # (share what is learnt) unless the data says otherwise.
    categorical_lengthscale_log_median: float = math.log(1.0)
    lengthscale_bounds: tuple[float, float] = (0.01, 30.0)
    signal_log_median: float = 0.0
    signal_log_std: float = 1.0
    signal_bounds: tuple[float, float] = (0.05, 20.0)
    noise_log_median: float = math.log(1e-3)
    noise_log_std: float = 2.0
    noise_bounds: tuple[float, float] = (1e-6, 1.0)
    # Variance of the Gaussian prior on the constant mean (outputs are standardised, so 1 is
    # wide). 0 fixes the mean at 0, the average of the standardised outputs: more exploration of
    # unseen regions, but measured worse overall (docs/tuning.md, "Benchmark").
    mean_variance: float = 1.0

    def location_and_scale(self, categorical: BoolArray) -> tuple[FloatArray, FloatArray]:
        """Means and standard deviations of the log hyper-parameters (the MAP parameters).

        ``categorical[g]`` says whether length-scale group ``g`` is a one-hot block.
        """
        n_groups = categorical.size
        numeric = self.lengthscale_log_median + self.lengthscale_log_median_per_log_dim * math.log(
            max(n_groups, 1)
        )
        ls = np.where(categorical, self.categorical_lengthscale_log_median, numeric)
        mus = np.concatenate([ls, [self.signal_log_median, self.noise_log_median]])
        stds = np.concatenate(
            [np.full(n_groups, self.lengthscale_log_std), [self.signal_log_std, self.noise_log_std]]
        )
        return mus, stds


@dataclass(frozen=True)
class Hyperparameters:
    """Kernel hyper-parameters: one length-scale per feature group, two variances."""

    lengthscales: FloatArray
    signal_variance: float
    noise_variance: float
    mean_variance: float = 1.0

    def to_vector(self) -> FloatArray:
        return np.concatenate(
            [
                np.log(self.lengthscales),
                [math.log(self.signal_variance)],
                [math.log(self.noise_variance)],
            ]
        )

    @staticmethod
    def from_vector(theta: FloatArray, mean_variance: float) -> Hyperparameters:
        return Hyperparameters(
            lengthscales=np.exp(theta[:-2]),
            signal_variance=float(math.exp(theta[-2])),
            noise_variance=float(math.exp(theta[-1])),
            mean_variance=mean_variance,
        )


def _matern52(r2: FloatArray) -> FloatArray:
    r = np.sqrt(np.maximum(r2, 0.0))
    out: FloatArray = (1.0 + _SQRT5 * r + (5.0 / 3.0) * r2) * np.exp(-_SQRT5 * r)
    return out


def _scaled(x: FloatArray, groups: IntArray, lengthscales: FloatArray) -> FloatArray:
    out: FloatArray = x / lengthscales[groups]
    return out


def _sq_dist(a: FloatArray, b: FloatArray) -> FloatArray:
    d2: FloatArray = (
        np.sum(a * a, axis=1)[:, None] + np.sum(b * b, axis=1)[None, :] - 2.0 * (a @ b.T)
    )
    return np.maximum(d2, 0.0)


def _cholesky(k: FloatArray, scale: float) -> FloatArray:
    """Lower Cholesky factor of ``k``, adding jitter on failure; raises LinAlgError at last."""
    eye = np.eye(k.shape[0])
    for jitter in _JITTERS:
        try:
            chol: FloatArray = np.asarray(
                np.linalg.cholesky(k + (jitter * scale) * eye), dtype=np.float64
            )
        except np.linalg.LinAlgError:
            continue
        return chol
    raise np.linalg.LinAlgError("kernel matrix is not positive definite even with jitter")


class GaussianProcess:
    """The posterior of a fitted GP; immutable.

    ``x`` is ``[n, n_features]``, ``y`` ``[n]`` (standardised), ``groups[f]`` the length-scale
    group of feature ``f``.
    """

    def __init__(
        self, x: FloatArray, y: FloatArray, groups: IntArray, hyper: Hyperparameters
    ) -> None:
        self.x = x
        self.y = y
        self.groups = groups
        self.hyper = hyper
        self._xs = _scaled(x, groups, hyper.lengthscales)
        s2 = hyper.signal_variance
        k = s2 * _matern52(_sq_dist(self._xs, self._xs)) + hyper.mean_variance
        k[np.diag_indices_from(k)] += hyper.noise_variance
        self._chol = _cholesky(k, s2)
        self._alpha: FloatArray = linalg.cho_solve((self._chol, True), y)

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def predict(self, xq: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Posterior mean and standard deviation of the latent function at ``xq`` [m, F]."""
        kq = self._cross(xq)
        mean: FloatArray = kq @ self._alpha
        v = linalg.solve_triangular(self._chol, kq.T, lower=True, check_finite=False)
        prior_var = self.hyper.signal_variance + self.hyper.mean_variance
        var = prior_var - np.sum(v * v, axis=0)
        std: FloatArray = np.sqrt(np.maximum(var, 1e-12 * prior_var))
        return mean, std

    def predict_std(self, xq: FloatArray) -> FloatArray:
        return self.predict(xq)[1]

    def condition_on(self, xf: FloatArray) -> GaussianProcess:
        """This GP with observations at ``xf`` equal to their posterior means (fantasies).

        The mean is unchanged at ``xf`` while the variance there collapses to the noise
        level, which is all pure exploration needs.
        """
        if xf.shape[0] == 0:
            return self
        yf, _ = self.predict(xf)
        return GaussianProcess(
            np.vstack([self.x, xf]), np.concatenate([self.y, yf]), self.groups, self.hyper
        )

    def _cross(self, xq: FloatArray) -> FloatArray:
        xqs = _scaled(xq, self.groups, self.hyper.lengthscales)
        out: FloatArray = (
            self.hyper.signal_variance * _matern52(_sq_dist(xqs, self._xs))
            + self.hyper.mean_variance
        )
        return out


def _group_sq_diffs(x: FloatArray, groups: IntArray, n_groups: int) -> FloatArray:
    """Per-group squared coordinate differences, ``[n_groups, n * n]``."""
    n = x.shape[0]
    diff2 = (x[:, None, :] - x[None, :, :]) ** 2  # [n, n, F]
    out = np.zeros((n_groups, n * n))
    for f, g in enumerate(groups):
        out[g] += diff2[:, :, f].ravel()
    return out


def _make_objective(
    x: FloatArray,
    y: FloatArray,
    groups: IntArray,
    mus: FloatArray,
    stds: FloatArray,
    mean_variance: float,
) -> Callable[[FloatArray], tuple[float, FloatArray]]:
    """Negative (log marginal likelihood + log prior) and its gradient in log-parameters.

    ``mus``/``stds`` are the normal priors of the log hyper-parameters.
    """
    n = x.shape[0]
    n_groups = mus.size - 2
    sq = _group_sq_diffs(x, groups, n_groups)
    eye = np.eye(n)

    def objective(theta: FloatArray) -> tuple[float, FloatArray]:
        inv_l2 = np.exp(-2.0 * theta[:n_groups])
        s2 = math.exp(theta[-2])
        noise = math.exp(theta[-1])
        d = inv_l2 @ sq  # [n*n]: scaled squared distances per group, summed
        sq_scaled = d.reshape(n, n)
        r = np.sqrt(np.maximum(sq_scaled, 0.0))
        e = np.exp(-_SQRT5 * r)
        corr = (1.0 + _SQRT5 * r + (5.0 / 3.0) * sq_scaled) * e
        k = s2 * corr + mean_variance + noise * eye
        try:
            chol = np.linalg.cholesky(k)
        except np.linalg.LinAlgError:
            return 1e10, np.zeros_like(theta)
        alpha = linalg.cho_solve((chol, True), y, check_finite=False)
        k_inv = linalg.cho_solve((chol, True), eye, check_finite=False)
        lml = -0.5 * float(y @ alpha) - float(np.sum(np.log(np.diag(chol)))) - 0.5 * n * _LOG_2PI
        w = np.outer(alpha, alpha) - k_inv
        grad = np.empty_like(theta)
        dk_dlog_l = s2 * (5.0 / 3.0) * (1.0 + _SQRT5 * r) * e  # times D_g gives dK/dlog l_g
        grad[:n_groups] = 0.5 * (sq * inv_l2[:, None]) @ (w * dk_dlog_l).ravel()
        grad[-2] = 0.5 * float(np.sum(w * corr)) * s2
        grad[-1] = 0.5 * float(np.trace(w)) * noise
        z = (theta - mus) / stds
        log_prior = -0.5 * float(z @ z)
        grad_prior = -z / stds
        return -(lml + log_prior), -(grad + grad_prior)

    return objective


def fit_gp(
    x: FloatArray,
    y: FloatArray,
    groups: IntArray,
    categorical: BoolArray,
    rng: np.random.Generator,
    *,
    prior: GPPrior | None = None,
    restarts: int = 2,
    maxiter: int = 80,
) -> GaussianProcess:
    """Fit hyper-parameters by MAP (L-BFGS-B from the prior median and ``restarts`` draws).

    ``groups[f]`` is the length-scale group of feature ``f``; ``categorical[g]`` whether group
    ``g`` is a one-hot block.
    """
    prior = prior or GPPrior()
    n_groups = categorical.size
    median, stds = prior.location_and_scale(categorical)
    objective = _make_objective(x, y, groups, median, stds, prior.mean_variance)
    bounds = (
        [tuple(math.log(b) for b in prior.lengthscale_bounds)] * n_groups
        + [tuple(math.log(b) for b in prior.signal_bounds)]
        + [tuple(math.log(b) for b in prior.noise_bounds)]
    )
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    starts = [median] + [median + stds * rng.standard_normal(median.size) for _ in range(restarts)]
    best_theta, best_value = np.clip(median, lo, hi), math.inf
    for start in starts:
        result = optimize.minimize(
            objective,
            np.clip(start, lo, hi),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": maxiter},
        )
        if np.isfinite(result.fun) and result.fun < best_value:
            best_theta, best_value = np.asarray(result.x, dtype=np.float64), float(result.fun)
    hyper = Hyperparameters.from_vector(best_theta, prior.mean_variance)
    return GaussianProcess(x, y, groups, hyper)
