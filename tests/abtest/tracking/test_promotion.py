"""abtest/tracking/promotion.py on real registered versions: champion moves only on a clean win, refusals name
their reasons, force is recorded, a failure midway is undone, and a ramp keeps B's users in B.

One store for the module with one registered router (split 0.2) over hand-made policies; every test starts with
alias ``router`` on that version and no ``champion``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from ab_router.assignment import AssignmentConfig, assign_arms
from abtest.experiment.plan import AnalysisPlan
from abtest.tracking import tags
from abtest.tracking.promotion import (
    PromotionRefusedError,
    current_alias,
    plan_promotion,
    promote,
    promote_champion,
    read_readout,
)
from tests.fixtures.promotion import RegisteredRouter, log_analyze_run, register_router
from tests.fixtures.router import log_handmade_runs
from tests.fixtures.tracking import point_mlflow_at

SPLIT = 0.2


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory, session_tracking: str) -> Iterator[RegisteredRouter]:
    """Hand-made policies registered, and a router version (split 0.2) bundling them, in a store of this module."""
    point_mlflow_at(tmp_path_factory.mktemp("promotion-store"), "abtest-promotion")
    yield register_router(log_handmade_runs(), model="policies", router_model="ab_router", split=SPLIT)
    point_mlflow_at(Path(session_tracking.removeprefix("sqlite:///")).parent, "abtest-tests")


@pytest.fixture
def router(registered: RegisteredRouter) -> RegisteredRouter:
    """The module's router, alias ``router`` back on the analysed version and ``champion`` unset."""
    client = MlflowClient()
    client.set_registered_model_alias(registered.router_model, "router", registered.router_version)
    if current_alias(client, registered.model, tags.CHAMPION_ALIAS) is not None:
        client.delete_registered_model_alias(registered.model, tags.CHAMPION_ALIAS)
    return registered


def _promote(router: RegisteredRouter, analyze_run: str, *, ramp_split: float | None = None, force: bool = False):
    client = MlflowClient()
    return promote(
        client,
        client.get_run(analyze_run),
        router_model_name=router.router_model,
        ramp_split=ramp_split,
        force=force,
    )


@pytest.mark.parametrize("winner", ["A", "B"])
def test_a_clean_win_moves_champion_to_the_winners_bundled_version(router: RegisteredRouter, winner: str) -> None:
    analyze_run = log_analyze_run(router.router_version, winner=winner)
    promotion, moved = _promote(router, analyze_run)
    client = MlflowClient()
    champion = client.get_model_version_by_alias(router.model, tags.CHAMPION_ALIAS)
    assert str(champion.version) == router.policy_versions[winner] == moved.version
    assert (moved.previous, promotion.forced) == (None, False)
    assert champion.tags[tags.ANALYZE_RUN] == analyze_run
    assert champion.tags[tags.WINNER] == winner
    assert champion.tags[tags.DECISION] == f"{winner} wins on ctr"
    assert champion.tags[tags.PROMOTION_FORCED] == "false"
    # Only champion moved: the arms' aliases and the router stay where they were.
    aliases = client.get_registered_model(router.model).aliases
    assert (str(aliases["PolicyA"]), str(aliases["PolicyB"])) == (
        router.policy_versions["A"],
        router.policy_versions["B"],
    )
    assert current_alias(client, router.router_model, "router") == router.router_version


@pytest.mark.parametrize(
    ("readout", "reason"),
    [
        ({"winner": "none"}, r"inconclusive \(winner none\)"),
        (
            {"winner": "B", "healthy": False, "health_failures": "srm,both_arms"},
            r"health checks failed \(srm,both_arms\)",
        ),
        ({"winner": "B", "guardrails_held": False}, "a guardrail did not hold"),
    ],
)
def test_an_inconclusive_or_unhealthy_readout_is_refused_and_nothing_moves(
    router: RegisteredRouter, readout: dict, reason: str
) -> None:
    analyze_run = log_analyze_run(router.router_version, **readout)
    client = MlflowClient()
    before = {str(v.version): dict(v.tags) for v in client.search_model_versions(f"name = '{router.model}'")}
    with pytest.raises(
        PromotionRefusedError, match=rf"analyze run {analyze_run} does not justify promoting: .*{reason}"
    ):
        _promote(router, analyze_run)
    assert current_alias(client, router.model, tags.CHAMPION_ALIAS) is None
    after = {str(v.version): dict(v.tags) for v in client.search_model_versions(f"name = '{router.model}'")}
    assert after == before


def test_force_acts_on_an_unhealthy_win_and_says_so_on_the_version(router: RegisteredRouter) -> None:
    analyze_run = log_analyze_run(router.router_version, winner="B", healthy=False, health_failures="srm")
    promotion, _ = _promote(router, analyze_run, force=True)
    champion = MlflowClient().get_model_version_by_alias(router.model, tags.CHAMPION_ALIAS)
    assert str(champion.version) == router.policy_versions["B"]
    assert champion.tags[tags.PROMOTION_FORCED] == "true"
    assert champion.tags[tags.DECISION].startswith("Do not trust this result: srm failed.")
    assert promotion.forced_over == ("health checks failed (srm)",)


def test_force_cannot_choose_a_winner_the_readout_does_not_name(router: RegisteredRouter) -> None:
    analyze_run = log_analyze_run(router.router_version, winner="none")
    with pytest.raises(PromotionRefusedError, match="names no winner: force cannot choose"):
        _promote(router, analyze_run, force=True)
    assert current_alias(MlflowClient(), router.model, tags.CHAMPION_ALIAS) is None


class _AliasCallFails(MlflowClient):
    """A client whose alias move fails after the version tags were written (a registry that went away)."""

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        if alias == tags.CHAMPION_ALIAS:
            raise MlflowException("registry unavailable")
        super().set_registered_model_alias(name, alias, version)


def test_a_failure_midway_restores_the_alias_and_the_version_tags(router: RegisteredRouter) -> None:
    client = MlflowClient()
    # Champion on A from an earlier readout; B's win fails while moving the alias.
    _promote(router, log_analyze_run(router.router_version, winner="A"))
    b_version = router.policy_versions["B"]
    b_tags = dict(client.get_model_version(router.model, b_version).tags)
    analyze_run = log_analyze_run(router.router_version, winner="B")
    promotion = plan_promotion(
        client, client.get_run(analyze_run), router_model_name=router.router_model, ramp_split=None, force=False
    )
    with pytest.raises(MlflowException, match="registry unavailable"):
        promote_champion(_AliasCallFails(), promotion)
    assert current_alias(client, router.model, tags.CHAMPION_ALIAS) == router.policy_versions["A"]
    assert dict(client.get_model_version(router.model, b_version).tags) == b_tags


def test_a_ramp_logs_a_router_like_the_analysed_one_with_a_larger_share_for_b(router: RegisteredRouter) -> None:
    client = MlflowClient()
    analysed = client.get_model_version(router.router_model, router.router_version)
    analyze_run = log_analyze_run(router.router_version, winner="B")
    with mlflow.start_run(run_name="handmade-promote"):
        _, moved = _promote(router, analyze_run, ramp_split=0.5)
    new = client.get_model_version_by_alias(router.router_model, "router")
    assert str(new.version) == moved.version != router.router_version
    assert moved.previous == router.router_version
    assert new.tags[tags.SPLIT] == "0.5"
    for same in (tags.SALT, tags.ASSIGNMENT_RULE, tags.ANALYSIS_PLAN, tags.PREPARE_RUN, tags.POLICY_MODEL_NAME):
        assert new.tags[same] == analysed.tags[same], same
    assert {arm: new.tags[tags.policy_version(arm)] for arm in ("A", "B")} == router.policy_versions
    assert AnalysisPlan.from_json(new.tags[tags.ANALYSIS_PLAN]) == AnalysisPlan.from_json(
        analysed.tags[tags.ANALYSIS_PLAN]
    )
    assert (new.tags[tags.ANALYZE_RUN], new.tags[tags.RAMPED_FROM]) == (analyze_run, router.router_version)
    assert current_alias(client, router.model, tags.CHAMPION_ALIAS) is None  # a ramp crowns nobody

    # The served models themselves: every user the analysed router sent to B, the ramped one sends to B too.
    pairs = pd.DataFrame({"user_id": np.arange(1, 2001), "item_id": 1}, dtype="int64")
    before = mlflow.pyfunc.load_model(f"models:/{router.router_model}/{router.router_version}").predict(pairs)
    after = mlflow.pyfunc.load_model(f"models:/{router.router_model}/{moved.version}").predict(pairs)
    in_b_before = before["policy"].to_numpy() == "B"
    in_b_after = after["policy"].to_numpy() == "B"
    assert in_b_after[in_b_before].all()
    assert 0.15 < in_b_before.mean() < 0.25 and 0.45 < in_b_after.mean() < 0.55
    assert (before["bucket"] == after["bucket"]).all()


def test_raising_the_split_only_moves_users_from_a_to_b() -> None:
    user_ids = np.arange(-1000, 200_000)
    shares = [0.0, 0.05, 0.2, 0.5, 0.5001, 0.9, 1.0]
    arms = [
        assign_arms(user_ids, AssignmentConfig(split=s, salt="exp-1", assignment="hash")).policy for s in shares
    ]
    for smaller, larger, share in zip(arms, arms[1:], shares[1:], strict=False):
        assert (larger[smaller == "B"] == "B").all(), share
        assert abs((larger == "B").mean() - share) < 0.005
    # A new salt is a new experiment: it reshuffles, it does not keep B's users.
    other = assign_arms(user_ids, AssignmentConfig(split=0.5, salt="exp-2", assignment="hash")).policy
    assert 0.4 < (other[arms[2] == "B"] == "B").mean() < 0.6


@pytest.mark.parametrize(
    ("readout", "ramp_split", "error", "message"),
    [
        ({"winner": "A"}, 0.5, PromotionRefusedError, "names winner 'A', not B: B is not ramped up"),
        ({"winner": "none"}, 0.5, PromotionRefusedError, "names winner 'none', not B"),
        ({"winner": "B"}, SPLIT, ValueError, r"ramp_split must be larger than router version 1's split 0\.2"),
        ({"winner": "B"}, 0.1, ValueError, r"larger than router version 1's split 0\.2 .*got 0\.1"),
    ],
)
def test_a_ramp_is_refused_unless_b_won_and_the_share_grows(
    router: RegisteredRouter, readout: dict, ramp_split: float, error: type, message: str
) -> None:
    client = MlflowClient()
    versions = len(client.search_model_versions(f"name = '{router.router_model}'"))
    with pytest.raises(error, match=message):
        _promote(router, log_analyze_run(router.router_version, **readout), ramp_split=ramp_split)
    assert len(client.search_model_versions(f"name = '{router.router_model}'")) == versions
    assert current_alias(client, router.router_model, "router") == router.router_version


def test_a_ramp_of_a_router_that_is_no_longer_live_is_refused(router: RegisteredRouter) -> None:
    client = MlflowClient()
    # Another version goes live (a re-registered router) after the readout of version 1.
    other = client.create_model_version(
        router.router_model, source=client.get_model_version(router.router_model, "1").source
    )
    client.set_registered_model_alias(router.router_model, "router", str(other.version))
    analyze_run = log_analyze_run(router.router_version, winner="B")
    with pytest.raises(PromotionRefusedError, match=rf"points at version {other.version}, not at the analysed 1"):
        _promote(router, analyze_run, ramp_split=0.5)
    assert current_alias(client, router.router_model, "router") == str(other.version)


def test_a_run_that_is_not_a_readout_is_refused_naming_what_is_missing(router: RegisteredRouter) -> None:
    client = MlflowClient()
    with mlflow.start_run() as run:
        mlflow.set_tags({tags.STEP: "analyze", tags.WINNER: "B"})
    with pytest.raises(ValueError, match=rf"has no tags \['{tags.HEALTHY}', '{tags.GUARDRAILS_HELD}', "):
        read_readout(client.get_run(run.info.run_id))
    with mlflow.start_run() as simulate:
        mlflow.set_tags({tags.STEP: "simulate"})
    with pytest.raises(ValueError, match="is a 'simulate' run, not an 'analyze' run"):
        read_readout(client.get_run(simulate.info.run_id))
    bad = log_analyze_run(router.router_version, winner="C")
    with pytest.raises(ValueError, match=r"tag abtest.winner must be one of \['A', 'B', 'none'\], got 'C'"):
        read_readout(client.get_run(bad))
