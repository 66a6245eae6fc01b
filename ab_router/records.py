"""The experiment's records, defined once: the router's decisions, the application's impressions and outcomes.

Every experimentation platform analyses the same three tables: who was assigned to which arm and what they were
served (the decision log, written by the served router), what the application actually showed (impressions) and
what happened next (outcomes: a click, or any named event with a value). The router's sink, the application's
writer, the readers that validate, `analyze`'s SQL and `simulate` all take the column names and types from here.

Storage, one layout for every sink:
- a directory: ``<dir>/<table>/<writer>.jsonl``, one JSON object per line, append-only, one file per writing
  process (``<writer>`` = host, process id and start time), so serving workers never interleave;
- a SQL database (SQLAlchemy URL): one table per record type, named ``abtest_<table>``.

Times are UTC. In JSON Lines they are ISO 8601 strings with an explicit offset
(``2026-12-01T09:45:00.123456+00:00``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["string", "long", "double", "boolean", "timestamp"]

# The environment variable that names the served router's decision sink: a directory, or a SQLAlchemy URL
# (``sqlite:///...``, ``postgresql://...``). Unset or empty: the router records nothing (and says so once).
DECISION_LOG_ENV = "ABTEST_DECISION_LOG"
# Optional: "1" makes every file write fsync before the request is answered (power-loss durability, slower).
DECISION_LOG_FSYNC_ENV = "ABTEST_DECISION_LOG_FSYNC"

REQUEST_ID = "request_id"  # optional router input column; always in its output and in every record
EVENT_TIME = "event_time"
EVENT_ID = "event_id"


@dataclass(frozen=True)
class Field:
    """One column of a record: its name, type, whether a record may omit it, and what it means."""

    name: str
    kind: Kind
    required: bool
    meaning: str


@dataclass(frozen=True)
class RecordType:
    """One table of the experiment's records."""

    table: str  # directory name under a file sink, and the SQL table is ``abtest_<table>``
    fields: tuple[Field, ...]
    key: tuple[str, ...]  # what makes a record unique: a second record with the same key is a duplicate

    @property
    def columns(self) -> tuple[str, ...]:
        """The column names in storage order."""
        return tuple(field.name for field in self.fields)

    @property
    def sql_table(self) -> str:
        """The table's name in a SQL sink."""
        return f"abtest_{self.table}"

    def field(self, name: str) -> Field:
        """The field called ``name``, or an error listing the fields there are."""
        for field in self.fields:
            if field.name == name:
                return field
        raise KeyError(f"{self.table} records have no field {name!r}; fields: {list(self.columns)}")


DECISIONS = RecordType(
    table="decisions",
    fields=(
        Field(EVENT_TIME, "timestamp", True, "when the router scored the row (UTC)"),
        Field(REQUEST_ID, "string", True, "the caller's request_id input, else one generated per request"),
        Field("row", "long", True, "the row's position in its request (0-based)"),
        Field("router_name", "string", True, "registered model name of the router"),
        Field("router_version", "string", True, "registered version of the router ('' when not registered)"),
        Field("salt", "string", True, "the assignment salt: the experiment's identity with the version"),
        Field("assignment", "string", True, "assignment rule: hash | modulo"),
        Field("split", "double", True, "share of users sent to B in force: the row's assignment probability"),
        Field("user_id", "long", True, "the user"),
        Field("item_id", "long", True, "the item scored"),
        Field("arm", "string", True, "the arm that scored the row: A | B"),
        Field("forced", "boolean", True, "the arm came from force_policy (QA), not from the assignment"),
        Field("bucket", "long", True, "the user's assignment bucket"),
        Field("model_name", "string", True, "registered model name of the arm's policy"),
        Field("model_version", "string", True, "registered version of the arm's policy"),
        Field("score", "double", True, "the policy's P(positive)"),
        Field("cold_user", "boolean", True, "the user's features fell back to defaults"),
        Field("cold_item", "boolean", True, "the item's features fell back to defaults"),
        Field("latency_ms", "double", True, "the router's own time for the whole request, ms"),
        Field("writer", "string", True, "host:pid of the serving process that wrote the record"),
    ),
    key=(REQUEST_ID, "row"),
)

IMPRESSIONS = RecordType(
    table="impressions",
    fields=(
        Field(EVENT_ID, "string", True, "unique id of the impression; ingest is idempotent on it"),
        Field(EVENT_TIME, "timestamp", True, "when the item was shown (UTC)"),
        Field(REQUEST_ID, "string", True, "the router request whose score decided the slate"),
        Field("user_id", "long", True, "the user shown the item"),
        Field("item_id", "long", True, "the item shown"),
        Field("position", "long", True, "0-based slot in the slate"),
    ),
    key=(EVENT_ID,),
)

# Outcome event names the readers accept unless told more: "click" is the primary metric's numerator.
CLICK = "click"
OUTCOME_EVENTS: tuple[str, ...] = (CLICK,)

OUTCOMES = RecordType(
    table="outcomes",
    fields=(
        Field(EVENT_ID, "string", True, "unique id of the outcome; ingest is idempotent on it"),
        Field(EVENT_TIME, "timestamp", True, "when it happened (UTC)"),
        Field(REQUEST_ID, "string", True, "the request whose impression it follows"),
        Field("user_id", "long", True, "the user"),
        Field("item_id", "long", True, "the item"),
        Field("event", "string", True, "click, or another declared event name"),
        Field("value", "double", False, "the event's value (default 1.0: a count)"),
    ),
    key=(EVENT_ID,),
)

RECORD_TYPES: dict[str, RecordType] = {record.table: record for record in (DECISIONS, IMPRESSIONS, OUTCOMES)}
