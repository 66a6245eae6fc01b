"""The records readout: planted lift, A/A, SRM, users in both arms, guardrails, CUPED's choice and the plan's
override rule."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from abtest.evaluation.decision import NO_WINNER
from abtest.experiment.plan import AnalysisPlan
from abtest.experiment.readout.experiment import (
    UNTRUSTED,
    PlanOverrideError,
    ReadoutInputs,
    analyse_records,
    effective_plan,
    inputs_from_data,
    read_records,
    records_config,
    user_totals,
)
from tests.fixtures.experiment_records import RecordsSpec, write_experiment_records

PLAN = AnalysisPlan()
LATENCY = {"A": 4.0, "B": 4.6}


def _readout(frame, pre_period, *, plan=PLAN, **inputs):
    users, days = frame["user_id"].nunique(), frame["day"].nunique()
    config = records_config(plan, split=0.5, users=users, days_observed=days)
    return analyse_records(
        ReadoutInputs(frame, latency_p50_ms=inputs.pop("latency", LATENCY), **inputs), plan, config, pre_period
    )


def test_planted_lift_decides_b_and_the_interval_covers_the_truth(user_days, pre_period):
    readout = _readout(user_days(ctr_a=0.05, ctr_b=0.06), pre_period)
    primary = readout.primary
    assert readout.healthy and readout.guardrails_held
    assert readout.winner == "B" and readout.decision.startswith("Ship policy B")
    assert primary.metric == "ctr" and primary.verdict == "B better"
    assert primary.used.absolute.ci_low <= 0.01 <= primary.used.absolute.ci_high
    assert primary.bayes.probability_b_better > 0.999
    secondary = readout.metrics[1]
    assert secondary.metric == "clicks_per_user" and secondary.role == "secondary"
    assert secondary.adjusted_p_value == pytest.approx(secondary.used.absolute.p_value)  # a family of one
    assert list(readout.daily["day"]) == list(range(14))
    assert readout.stop_day is not None and readout.stop_day <= 13
    headline = readout.headline()
    assert headline["healthy"] == 1.0 and headline["ctr_prob_b_better"] > 0.999
    assert headline["sequential_boundary_level"] == pytest.approx(0.1705, abs=2e-3)


def test_aa_finds_no_difference(user_days, pre_period):
    readout = _readout(user_days(ctr_a=0.05, ctr_b=0.05, seed=4), pre_period)
    assert readout.healthy
    assert readout.winner == NO_WINNER and readout.primary.verdict == "no difference"
    assert readout.decision.startswith("No significant difference")
    assert 0.05 < readout.primary.bayes.probability_b_better < 0.95


def test_five_percent_of_b_dropped_fails_srm_and_says_not_to_trust(user_days, pre_period):
    readout = _readout(user_days(n_users=24_000, days=7, drop_b_every=20, seed=2), pre_period)
    assert not readout.healthy and "srm" in readout.health_failures
    assert readout.decision.startswith(f"{UNTRUSTED}: health checks failed (srm")
    assert readout.srm.flagged and readout.srm.observed[1] < readout.srm.observed[0]


def test_users_in_both_arms_and_other_counts_fail_their_checks(user_days, pre_period):
    readout = _readout(
        user_days(),
        pre_period,
        health_counts={"users_in_both_arms": 2, "duplicates": 0},
        health_examples={"users_in_both_arms": "17, 23"},
    )
    assert readout.health_failures == ["users_in_both_arms"]
    check = next(c for c in readout.health if c.name == "users_in_both_arms")
    assert check.detail == "2 found (e.g. 17, 23)"
    assert readout.decision.startswith(UNTRUSTED)
    assert readout.winner == "B"  # the numbers still name B; HEALTHY = false is what stops promote


def test_guardrail_broken_is_reported(user_days, pre_period):
    readout = _readout(user_days(), pre_period, latency={"A": 4.0, "B": 12.0})
    latency = next(g for g in readout.guardrails if g.name == "latency_ms")
    assert not latency.held and not readout.guardrails_held
    assert "Guardrails not held: latency_ms NOT held" in readout.decision


def test_interim_look_decides_only_through_the_sequential_test(user_days, pre_period):
    plan = AnalysisPlan(planned_days=28)
    readout = _readout(user_days(ctr_a=0.05, ctr_b=0.05, seed=4), pre_period, plan=plan)
    assert "interim look, day 14 of 28" in readout.decision and readout.winner == NO_WINNER


def test_plan_override_refused_then_accepted_and_said():
    recorded = AnalysisPlan(primary_metric="ctr", planned_days=10).to_json()
    plan, note, overridden = effective_plan(recorded, primary_metric="", override_plan=False, where="router v3")
    assert plan.planned_days == 10 and not overridden and note == "analysis plan recorded with router v3"
    same, _, overridden = effective_plan(recorded, primary_metric="ctr", override_plan=False, where="router v3")
    assert same == plan and not overridden
    with pytest.raises(PlanOverrideError, match="primary_metric='clicks_per_user' differs from the planned"):
        effective_plan(recorded, primary_metric="clicks_per_user", override_plan=False, where="router v3")
    changed, note, overridden = effective_plan(
        recorded, primary_metric="clicks_per_user", override_plan=True, where="router v3"
    )
    assert overridden and changed.primary_metric == "clicks_per_user" and changed.secondary_metrics == ("ctr",)
    assert "PRIMARY METRIC OVERRIDDEN" in note
    defaults, note, _ = effective_plan(None, primary_metric="", override_plan=False, where="router v3")
    assert defaults == AnalysisPlan() and "records no analysis plan" in note


def test_overridden_plan_is_said_in_the_decision(user_days, pre_period):
    frame = user_days()
    plan, note, overridden = effective_plan(
        PLAN.to_json(), primary_metric="clicks_per_user", override_plan=True, where="router v3"
    )
    config = records_config(plan, split=0.5, users=frame["user_id"].nunique(), days_observed=14)
    inputs = ReadoutInputs(frame, latency_p50_ms=LATENCY)
    readout = analyse_records(inputs, plan, config, pre_period, plan_note=note, plan_overridden=overridden)
    assert readout.primary.metric == "clicks_per_user"
    assert "The primary metric was changed after the plan" in readout.decision
    assert json.loads(json.dumps(readout.to_dict(), default=str))["plan_overridden"] is True


def test_cuped_that_reduces_variance_decides(user_days):
    frame = user_days()
    users = user_totals(frame)
    pre_period = (users["clicks"] + np.random.default_rng(1).poisson(1, len(users))).astype(float)
    readout = _readout(frame, pre_period)
    primary = readout.primary
    assert primary.cuped.variance_reduction > 0.3 and primary.used is primary.cuped
    assert primary.method == "CUPED" and "(CUPED)" in readout.decision
    assert readout.results_table()["method"].iloc[0] == "CUPED"


def test_cuped_that_increases_variance_is_not_used(user_days):
    # B's few users carry a covariate of pure noise: the pooled theta (set by A's) widens B's variance more
    # than it narrows A's, so the verdict rests on the unadjusted delta method.
    full = user_days(ctr_a=0.05, ctr_b=0.05, seed=4)
    frame = full[(full["policy"] == "A") | (full["user_id"] % 10 == 0)].reset_index(drop=True)
    users = user_totals(frame)
    noise = np.random.default_rng(1).normal(0, 30, len(users))
    pre_period = pd.Series(np.where(users["policy"] == "A", users["clicks"], noise), index=users.index)
    plan, share_b = PLAN, float((users["policy"] == "B").mean())
    config = records_config(plan, split=share_b, users=len(users), days_observed=frame["day"].nunique())
    readout = analyse_records(ReadoutInputs(frame, latency_p50_ms=LATENCY), plan, config, pre_period)
    primary = readout.primary
    assert readout.healthy and primary.cuped.variance_reduction < 0
    assert primary.used is primary.lift and primary.method == "delta method"
    unadjusted = primary.lift.absolute
    assert f"CI [{unadjusted.ci_low:+.4g}, {unadjusted.ci_high:+.4g}]" in readout.decision
    assert "(delta method)" in readout.decision


# -- through the real records and the ingest reduction ------------------------------------------------------


def _records_readout(tmp_path, spec):
    written = write_experiment_records(tmp_path / "records", spec)
    data = read_records(
        str(written.directory),
        router_name=spec.router_name,
        router_version=spec.router_version,
        salt=spec.salt,
        start=None,
        end=None,
        events=(),
        workdir=tmp_path,
    )
    plan = AnalysisPlan(planned_days=spec.days)
    inputs = inputs_from_data(data)
    users = data.user_days["user_id"].nunique()
    config = records_config(plan, split=spec.split, users=users, days_observed=spec.days)
    return analyse_records(inputs, plan, config, pd.Series(dtype=float)), written


def test_records_with_a_planted_lift_decide_b_and_cover_the_truth(tmp_path):
    spec = RecordsSpec(n_users=3000, days=5, ctr_a=0.05, ctr_b=0.065, candidates=4, slate=4, seed=1)
    readout, _ = _records_readout(tmp_path, spec)
    assert readout.healthy, readout.health_failures
    assert readout.winner == "B"
    absolute = readout.primary.used.absolute
    assert absolute.ci_low <= spec.ctr_b - spec.ctr_a <= absolute.ci_high
    assert list(readout.daily["day"]) == list(range(5))


def test_records_with_five_percent_of_b_dropped_fail_srm(tmp_path):
    spec = RecordsSpec(n_users=30_000, days=2, candidates=2, slate=2, drop_b_users=0.05, seed=3)
    readout, _ = _records_readout(tmp_path, spec)
    assert "srm" in readout.health_failures
    assert readout.decision.startswith(f"{UNTRUSTED}: health checks failed (srm")
