"""Appending the application's impressions and outcomes to a record sink, idempotently.

A batch is validated whole first (``validation``): one bad row and nothing is written. Then the event ids the sink
already holds are skipped (a directory sink is scanned; a SQL sink is asked, and its primary key makes a race
between two writers harmless), so writing the same input again adds nothing. The rest is appended in chunks of
:data:`CHUNK_ROWS`, each one write (file) or one transaction (SQL); a writer killed between chunks leaves a prefix
of the batch, and running it again writes the remainder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ab_router.records import EVENT_ID, IMPRESSIONS, OUTCOME_EVENTS, OUTCOMES, RecordType
from ab_router.sinks import Batch, RecordSink, open_sink
from abtest.experiment.events.validation import Row, rows_of, validate_records

log = logging.getLogger(__name__)

CHUNK_ROWS = 100_000


@dataclass(frozen=True)
class WriteResult:
    """What one write did: rows received, events written, events skipped because the sink already held them."""

    table: str
    received: int
    written: int
    already_stored: int
    repeated_in_input: int
    sink: str


def _sink(sink: str | Path | RecordSink) -> RecordSink:
    # A batch writer can afford fsync: a reported write is on disk even after a power loss.
    return sink if isinstance(sink, RecordSink) else open_sink(str(sink), fsync=True)


def write_records(
    record_type: RecordType,
    rows: Sequence[Row],
    sink: str | Path | RecordSink,
    *,
    events: Sequence[str] = OUTCOME_EVENTS,
    text: bool = False,
    source: str = "",
) -> WriteResult:
    """Validate ``rows`` as ``record_type`` records and append the ones the sink does not hold yet."""
    records = validate_records(record_type, rows, events=events, text=text, source=source)
    target = _sink(sink)
    target.prepare([record_type])
    stored = target.stored_keys(record_type, (record[EVENT_ID] for record in records))
    new = [record for record in records if record[EVENT_ID] not in stored]
    for start in range(0, len(new), CHUNK_ROWS):
        chunk = new[start : start + CHUNK_ROWS]
        columns = {name: [record[name] for record in chunk] for name in record_type.columns}
        target.append(Batch(record_type, len(chunk), columns=columns))
    result = WriteResult(
        table=record_type.table,
        received=len(rows),
        written=len(new),
        already_stored=len(records) - len(new),
        repeated_in_input=len(rows) - len(records),
        sink=target.describe(),
    )
    log.info(
        "%s%s: %d rows, %d written, %d already stored, %d repeated in the input; %s",
        result.table,
        f" from {source}" if source else "",
        result.received,
        result.written,
        result.already_stored,
        result.repeated_in_input,
        result.sink,
    )
    return result


def write_impressions(
    data: pd.DataFrame | Iterable[Mapping[str, Any]], sink: str | Path | RecordSink, *, source: str = ""
) -> WriteResult:
    """Append impressions (``event_id`` optional, ``event_time``, ``request_id``, ``user_id``, ``item_id``,
    ``position``) to ``sink`` (a directory, a SQLAlchemy URL or a sink object); see docs/records.md."""
    return write_records(IMPRESSIONS, rows_of(data), sink, source=source)


def write_outcomes(
    data: pd.DataFrame | Iterable[Mapping[str, Any]],
    sink: str | Path | RecordSink,
    *,
    events: Sequence[str] = OUTCOME_EVENTS,
    source: str = "",
) -> WriteResult:
    """Append outcomes (``event_id`` optional, ``event_time``, ``request_id``, ``user_id``, ``item_id``,
    ``event`` one of ``events``, ``value`` optional, default 1.0) to ``sink``; see docs/records.md."""
    return write_records(OUTCOMES, rows_of(data), sink, events=events, source=source)
