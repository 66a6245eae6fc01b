"""The offline decision rule: a winner only when the user-clustered bootstrap interval and DeLong's test agree.

The primary metric is fixed here, before any data is looked at, so the decision is one test, not a search.
"""

from __future__ import annotations

from dataclasses import dataclass

from ab_router.arms import CONTROL, TREATMENT
from abtest.evaluation.bootstrap import MetricComparison
from abtest.evaluation.delong import DelongResult

PRIMARY_METRIC = "auc"


NO_WINNER = "none"
Winner = str  # CONTROL, TREATMENT (ab_router.arms) or NO_WINNER


@dataclass(frozen=True)
class Decision:
    """Who wins on the primary metric, and the sentence that says how that was decided."""

    winner: Winner
    primary_metric: str
    alpha: float
    bootstrap_excludes_zero: bool
    delong_p_value: float
    reason: str

    @property
    def label(self) -> str:
        """Human wording: "B wins", "A wins" or "no significant difference"."""
        return "no significant difference" if self.winner == NO_WINNER else f"{self.winner} wins"


def decide(primary: MetricComparison, delong: DelongResult, *, alpha: float) -> Decision:
    """Declare a winner only when both the clustered interval and DeLong's test agree at ``alpha``.

    The primary metric (AUC) is fixed before looking, so the decision is one test, not a search over metrics.
    The user-clustered bootstrap interval is the honest one (rows of a user are correlated); DeLong's test
    assumes independent rows and is required to agree so that neither method alone decides.
    """
    if primary.metric != PRIMARY_METRIC:
        raise ValueError(f"the decision uses {PRIMARY_METRIC!r}, got a comparison of {primary.metric!r}")
    delong_significant = delong.p_value < alpha
    level = f"{100 * (1 - alpha):g}%"
    interval = f"[{primary.diff_low:+.4f}, {primary.diff_high:+.4f}]"
    evidence = (
        f"AUC B − A = {primary.diff:+.4f}, {level} user-clustered bootstrap interval {interval}; "
        f"DeLong z = {delong.z:.2f}, p = {delong.p_value:.3g} (alpha = {alpha:g})"
    )
    if primary.b_better and delong_significant and delong.difference > 0:
        winner: Winner = TREATMENT
        reason = f"B wins: {evidence}. Both exclude no difference in B's favour."
    elif primary.a_better and delong_significant and delong.difference < 0:
        winner = CONTROL
        reason = f"A wins: {evidence}. Both exclude no difference in A's favour."
    else:
        winner = NO_WINNER
        reason = (
            f"No significant difference: {evidence}. A winner needs the interval to exclude 0 and DeLong's "
            f"p < alpha, in the same direction."
        )
        excludes_zero = primary.b_better or primary.a_better
        if delong_significant and not excludes_zero:
            reason += (
                " They disagree because DeLong treats every row as independent, while rows of one user are "
                "correlated (one taste, one rating habit); the user-clustered interval resamples whole users and "
                "covers 0, so the evidence is weaker than DeLong's p suggests."
            )
        elif excludes_zero and not delong_significant:
            reason += " The user-clustered interval excludes 0 but DeLong's test does not reject at alpha."
        elif excludes_zero and delong_significant:
            reason += " The interval and DeLong's difference point in opposite directions."
    return Decision(
        winner=winner,
        primary_metric=PRIMARY_METRIC,
        alpha=alpha,
        bootstrap_excludes_zero=primary.b_better or primary.a_better,
        delong_p_value=delong.p_value,
        reason=reason,
    )
