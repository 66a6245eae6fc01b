"""The analysis options (one frozen config) and the status codes every result carries."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    """Why a result is (or is not) usable; results never raise on degenerate data, they say so here."""

    OK = "ok"
    ZERO_TRAFFIC = "zero_traffic"  # an arm has fewer than 2 units: no variance can be estimated
    NO_DENOMINATOR = "no_denominator"  # an arm has units but no impressions: the ratio is undefined
    ZERO_VARIANCE = "zero_variance"  # every unit identical (e.g. every impression clicked): no test possible
    ZERO_BASELINE = "zero_baseline"  # control ratio is 0: the relative lift is undefined (absolute is given)


@dataclass(frozen=True)
class AnalysisConfig:
    """How an experiment is analysed.

    ``expected_split`` is the configured traffic share of each arm (control first), used by the SRM check and the
    power analysis. ``sequential_tuning`` is the number of units at which the confidence sequence is tightest
    (Howard et al.'s N*; GrowthBook's ``sequential_tuning_parameter``): set it near the planned sample size.
    ``sequential_looks`` is the planned number of interim looks (e.g. one a day): the boundary is then calibrated
    so that peeking at exactly those looks rejects an A/A experiment at the rate ``alpha`` asks for, instead of the
    far lower rate the continuous-monitoring boundary gives (0 = no calibration: valid for any schedule of looks,
    conservative for daily ones; see :func:`abtest.experiment.stats.sequential.calibrated_level`).
    """

    alpha: float  # simulate's MLproject parameter: no default here
    expected_split: tuple[float, ...] = (0.5, 0.5)
    srm_threshold: float = 0.001
    power: float = 0.8
    sequential_tuning: float = 5000.0
    sequential_looks: int = 0

    def __post_init__(self) -> None:
        for name in ("alpha", "srm_threshold", "power"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"AnalysisConfig.{name} must be in (0, 1), got {value!r}")
        split = tuple(float(share) for share in self.expected_split)
        if len(split) < 2 or any(share <= 0 for share in split) or not math.isclose(sum(split), 1.0, abs_tol=1e-6):
            raise ValueError(
                "AnalysisConfig.expected_split must have >= 2 positive shares summing to 1, "
                f"got {self.expected_split!r}"
            )
        object.__setattr__(self, "expected_split", split)
        if not self.sequential_tuning > 0:
            raise ValueError(f"AnalysisConfig.sequential_tuning must be > 0, got {self.sequential_tuning!r}")
        if int(self.sequential_looks) != self.sequential_looks or self.sequential_looks < 0:
            raise ValueError(
                "AnalysisConfig.sequential_looks must be an integer >= 0 (0 = continuous monitoring), "
                f"got {self.sequential_looks!r}"
            )
        object.__setattr__(self, "sequential_looks", int(self.sequential_looks))
