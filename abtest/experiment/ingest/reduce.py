"""One experiment's records reduced by SQL to what the statistics need: one row per (day, user), per-arm summaries.

An experiment is a router identity (``router_version`` and/or ``salt``, optionally ``router_name``) and a UTC
window ``[start, end)``. :func:`reduce_experiment` runs the same statements on every backend of
:mod:`.read` (DuckDB over the loaded files, SQLite, PostgreSQL); only three expressions differ by dialect
(:class:`_Dialect`: how a time compares, how a literal time is written, the day index). Every join and count is
SQL, so the statistics engine only ever sees one row per user and day.

The rules, in the order the statements apply them:

- decisions of the experiment: its identity, inside the window, not ``forced`` (QA traffic is not randomised),
  one per key ``(request_id, row)`` (a duplicate counts once: ingest is idempotent; if copies differ, each column
  keeps its smallest value). A decision's ``day`` is its UTC date minus the window's first date.
- a user's ``policy`` is the arm of the user's first decision (a user seen in both arms stays there, counted by
  the ``users_in_both_arms`` health check).
- impressions and outcomes: inside the window, one per ``event_id``, joined to the decision that scored the same
  ``(request_id, user_id, item_id)`` (a request may score several users); they count on that decision's day.
  ``clicks`` counts ``click`` outcomes that follow an impression of the same item; ``value`` sums the primary
  event's values (a missing value counts 1.0). ``requests`` counts a user's requests on the day of their first
  decision.
- per arm: decisions, requests, users (by policy), request latency p50/p95 (nearest rank over requests: each
  request's ``latency_ms``), cold-start share of decisions, mean score; per (day, arm) newly assigned users.

Health counts (each with up to :data:`EXAMPLES` example ids), keyed like the readout's health checks:
``users_in_both_arms``, ``impressions_without_decision`` (no decision of any version has that request, user and
item),
``requests_never_shown``, ``duplicates`` (all three tables; ``duplicate_decisions`` etc. per table),
``events_outside_window`` (the experiment's decisions outside the window, and impressions/outcomes of its
requests outside it), ``other_versions`` (the same router's decisions in the window under another version or
salt), ``outcomes_without_impression`` and ``torn_tails``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ab_router.arms import EXPERIMENT_ARMS
from ab_router.records import CLICK
from abtest.experiment.ingest.read import RecordStore, TornTail, open_records, sql_literal

log = logging.getLogger(__name__)

EXAMPLES = 5  # example ids kept per health count
USER_DAY_COLUMNS: tuple[str, ...] = (
    "day",
    "user_id",
    "policy",
    "requests",
    "impressions",
    "clicks",
    "value",
    "score_sum",
    "cold_impressions",
)
ARM_COLUMNS: tuple[str, ...] = (
    "arm",
    "decisions",
    "requests",
    "users",
    "latency_p50_ms",
    "latency_p95_ms",
    "cold_share",
    "mean_score",
)
HEALTH_COUNTS: tuple[str, ...] = (
    "users_in_both_arms",
    "impressions_without_decision",
    "requests_never_shown",
    "duplicates",
    "duplicate_decisions",
    "duplicate_impressions",
    "duplicate_outcomes",
    "events_outside_window",
    "other_versions",
    "outcomes_without_impression",
    "torn_tails",
)


# Scores are summed as integers of 1e-9: a parallel engine (DuckDB) adds a group's doubles in whatever order its
# threads meet them, so a plain SUM could differ in the last bit between two reads of the same records. An
# integer sum is exact in any order on every engine; 1e-9 keeps an arm's sum of a billion scores below 2^63.
SCORE_SCALE = 1_000_000_000


@dataclass(frozen=True)
class Experiment:
    """Which records make the experiment: the router's identity and a UTC window ``[start, end)``."""

    start: datetime
    end: datetime
    router_version: str | None = None
    salt: str | None = None
    router_name: str | None = None
    primary_event: str = CLICK

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, datetime) or value.tzinfo is None:
                raise ValueError(f"experiment {name} must be a timezone-aware datetime, got {value!r}")
        if self.end <= self.start:
            raise ValueError(f"experiment window is empty: end {self.end} is not after start {self.start}")
        if self.router_version is None and self.salt is None:
            raise ValueError("an experiment needs its router_version or its salt (or both), got neither")
        if not self.primary_event:
            raise ValueError("primary_event must be an outcome event name, got ''")

    @property
    def first_date(self) -> str:
        """The window's first UTC date (day 0), ISO."""
        return self.start.astimezone(UTC).date().isoformat()


@dataclass(frozen=True)
class HealthCount:
    """How many offending rows (or users, requests) one check found, and a few of their ids."""

    count: int
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExperimentData:
    """The reduction of one experiment: what the statistics and the readout take."""

    experiment: Experiment
    user_days: pd.DataFrame  # USER_DAY_COLUMNS, one row per (day, user_id), sorted
    arms: pd.DataFrame  # ARM_COLUMNS, one row per arm seen
    new_users: pd.DataFrame  # day, arm, users: users whose first decision is on that day
    health: Mapping[str, HealthCount]
    identity: pd.DataFrame  # router_name, router_version, salt, assignment, split, forced, decisions
    torn_tails: tuple[TornTail, ...] = ()
    location: str = ""

    def health_counts(self) -> dict[str, int]:
        """Health check name -> count."""
        return {name: value.count for name, value in self.health.items()}

    def health_examples(self) -> dict[str, str]:
        """Health check name -> its example ids, comma-separated ('' when none)."""
        return {name: ", ".join(value.examples) for name, value in self.health.items()}

    def latency_p50_ms(self) -> dict[str, float]:
        """Arm -> median request latency, ms."""
        return dict(zip(self.arms["arm"], self.arms["latency_p50_ms"].astype(float), strict=True))


def read_experiment(
    location: str | Path, experiment: Experiment, *, events: tuple[str, ...] = (), workdir: Path | None = None
) -> ExperimentData:
    """Open, validate and reduce: the one call ``analyze`` needs (``events``: outcome names besides click)."""
    declared = tuple(dict.fromkeys((*events, experiment.primary_event)))
    with open_records(location, events=declared, workdir=workdir) as store:
        return reduce_experiment(store, experiment)


class _Dialect:
    """What differs between DuckDB, PostgreSQL, SQLite and Spark SQL: time comparison and literals, the day index,
    the double type, a scaled integer sum and how a staging table is made."""

    NAMES = ("duckdb", "postgresql", "sqlite", "spark")

    def __init__(self, name: str, first_date: str) -> None:
        if name not in self.NAMES:
            raise ValueError(f"dialect must be one of {list(self.NAMES)}, got {name!r}")
        self.name = name
        self.first_date = first_date

    def time(self, column: str) -> str:
        """A comparable time: SQLite stores UTC text, compared as Julian days (about 50 µs resolution)."""
        return f"julianday({column})" if self.name == "sqlite" else column

    def literal(self, value: datetime) -> str:
        """A UTC instant as a literal comparable with :meth:`time`."""
        utc = value.astimezone(UTC)
        if self.name == "sqlite":
            return f"julianday('{utc.strftime('%Y-%m-%d %H:%M:%S.%f')}')"
        if self.name == "spark":  # the session is in UTC (abtest.spark)
            return f"CAST('{utc.isoformat()}' AS TIMESTAMP)"
        return f"CAST('{utc.isoformat()}' AS TIMESTAMPTZ)"

    def day(self, column: str) -> str:
        """Whole UTC days from the window's first date to the column's date."""
        if self.name == "sqlite":
            return f"CAST(julianday(date({column})) - julianday('{self.first_date}') AS INTEGER)"
        if self.name == "postgresql":
            return f"(CAST(({column} AT TIME ZONE 'UTC') AS DATE) - DATE '{self.first_date}')"
        if self.name == "spark":
            return f"datediff(CAST({column} AS DATE), DATE '{self.first_date}')"
        return f"date_diff('day', DATE '{self.first_date}', CAST({column} AS DATE))"  # the session is in UTC

    @property
    def double(self) -> str:
        """The SQL name of a double."""
        return "DOUBLE" if self.name == "spark" else "DOUBLE PRECISION"

    def score_sum(self, column: str) -> str:
        """The sum of a score column as a double, added as integers of 1 / SCORE_SCALE (see SCORE_SCALE).

        Spark divides a BIGINT by a decimal literal in decimal arithmetic rounded to 6 places, so there the sum
        is made a double first; the other engines already divide in double.
        """
        total = f"SUM(CAST(ROUND({column} * {SCORE_SCALE}) AS BIGINT))"
        if self.name == "spark":
            total = f"CAST({total} AS DOUBLE)"
        return f"{total} / {SCORE_SCALE}.0"

    def create_staging(self, name: str, select: str) -> str:
        """A staging table of the reduction; Spark caches it (built once, read by several statements)."""
        if self.name == "spark":
            return f"CACHE TABLE {name} AS {select}"
        return f"CREATE TEMPORARY TABLE {name} AS {select}"

    def drop_staging(self, name: str) -> str:
        """Drop a staging table made by :meth:`create_staging` (Spark: its cached view)."""
        return f"DROP {'VIEW' if self.name == 'spark' else 'TABLE'} IF EXISTS {name}"


def reduce_experiment(store: RecordStore, experiment: Experiment) -> ExperimentData:
    """Reduce the store's records for ``experiment`` (see the module docstring for every rule)."""
    sql = _Dialect(store.dialect, experiment.first_date)
    run = store.query
    identity = _identity_condition(experiment)

    def window(alias: str) -> str:
        column = sql.time(f"{alias}.event_time")
        return f"({column} >= {sql.literal(experiment.start)} AND {column} < {sql.literal(experiment.end)})"

    def stage(name: str, select: str) -> None:
        run(sql.create_staging(name, select))

    for name in _STAGING:
        run(sql.drop_staging(name))
    # The experiment's decisions, one per key; copies = how often the key was recorded.
    stage(
        "exp_decisions",
        f"""
        SELECT d.request_id, d."row", MIN(d.user_id) AS user_id, MIN(d.item_id) AS item_id, MIN(d.arm) AS arm,
               MIN(d.score) AS score, MAX(CASE WHEN d.cold_user OR d.cold_item THEN 1 ELSE 0 END) AS cold,
               MIN(d.latency_ms) AS latency_ms, MIN(d.event_time) AS event_time,
               MIN({sql.day("d.event_time")}) AS day, COUNT(*) AS copies
        FROM abtest_decisions d
        WHERE {identity} AND {window("d")} AND NOT d.forced
        GROUP BY d.request_id, d."row"
    """,
    )
    # One row per (request, user): a request may score several users (a batch), each in the user's own arm.
    stage(
        "exp_requests",
        """
        SELECT request_id, user_id, arm, MIN(day) AS day, MAX(latency_ms) AS latency_ms
        FROM exp_decisions GROUP BY request_id, user_id, arm
    """,
    )
    for table, columns in (
        ("impressions", "MIN(e.request_id) AS request_id, MIN(e.user_id) AS user_id, MIN(e.item_id) AS item_id"),
        (
            "outcomes",
            "MIN(e.request_id) AS request_id, MIN(e.user_id) AS user_id, MIN(e.item_id) AS item_id, "
            "MIN(e.event) AS event, MIN(COALESCE(e.value, 1.0)) AS value",
        ),
    ):
        stage(
            f"exp_{table}_events",
            f"""
            SELECT e.event_id, {columns}, COUNT(*) AS copies
            FROM abtest_{table} e WHERE {window("e")} GROUP BY e.event_id
        """,
        )
    # An impression or outcome belongs to the decision that scored the same item for the same user in its request.
    stage(
        "exp_impressions",
        """
        SELECT i.event_id, d.user_id, d.arm, d.day, d.score, d.cold
        FROM exp_impressions_events i
        JOIN exp_decisions d ON d.request_id = i.request_id AND d.user_id = i.user_id AND d.item_id = i.item_id
    """,
    )
    events = ", ".join(sql_literal(name) for name in dict.fromkeys((CLICK, experiment.primary_event)))
    stage(
        "exp_outcomes",
        f"""
        SELECT o.event_id, o.event, o.value, d.user_id, d.day
        FROM exp_outcomes_events o
        JOIN exp_decisions d ON d.request_id = o.request_id AND d.user_id = o.user_id AND d.item_id = o.item_id
        WHERE o.event IN ({events}) AND EXISTS (
            SELECT 1 FROM exp_impressions_events i
            WHERE i.request_id = o.request_id AND i.user_id = o.user_id AND i.item_id = o.item_id
        )
    """,
    )
    # The user's arms and when each was first seen (small: at most two rows per user), then the first arm.
    stage(
        "exp_user_arms",
        """
        SELECT user_id, arm, MIN(event_time) AS first_time, MIN(day) AS first_day
        FROM exp_decisions GROUP BY user_id, arm
    """,
    )
    stage(
        "exp_users",
        """
        SELECT a.user_id, f.arms, f.first_day, MIN(a.arm) AS policy
        FROM exp_user_arms a
        JOIN (
            SELECT user_id, COUNT(*) AS arms, MIN(first_time) AS first_time, MIN(first_day) AS first_day
            FROM exp_user_arms GROUP BY user_id
        ) f ON f.user_id = a.user_id AND f.first_time = a.first_time
        GROUP BY a.user_id, f.arms, f.first_day
    """,
    )
    primary = sql_literal(experiment.primary_event)
    user_days = run(f"""
        SELECT r.day, r.user_id, u.policy, r.requests,
               COALESCE(i.impressions, 0) AS impressions, COALESCE(c.clicks, 0) AS clicks,
               COALESCE(c.value, 0.0) AS value, COALESCE(i.score_sum, 0.0) AS score_sum,
               COALESCE(i.cold_impressions, 0) AS cold_impressions
        FROM (SELECT day, user_id, COUNT(*) AS requests FROM exp_requests GROUP BY day, user_id) r
        JOIN exp_users u ON u.user_id = r.user_id
        LEFT JOIN (
            SELECT day, user_id, COUNT(*) AS impressions,
                   {sql.score_sum("score")} AS score_sum,
                   SUM(cold) AS cold_impressions
            FROM exp_impressions GROUP BY day, user_id
        ) i ON i.day = r.day AND i.user_id = r.user_id
        LEFT JOIN (
            SELECT day, user_id, SUM(CASE WHEN event = '{CLICK}' THEN 1 ELSE 0 END) AS clicks,
                   SUM(CASE WHEN event = {primary} THEN value ELSE 0.0 END) AS value
            FROM exp_outcomes GROUP BY day, user_id
        ) c ON c.day = r.day AND c.user_id = r.user_id
        ORDER BY r.day, r.user_id
    """)
    arms = _arms(run, sql)
    new_users = run("""
        SELECT first_day AS day, policy AS arm, COUNT(*) AS users FROM exp_users
        GROUP BY first_day, policy ORDER BY first_day, policy
    """)
    health = _health(store, experiment, identity, window)
    identity_found = run(f"""
        SELECT d.router_name, d.router_version, d.salt, d.assignment, d.split, d.forced, COUNT(*) AS decisions
        FROM abtest_decisions d WHERE {identity} AND {window("d")}
        GROUP BY d.router_name, d.router_version, d.salt, d.assignment, d.split, d.forced
        ORDER BY d.router_name, d.router_version, d.salt, d.split
    """)
    for name in _STAGING:
        run(sql.drop_staging(name))
    data = ExperimentData(
        experiment=experiment,
        user_days=_typed(user_days, _USER_DAY_TYPES),
        arms=_typed(arms, _ARM_TYPES),
        new_users=_typed(new_users, {"day": "int64", "arm": "object", "users": "int64"}),
        health=health,
        identity=_typed(
            identity_found,
            {"split": "float64", "decisions": "int64", "forced": "bool"},
        ),
        torn_tails=store.torn_tails,
        location=store.location,
    )
    log.info(
        "experiment %s: %d user-days, %d users; health: %s",
        _describe(experiment),
        len(data.user_days),
        data.user_days["user_id"].nunique(),
        {name: count for name, count in data.health_counts().items() if count} or "clean",
    )
    return data


_STAGING: tuple[str, ...] = (
    "exp_decisions",
    "exp_requests",
    "exp_impressions_events",
    "exp_outcomes_events",
    "exp_impressions",
    "exp_outcomes",
    "exp_user_arms",
    "exp_users",
)
_USER_DAY_TYPES = {
    "day": "int64",
    "user_id": "int64",
    "policy": "object",
    "requests": "int64",
    "impressions": "int64",
    "clicks": "int64",
    "value": "float64",
    "score_sum": "float64",
    "cold_impressions": "int64",
}
_ARM_TYPES = {
    "arm": "object",
    "decisions": "int64",
    "requests": "int64",
    "users": "int64",
    "latency_p50_ms": "float64",
    "latency_p95_ms": "float64",
    "cold_share": "float64",
    "mean_score": "float64",
}


def _describe(experiment: Experiment) -> str:
    parts = [f"{name}={getattr(experiment, name)}" for name in ("router_name", "router_version", "salt")]
    return ", ".join(p for p in parts if not p.endswith("=None")) + f", [{experiment.start}, {experiment.end})"


def _identity_condition(
    experiment: Experiment | None = None,
    alias: str = "d",
    *,
    router_name: str | None = None,
    router_version: str | None = None,
    salt: str | None = None,
) -> str:
    """The decisions of one router identity: ``experiment``'s, or the given fields (None = any)."""
    if experiment is not None:
        router_name, router_version, salt = experiment.router_name, experiment.router_version, experiment.salt
    conditions = [
        f"{alias}.{column} = {sql_literal(value)}"
        for column, value in (("router_name", router_name), ("router_version", router_version), ("salt", salt))
        if value is not None
    ]
    return "(" + " AND ".join(conditions) + ")"


def decision_span(
    store: RecordStore, *, router_name: str, router_version: str, salt: str | None
) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The first and last decision time (UTC) of a router version in ``store``; None when it has none.

    What an open experiment window is derived from before the experiment is reduced.
    """
    identity = _identity_condition(router_name=router_name, router_version=router_version, salt=salt)
    bounds = store.query(
        f"SELECT MIN(d.event_time) AS first_time, MAX(d.event_time) AS last_time FROM abtest_decisions d "
        f"WHERE {identity}"
    )
    first, last = (pd.to_datetime(bounds[c], utc=True).iloc[0] for c in ("first_time", "last_time"))
    return None if pd.isna(first) else (first, last)


def _typed(frame: pd.DataFrame, types: Mapping[str, str]) -> pd.DataFrame:
    """Backends return different dtypes (PostgreSQL decimals, SQLite ints for booleans): one set of dtypes."""
    frame = frame.copy()
    for column, dtype in types.items():
        if column in frame:
            frame[column] = frame[column].astype(dtype)
    return frame.reset_index(drop=True)


def _arms(run: Any, sql: _Dialect) -> pd.DataFrame:
    decisions = run(f"""
        SELECT arm, COUNT(*) AS decisions, AVG(CAST(cold AS {sql.double})) AS cold_share,
               {sql.score_sum("score")} / COUNT(*) AS mean_score
        FROM exp_decisions GROUP BY arm
    """)
    requests = run("""
        SELECT arm, COUNT(*) AS requests,
               MIN(CASE WHEN rank_in_arm >= 0.5 * n THEN latency_ms END) AS latency_p50_ms,
               MIN(CASE WHEN rank_in_arm >= 0.95 * n THEN latency_ms END) AS latency_p95_ms
        FROM (
            SELECT arm, latency_ms, ROW_NUMBER() OVER (PARTITION BY arm ORDER BY latency_ms) AS rank_in_arm,
                   COUNT(*) OVER (PARTITION BY arm) AS n
            FROM (
                SELECT request_id, arm, MAX(latency_ms) AS latency_ms FROM exp_requests GROUP BY request_id, arm
            ) per_request
        ) ranked
        GROUP BY arm
    """)
    users = run("SELECT policy AS arm, COUNT(*) AS users FROM exp_users GROUP BY policy")
    arms = decisions.merge(requests, on="arm", how="outer").merge(users, on="arm", how="outer")
    arms[["decisions", "requests", "users"]] = arms[["decisions", "requests", "users"]].fillna(0)
    order = {arm: index for index, arm in enumerate(EXPERIMENT_ARMS)}
    arms = arms.sort_values("arm", key=lambda column: column.map(lambda arm: order.get(arm, len(order))))
    return arms[list(ARM_COLUMNS)]


def _health(store: RecordStore, experiment: Experiment, identity: str, window: Any) -> dict[str, HealthCount]:
    """Every count of :data:`HEALTH_COUNTS` (module docstring), each from one query over the staged tables."""

    def ids(query: str) -> HealthCount:
        # The count of all rows beside the first few distinct ids, in one statement.
        rows = store.query(f"""
            SELECT id, n FROM (SELECT id, COUNT(*) OVER () AS n FROM ({query}) q) counted
            GROUP BY id, n ORDER BY id LIMIT {EXAMPLES}
        """)
        if rows.empty:
            return HealthCount(0)
        return HealthCount(int(rows["n"].iloc[0]), tuple(str(value) for value in rows["id"]))

    def copies(table: str, key: str) -> HealthCount:
        rows = store.query(f"""
            SELECT id, SUM(copies - 1) OVER () AS n
            FROM (SELECT {key} AS id, copies FROM {table} WHERE copies > 1) q
            ORDER BY id LIMIT {EXAMPLES}
        """)
        if rows.empty:
            return HealthCount(0)
        return HealthCount(int(rows["n"].iloc[0]), tuple(dict.fromkeys(str(value) for value in rows["id"])))

    health: dict[str, HealthCount] = {}
    health["users_in_both_arms"] = ids("SELECT user_id AS id FROM exp_users WHERE arms > 1")
    health["impressions_without_decision"] = ids(f"""
        SELECT i.event_id AS id FROM abtest_impressions i
        WHERE {window("i")} AND NOT EXISTS (
            SELECT 1 FROM abtest_decisions d
            WHERE d.request_id = i.request_id AND d.user_id = i.user_id AND d.item_id = i.item_id
        )
        GROUP BY i.event_id
    """)
    health["requests_never_shown"] = ids("""
        SELECT DISTINCT r.request_id AS id FROM exp_requests r
        WHERE NOT EXISTS (SELECT 1 FROM abtest_impressions i WHERE i.request_id = r.request_id)
    """)
    health["duplicate_decisions"] = copies("exp_decisions", "request_id")
    health["duplicate_impressions"] = copies("exp_impressions_events", "event_id")
    health["duplicate_outcomes"] = copies("exp_outcomes_events", "event_id")
    per_table = [health[f"duplicate_{table}"] for table in ("decisions", "impressions", "outcomes")]
    health["duplicates"] = HealthCount(
        sum(count.count for count in per_table), tuple(e for count in per_table for e in count.examples)[:EXAMPLES]
    )
    outside_requests = f"SELECT d.request_id FROM abtest_decisions d WHERE {identity} AND NOT {window('d')}"
    ours = "SELECT request_id FROM exp_requests"
    health["events_outside_window"] = ids(f"""
        SELECT d.request_id AS id FROM abtest_decisions d WHERE {identity} AND NOT {window("d")}
        UNION ALL
        SELECT i.request_id AS id FROM abtest_impressions i
        WHERE (NOT {window("i")} AND i.request_id IN ({ours})) OR i.request_id IN ({outside_requests})
        UNION ALL
        SELECT o.request_id AS id FROM abtest_outcomes o
        WHERE (NOT {window("o")} AND o.request_id IN ({ours})) OR o.request_id IN ({outside_requests})
    """)
    router = (
        f"d.router_name = {sql_literal(experiment.router_name)}"
        if experiment.router_name is not None
        else f"d.router_name IN (SELECT d.router_name FROM abtest_decisions d WHERE {identity})"
    )
    health["other_versions"] = ids(f"""
        SELECT d.request_id AS id FROM abtest_decisions d WHERE {window("d")} AND {router} AND NOT {identity}
    """)
    health["outcomes_without_impression"] = ids("""
        SELECT o.event_id AS id FROM exp_outcomes_events o
        WHERE NOT EXISTS (
            SELECT 1 FROM abtest_impressions i
            WHERE i.request_id = o.request_id AND i.user_id = o.user_id AND i.item_id = o.item_id
        )
    """)
    health["torn_tails"] = HealthCount(
        len(store.torn_tails), tuple(f"{tail.path.parent.name}/{tail.path.name}" for tail in store.torn_tails)
    )
    return {name: health[name] for name in HEALTH_COUNTS}
