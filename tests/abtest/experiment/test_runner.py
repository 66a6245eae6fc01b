"""abtest/experiment/runner.py's records: a simulated experiment leaves decisions, impressions and clicks that the
ingest reduction reads back into exactly the per-user numbers the simulation itself counted."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from ab_router.assignment import AssignmentConfig
from ab_router.decision_log import DecisionLog, RouterIdentity
from ab_router.records import DECISIONS, IMPRESSIONS, OUTCOMES
from ab_router.sinks import DirectorySink, read_jsonl_file, table_files
from abtest.experiment import traffic
from abtest.experiment.ingest.reduce import Experiment, read_experiment
from abtest.experiment.plan import AnalysisPlan
from abtest.experiment.readout.experiment import RecordsReadout
from abtest.experiment.router_client import recording_scorer
from abtest.experiment.runner import ExperimentSpec, RecordsTarget, move_decisions, run_experiment
from tests.fixtures.experiment import StandInRouter, item_hash_score, prepared_data

SALT = "runner-test"


def _records(directory: Path, table) -> list[dict]:
    return [row for path in table_files(directory, table) for row in read_jsonl_file(path)[0]]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory):
    """A 4-day synthetic experiment through a recording stand-in router (as a served router is recorded)."""
    tmp = tmp_path_factory.mktemp("runner-records")
    data = prepared_data()
    router = StandInRouter(item_hash_score, lambda u, i: 1 - item_hash_score(u, i), split=0.4, salt=SALT)

    def answers(pairs, params):  # the router's answer carries the request id it was given
        return router(pairs, params).assign(request_id=pairs["request_id"].to_numpy())

    decision_log = DecisionLog(DirectorySink(tmp / "router-log"), RouterIdentity("stand_in_router", "7", "test"))
    scorer = recording_scorer(answers, decision_log, AssignmentConfig(split=0.4, salt=SALT, assignment="hash"))
    spec = ExperimentSpec(
        environment="synthetic", days=4, users_per_day=0, k=3, n_unseen=6, seed=3, alpha=0.05, split=0.4
    )
    target = RecordsTarget(
        directory=tmp / "records",
        router_log=tmp / "router-log",
        router_name="stand_in_router",
        router_version="7",
        salt=SALT,
        plan=AnalysisPlan(alpha=0.1, planned_days=4).to_json(),
    )
    outcome = run_experiment(data, scorer, spec, truth_scorer=answers, records=target)
    return data, outcome, target


def test_every_scored_shown_and_clicked_row_is_one_record(recorded) -> None:
    _, outcome, target = recorded
    decisions = _records(target.directory, DECISIONS)
    impressions = _records(target.directory, IMPRESSIONS)
    clicks = _records(target.directory, OUTCOMES)
    assert outcome.records.impressions == len(impressions) == len(outcome.impressions)
    assert outcome.records.outcomes == len(clicks) == int(outcome.impressions["click"].sum())
    assert outcome.records.decisions == len(decisions)
    # one decision per candidate row, none of them the ground truth's forced scoring
    assert len({(d["request_id"], d["row"]) for d in decisions}) == len(decisions)
    assert not any(d["forced"] for d in decisions)
    assert {d["router_version"] for d in decisions} == {"7"} and {d["salt"] for d in decisions} == {SALT}
    shown = {(d["request_id"], d["item_id"]): d["arm"] for d in decisions}
    assert all((i["request_id"], i["item_id"]) in shown for i in impressions)


def test_decisions_move_onto_their_requests_simulated_day(recorded) -> None:
    data, outcome, target = recorded
    start = traffic.calendar_start(data.test)
    day_of = outcome.impressions.groupby("request_id")["day"].first()
    for record in _records(target.directory, DECISIONS):
        request = int(record["request_id"].removeprefix("sim-"))
        event_day = (pd.Timestamp(record["event_time"]) - pd.Timestamp(start)) // timedelta(days=1) + 1
        if request in day_of.index:
            assert event_day == day_of[request]
        assert 1 <= event_day <= 4


def test_the_ingest_reduction_of_the_records_is_what_the_simulation_counted(recorded) -> None:
    data, outcome, target = recorded
    start = traffic.calendar_start(data.test)
    reduced = read_experiment(
        target.directory, Experiment(start=start, end=start + timedelta(days=4), router_version="7", salt=SALT)
    )
    assert {name: count for name, count in reduced.health_counts().items() if count} == {}
    columns = ["day", "user_id", "policy", "requests", "impressions", "clicks"]
    from_records = reduced.user_days[columns].assign(day=reduced.user_days["day"] + 1).reset_index(drop=True)
    simulated = outcome.user_days[columns].reset_index(drop=True)
    pd.testing.assert_frame_equal(from_records, simulated, check_dtype=False)


def test_the_readout_is_analyzes_readout_of_the_records_with_the_routers_plan(recorded) -> None:
    _, outcome, _ = recorded
    readout = outcome.readout
    assert isinstance(readout, RecordsReadout)
    assert readout.plan == AnalysisPlan(alpha=0.1, planned_days=4)
    assert readout.healthy and readout.days_observed == 4
    arms = readout.arms.set_index("arm")
    simulated = outcome.impressions.groupby("policy").agg(impressions=("item_id", "size"), clicks=("click", "sum"))
    assert arms.loc[["A", "B"], "impressions"].tolist() == simulated.loc[["A", "B"], "impressions"].tolist()
    assert arms.loc[["A", "B"], "clicks"].tolist() == simulated.loc[["A", "B"], "clicks"].tolist()
    assert set(outcome.truth) == {"A", "B"}  # the ground truth stays the simulation's own


def test_a_decision_of_another_experiments_request_is_refused(tmp_path: Path) -> None:
    log = DirectorySink(tmp_path / "log")
    decision_log = DecisionLog(log, RouterIdentity("r", "1", "test"))
    router = StandInRouter(item_hash_score, item_hash_score)
    pairs = pd.DataFrame({"user_id": [1], "item_id": [2], "request_id": ["someone-else"]})
    recording_scorer(
        lambda p, params: router(p, params).assign(request_id=p["request_id"].to_numpy()),
        decision_log,
        AssignmentConfig(split=0.5, salt="test", assignment="hash"),
    )(pairs, None)
    times = pd.Series([traffic.calendar_start(pd.DataFrame({"timestamp": [0]}))], index=[0])
    with pytest.raises(
        ValueError, match=r"\.jsonl:1: decision of request_id 'someone-else', not a request of this"
    ):
        move_decisions(tmp_path / "log", DirectorySink(tmp_path / "records"), times)
