"""One simulated A/B experiment end to end, from a prepare run's tables and a router to a readout.

:func:`run_experiment` is what the `simulate` step calls; it takes the router as a
:data:`abtest.experiment.traffic.Scorer`, so the benchmark and the tests run the same code with stand-in routers.
:mod:`abtest.experiment.router_client` connects the real router (in process or served).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ab_router.arms import CONTROL, TREATMENT
from ab_router.schema import ITEM_ID
from abtest.experiment import traffic
from abtest.experiment.click_model import fit_click_model
from abtest.experiment.readout.analysis import ExperimentReadout, analyse, guardrail_table
from abtest.experiment.stats import AnalysisConfig
from abtest.tracking.lineage import PreparedData

log = logging.getLogger(__name__)


# The parameters of the design that need nothing loaded to be checked (the arguments of check_design).
DESIGN_FIELDS: tuple[str, ...] = ("environment", "days", "users_per_day", "k", "n_unseen", "alpha")


def design_fields(source: object) -> dict[str, Any]:
    """The design fields of anything that has them as attributes (a spec, a step's parsed parameters)."""
    return {name: getattr(source, name) for name in DESIGN_FIELDS}


def check_design(*, environment: str, days: int, users_per_day: int, k: int, n_unseen: int, alpha: float) -> None:
    """Reject a bad experiment design, naming the parameter, the rule and the value.

    Needs nothing loaded, so the `simulate` step calls it before it opens a run or loads the router.
    """
    if environment not in traffic.ENVIRONMENTS:
        raise ValueError(f"parameter environment must be one of {list(traffic.ENVIRONMENTS)}, got {environment!r}")
    for name, value, minimum, meaning in (
        ("days", days, 1, ""),
        ("users_per_day", users_per_day, 0, " (0 = the test period's users, once each)"),
        ("k", k, 1, " (items shown per request)"),
        ("n_unseen", n_unseen, 0, ""),
    ):
        if value < minimum:
            raise ValueError(f"parameter {name} must be an integer >= {minimum}{meaning}, got {value}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"parameter alpha must be strictly between 0 and 1, got {alpha}")


@dataclass(frozen=True)
class ExperimentSpec:
    """The experiment's design: traffic, outcomes and analysis options."""

    environment: traffic.Environment
    days: int
    users_per_day: int
    k: int
    n_unseen: int
    seed: int
    alpha: float
    split: float  # share of users the router sends to B

    def __post_init__(self) -> None:
        check_design(**design_fields(self))
        if not 0.0 < self.split < 1.0:
            raise ValueError(
                f"the router's split (share of users sent to B) must be strictly between 0 and 1 for an A/B "
                f"test, got {self.split}"
            )


@dataclass(frozen=True)
class ExperimentOutcome:
    """The readout and the raw impressions it was computed from."""

    readout: ExperimentReadout
    impressions: pd.DataFrame
    user_days: pd.DataFrame


def run_experiment(prepared: PreparedData, scorer: traffic.Scorer, spec: ExperimentSpec) -> ExperimentOutcome:
    """Traffic over days through ``scorer``, outcomes from the environment, then the readout."""
    rng = np.random.default_rng(spec.seed)
    test = prepared.test
    history = pd.concat([prepared.train, prepared.val], ignore_index=True)
    everything = pd.concat([history, test], ignore_index=True)
    requests_frame = traffic.arrivals(test, days=spec.days, users_per_day=spec.users_per_day, rng=rng)
    item_ids = np.union1d(prepared.items[ITEM_ID].to_numpy(), everything[ITEM_ID].to_numpy())
    slates = traffic.candidate_slates(
        requests_frame, test=test, rated=everything, item_ids=item_ids, n_unseen=spec.n_unseen, rng=rng
    )
    log.info(
        "%d requests from %d users over %d days, %d candidates to score",
        len(requests_frame),
        requests_frame["user_id"].nunique(),
        spec.days,
        len(slates),
    )
    shown = traffic.serve(slates, scorer, k=spec.k)
    truth: dict[str, float] = {}
    click_probability = None
    if spec.environment == "synthetic":
        click_model = fit_click_model(everything, prepared.items)
        click_probability = click_model.probability
        truth = traffic.counterfactual_ctr(slates, scorer, k=spec.k, click_probability=click_probability)
        log.info("true CTR if every request were served by A: %.4f, by B: %.4f", truth[CONTROL], truth[TREATMENT])
    impressions = traffic.draw_outcomes(shown, spec.environment, rng=rng, click_probability=click_probability)
    user_days = traffic.user_day_table(impressions)
    config = AnalysisConfig(
        alpha=spec.alpha,
        expected_split=(1.0 - spec.split, spec.split),
        sequential_tuning=max(float(requests_frame["user_id"].nunique()), 1.0),
    )
    readout = analyse(
        user_days,
        traffic.pre_period_activity(history),
        config=config,
        days=spec.days,
        environment=spec.environment,
        guardrails=guardrail_table(impressions, environment=spec.environment),
        truth=truth or None,
    )
    return ExperimentOutcome(readout=readout, impressions=impressions, user_days=user_days)


# -- the router ---------------------------------------------------------------------------------------------
