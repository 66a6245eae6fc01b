"""``python -m abtest.experiment.events {impressions,outcomes} --sink <dir|url> --input <csv|jsonl|parquet>``.

Reads one file, validates every row (nothing is written if any row is bad; the error names the file, line, field,
rule and value), and appends the events the sink does not hold yet. ``--sink`` defaults to
``$ABTEST_DECISION_LOG``, the router's own sink. Exit status: 0 written, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ab_router.records import DECISION_LOG_ENV, IMPRESSIONS, OUTCOME_EVENTS, OUTCOMES
from abtest.experiment.events.validation import RecordError, Row, rows_of
from abtest.experiment.events.writer import WriteResult, write_records

log = logging.getLogger(__name__)

RECORD_TYPES = {IMPRESSIONS.table: IMPRESSIONS, OUTCOMES.table: OUTCOMES}
INPUT_SUFFIXES: tuple[str, ...] = (".csv", ".jsonl", ".ndjson", ".parquet")


def read_input(path: Path) -> tuple[list[Row], bool]:
    """The file's rows and whether they are text (CSV: every value a string, typed by the validation)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        # Strings, not pandas' guesses: a request id "0012" must stay "0012", and a bad cell must be reported.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        return rows_of(frame, first_line=2), True
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                values = json.loads(line)
            except ValueError as exc:
                raise RecordError(f"{path}: line {number} is not JSON ({exc})", []) from None
            if not isinstance(values, dict):
                raise RecordError(f"{path}: line {number} is not a JSON object: {line[:200]!r}", [])
            rows.append(Row(values, f"row {len(rows)} (line {number})"))
        return rows, False
    if suffix == ".parquet":
        return rows_of(pd.read_parquet(path)), False
    raise ValueError(f"{path}: input must be one of {list(INPUT_SUFFIXES)} files, got {suffix or 'no suffix'!r}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m abtest.experiment.events", description=__doc__)
    parser.add_argument("table", choices=sorted(RECORD_TYPES), help="which events the file holds")
    parser.add_argument(
        "--sink",
        default=os.environ.get(DECISION_LOG_ENV, ""),
        help=f"a directory or a SQLAlchemy URL (sqlite:///..., postgresql://...); default ${DECISION_LOG_ENV}",
    )
    parser.add_argument("--input", required=True, type=Path, help="a .csv, .jsonl or .parquet file")
    parser.add_argument(
        "--event",
        action="append",
        default=None,
        help=f"an outcome event name the file may use (repeatable); default {list(OUTCOME_EVENTS)}",
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> WriteResult:
    """Read, validate and write one file as the parsed arguments say."""
    if not args.sink:
        raise ValueError(f"no sink: pass --sink <directory|SQLAlchemy URL> or set {DECISION_LOG_ENV}")
    rows, text = read_input(args.input)
    events = tuple(args.event) if args.event else OUTCOME_EVENTS
    record_type = RECORD_TYPES[args.table]
    return write_records(record_type, rows, args.sink, events=events, text=text, source=str(args.input))


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status (prints a one-line summary, or the problems on stderr)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        result = run(args)
    except (RecordError, ValueError, FileNotFoundError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(
        f"{result.table}: {result.written} written, {result.already_stored} already stored, "
        f"{result.repeated_in_input} repeated in {args.input} ({result.received} rows) -> {result.sink}"
    )
    return 0
