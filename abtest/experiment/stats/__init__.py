"""The experiment statistics engine: sufficient statistics in, a coded result out.

Modelled on GrowthBook's gbstats: per-arm sufficient statistics are frozen dataclasses (:mod:`.sufficient`), the
analysis options are one :class:`AnalysisConfig`, and every test returns a result dataclass whose ``status`` says
whether the numbers are usable. Degenerate inputs (an arm without traffic, no impressions, zero variance, a zero
baseline) return a coded status and a message instead of raising, so a readout can always be written.

- :func:`ratio_lift`: CTR-like ratio metric with users as the unit; delta method; optional CUPED.
- :func:`sequential_lift` / :func:`monitor`: always-valid p-values and confidence sequences (normal mixture).
- :func:`srm_test`: sample ratio mismatch against the configured split (chi-square).
- :func:`power_analysis` / :func:`power_for_effect`: power and minimum detectable effect (statsmodels).
- :func:`.bayes.normal_posterior`: P(B better) and expected loss from the delta-method lift (scipy).
- :func:`.guardrail.non_inferiority`: a guardrail held within its margin (one-sided bound).
- :func:`.multiple.holm`: Holm's correction across the secondary metrics (statsmodels).
"""

from abtest.experiment.stats.config import AnalysisConfig, Status
from abtest.experiment.stats.power import PowerResult, power_analysis, power_for_effect
from abtest.experiment.stats.ratio import ArmSummary, Estimate, LiftResult, ratio_lift
from abtest.experiment.stats.sequential import SequentialLook, monitor, sequential_lift
from abtest.experiment.stats.srm import SrmResult, srm_test
from abtest.experiment.stats.sufficient import RatioStatistic

__all__ = [
    "AnalysisConfig",
    "ArmSummary",
    "Estimate",
    "LiftResult",
    "PowerResult",
    "RatioStatistic",
    "SequentialLook",
    "SrmResult",
    "Status",
    "monitor",
    "power_analysis",
    "power_for_effect",
    "ratio_lift",
    "sequential_lift",
    "srm_test",
]
