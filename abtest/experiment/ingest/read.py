"""Open the experiment's records and validate them: a directory (JSON Lines, Parquet; DuckDB) or a SQL database.

:func:`open_records` returns a :class:`RecordStore`: a connection on which the three tables of
:mod:`ab_router.records` are named ``abtest_<table>`` (the SQL sink's names), validated, so the reduction
(:mod:`.reduce`) runs one query text on every backend.

A directory's JSON Lines (``<dir>/<table>/<writer>.jsonl``) are loaded file by file into a DuckDB database in a
temporary directory (on disk, compressed, memory-capped: ten million rows do not have to fit in memory). DuckDB's
own typed JSON reader casts silently (``"12"`` → 12, ``1.5`` → 2 in a long column, ``5`` → ``'5'`` in a string
one), so every field is read as raw JSON and converted only when its JSON type is the field's kind; anything else
makes the file's load fail (DuckDB's ``error()``; a file's rows are loaded in one statement, all or none). Only
then is the file read line by line in Python (:func:`first_bad_line`), to name the line number and the rule.

The rules: a line is one JSON object; every required field is present and not null (a ``double`` may be null: the
sinks write NaN as null, and DuckDB cannot tell a null from an absent key without parsing twice); a ``long`` is a
JSON integer, a ``double`` a JSON number, a ``string`` a JSON string, a ``boolean`` true/false, a ``timestamp`` an
ISO 8601 string with an explicit UTC offset (or ``Z``); an outcome's ``event`` is one of
:data:`ab_router.records.OUTCOME_EVENTS` or the caller's declared events. Unknown extra fields are ignored.

A torn tail: a file's last line without its newline (a writer killed mid-write), or a last line that is not
valid JSON. It is reported (:class:`TornTail`, logged as a warning) and skipped, never mixed in; any other bad
line stops the read with a :class:`RecordError`.

Parquet files (``<dir>/<table>/**/*.parquet``, the rules of :mod:`.layout`) are typed, so each file's schema is
checked (:func:`.layout.schema_problem`) and its values by one query (required values not null, events declared),
each failure a :class:`RecordError` naming the file and the first bad row's key. They are not copied: the table is
a view over ``read_parquet`` with every column cast to its DuckDB type (an optional column a file lacks read as
null), so the reduction scans the Parquet itself; a table with JSON Lines too is the ``UNION ALL`` of both.

A SQL database (SQLAlchemy URL): the same rules by query, on the tables in place: declared column types must
match the records' kinds, SQLite's per-value types (``typeof``) too, required columns not null, events declared.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from ab_router.records import OUTCOME_EVENTS, OUTCOMES, RECORD_TYPES, Field, RecordType
from abtest.experiment.ingest import layout

log = logging.getLogger(__name__)

JSONL_SUFFIX = layout.JSONL_SUFFIX
# DuckDB's memory cap while loading and reducing; the rest spills to its temporary directory.
DUCKDB_MEMORY_LIMIT = "1GB"
# Overrides DUCKDB_MEMORY_LIMIT (e.g. "6GB"): 10^8 decision rows need about 3 GB for the first GROUP BY.
MEMORY_LIMIT_ENV = "ABTEST_DUCKDB_MEMORY_LIMIT"
_MEMORY_SIZE = re.compile(r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)
_CACHE_FORMAT = 1  # bump when the validation or the stored columns change: old cache entries are then ignored

RULE_JSON = "not a JSON object"
RULE_MISSING = "missing required field"
RULE_TYPE = "wrong type"
RULE_EVENT = "unknown outcome event"

_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "long": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
}
# JSON types (DuckDB's json_type names) a field of each kind accepts
_JSON_TYPES = {
    "string": ("VARCHAR",),
    "long": ("BIGINT", "UBIGINT"),  # a UBIGINT beyond the BIGINT range fails the cast
    "double": ("DOUBLE", "BIGINT", "UBIGINT"),
    "boolean": ("BOOLEAN",),
    "timestamp": ("VARCHAR",),
}


class RecordError(ValueError):
    """A record breaks a rule: where (file and 1-based line, or SQL table and key), which rule, what was there."""

    def __init__(self, where: str, rule: str, detail: str) -> None:
        super().__init__(f"{where}: {rule}: {detail}")
        self.where = where
        self.rule = rule
        self.detail = detail


@dataclass(frozen=True)
class TornTail:
    """An incomplete last line, skipped: its file, its 1-based line number and its length in bytes."""

    path: Path
    line: int
    size_bytes: int

    def __str__(self) -> str:
        return f"{self.path}: line {self.line} ({self.size_bytes} bytes) is incomplete"


@dataclass
class RecordStore:
    """Validated records on one connection, tables named ``abtest_<table>``; close it (or use ``with``)."""

    location: str
    dialect: str  # duckdb | sqlite | postgresql | spark
    connection: Any  # a DuckDB connection, an open SQLAlchemy Connection, or a SparkSession
    files: Mapping[str, tuple[Path, ...]] = field(default_factory=dict)  # directory only: JSON Lines, then Parquet
    torn_tails: tuple[TornTail, ...] = ()
    _cleanup: Any = None
    # Another engine's statement runner (Spark: abtest.experiment.ingest.spark), used instead of the connection's.
    runner: Callable[[str], pd.DataFrame] | None = None

    def query(self, sql: str) -> pd.DataFrame:
        """Run one statement and return its rows (empty frame for statements without rows)."""
        if self.runner is not None:
            return self.runner(sql)
        if self.dialect == "duckdb":
            try:
                result = self.connection.execute(sql)
            except duckdb.OutOfMemoryException as error:
                raise MemoryError(
                    f"DuckDB ran out of its {duckdb_memory_limit()} memory limit reducing {self.location}: set "
                    f"{MEMORY_LIMIT_ENV} higher (e.g. 4GB; about 3GB per 10^8 decision rows) or use engine=spark "
                    f"({error})"
                ) from error
            if result.description is None:
                return pd.DataFrame()
            return result.fetch_df()
        import sqlalchemy as sa

        result = self.connection.execute(sa.text(sql))
        if not result.returns_rows:
            return pd.DataFrame()
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))

    def close(self) -> None:
        """Close the connection and delete any temporary files."""
        if self.connection is not None:
            if self.runner is None:  # a runner's engine (a SparkSession) belongs to its caller
                self.connection.close()
            self.connection = None
        if self._cleanup is not None:
            self._cleanup()
            self._cleanup = None

    def __enter__(self) -> RecordStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def duckdb_memory_limit() -> str:
    """DuckDB's memory cap: ``$ABTEST_DUCKDB_MEMORY_LIMIT`` if set (checked), else :data:`DUCKDB_MEMORY_LIMIT`."""
    value = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    if not value:
        return DUCKDB_MEMORY_LIMIT
    if not _MEMORY_SIZE.match(value):
        raise ValueError(f"{MEMORY_LIMIT_ENV} must be a size such as 4GB or 512MB, got {value!r}")
    return value


def allowed_events(declared: Iterable[str] = ()) -> tuple[str, ...]:
    """records.OUTCOME_EVENTS plus the caller's declared event names, each once, in order."""
    names: list[str] = []
    for name in (*OUTCOME_EVENTS, *declared):
        if not isinstance(name, str) or not name:
            raise ValueError(f"outcome event names must be non-empty strings, got {name!r}")
        if name not in names:
            names.append(name)
    return tuple(names)


def is_database_url(location: str | Path) -> bool:
    """True for a SQLAlchemy URL (``sqlite:///...``, ``postgresql://...``), False for a directory path."""
    return isinstance(location, str) and "://" in location


def open_records(
    location: str | Path,
    *,
    events: Iterable[str] = (),
    workdir: Path | None = None,
    cache_dir: Path | None = None,
) -> RecordStore:
    """Open and validate the records at ``location`` (a directory or a SQLAlchemy URL).

    ``events``: outcome event names accepted besides :data:`ab_router.records.OUTCOME_EVENTS`. ``workdir``: where
    DuckDB keeps a directory's loaded tables (default: a new temporary directory, deleted on close).
    ``cache_dir`` (directories only, off by default): keep each validated file as Parquet there, reused while the
    file's size and modification time are unchanged and the declared events are the same, so a daily re-analysis
    parses only the files written since (a file with a torn tail, possibly still being written, is never cached).
    """
    names = allowed_events(events)
    if is_database_url(location):
        return _open_database(str(location), names)
    return _open_directory(Path(location), names, workdir, cache_dir)


# --------------------------------------------------------------------------------------------- directory
def _open_directory(
    directory: Path, events: tuple[str, ...], workdir: Path | None, cache_dir: Path | None
) -> RecordStore:
    if not directory.is_dir():
        raise FileNotFoundError(
            f"records directory {directory} does not exist (expected <dir>/<table>/*.jsonl or *.parquet)"
        )
    scratch = Path(tempfile.mkdtemp(prefix="abtest-ingest-", dir=workdir))
    con = duckdb.connect(str(scratch / "records.duckdb"))
    store = RecordStore(str(directory), "duckdb", con, _cleanup=lambda: shutil.rmtree(scratch, ignore_errors=True))
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        con.execute(f"SET memory_limit = '{duckdb_memory_limit()}'")
        con.execute(f"SET temp_directory = '{scratch / 'spill'}'")
        con.execute("SET preserve_insertion_order = false")
        files, torn, counts = {}, [], []
        for table, record_type in RECORD_TYPES.items():
            found = layout.table_files(directory, record_type)
            files[table] = (*found.jsonl, *found.parquet)
            counts.append(f"{table}: {len(found.jsonl)} jsonl + {len(found.parquet)} parquet files")
            if not found.parquet:
                torn += _load_table(con, record_type, found.jsonl, events, scratch, cache_dir)
                continue
            parquet = _parquet_select(con, record_type, found.parquet, events)
            if found.jsonl:
                jsonl_table = f"{record_type.sql_table}_jsonl"
                torn += _load_table(con, record_type, found.jsonl, events, scratch, cache_dir, jsonl_table)
                parquet = f"SELECT * FROM {jsonl_table} UNION ALL {parquet}"
            con.execute(f"CREATE VIEW {record_type.sql_table} AS {parquet}")
        store.files, store.torn_tails = files, tuple(torn)
        for tail in torn:
            log.warning("torn tail skipped: %s", tail)
        log.info("records in %s: %s", directory, ", ".join(counts))
        return store
    except BaseException:
        store.close()
        raise


def _create_sql(record_type: RecordType, table: str) -> str:
    columns = ", ".join(f'"{f.name}" {_DUCKDB_TYPES[f.kind]}' for f in record_type.fields)
    return f"CREATE TABLE {table} ({columns})"


def _convert_sql(f: Field, record_type: RecordType, events: tuple[str, ...]) -> str:
    """The field's value when its JSON type is its kind; DuckDB's ``error()`` (the read fails) otherwise."""
    raw = f'"{f.name}"'
    allowed = ", ".join(f"'{name}'" for name in _JSON_TYPES[f.kind])
    if f.kind == "string":
        value = f"json_extract_string({raw}, '$')"
    elif f.kind == "timestamp":
        text = f"json_extract_string({raw}, '$')"
        # An explicit offset is required: a naive time would silently be read as UTC.
        has_offset = f"({text}[-1:] = 'Z' OR {text}[-6:-6] IN ('+', '-'))"
        value = (
            f"CASE WHEN {has_offset} AND TRY_CAST({text} AS TIMESTAMPTZ) IS NOT NULL "
            f"THEN CAST({text} AS TIMESTAMPTZ) ELSE error('{RULE_TYPE}: {f.name}') END"
        )
    else:
        value = f"CAST({raw} AS {_DUCKDB_TYPES[f.kind]})"
    if record_type.table == OUTCOMES.table and f.name == "event":
        listed = ", ".join(sql_literal(name) for name in events)
        value = f"CASE WHEN {value} IN ({listed}) THEN {value} ELSE error('{RULE_EVENT}') END"
    # A double may be null: the sinks write NaN as null.
    absent = "NULL" if not f.required or f.kind == "double" else f"error('{RULE_MISSING}: {f.name}')"
    return (
        f"CASE WHEN {raw} IS NULL THEN {absent} WHEN json_type({raw}) IN ({allowed}) THEN {value} "
        f"ELSE error('{RULE_TYPE}: {f.name}') END"
    )


def _load_table(
    con: duckdb.DuckDBPyConnection,
    record_type: RecordType,
    paths: Sequence[Path],
    events: tuple[str, ...],
    scratch: Path,
    cache_dir: Path | None = None,
    table: str | None = None,
) -> list[TornTail]:
    """Load every JSON Lines file of one table (into ``table``, default its SQL name), strictly typed; torn tails
    skipped; the first bad line raised."""
    table = table or record_type.sql_table
    con.execute(_create_sql(record_type, table))
    raw_columns = {f.name: "JSON" for f in record_type.fields}
    select = ", ".join(f'{_convert_sql(f, record_type, events)} AS "{f.name}"' for f in record_type.fields)

    def insert(readable: Path, cached: Path | None = None) -> None:
        source = f"read_json({sql_literal(str(readable))}, columns={raw_columns}, format='newline_delimited')"
        if cached is None:
            con.execute(f"INSERT INTO {table} SELECT {select} FROM {source}")
            return
        partial = cached.with_suffix(".partial")
        try:
            con.execute(f"COPY (SELECT {select} FROM {source}) TO {sql_literal(str(partial))} (FORMAT parquet)")
        except duckdb.Error:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(cached)  # only a completely validated file becomes a cache entry
        con.execute(f"INSERT INTO {table} SELECT * FROM read_parquet({sql_literal(cached)})")

    torn: list[TornTail] = []
    for path in paths:
        readable, tail = _complete_lines(path, scratch)
        if tail is not None:
            torn.append(tail)
        if readable is None:
            continue
        cached = _cache_entry(cache_dir, path, record_type, events) if cache_dir and tail is None else None
        if cached is not None and cached.exists():
            con.execute(f"INSERT INTO {table} SELECT * FROM read_parquet({sql_literal(cached)})")
            continue
        try:
            insert(readable, cached)  # one statement: all of the file's rows or none
        except duckdb.InterruptException:
            raise
        except duckdb.Error as error:
            bad = first_bad_line(path, record_type, events)
            if bad is not None and tail is None and bad[1] == RULE_JSON and bad[0] == _line_count(path):
                # The last line is complete but unreadable (e.g. zeros after a crash): a torn tail too.
                torn.append(TornTail(path, bad[0], _last_line_size(path)))
                prefix = scratch / f"prefix-{path.parent.name}-{path.name}"
                shutil.copyfile(path, prefix)
                _truncate_last_line(prefix)
                insert(prefix)
                continue
            _raise_located(path, bad, f"DuckDB could not read it: {error}")
    return torn


def _parquet_select(
    con: duckdb.DuckDBPyConnection, record_type: RecordType, paths: Sequence[Path], events: tuple[str, ...]
) -> str:
    """The SELECT that reads one table's Parquet files cast to its DuckDB types, once every file passed its checks.

    Each file's schema is checked by :func:`.layout.schema_problem`, then its values by one query; the first
    failure is a :class:`RecordError` naming the file. Column names are matched by name across files
    (``union_by_name``), so an optional column some files lack is null there; one that no file has is a typed null.
    Partition folders (``day=3/``) add no column: only the file's own columns are records.
    """
    present: set[str] = set()
    for path in paths:
        present |= _check_parquet_file(con, record_type, path, events)
    listed = "[" + ", ".join(sql_literal(path.resolve()) for path in paths) + "]"
    columns = ", ".join(
        f"CAST({_quoted(f.name) if f.name in present else 'NULL'} AS {_DUCKDB_TYPES[f.kind]}) AS {_quoted(f.name)}"
        for f in record_type.fields
    )
    return f"SELECT {columns} FROM read_parquet({listed}, union_by_name = true, hive_partitioning = false)"


def _check_parquet_file(
    con: duckdb.DuckDBPyConnection, record_type: RecordType, path: Path, events: tuple[str, ...]
) -> set[str]:
    """The record columns ``path`` holds, once its schema and values keep :mod:`.layout`'s rules (else raised)."""
    import pyarrow as pa

    try:
        schema = layout.parquet_schema(path)
    except (OSError, pa.ArrowException) as error:
        raise RecordError(str(path), "unreadable", f"not a Parquet file: {error}") from error
    problem = layout.schema_problem(schema, record_type)
    if problem is not None:
        raise RecordError(str(path), *problem)
    present = {f.name for f in record_type.fields if f.name in schema.names}
    checks: list[tuple[str, str, str]] = [
        (f"{_quoted(f.name)} IS NULL", RULE_MISSING, f"{record_type.table} column {f.name!r} ({f.kind}) is null")
        for f in record_type.fields
        if f.required and f.kind != "double"
    ]
    if record_type.table == OUTCOMES.table:
        listed = ", ".join(sql_literal(name) for name in events)
        detail = f"event is not one of {list(events)} (declare it to accept it)"
        checks.append((f'"event" NOT IN ({listed})', RULE_EVENT, detail))
    # One scan of the file for every rule; which rule the row found breaks is then read off the row.
    wanted = [name for name in record_type.columns if name in present]
    flags = ", ".join(f"({condition}) AS _broken_{i}" for i, (condition, _, _) in enumerate(checks))
    any_broken = " OR ".join(f"({condition})" for condition, _, _ in checks)
    found = con.execute(
        f"SELECT {', '.join(map(_quoted, wanted))}, {flags} "
        f"FROM read_parquet({sql_literal(path.resolve())}, hive_partitioning = false) WHERE {any_broken} LIMIT 1"
    ).fetchone()
    if found is not None:
        row = dict(zip(wanted, found, strict=False))
        broken = found[len(wanted) :]
        rule, detail = next((rule, detail) for (_, rule, detail), flag in zip(checks, broken, strict=True) if flag)
        key = ", ".join(f"{name}={row.get(name)!r}" for name in record_type.key)
        raise RecordError(f"{path}, row with {key}", rule, f"{detail}: {row}")
    return present


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _cache_entry(cache_dir: Path, path: Path, record_type: RecordType, events: tuple[str, ...]) -> Path:
    """The cache file of one records file in its present state (path, size, mtime) under the present rules."""
    state = path.stat()
    key = json.dumps(
        [str(path.resolve()), state.st_size, state.st_mtime_ns, record_type.columns, events, _CACHE_FORMAT]
    )
    cache_dir.mkdir(parents=True, exist_ok=True)
    return cache_dir / f"{record_type.table}-{hashlib.sha256(key.encode()).hexdigest()[:32]}.parquet"


def _raise_located(path: Path, bad: tuple[int, str, str] | None, summary: str) -> None:
    if bad is None:
        raise RecordError(str(path), "unreadable", summary)
    line, rule, detail = bad
    raise RecordError(f"{path}, line {line}", rule, detail)


def _complete_lines(path: Path, scratch: Path) -> tuple[Path | None, TornTail | None]:
    """The file to read (the file itself, or a copy without its torn last line) and the torn tail, if any."""
    size = path.stat().st_size
    if size == 0:
        return None, None
    with path.open("rb") as handle:
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return path, None
    tail_size = _last_line_size(path)
    tail = TornTail(path, _line_count(path) + 1, tail_size)
    if tail_size == size:
        return None, tail
    prefix = scratch / f"prefix-{path.parent.name}-{path.name}"
    with path.open("rb") as source, prefix.open("wb") as target:
        remaining = size - tail_size
        while remaining:
            chunk = source.read(min(remaining, 1 << 24))
            target.write(chunk)
            remaining -= len(chunk)
    return prefix, tail


def _line_count(path: Path) -> int:
    """Newline characters in the file (a complete last line ends with one)."""
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            count += chunk.count(b"\n")
    return count


def _last_line_size(path: Path) -> int:
    """Bytes of the file's last line, its newline included if it has one."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.seek(max(size - 1, 0))
        position = size - 1 if handle.read(1) == b"\n" else size  # a final newline ends the last line
        while position > 0:
            start = max(0, position - (1 << 16))
            handle.seek(start)
            cut = handle.read(position - start).rfind(b"\n")
            if cut >= 0:
                return size - (start + cut + 1)
            position = start
    return size


def _truncate_last_line(path: Path) -> None:
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(size - _last_line_size(path))


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line without newline) of a JSON Lines file, streamed."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip(b"\n")


def first_bad_line(path: Path, record_type: RecordType, events: Iterable[str]) -> tuple[int, str, str] | None:
    """(line number, rule, detail) of the first line that breaks a rule, or None; reads the file once in Python.

    Only called once DuckDB or the loaded table's check has said the file is bad, so the cost is on the error
    path alone. A last line without newline is not judged (it is the torn tail).
    """
    names = tuple(events)
    size = path.stat().st_size
    seen = 0
    for number, line in iter_lines(path):
        seen += len(line) + 1
        if seen > size:  # the last line has no newline: the torn tail, reported elsewhere
            return None
        problem = check_line(line, record_type, names)
        if problem is not None:
            return (number, *problem)
    return None


def check_line(line: bytes, record_type: RecordType, events: tuple[str, ...]) -> tuple[str, str] | None:
    """(rule, detail) for a line that breaks a rule of the module docstring, else None."""
    try:
        record = json.loads(line)
    except ValueError as error:
        return RULE_JSON, f"{error.__class__.__name__}: {error} in {line[:120]!r}"
    if not isinstance(record, dict):
        return RULE_JSON, f"a JSON {type(record).__name__}, not an object: {line[:120]!r}"
    for f in record_type.fields:
        value = record.get(f.name)
        if value is None:
            if f.required and f.kind != "double":
                state = "null" if f.name in record else "absent"
                return RULE_MISSING, f"{record_type.table} field {f.name!r} ({f.kind}) is {state}"
            continue
        if not _has_kind(value, f.kind):
            return RULE_TYPE, f"{record_type.table} field {f.name!r} must be a {f.kind}, got {value!r}"
    if record_type.table == OUTCOMES.table and record["event"] not in events:
        return RULE_EVENT, f"event {record['event']!r} is not one of {list(events)} (declare it to accept it)"
    return None


def _has_kind(value: object, kind: str) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "long":
        return isinstance(value, int) and -(2**63) <= value < 2**63
    if kind == "double":
        return isinstance(value, int | float)
    if not isinstance(value, str):
        return False
    if kind == "timestamp":
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return False
        return parsed.tzinfo is not None
    return True


def sql_literal(value: object) -> str:
    """``value`` as a single-quoted SQL string literal (quotes doubled), the same on DuckDB, SQLite, PostgreSQL."""
    return "'" + str(value).replace("'", "''") + "'"


# ---------------------------------------------------------------------------------------------- database
_SQL_KINDS = {  # SQLAlchemy generic type classes that store each kind
    "string": ("String",),
    "long": ("Integer",),
    "double": ("Float", "Numeric"),
    "boolean": ("Boolean",),
    "timestamp": ("DateTime",),
}
_SQLITE_VALUE_TYPES = {  # typeof() values SQLite may hold for each kind
    "string": ("text",),
    "long": ("integer",),
    "double": ("real", "integer"),
    "boolean": ("integer",),
    "timestamp": ("text",),
}


def _open_database(url: str, events: tuple[str, ...]) -> RecordStore:
    import sqlalchemy as sa

    engine = sa.create_engine(_driver_url(url))
    connection = engine.connect()
    dialect = engine.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        connection.close()
        raise ValueError(f"records database {url!r}: dialect {dialect!r} is not supported (sqlite, postgresql)")
    store = RecordStore(url, dialect, connection, _cleanup=engine.dispose)
    try:
        existing = set(sa.inspect(connection).get_table_names())
        for record_type in RECORD_TYPES.values():
            if record_type.sql_table not in existing:
                log.warning("records database has no table %s: read as empty", record_type.sql_table)
                _create_empty(connection, record_type)
                continue
            _check_columns(connection, record_type)
            _check_rows(store, record_type, events)
        return store
    except BaseException:
        store.close()
        raise


def _driver_url(url: str) -> str:
    """``postgresql://`` through psycopg 3 (the driver requirements-test pins), other URLs as given."""
    return "postgresql+psycopg://" + url.removeprefix("postgresql://") if url.startswith("postgresql://") else url


def _create_empty(connection: Any, record_type: RecordType) -> None:
    import sqlalchemy as sa

    kinds = {"string": "TEXT", "long": "BIGINT", "double": "DOUBLE PRECISION", "boolean": "BOOLEAN"}
    timestamp = "TEXT" if connection.dialect.name == "sqlite" else "TIMESTAMP WITH TIME ZONE"
    columns = ", ".join(f'"{f.name}" {kinds.get(f.kind, timestamp)}' for f in record_type.fields)
    connection.execute(sa.text(f"CREATE TEMPORARY TABLE {record_type.sql_table} ({columns})"))


def _check_columns(connection: Any, record_type: RecordType) -> None:
    import sqlalchemy as sa

    columns = sa.inspect(connection).get_columns(record_type.sql_table)
    declared = {column["name"]: column["type"] for column in columns}
    for f in record_type.fields:
        if f.name not in declared:
            if f.required:
                raise RecordError(
                    f"table {record_type.sql_table}", RULE_MISSING, f"column {f.name!r} ({f.kind}) does not exist"
                )
            continue
        sql_type = declared[f.name]
        generic = {cls.__name__ for cls in type(sql_type).__mro__}
        if not generic & set(_SQL_KINDS[f.kind]):
            raise RecordError(
                f"table {record_type.sql_table}",
                RULE_TYPE,
                f"column {f.name!r} is declared {sql_type}, records.py says {f.kind}",
            )


def _check_rows(store: RecordStore, record_type: RecordType, events: tuple[str, ...]) -> None:
    """The first row that breaks a rule, named by its key, raised; one query per rule kind."""
    table = record_type.sql_table
    key = ", ".join(f'"{name}"' for name in record_type.key)
    checks: list[tuple[str, str, str]] = []
    for f in record_type.fields:
        column = f'"{f.name}"'
        if f.required and f.kind != "double":
            checks.append((f"{column} IS NULL", RULE_MISSING, f"field {f.name!r} ({f.kind}) is null"))
        if store.dialect == "sqlite":
            allowed = ", ".join(f"'{name}'" for name in _SQLITE_VALUE_TYPES[f.kind])
            wrong_type = f"{column} IS NOT NULL AND typeof({column}) NOT IN ({allowed})"
            checks.append((wrong_type, RULE_TYPE, f"field {f.name!r} must be a {f.kind}"))
            if f.kind == "timestamp":
                not_time = f"{column} IS NOT NULL AND julianday({column}) IS NULL"
                checks.append((not_time, RULE_TYPE, f"field {f.name!r} is not a time"))
    if record_type.table == OUTCOMES.table:
        listed = ", ".join(sql_literal(name) for name in events)
        checks.append(('"event" NOT IN (' + listed + ")", RULE_EVENT, f"event is not one of {list(events)}"))
    for condition, rule, detail in checks:
        rows = store.query(f"SELECT {key}, * FROM {table} WHERE {condition} LIMIT 1")
        if not rows.empty:
            values = rows.iloc[0].to_dict()
            where = f"table {table}, row with " + ", ".join(f"{name}={values[name]!r}" for name in record_type.key)
            shown = {k: v for k, v in values.items() if k in record_type.columns}
            raise RecordError(where, rule, f"{detail}: {shown}")
