"""The reduction: equal to pandas on the same records and across DuckDB/SQLite/PostgreSQL; health on its defect."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ab_router import records
from ab_router.sinks import read_jsonl_file
from abtest.experiment.ingest.reduce import (
    ARM_COLUMNS,
    HEALTH_COUNTS,
    USER_DAY_COLUMNS,
    Experiment,
    ExperimentData,
    read_experiment,
)
from tests.fixtures.experiment_records import (
    ExperimentRecords,
    RecordsSpec,
    copy_records_to_database,
    write_experiment_records,
)


def experiment_of(spec: RecordsSpec, **changes) -> Experiment:
    return Experiment(
        start=spec.start, end=spec.end, router_version=spec.router_version, salt=spec.salt, **changes
    )


def load(written: ExperimentRecords, table: str) -> pd.DataFrame:
    rows = [row for path in written.files(table) for row in read_jsonl_file(path)[0]]
    frame = pd.DataFrame(rows, columns=list(records.RECORD_TYPES[table].columns))
    frame["event_time"] = pd.to_datetime(frame["event_time"], utc=True, format="ISO8601")
    return frame


def pandas_reduction(written: ExperimentRecords, experiment: Experiment) -> dict[str, pd.DataFrame]:
    """The reduce module's rules, written again in pandas (row by row where SQL groups)."""
    start, end = pd.Timestamp(experiment.start), pd.Timestamp(experiment.end)

    def inside(frame: pd.DataFrame) -> pd.Series:
        return (frame["event_time"] >= start) & (frame["event_time"] < end)

    decisions = load(written, "decisions")
    ours = (decisions["router_version"] == experiment.router_version) & (decisions["salt"] == experiment.salt)
    d = decisions[ours & inside(decisions) & ~decisions["forced"]].drop_duplicates(["request_id", "row"]).copy()
    d["day"] = (d["event_time"].dt.floor("D") - start.floor("D")).dt.days
    d["cold"] = (d["cold_user"] | d["cold_item"]).astype(int)
    slot = ["request_id", "user_id", "item_id"]
    slots = d[[*slot, "arm", "day", "score", "cold"]]
    impressions = load(written, "impressions")
    shown = impressions[inside(impressions)].drop_duplicates("event_id")[slot].merge(slots, on=slot)
    outcomes = load(written, "outcomes")
    outcomes = outcomes[inside(outcomes)].drop_duplicates("event_id")
    outcomes = outcomes.merge(shown.drop_duplicates(slot), on=slot)
    policy = d.sort_values(["event_time", "arm"]).groupby("user_id")["arm"].first().rename("policy")
    keys = ["day", "user_id"]
    clicked = outcomes[outcomes["event"] == "click"]
    primary = outcomes[outcomes["event"] == experiment.primary_event]
    user_days = (
        d.groupby(["request_id", "user_id"])["day"].min().reset_index().groupby(keys).size().rename("requests")
        .to_frame()
        .join(shown.groupby(keys).size().rename("impressions"))
        .join(clicked.groupby(keys).size().rename("clicks"))
        .join(primary.groupby(keys)["value"].sum().rename("value"))
        .join(shown.groupby(keys)["score"].sum().rename("score_sum"))
        .join(shown.groupby(keys)["cold"].sum().rename("cold_impressions"))
        .fillna(0).reset_index().join(policy, on="user_id")
    )  # fmt: skip
    requests = d.groupby(["request_id", "arm"])["latency_ms"].max().reset_index()

    def nearest_rank(values: pd.Series, q: float) -> float:
        ordered = np.sort(values.to_numpy())
        return float(ordered[math.ceil(q * len(ordered)) - 1])

    arms = pd.DataFrame(
        {
            "arm": arm,
            "decisions": int((d["arm"] == arm).sum()),
            "requests": int((requests["arm"] == arm).sum()),
            "users": int((policy == arm).sum()),
            "latency_p50_ms": nearest_rank(requests.loc[requests["arm"] == arm, "latency_ms"], 0.5),
            "latency_p95_ms": nearest_rank(requests.loc[requests["arm"] == arm, "latency_ms"], 0.95),
            "cold_share": d.loc[d["arm"] == arm, "cold"].mean(),
            "mean_score": d.loc[d["arm"] == arm, "score"].mean(),
        }
        for arm in ("A", "B")
    )
    first_day = d.groupby("user_id")["day"].min()
    assigned = pd.DataFrame({"day": first_day, "arm": policy})
    new_users = assigned.groupby(["day", "arm"]).size().rename("users").reset_index()
    return {"user_days": user_days, "arms": arms, "new_users": new_users}


def assert_same_reduction(got: ExperimentData, expected: dict[str, pd.DataFrame]) -> None:
    pd.testing.assert_frame_equal(
        got.user_days, expected["user_days"][list(USER_DAY_COLUMNS)].astype(got.user_days.dtypes.to_dict())
    )
    pd.testing.assert_frame_equal(got.arms, expected["arms"][list(ARM_COLUMNS)].astype(got.arms.dtypes.to_dict()))
    pd.testing.assert_frame_equal(got.new_users, expected["new_users"].astype(got.new_users.dtypes.to_dict()))


def test_reduction_equals_pandas_on_clean_records(clean_records: ExperimentRecords) -> None:
    experiment = experiment_of(clean_records.spec)
    got = read_experiment(clean_records.directory, experiment)
    assert_same_reduction(got, pandas_reduction(clean_records, experiment))
    # and the totals are what the generator wrote
    assert got.user_days["impressions"].sum() == clean_records.rows["impressions"]
    assert got.user_days["clicks"].sum() == clean_records.rows["outcomes"]
    assert got.user_days["value"].sum() == clean_records.rows["outcomes"]
    assert got.arms["decisions"].sum() == clean_records.rows["decisions"]
    assert set(got.health_counts().values()) == {0}
    assert got.identity[["router_version", "salt", "split", "decisions"]].values.tolist() == [
        ["3", "exp-3", 0.5, clean_records.rows["decisions"]]
    ]


def test_reduction_equals_pandas_with_every_defect(defect_records: ExperimentRecords) -> None:
    experiment = experiment_of(defect_records.spec)
    got = read_experiment(defect_records.directory, experiment)
    assert_same_reduction(got, pandas_reduction(defect_records, experiment))


def test_user_days_fit_the_readout_analysis(clean_records: ExperimentRecords) -> None:
    """The columns the existing readout takes (traffic.user_day_table's) come first, with its dtypes."""
    got = read_experiment(clean_records.directory, experiment_of(clean_records.spec)).user_days
    assert list(got.columns[:6]) == ["day", "user_id", "policy", "requests", "impressions", "clicks"]
    assert got[["day", "user_id"]].duplicated().sum() == 0
    assert set(got["policy"]) == {"A", "B"}
    assert got["day"].between(0, clean_records.spec.days - 1).all()


def test_primary_event_value_and_declared_events(tmp_path: Path) -> None:
    written = write_experiment_records(tmp_path / "r", RecordsSpec(n_users=40, days=2, seed=5))
    path = written.files("outcomes")[0]
    lines = path.read_text().splitlines()
    purchase = lines[0].replace('"event":"click"', '"event":"purchase"').replace('"value":1.0', '"value":12.5')
    purchase = purchase.replace('"event_id":"', '"event_id":"p-')
    path.write_text("\n".join([*lines, purchase]) + "\n")
    clicks = read_experiment(written.directory, experiment_of(written.spec), events=("purchase",))
    bought = read_experiment(written.directory, experiment_of(written.spec, primary_event="purchase"))
    assert clicks.user_days["clicks"].sum() == bought.user_days["clicks"].sum() == written.rows["outcomes"]
    assert clicks.user_days["value"].sum() == written.rows["outcomes"]
    assert bought.user_days["value"].sum() == 12.5


def test_user_in_both_arms_keeps_the_arm_of_the_first_decision(tmp_path: Path) -> None:
    spec = RecordsSpec(n_users=40, days=3, both_arms_users=2, seed=2)
    written = write_experiment_records(tmp_path / "r", spec)
    got = read_experiment(written.directory, experiment_of(spec))
    decisions = load(written, "decisions").sort_values("event_time")
    for user in written.planted["both_arms"]:
        first_arm = decisions.loc[decisions["user_id"] == user, "arm"].iloc[0]
        assert set(got.user_days.loc[got.user_days["user_id"] == user, "policy"]) == {first_arm}
    assert got.health["users_in_both_arms"].examples == tuple(str(u) for u in sorted(written.planted["both_arms"]))


def test_lost_b_users_are_missing_from_the_reduction(tmp_path: Path) -> None:
    spec = RecordsSpec(n_users=300, days=2, drop_b_users=0.3, active_share=1.0, seed=4)
    written = write_experiment_records(tmp_path / "r", spec)
    got = read_experiment(written.directory, experiment_of(spec))
    assert not set(written.planted["dropped_b_users"]) & set(got.user_days["user_id"])
    users = got.arms.set_index("arm")["users"]
    assert users["A"] + users["B"] + len(written.planted["dropped_b_users"]) == spec.n_users
    assert users["B"] < 0.85 * users["A"]


def test_planted_lift_is_in_the_per_user_sums(tmp_path: Path) -> None:
    spec = RecordsSpec(n_users=3000, days=3, ctr_a=0.05, ctr_b=0.07, seed=7)
    written = write_experiment_records(tmp_path / "r", spec)
    totals = (
        read_experiment(written.directory, experiment_of(spec))
        .user_days.groupby("policy")[["impressions", "clicks"]]
        .sum()
    )
    ctr = totals["clicks"] / totals["impressions"]
    for arm, truth in spec.true_ctr.items():
        standard_error = math.sqrt(truth * (1 - truth) / totals.loc[arm, "impressions"]) * 2  # users cluster
        assert abs(ctr[arm] - truth) < 4 * standard_error, (arm, ctr[arm], truth)
    assert written.true_lift == pytest.approx(0.4)


DEFECTS = {
    # spec change: (health counts that must fire, the planted ids their examples must equal or None)
    "both_arms_users": ({"users_in_both_arms"}, "both_arms"),
    "orphan_impressions": ({"impressions_without_decision"}, None),
    "unshown_requests": ({"requests_never_shown"}, "unshown"),
    "duplicate_decisions": ({"duplicates", "duplicate_decisions"}, "duplicate_decisions"),
    "duplicate_impressions": ({"duplicates", "duplicate_impressions"}, "duplicate_impressions"),
    "duplicate_outcomes": ({"duplicates", "duplicate_outcomes"}, "duplicate_outcomes"),
    "outside_window_requests": ({"events_outside_window"}, "outside_window"),
    "other_version_requests": ({"other_versions"}, "other_version"),
    "orphan_outcomes": ({"outcomes_without_impression"}, "orphan_outcomes"),
    "torn_tail": ({"torn_tails"}, None),
}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_each_health_check_fires_on_its_defect_alone(tmp_path: Path, defect: str) -> None:
    spec = replace(RecordsSpec(n_users=40, days=2, seed=6), **{defect: True if defect == "torn_tail" else 2})
    written = write_experiment_records(tmp_path / "r", spec)
    got = read_experiment(written.directory, experiment_of(spec))
    fired, planted = DEFECTS[defect]
    counts = got.health_counts()
    assert {name for name, count in counts.items() if count} == fired
    if planted is not None:
        for name in fired - {"duplicates"}:
            assert set(got.health[name].examples) == {str(value) for value in written.planted[planted]}
    if defect == "other_version_requests":
        assert counts["other_versions"] == 2 * spec.candidates  # rows, not requests
    if defect.startswith("duplicate_"):
        assert counts["duplicates"] == 2
        # idempotent: the copies count once
        clean = read_experiment(written.directory, experiment_of(spec)).user_days
        assert clean["requests"].sum() == load(written, "decisions").drop_duplicates("request_id").shape[0]


def test_clean_records_pass_every_health_check(clean_records: ExperimentRecords) -> None:
    got = read_experiment(clean_records.directory, experiment_of(clean_records.spec))
    assert got.health_counts() == dict.fromkeys(HEALTH_COUNTS, 0)
    assert got.health_examples() == dict.fromkeys(HEALTH_COUNTS, "")


def test_experiment_by_salt_alone_and_by_another_version(defect_records: ExperimentRecords) -> None:
    spec = defect_records.spec
    by_salt = read_experiment(defect_records.directory, Experiment(start=spec.start, end=spec.end, salt=spec.salt))
    other = read_experiment(
        defect_records.directory, Experiment(start=spec.start, end=spec.end, router_version=spec.other_version)
    )
    assert by_salt.arms["decisions"].sum() > other.arms["decisions"].sum() == 2 * spec.candidates
    assert set(by_salt.identity["router_version"]) == {spec.router_version, spec.other_version}
    assert by_salt.health_counts()["other_versions"] == 0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"router_version": None, "salt": None}, "router_version or its salt"),
        ({"end": RecordsSpec().start}, "window is empty"),
        ({"start": RecordsSpec().start.replace(tzinfo=None)}, "timezone-aware"),
    ],
)
def test_experiment_is_checked(changes: dict, message: str) -> None:
    spec = RecordsSpec()
    arguments = {"start": spec.start, "end": spec.end, "router_version": "3", "salt": None, **changes}
    with pytest.raises(ValueError, match=message):
        Experiment(**arguments)


def reduction_frames(data: ExperimentData) -> dict[str, object]:
    return {
        "user_days": data.user_days,
        "arms": data.arms,
        "new_users": data.new_users,
        "identity": data.identity,
        "health": {name: (h.count, h.examples) for name, h in data.health.items() if name != "torn_tails"},
    }


def assert_same_data(left: ExperimentData, right: ExperimentData) -> None:
    a, b = reduction_frames(left), reduction_frames(right)
    assert a["health"] == b["health"]
    for name in ("user_days", "arms", "new_users", "identity"):
        # Exact: sums of scores are integer sums (reduce.SCORE_SCALE), the same in any order on any engine.
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True)


def test_sqlite_reduction_equals_duckdb_over_files(defect_records: ExperimentRecords, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'records.db'}"
    copy_records_to_database(defect_records, url)
    experiment = experiment_of(defect_records.spec)
    assert_same_data(read_experiment(url, experiment), read_experiment(defect_records.directory, experiment))


def test_postgresql_reduction_equals_duckdb_over_files(
    defect_records: ExperimentRecords, postgres_url: str
) -> None:
    copy_records_to_database(defect_records, postgres_url)
    experiment = experiment_of(defect_records.spec)
    from_files = read_experiment(defect_records.directory, experiment)
    assert_same_data(read_experiment(postgres_url, experiment), from_files)
