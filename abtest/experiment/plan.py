"""The analysis plan of an online experiment, fixed before any data: what is tested, at what level, for how long.

`router` records the plan with the router version it registers (tag :data:`abtest.tracking.tags.ANALYSIS_PLAN`
on the version and on its run, JSON); `analyze` reads it from the version it analyses and refuses to change the
primary metric unless told explicitly, so the metric cannot be picked after the results are seen.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

# The metrics a plan may name. Primary and secondary metrics are per-arm ratios or per-user means; guardrails
# are checked for non-inferiority of B against A with the plan's margin.
METRICS: tuple[str, ...] = ("ctr", "clicks_per_user")
# Guardrail -> what its margin means (B may be worse than A by at most the margin, in these units).
GUARDRAILS: dict[str, str] = {
    "calibration": "absolute error |mean score - CTR| of B minus that of A, in probability points",
    "cold_start_share": "share of B's decisions with a cold user or item minus A's share",
    "latency_ms": "median router latency of B's requests minus A's, in ms",
}


@dataclass(frozen=True)
class AnalysisPlan:
    """The pre-registered analysis of one router version."""

    primary_metric: str = "ctr"
    secondary_metrics: tuple[str, ...] = ("clicks_per_user",)
    alpha: float = 0.05
    planned_days: int = 14
    guardrail_margins: dict[str, float] = field(
        default_factory=lambda: {"calibration": 0.02, "cold_start_share": 0.02, "latency_ms": 5.0}
    )

    def __post_init__(self) -> None:
        if self.primary_metric not in METRICS:
            raise ValueError(
                f"analysis plan: primary_metric must be one of {list(METRICS)}, got {self.primary_metric!r}"
            )
        unknown = [metric for metric in self.secondary_metrics if metric not in METRICS]
        if unknown or self.primary_metric in self.secondary_metrics:
            raise ValueError(
                f"analysis plan: secondary_metrics must be metrics of {list(METRICS)} other than the primary "
                f"{self.primary_metric!r}, got {list(self.secondary_metrics)}"
            )
        object.__setattr__(self, "secondary_metrics", tuple(self.secondary_metrics))
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"analysis plan: alpha must be in (0, 1), got {self.alpha!r}")
        if int(self.planned_days) != self.planned_days or self.planned_days < 1:
            raise ValueError(f"analysis plan: planned_days must be an integer >= 1, got {self.planned_days!r}")
        margins = dict(self.guardrail_margins)
        bad = {
            name: value
            for name, value in margins.items()
            if name not in GUARDRAILS
            or not (isinstance(value, int | float) and math.isfinite(value) and value >= 0)
        }
        if bad:
            raise ValueError(
                f"analysis plan: guardrail_margins must map guardrails of {list(GUARDRAILS)} to finite margins "
                f">= 0, got {bad}"
            )
        object.__setattr__(self, "guardrail_margins", {name: float(value) for name, value in margins.items()})

    def to_json(self) -> str:
        """The plan as the JSON the router version's tag holds (keys sorted: the same plan, the same text)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AnalysisPlan:
        """The plan a tag holds, with an error that names the tag's content when it is not a plan."""
        try:
            data: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"analysis plan: not JSON ({exc}): {text[:200]!r}") from None
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            fields = sorted(cls.__dataclass_fields__)
            raise ValueError(f"analysis plan: unknown fields {unknown}; fields: {fields}")
        return cls(**data)
