"""The arms of the A/B test, declared once: name, registry alias, training entry point, model flavour.

The served router owns the arm names (it writes them into every answer), so the table lives here and the
library imports it. Control comes first: lifts and differences are always "B - A".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PolicyArm:
    """One policy of the experiment and every name it goes by."""

    name: str  # what the router returns in its ``policy`` column
    alias: str  # the registered model's alias pointing at this policy's version
    train_entry_point: str  # the MLproject entry point that trains it
    flavor: str  # the MLflow flavour its training run logs the model with
    kind: str  # what it is, for descriptions and reports
    router_artifact: str  # its key among the router's bundled artifacts

    @property
    def uri_param(self) -> str:
        """evaluate's parameter naming this policy as a model URI instead (``policy_a_uri``)."""
        return f"policy_{self.name.lower()}_uri"


POLICY_ARMS: tuple[PolicyArm, ...] = (
    PolicyArm("A", "PolicyA", "train_a", "sklearn", "logistic regression", "policy_a"),
    PolicyArm("B", "PolicyB", "train_b", "lightgbm", "LightGBM", "policy_b"),
)
ARMS: tuple[str, ...] = tuple(arm.name for arm in POLICY_ARMS)  # every policy trained and registered
# The pair the A/B test compares: evaluated against each other offline, routed, analysed online. Those stages
# are two-armed; a further row above is trained and registered beside them.
CONTROL, TREATMENT = ARMS[0], ARMS[1]
EXPERIMENT_ARMS: tuple[str, str] = (CONTROL, TREATMENT)
ROUTER_ALIAS = "router"  # the alias of the live router version

_BY_NAME = {arm.name: arm for arm in POLICY_ARMS}


def policy_arm(name: str) -> PolicyArm:
    """The table entry of arm ``name``, or an error listing the arms there are."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no arm {name!r}; the arms are {list(ARMS)}") from None
