"""Checking the application's event records against ``ab_router.records`` before anything is written.

Every value is checked against its field's kind; a batch with any bad row raises :class:`RecordError` listing each
problem by row (and the input's line when it came from a file), field, rule and value, and nothing is written.

Accepted values per kind (``text=True`` is a CSV file, where every value arrives as a string):

- string: a non-empty string;
- long: an integer (an integral float such as ``3.0`` is accepted; ``True`` and ``2.5`` are not); text: digits;
- double: a finite number; text: a decimal number;
- timestamp: a timezone-aware datetime, or an ISO 8601 string with an explicit offset (``Z`` or ``+00:00``);
  stored in UTC. A time without an offset is refused: it could be any zone.

A missing value (absent column, None, NaN, an empty CSV cell) is an error in a required field; the optional
``value`` of an outcome defaults to 1.0 (a count). A missing ``event_id`` is made from the record's content
(:func:`content_event_id`), so writing the same file twice writes each event once.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from ab_router.records import EVENT_ID, OUTCOMES, RecordType
from ab_router.sinks import format_timestamp

MAX_LISTED_PROBLEMS = 20
VALUE_DEFAULT = 1.0
_INTEGER_TEXT = re.compile(r"[+-]?\d+")


class RecordError(ValueError):
    """A batch of records that breaks the format; ``problems`` lists each one."""

    def __init__(self, summary: str, problems: Sequence[str]) -> None:
        listed = list(problems[:MAX_LISTED_PROBLEMS])
        more = len(problems) - len(listed)
        text = "\n".join([summary, *(f"  {p}" for p in listed), *([f"  ... and {more} more"] if more else [])])
        super().__init__(text)
        self.problems = list(problems)


@dataclass(frozen=True)
class Row:
    """One input record and where it came from (for error messages)."""

    values: Mapping[str, Any]
    where: str  # "row 3" or "row 3 (line 5)"


def rows_of(data: pd.DataFrame | Iterable[Mapping[str, Any]], *, first_line: int | None = None) -> list[Row]:
    """The input as rows; ``first_line`` is the file line of row 0 (CSV: 2, after the header; JSON Lines: 1)."""
    records = data.to_dict("records") if isinstance(data, pd.DataFrame) else list(data)
    return [
        Row(values, f"row {index}" if first_line is None else f"row {index} (line {first_line + index})")
        for index, values in enumerate(records)
    ]


def _missing(value: Any) -> bool:
    if value is None or value is pd.NaT or value is pd.NA:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _long(value: Any, text: bool) -> int:
    if text:
        if not isinstance(value, str) or not _INTEGER_TEXT.fullmatch(value.strip()):
            raise ValueError("must be an integer (long)")
        return int(value)
    if isinstance(value, bool | np.bool_):
        raise ValueError("must be an integer (long), not a boolean")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    raise ValueError("must be an integer (long)")


def _double(value: Any, text: bool) -> float:
    if text:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError("must be a number (double)") from None
    elif isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError("must be a number (double)")
    else:
        number = float(value)
    if not math.isfinite(number):
        raise ValueError("must be a finite number (double)")
    return number


def _timestamp(value: Any, text: bool) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("must be an ISO 8601 time with a UTC offset (2026-12-01T09:45:00+00:00)") from None
    elif isinstance(value, datetime):  # pd.Timestamp is a datetime
        parsed = value.to_pydatetime() if isinstance(value, pd.Timestamp) else value
    else:
        raise ValueError("must be a time (ISO 8601 string with a UTC offset, or a timezone-aware datetime)")
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("must have a UTC offset (Z or +00:00): a time without one could be in any zone")
    return parsed.astimezone(UTC)


def _string(value: Any, text: bool) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    if not value:
        raise ValueError("must be a non-empty string")
    return value


_CONVERTERS = {"string": _string, "long": _long, "double": _double, "timestamp": _timestamp}


def content_event_id(record_type: RecordType, record: Mapping[str, Any]) -> str:
    """A deterministic id from the record's other fields: the same event written twice gets the same id."""
    canonical = {
        name: format_timestamp(value) if isinstance(value, datetime) else value
        for name, value in record.items()
        if name != EVENT_ID
    }
    payload = json.dumps([record_type.table, canonical], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def validate_records(
    record_type: RecordType,
    rows: Sequence[Row],
    *,
    events: Sequence[str] = (),
    text: bool = False,
    source: str = "",
) -> list[dict[str, Any]]:
    """The rows as typed records (every field, storage order, event ids filled in), or a :class:`RecordError`.

    ``events`` are the outcome event names accepted (outcomes only). Two rows with the same event id are one
    event if they are identical (the later is dropped) and an error otherwise.
    """
    known = set(record_type.columns)
    problems: list[str] = []
    records: list[dict[str, Any]] = []
    for row in rows:
        unknown = sorted(set(row.values) - known)
        if unknown:
            problems.append(f"{row.where}: unknown fields {unknown}; {record_type.table} fields: {list(known)}")
            continue
        record: dict[str, Any] = {}
        for f in record_type.fields:
            value = row.values.get(f.name)
            if _missing(value) or (text and value == ""):
                if f.name == EVENT_ID:
                    continue  # made from the content below
                if not f.required:
                    record[f.name] = VALUE_DEFAULT
                    continue
                problems.append(f"{row.where}: field {f.name!r} is missing (required, {f.kind})")
                continue
            try:
                record[f.name] = _CONVERTERS[f.kind](value, text)
            except ValueError as exc:
                problems.append(f"{row.where}: field {f.name!r} {exc}, got {_show(value)}")
        if record_type is OUTCOMES and "event" in record and record["event"] not in events:
            problems.append(
                f"{row.where}: field 'event' {record['event']!r} is not a declared event name; declared: "
                f"{list(events)} (declare more with events=... / --event NAME)"
            )
        if len(record) + (EVENT_ID not in record) == len(record_type.fields):
            record.setdefault(EVENT_ID, content_event_id(record_type, record))
            records.append({name: record[name] for name in record_type.columns})
    unique = _drop_repeats(records, [row.where for row in rows], problems) if not problems else records
    if problems:
        where = f" from {source}" if source else ""
        raise RecordError(
            f"{record_type.table}{where}: {len(problems)} problem(s) in {len(rows)} rows; nothing was written",
            problems,
        )
    return unique


def _drop_repeats(records: list[dict[str, Any]], wheres: list[str], problems: list[str]) -> list[dict[str, Any]]:
    """Records with each event id once: an identical repeat is dropped, a different one is a problem."""
    first: dict[str, int] = {}
    unique = []
    for index, record in enumerate(records):
        seen = first.setdefault(record[EVENT_ID], index)
        if seen == index:
            unique.append(record)
        elif records[seen] != record:
            problems.append(
                f"{wheres[index]}: event_id {record[EVENT_ID]!r} was already given to {wheres[seen]} with other "
                "values; an event id names one event"
            )
    return unique
