"""Sufficient statistics of a ratio metric per arm (and of a pre-period covariate for CUPED).

A ratio metric such as CTR = clicks / impressions, with the user as the randomisation unit, needs per arm only
the unit count and the sums, sums of squares and cross-products of the per-user numerator ``m`` (clicks),
denominator ``d`` (impressions) and covariate ``x`` (pre-period activity). Everything else (delta-method
variances, the CUPED coefficient) is computed from these, so arms can be summarised in SQL or a stream.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import ArrayLike


def _covariance(sum_xy: float, sum_x: float, sum_y: float, n: int) -> float:
    """Sample covariance (ddof=1) from sums; 0 when it cannot be estimated."""
    if n < 2:
        return 0.0
    return (sum_xy - sum_x * sum_y / n) / (n - 1)


@dataclass(frozen=True)
class RatioStatistic:
    """Per-unit numerator ``m``, denominator ``d`` and optional covariate ``x``, summed over ``n`` units."""

    n: int
    m_sum: float
    m_sum_squares: float
    d_sum: float
    d_sum_squares: float
    m_d_sum_of_products: float
    x_sum: float = 0.0
    x_sum_squares: float = 0.0
    m_x_sum_of_products: float = 0.0
    d_x_sum_of_products: float = 0.0

    @classmethod
    def from_units(
        cls, numerator: ArrayLike, denominator: ArrayLike, covariate: ArrayLike | None = None
    ) -> RatioStatistic:
        """Summarise per-unit arrays (one entry per user); ``covariate`` None means no CUPED covariate (x = 0)."""
        m = np.asarray(numerator, dtype=np.float64)
        d = np.asarray(denominator, dtype=np.float64)
        x = np.zeros_like(m) if covariate is None else np.asarray(covariate, dtype=np.float64)
        if not (m.shape == d.shape == x.shape and m.ndim == 1):
            raise ValueError(
                "numerator, denominator and covariate must be 1-D of one length, "
                f"got {m.shape}, {d.shape}, {x.shape}"
            )
        if np.any(d < 0) or np.any(m < 0):
            raise ValueError("numerator and denominator must be >= 0 (counts of clicks and impressions)")
        return cls(
            n=int(m.size),
            m_sum=float(m.sum()),
            m_sum_squares=float(m @ m),
            d_sum=float(d.sum()),
            d_sum_squares=float(d @ d),
            m_d_sum_of_products=float(m @ d),
            x_sum=float(x.sum()),
            x_sum_squares=float(x @ x),
            m_x_sum_of_products=float(m @ x),
            d_x_sum_of_products=float(d @ x),
        )

    def __add__(self, other: RatioStatistic) -> RatioStatistic:
        """Pool two disjoint sets of units (e.g. two shards of one arm)."""
        return RatioStatistic(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    @property
    def mean_m(self) -> float:
        """Mean numerator per unit (clicks per user)."""
        return self.m_sum / self.n if self.n else 0.0

    @property
    def mean_d(self) -> float:
        """Mean denominator per unit (impressions per user)."""
        return self.d_sum / self.n if self.n else 0.0

    @property
    def mean_x(self) -> float:
        """Mean covariate per unit."""
        return self.x_sum / self.n if self.n else 0.0

    @property
    def ratio(self) -> float:
        """The metric itself: sum m / sum d (NaN without a denominator)."""
        return self.m_sum / self.d_sum if self.d_sum > 0 else float("nan")

    @property
    def var_m(self) -> float:
        """Sample variance of the per-unit numerator."""
        return _covariance(self.m_sum_squares, self.m_sum, self.m_sum, self.n)

    @property
    def var_d(self) -> float:
        """Sample variance of the per-unit denominator."""
        return _covariance(self.d_sum_squares, self.d_sum, self.d_sum, self.n)

    @property
    def var_x(self) -> float:
        """Sample variance of the covariate."""
        return _covariance(self.x_sum_squares, self.x_sum, self.x_sum, self.n)

    @property
    def cov_md(self) -> float:
        """Sample covariance of numerator and denominator."""
        return _covariance(self.m_d_sum_of_products, self.m_sum, self.d_sum, self.n)

    @property
    def cov_mx(self) -> float:
        """Sample covariance of numerator and covariate."""
        return _covariance(self.m_x_sum_of_products, self.m_sum, self.x_sum, self.n)

    @property
    def cov_dx(self) -> float:
        """Sample covariance of denominator and covariate."""
        return _covariance(self.d_x_sum_of_products, self.d_sum, self.x_sum, self.n)

    @property
    def linearized_variance(self) -> float:
        """Variance of the ratio's per-unit influence ``(m - R d) / mean_d`` (delta method); var(R) = this / n."""
        if self.d_sum <= 0:
            return float("nan")
        r, mean_d = self.ratio, self.mean_d
        value = (self.var_m - 2 * r * self.cov_md + r * r * self.var_d) / (mean_d * mean_d)
        # Cancellation can leave -1e-17 where the true value is 0 (e.g. every impression clicked).
        return max(value, 0.0)

    @property
    def linearized_covariance_x(self) -> float:
        """Covariance of the ratio's per-unit influence with the covariate (CUPED's numerator)."""
        if self.d_sum <= 0:
            return float("nan")
        return (self.cov_mx - self.ratio * self.cov_dx) / self.mean_d
