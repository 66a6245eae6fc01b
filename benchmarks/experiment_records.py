"""Experiment records with known truth for benchmarks and tests: decisions, impressions, outcomes as JSON Lines
or Parquet.

:func:`write_experiment_records` writes a directory in the layout of :mod:`ab_router.records`
(``<dir>/<table>/<writer>.jsonl``) for ``n_users`` users over ``days`` UTC days: every request is scored by the
router (``candidates`` rows, one decision record each), the application shows the first ``slate`` rows
(impressions, ``position`` = row) and each shown row is clicked with the user's true CTR in its arm. The truth
(CTR of A and B, the relative lift) and every planted defect (which ids, which file and line) come back in
:class:`ExperimentRecords`, so a test asserts that the reader and the reduction find exactly what was planted.

Vectorised: numpy draws the numbers, DuckDB formats and writes the JSON (``COPY ... (FORMAT json)``), so ten
million decision rows take about half a minute. The same spec and seed write the same records. Tests import it
through ``tests.fixtures.experiment_records`` (which adds :func:`copy_records_to_database`).

``RecordsSpec(file_format="parquet")`` writes the same rows as Parquet in the canonical schema of
:mod:`abtest.experiment.ingest.layout` (``<dir>/<table>/generator-<w>.parquet``, times as UTC instants). All users
are drawn at once as for JSON Lines (the same records) unless that would hold more than :data:`CHUNK_DECISIONS`
decision rows: then users are drawn :data:`CHUNK_DECISIONS` rows' worth at a time (each chunk its own random
stream, defects planted in the last one), so a hundred million rows need no more memory than a few million.
Malformed lines and torn tails are JSON Lines defects: a Parquet spec refuses them.

Defects, each off by default: an A/A test (``aa``), B's users partly lost (``drop_b_users``: all records of that
share of B's users vanish, so the sample ratio is off), users seen in both arms, duplicated records, requests
never shown, impressions without a decision, outcomes without an impression, requests outside the window, rows
from another router version, a torn tail (a partial last line without newline) and malformed lines.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from ab_router import records
from ab_router.arms import CONTROL, TREATMENT
from ab_router.assignment import AssignmentConfig, assign_arms

MICROS_PER_DAY = 86_400_000_000
# The malformed lines a spec can plant, by the reader's rule they break.
MALFORMED_RULES: tuple[str, ...] = ("wrong_type", "missing_field", "unknown_event", "bad_json")
ISO_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+00:00"  # records.py: ISO 8601 with an explicit offset
FILE_FORMATS: tuple[str, ...] = ("jsonl", "parquet")
# Parquet output draws users in chunks of about this many decision rows (JSON Lines draws everyone at once).
CHUNK_DECISIONS = 2_000_000
# The spec's defects counted in records, planted once (in the last chunk when drawn in chunks).
_COUNTED_DEFECTS: tuple[str, ...] = (
    "both_arms_users",
    "duplicate_decisions",
    "duplicate_impressions",
    "duplicate_outcomes",
    "unshown_requests",
    "orphan_impressions",
    "orphan_outcomes",
    "outside_window_requests",
    "other_version_requests",
)


@dataclass(frozen=True)
class RecordsSpec:
    """What to write: the population, the experiment's identity, the truth and the defects to plant."""

    n_users: int = 400
    days: int = 7
    split: float = 0.5
    ctr_a: float = 0.05
    ctr_b: float = 0.06
    aa: bool = False  # B's true CTR = A's
    active_share: float = 0.6  # chance that a user comes on a given day
    requests_per_active_day: float = 1.5  # mean; at least 1
    candidates: int = 8  # rows the router scores per request
    slate: int = 4  # rows the application shows, positions 0..slate-1
    n_items: int = 500
    cold_user_share: float = 0.03
    cold_item_share: float = 0.05
    start: datetime = datetime(2026, 11, 2, tzinfo=UTC)
    router_name: str = "movielens_ctr_router"
    router_version: str = "3"
    salt: str = "exp-3"
    writers: int = 2  # files per table, like serving workers
    seed: int = 0
    drop_b_users: float = 0.0
    both_arms_users: int = 0
    duplicate_decisions: int = 0
    duplicate_impressions: int = 0
    duplicate_outcomes: int = 0
    unshown_requests: int = 0
    orphan_impressions: int = 0
    orphan_outcomes: int = 0
    outside_window_requests: int = 0
    other_version_requests: int = 0
    other_version: str = "2"
    torn_tail: bool = False
    malformed: tuple[tuple[str, str], ...] = ()  # (table, rule in MALFORMED_RULES)
    file_format: str = "jsonl"  # one of FILE_FORMATS

    @property
    def end(self) -> datetime:
        """End of the window (exclusive): ``days`` UTC days after ``start``."""
        return self.start + timedelta(days=self.days)

    @property
    def true_ctr(self) -> dict[str, float]:
        """Each arm's true CTR (expected clicks per impression)."""
        return {CONTROL: self.ctr_a, TREATMENT: self.ctr_a if self.aa else self.ctr_b}


@dataclass(frozen=True)
class MalformedLine:
    """One planted bad line: where it is (1-based line) and the rule it breaks."""

    path: Path
    line: int
    rule: str


@dataclass(frozen=True)
class ExperimentRecords:
    """A written directory and what is known about it."""

    directory: Path
    spec: RecordsSpec
    rows: dict[str, int]  # lines written per table (defects included, torn tail and malformed lines excluded)
    planted: dict[str, tuple] = field(default_factory=dict)  # defect -> the ids it planted
    malformed: tuple[MalformedLine, ...] = ()
    torn_file: Path | None = None

    @property
    def true_lift(self) -> float:
        """B's relative CTR lift over A."""
        truth = self.spec.true_ctr
        return truth[TREATMENT] / truth[CONTROL] - 1.0

    def files(self, table: str) -> list[Path]:
        """The table's files (of the spec's format), sorted."""
        return sorted((self.directory / table).glob(f"*.{self.spec.file_format}"))


@dataclass(frozen=True)
class _Offsets:
    """Where a chunk's numbering starts: users, requests, impressions and outcomes drawn by earlier chunks."""

    users: int = 0
    requests: int = 0
    impressions: int = 0
    outcomes: int = 0


def write_experiment_records(
    directory: Path, spec: RecordsSpec = RecordsSpec(), *, chunk_decisions: int = CHUNK_DECISIONS
) -> ExperimentRecords:
    """Write ``spec``'s records under ``directory`` (created; must hold no records yet) and describe them.

    ``chunk_decisions``: Parquet only, about how many decision rows are drawn at a time (see the module).
    """
    for table, rule in spec.malformed:
        if table not in records.RECORD_TYPES or rule not in MALFORMED_RULES:
            raise ValueError(
                f"malformed entry ({table!r}, {rule!r}): table must be one of {list(records.RECORD_TYPES)}, "
                f"rule one of {list(MALFORMED_RULES)}"
            )
        if rule == "unknown_event" and table != records.OUTCOMES.table:
            raise ValueError(f"rule 'unknown_event' applies to outcomes only, got table {table!r}")
    if spec.file_format not in FILE_FORMATS:
        raise ValueError(f"file_format must be one of {list(FILE_FORMATS)}, got {spec.file_format!r}")
    if spec.file_format == "parquet" and (spec.malformed or spec.torn_tail):
        raise ValueError("malformed lines and torn tails are JSON Lines defects: a Parquet spec cannot plant them")
    directory = Path(directory)
    for table in records.RECORD_TYPES:
        existing = [*(directory / table).glob("*.jsonl"), *(directory / table).glob("*.parquet")]
        if existing:
            raise FileExistsError(f"{directory / table} already holds records ({existing[0].name}); use a new dir")
        (directory / table).mkdir(parents=True, exist_ok=True)
    if spec.file_format == "parquet":
        rows, planted = _write_parquet(directory, spec, chunk_decisions)
        return ExperimentRecords(directory, spec, rows, planted)
    rng = np.random.default_rng(spec.seed)
    frames, planted = _draw(spec, rng)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")  # parallel JSON writing; readers need no line order
    rows: dict[str, int] = {}
    for table, frame in frames.items():
        rows[table] = frame.num_rows
        _write_table(con, table, frame, directory, spec)
    con.close()
    bad = tuple(
        _plant_malformed(directory, spec, table, rule, index) for index, (table, rule) in enumerate(spec.malformed)
    )
    torn = _plant_torn_tail(directory) if spec.torn_tail else None
    return ExperimentRecords(directory, spec, rows, planted, bad, torn)


def _draw(
    spec: RecordsSpec, rng: np.random.Generator, offsets: _Offsets = _Offsets()
) -> tuple[dict[str, pa.Table], dict[str, tuple]]:
    """Numbers of all three tables as Arrow columns (strings and times are formatted by DuckDB on write).

    ``offsets`` number a chunk's users, requests and events after those of the chunks before it.
    """
    planted: dict[str, tuple] = {}
    user_ids = offsets.users + np.arange(1, spec.n_users + 1, dtype=np.int64)
    assigned = assign_arms(user_ids, AssignmentConfig(split=spec.split, salt=spec.salt, assignment="hash"))
    is_b = assigned.policy == TREATMENT
    propensity = rng.gamma(4.0, 0.25, spec.n_users)  # mean 1: users differ in how much they click
    cold_user = rng.random(spec.n_users) < spec.cold_user_share
    keep_user = np.ones(spec.n_users, dtype=bool)
    if spec.drop_b_users:
        lost = is_b & (rng.random(spec.n_users) < spec.drop_b_users)
        keep_user &= ~lost
        planted["dropped_b_users"] = tuple(user_ids[lost].tolist())

    # user-days and requests
    active = rng.random((spec.n_users, spec.days)) < spec.active_share
    active &= keep_user[:, None]
    ud_user, ud_day = np.nonzero(active)
    per_day = 1 + rng.poisson(max(spec.requests_per_active_day - 1.0, 0.0), ud_user.size)
    req_user = np.repeat(ud_user, per_day)  # index into user arrays
    req_day = np.repeat(ud_day, per_day).astype(np.int64)
    n_requests = req_user.size
    start_us = int(spec.start.timestamp() * 1_000_000)
    # Requests end two minutes before midnight so their impressions and clicks stay on the same UTC day.
    req_time = start_us + req_day * MICROS_PER_DAY + rng.integers(0, MICROS_PER_DAY - 120_000_000, n_requests)
    req_arm_b = is_b[req_user].copy()
    req_latency = np.where(
        req_arm_b, rng.lognormal(np.log(7.0), 0.3, n_requests), rng.lognormal(np.log(5.0), 0.3, n_requests)
    )
    req_other_version = np.zeros(n_requests, dtype=bool)
    req_shown = np.ones(n_requests, dtype=bool)

    def pick(count: int, candidates: np.ndarray, name: str) -> np.ndarray:
        chosen = rng.choice(candidates, size=min(count, candidates.size), replace=False)
        return np.sort(chosen)

    taken = np.zeros(n_requests, dtype=bool)  # one defect per request, so each is counted once

    def pick_requests(count: int, name: str) -> np.ndarray:
        chosen = pick(count, np.flatnonzero(~taken), name)
        taken[chosen] = True
        planted[name] = tuple(f"req-{offsets.requests + index}" for index in chosen)
        return chosen

    if spec.both_arms_users:
        # Users with at least two requests: their last request is answered by the other arm.
        counts = np.bincount(req_user, minlength=spec.n_users)
        users = pick(spec.both_arms_users, np.flatnonzero(counts >= 2), "both_arms")
        last = np.array([np.flatnonzero(req_user == user)[-1] for user in users], dtype=np.int64)
        req_arm_b[last] = ~req_arm_b[last]
        taken[last] = True
        planted["both_arms"] = tuple(user_ids[users].tolist())
    if spec.other_version_requests:
        req_other_version[pick_requests(spec.other_version_requests, "other_version")] = True
    if spec.unshown_requests:
        req_shown[pick_requests(spec.unshown_requests, "unshown")] = False
    if spec.outside_window_requests:
        moved = pick_requests(spec.outside_window_requests, "outside_window")
        # Half an hour before the window opens (their impressions and clicks follow them out).
        req_time[moved] = start_us - 1_800_000_000 - rng.integers(0, 600_000_000, moved.size)

    # decisions: candidates rows per request
    n_rows = n_requests * spec.candidates
    d_request = np.repeat(np.arange(n_requests, dtype=np.int64), spec.candidates)
    d_row = np.tile(np.arange(spec.candidates, dtype=np.int64), n_requests)
    d_user = req_user[d_request]
    d_b = req_arm_b[d_request]
    true_ctr = np.where(d_b, spec.true_ctr[TREATMENT], spec.true_ctr[CONTROL]) * propensity[d_user]
    true_ctr = np.clip(true_ctr, 0.0, 1.0)
    score = np.clip(true_ctr * rng.lognormal(0.0, 0.3, n_rows), 1e-4, 0.999)
    decisions = pa.table(
        {
            "request": offsets.requests + d_request,
            "event_us": req_time[d_request] + d_row * 10,
            "row": d_row,
            "other_version": req_other_version[d_request],
            "split": np.full(n_rows, spec.split),
            "user_id": user_ids[d_user],
            # distinct items within a request: a random start, then a step coprime with n_items
            "item_id": 1
            + (rng.integers(0, spec.n_items, n_requests)[d_request] + d_row * _item_step(spec)) % spec.n_items,
            "is_b": d_b,
            "bucket": assigned.bucket[d_user],
            "score": score,
            "cold_user": cold_user[d_user],
            "cold_item": rng.random(n_rows) < spec.cold_item_share,
            "latency_ms": req_latency[d_request],
        }
    )

    # impressions: the first slate rows of every shown request
    shown = (d_row < spec.slate) & req_shown[d_request]
    i_rows = np.flatnonzero(shown)
    clicked = rng.random(i_rows.size) < true_ctr[i_rows]
    i_request = d_request[i_rows]
    i_time = req_time[i_request] + 50_000 + d_row[i_rows] * 1_000
    impressions = {
        "request": offsets.requests + i_request,
        "event_us": i_time,
        "user_id": user_ids[d_user[i_rows]],
        "item_id": decisions["item_id"].to_numpy()[i_rows],
        "position": d_row[i_rows],
    }
    if spec.orphan_impressions:
        count = spec.orphan_impressions
        # no decision has these request ids (the last chunk's: no later chunk numbers requests beyond them)
        orphan_request = offsets.requests + n_requests + np.arange(count, dtype=np.int64)
        planted["orphan_impressions"] = tuple(f"req-{index}" for index in orphan_request)
        impressions = {
            "request": np.concatenate([impressions["request"], orphan_request]),
            "event_us": np.concatenate(
                [impressions["event_us"], start_us + rng.integers(0, MICROS_PER_DAY, count)]
            ),
            "user_id": np.concatenate([impressions["user_id"], rng.choice(user_ids, count)]),
            "item_id": np.concatenate([impressions["item_id"], rng.integers(1, spec.n_items + 1, count)]),
            "position": np.concatenate([impressions["position"], np.zeros(count, dtype=np.int64)]),
        }
    impression_seq = offsets.impressions + np.arange(impressions["request"].size, dtype=np.int64)
    impression_table = pa.table({"seq": impression_seq, **impressions})

    # outcomes: one click per clicked impression, 1-60 s after it
    c_rows = i_rows[clicked]
    outcomes = {
        "request": offsets.requests + d_request[c_rows],
        "event_us": i_time[clicked] + rng.integers(1_000_000, 60_000_000, c_rows.size),
        "user_id": user_ids[d_user[c_rows]],
        "item_id": decisions["item_id"].to_numpy()[c_rows],
    }
    if spec.orphan_outcomes:
        # Clicks on rows that were scored but never shown (row >= slate of a shown request).
        unshown_rows = np.flatnonzero((d_row >= spec.slate) & req_shown[d_request] & ~taken[d_request])
        rows = pick(spec.orphan_outcomes, unshown_rows, "orphan_outcomes")
        outcomes = {
            "request": np.concatenate([outcomes["request"], offsets.requests + d_request[rows]]),
            "event_us": np.concatenate([outcomes["event_us"], req_time[d_request[rows]] + 5_000_000]),
            "user_id": np.concatenate([outcomes["user_id"], user_ids[d_user[rows]]]),
            "item_id": np.concatenate([outcomes["item_id"], decisions["item_id"].to_numpy()[rows]]),
        }
        first = offsets.outcomes + c_rows.size
        planted["orphan_outcomes"] = tuple(f"out-{index}" for index in range(first, first + rows.size))
    outcome_seq = offsets.outcomes + np.arange(outcomes["request"].size, dtype=np.int64)
    outcome_table = pa.table({"seq": outcome_seq, **outcomes})

    frames = {
        records.DECISIONS.table: _with_duplicates(decisions, spec.duplicate_decisions, rng),
        records.IMPRESSIONS.table: _with_duplicates(impression_table, spec.duplicate_impressions, rng),
        records.OUTCOMES.table: _with_duplicates(outcome_table, spec.duplicate_outcomes, rng),
    }
    for table, count, key in (
        ("decisions", spec.duplicate_decisions, "request"),
        ("impressions", spec.duplicate_impressions, "seq"),
        ("outcomes", spec.duplicate_outcomes, "seq"),
    ):
        if count:
            copies = frames[table].slice(frames[table].num_rows - count)
            prefix = {"decisions": "req", "impressions": "imp", "outcomes": "out"}[table]
            planted[f"duplicate_{table}"] = tuple(f"{prefix}-{value}" for value in copies[key].to_pylist())
    return frames, planted


def _item_step(spec: RecordsSpec) -> int:
    """A step through the items coprime with their number, so a request's candidates are distinct items."""
    if spec.candidates > spec.n_items:
        raise ValueError(f"candidates ({spec.candidates}) cannot exceed n_items ({spec.n_items})")
    step = 7919  # a prime
    while np.gcd(step, spec.n_items) != 1:
        step += 2
    return step


def _with_duplicates(table: pa.Table, count: int, rng: np.random.Generator) -> pa.Table:
    """``table`` with ``count`` of its rows appended again (the same key: a retried write)."""
    if not count:
        return table
    return pa.concat_tables([table, table.take(np.sort(rng.choice(table.num_rows, count, replace=False)))])


def _column_sql(table: str, spec: RecordsSpec, *, typed_time: bool = False) -> Mapping[str, str]:
    """The SQL that formats each record column from the drawn numbers, in records.py's storage order.

    Times are ISO 8601 text (JSON Lines), or with ``typed_time`` instants (TIMESTAMPTZ, for Parquet).
    """
    quote = "'{}'".format
    time = (
        "CAST(make_timestamp(event_us) AS TIMESTAMPTZ)"
        if typed_time
        else (f"strftime(make_timestamp(event_us), '{ISO_FORMAT}')")
    )
    if table == records.DECISIONS.table:
        columns = {
            records.EVENT_TIME: time,
            records.REQUEST_ID: "'req-' || request",
            "row": '"row"',
            "router_name": quote(spec.router_name),
            "router_version": f"CASE WHEN other_version THEN {quote(spec.other_version)} "
            f"ELSE {quote(spec.router_version)} END",
            "salt": quote(spec.salt),
            "assignment": "'hash'",
            "split": "split",
            "user_id": "user_id",
            "item_id": "item_id",
            "arm": f"CASE WHEN is_b THEN '{TREATMENT}' ELSE '{CONTROL}' END",
            "forced": "false",
            "bucket": "bucket",
            "model_name": "'movielens_ctr_ab'",
            "model_version": "CASE WHEN is_b THEN '2' ELSE '1' END",
            "score": "score",
            "cold_user": "cold_user",
            "cold_item": "cold_item",
            "latency_ms": "latency_ms",
            "writer": "'generator:' || (request % {writers})",
        }
    elif table == records.IMPRESSIONS.table:
        columns = {
            records.EVENT_ID: "'imp-' || seq",
            records.EVENT_TIME: time,
            records.REQUEST_ID: "'req-' || request",
            "user_id": "user_id",
            "item_id": "item_id",
            "position": "position",
        }
    else:
        columns = {
            records.EVENT_ID: "'out-' || seq",
            records.EVENT_TIME: time,
            records.REQUEST_ID: "'req-' || request",
            "user_id": "user_id",
            "item_id": "item_id",
            "event": quote(records.CLICK),
            "value": "1.0",
        }
    expected = records.RECORD_TYPES[table].columns
    if tuple(columns) != expected:
        raise AssertionError(f"generator columns of {table} {list(columns)} differ from records.py's {expected}")
    return {name: sql.replace("{writers}", str(spec.writers)) for name, sql in columns.items()}


def _write_table(
    con: duckdb.DuckDBPyConnection, table: str, frame: pa.Table, directory: Path, spec: RecordsSpec
) -> None:
    """One JSON Lines file per writer; a request's records all go to the writer that served it."""
    con.register("drawn", frame)
    select = ", ".join(f'{sql} AS "{name}"' for name, sql in _column_sql(table, spec).items())
    for writer in range(spec.writers):
        path = directory / table / f"generator-{writer}.jsonl"
        con.execute(
            f"COPY (SELECT {select} FROM drawn WHERE request % {spec.writers} = {writer}) "
            f"TO '{path}' (FORMAT json)"
        )
    con.unregister("drawn")


def _write_parquet(
    directory: Path, spec: RecordsSpec, chunk_decisions: int
) -> tuple[dict[str, int], dict[str, tuple]]:
    """Draw ``spec`` chunk by chunk and append each chunk's rows to one Parquet file per table and writer."""
    from abtest.experiment.ingest.compact import canonical_batch, canonical_writer

    per_user = spec.days * spec.active_share * max(spec.requests_per_active_day, 1.0) * spec.candidates
    # Whole chunks of at least chunk_users users (the remainder spread over them), so the last one, where the
    # defects go, is never a sliver.
    n_chunks = max(1, spec.n_users // max(1, int(chunk_decisions // max(per_user, 1.0))))
    sizes = [int(size) for size in np.diff(np.linspace(0, spec.n_users, n_chunks + 1).round())]
    no_defects = {name: 0 for name in _COUNTED_DEFECTS}
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")
    writers = {
        (table, writer): canonical_writer(directory / table / f"generator-{writer}.parquet", record_type)
        for table, record_type in records.RECORD_TYPES.items()
        for writer in range(spec.writers)
    }
    rows = dict.fromkeys(records.RECORD_TYPES, 0)
    planted: dict[str, tuple] = {}
    offsets = _Offsets()
    try:
        for index, size in enumerate(sizes):
            last = index == len(sizes) - 1
            chunk = replace(spec, n_users=size, **({} if last else no_defects))
            # One chunk draws exactly what JSON Lines draws; several each draw from their own stream.
            rng = np.random.default_rng(spec.seed if len(sizes) == 1 else [spec.seed, index])
            frames, chunk_planted = _draw(chunk, rng, offsets)
            for name, ids in chunk_planted.items():
                planted[name] = planted.get(name, ()) + ids
            for table, frame in frames.items():
                rows[table] += frame.num_rows
                con.register("drawn", frame)
                select = ", ".join(
                    f'{sql} AS "{name}"' for name, sql in _column_sql(table, spec, typed_time=True).items()
                )
                for writer in range(spec.writers):
                    drawn = con.sql(f"SELECT {select} FROM drawn WHERE request % {spec.writers} = {writer}")
                    part = canonical_batch(drawn.to_arrow_table(), records.RECORD_TYPES[table])
                    writers[table, writer].write_table(part, row_group_size=1 << 20)
                con.unregister("drawn")
            decided = frames[records.DECISIONS.table]["request"].to_numpy()
            offsets = _Offsets(
                users=offsets.users + chunk.n_users,
                requests=int(decided.max()) + 1 if decided.size else offsets.requests,
                impressions=offsets.impressions + frames[records.IMPRESSIONS.table].num_rows,
                outcomes=offsets.outcomes + frames[records.OUTCOMES.table].num_rows,
            )
    finally:
        for writer in writers.values():
            writer.close()
        con.close()
    return rows, planted


def _plant_malformed(directory: Path, spec: RecordsSpec, table: str, rule: str, index: int) -> MalformedLine:
    """Insert one bad line into the middle of the table's first file; where it went."""
    path = sorted((directory / table).glob("*.jsonl"))[0]
    lines = path.read_bytes().splitlines(keepends=True)
    if not lines:
        raise ValueError(f"{path} is empty: nowhere to plant a malformed line")
    line_index = min(len(lines) // 2 + index, len(lines) - 1)
    record = json.loads(lines[line_index])
    if rule == "wrong_type":
        record["user_id"] = str(record["user_id"])  # a long written as a string: DuckDB alone would cast it
    elif rule == "missing_field":
        del record["item_id"]
    elif rule == "unknown_event":
        record["event"] = "purchase_undeclared"
    bad = json.dumps(record, separators=(",", ":"))
    if rule == "bad_json":
        bad = bad[: len(bad) // 2]
    lines.insert(line_index, (bad + "\n").encode())
    path.write_bytes(b"".join(lines))
    return MalformedLine(path, line_index + 1, rule)


def _plant_torn_tail(directory: Path) -> Path:
    """Append half a record without its newline to the first decisions file: a writer killed mid-write."""
    path = sorted((directory / records.DECISIONS.table).glob("*.jsonl"))[0]
    with path.open("rb") as handle:
        first = handle.readline()
    with path.open("ab") as handle:
        handle.write(first[: len(first) // 2])
    return path
