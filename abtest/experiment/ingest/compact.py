"""Compact a records directory into Parquet: one typed file per table, in the canonical schema of :mod:`.layout`.

    python -m abtest.experiment.ingest.compact SOURCE TARGET [--events purchase,signup]

Input: a records directory (``SOURCE/<table>/*.jsonl`` and/or ``*.parquet``), read by :func:`.read.open_records`
with its strict rules: a bad record stops the compaction (nothing is written), a torn tail is skipped and
reported. Output: ``TARGET/<table>/part-0.parquet`` for every table of :mod:`ab_router.records`, in
:func:`.layout.arrow_schema` (what every engine reads without a cast), rows sorted by time then key so the same
records always give the same file and a time window's reader can skip whole row groups. The files are written to
a temporary folder beside TARGET and renamed into place, so a reader never sees half a compaction; a TARGET that
already holds anything is refused.

:func:`canonical_writer` and :func:`canonical_batch` are how this project writes any records Parquet (the
benchmarks' generator too).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ab_router.records import RECORD_TYPES, RecordType
from abtest.experiment.ingest import layout
from abtest.experiment.ingest.read import RecordError, TornTail, is_database_url, open_records

log = logging.getLogger(__name__)

PART_NAME = "part-0.parquet"
# zstd: a third smaller than snappy on these records, and DuckDB, Spark and pyarrow all read it.
COMPRESSION = "zstd"
ROW_GROUP_ROWS = 500_000  # DuckDB's batch size while copying, and so the row group size


@dataclass(frozen=True)
class Compacted:
    """What a compaction wrote: the target, its rows per table, and the torn tails it skipped."""

    source: Path
    target: Path
    rows: Mapping[str, int]
    torn_tails: tuple[TornTail, ...] = ()

    def summary(self) -> str:
        """One line for a person: where from, where to, rows per table, torn tails skipped."""
        counts = ", ".join(f"{table} {count:,}" for table, count in self.rows.items())
        return (
            f"compacted {self.source} -> {self.target}: {counts} rows; {len(self.torn_tails)} torn tail(s) skipped"
        )


def canonical_writer(path: Path, record_type: RecordType) -> pq.ParquetWriter:
    """A Parquet writer of ``record_type``'s canonical schema (:func:`.layout.arrow_schema`)."""
    return pq.ParquetWriter(path, layout.arrow_schema(record_type), compression=COMPRESSION)


def canonical_batch(batch: pa.RecordBatch | pa.Table, record_type: RecordType) -> pa.RecordBatch | pa.Table:
    """``batch``'s record columns, in storage order, cast to the canonical types (its other columns dropped)."""
    schema = layout.arrow_schema(record_type)
    columns = [batch.column(f.name).cast(f.type) for f in schema]
    return type(batch).from_arrays(columns, schema=schema)


def compact_records(source_dir: str | Path, target_dir: str | Path, *, events: Iterable[str] = ()) -> Compacted:
    """Validate the records in ``source_dir`` and write each table as Parquet under ``target_dir`` (see module).

    ``events``: outcome event names accepted besides the records' own (as :func:`.read.open_records`).
    """
    if is_database_url(source_dir):
        raise ValueError(f"compact reads a records directory, not a database URL: {source_dir!r}")
    source, target = Path(source_dir), Path(target_dir)
    _check_target(source, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        with open_records(source, events=events) as store:
            rows = {table: _write_table(store.connection, rt, staging) for table, rt in RECORD_TYPES.items()}
            torn = store.torn_tails
        if target.exists():
            target.rmdir()  # empty (checked): the staging folder takes its place
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    compacted = Compacted(source, target, rows, torn)
    log.info("%s", compacted.summary())
    return compacted


def _check_target(source: Path, target: Path) -> None:
    if not source.is_dir():
        raise FileNotFoundError(f"records directory {source} does not exist")
    if target.exists():
        if not target.is_dir():
            raise FileExistsError(f"target {target} is a file, not a directory")
        if any(target.iterdir()):
            raise FileExistsError(f"target {target} is not empty: compact writes into a new or empty folder only")
    resolved_source, resolved_target = source.resolve(), target.resolve()
    if resolved_target == resolved_source or resolved_source in resolved_target.parents:
        raise ValueError(f"target {target} is inside the source {source}: its files would become records")


def _write_table(con, record_type: RecordType, staging: Path) -> int:
    """Copy one validated table to ``staging/<table>/part-0.parquet`` batch by batch; its row count."""
    folder = staging / record_type.table
    folder.mkdir()
    order = ", ".join(f'"{name}"' for name in ("event_time", *record_type.key))
    columns = ", ".join(f'"{name}"' for name in record_type.columns)
    reader = con.sql(f"SELECT {columns} FROM {record_type.sql_table} ORDER BY {order}").to_arrow_reader(
        ROW_GROUP_ROWS
    )
    rows = 0
    with canonical_writer(folder / PART_NAME, record_type) as writer:
        pending: list[pa.RecordBatch] = []
        for batch in (*reader, None):  # DuckDB's batches may be smaller: gathered into full row groups
            if batch is not None:
                pending.append(canonical_batch(batch, record_type))
                rows += batch.num_rows
            if pending and (batch is None or sum(b.num_rows for b in pending) >= ROW_GROUP_ROWS):
                writer.write_table(pa.Table.from_batches(pending), row_group_size=ROW_GROUP_ROWS)
                pending = []
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """The CLI: compact SOURCE into TARGET, print one summary line; 2 with one error line when it cannot."""
    parser = argparse.ArgumentParser(
        prog="python -m abtest.experiment.ingest.compact", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("source", type=Path, help="records directory: <source>/<table>/*.jsonl or *.parquet")
    parser.add_argument("target", type=Path, help="new or empty directory for <target>/<table>/part-0.parquet")
    parser.add_argument("--events", default="", help="comma-separated outcome events to accept besides click")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    events = tuple(name.strip() for name in args.events.split(",") if name.strip())
    try:
        compacted = compact_records(args.source, args.target, events=events)
    except (RecordError, OSError, ValueError) as error:
        print(f"compact: error: {error}", file=sys.stderr)
        return 2
    print(compacted.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
