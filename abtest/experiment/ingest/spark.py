"""The experiment's records opened on Spark: the same tables, the same rules, so :mod:`.reduce` runs unchanged.

:func:`open_spark_records` returns a :class:`~.read.RecordStore` whose statements run as Spark SQL on the given
session, with the three tables of :mod:`ab_router.records` registered as temporary views ``abtest_<table>``
(the names the reduction reads). Where the records may be:

- a records directory on this machine (``<dir>/<table>/``, :mod:`.layout`): JSON Lines and/or Parquet files;
- ``tables:<database>``: tables already in the session's catalog, ``<database>.abtest_<table>`` (the SQL sink's
  names), e.g. ``tables:main.abtest`` on Databricks; a missing table is read as empty, with a warning;
- any other URI Spark reads (``s3a://bucket/records``, ``hdfs://...``, ``dbfs:/...``): Parquet under
  ``<uri>/<table>/``, read by the cluster (a path this driver cannot list is the executors' business).

The rules are :mod:`.read`'s, checked by Spark where the data is:

- Parquet and catalog tables: the schema (:func:`.layout.schema_problem`; per file, with pyarrow, when the files
  are local, so the error names the file), then the values by one query (required values not null, except
  doubles; outcome events declared), the first offender named by file (``input_file_name``) and key;
- JSON Lines: each line parsed with the typed schema by ``from_json`` (a long must be a JSON integer, a double a
  number, a boolean ``true``/``false``: anything else makes the line corrupt); Spark's parser would turn a number
  into a string field's text, so a string field must also appear as ``"name": "`` in its line (a nested object of
  an unknown extra field that repeats a records field's name can hide a non-string there: the one gap, left
  because extra fields are ignored by rule); a time must carry ``Z`` or an offset ``±HH:MM`` and parse. Torn tails
  are found and cut off on the driver (:func:`.read._complete_lines`), as the DuckDB reader does. On the first bad
  line the file is re-read in Python (:func:`.read.first_bad_line`) so the error names file, line and rule; a
  last line that is complete but not JSON is a torn tail too.
  Parsed and validated in one pass, the rows are written once as Parquet under the work directory (the DuckDB
  reader's load), so the reduction's statements never parse JSON again.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ab_router.records import OUTCOMES, RECORD_TYPES, RecordType
from abtest.experiment.ingest.layout import parquet_schema, schema_problem, table_files
from abtest.experiment.ingest.read import (
    RULE_EVENT,
    RULE_JSON,
    RULE_MISSING,
    RULE_TYPE,
    RecordError,
    RecordStore,
    TornTail,
    _complete_lines,
    _last_line_size,
    _line_count,
    _truncate_last_line,
    allowed_events,
    first_bad_line,
    sql_literal,
)
from abtest.spark import TABLES_PREFIX

log = logging.getLogger(__name__)

SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mssql", "oracle")
_CORRUPT = "_corrupt_record"
_FILE = "_file"
_SPARK_TYPES = {
    "string": "STRING",
    "long": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "timestamp": "TIMESTAMP",
}
# Spark's simpleString of the types each kind accepts in a Parquet file or a catalog table (layout.ACCEPTED's).
_SPARK_ACCEPTED = {
    "long": ("tinyint", "smallint", "int", "bigint"),
    "double": ("float", "double", "tinyint", "smallint", "int", "bigint"),
    "string": ("string",),
    "boolean": ("boolean",),
    "timestamp": ("timestamp",),
}
_OFFSET = r"(Z|[+-][0-9]{2}:[0-9]{2})$"


def open_spark_records(
    location: str | Path, *, spark: Any, events: Iterable[str] = (), workdir: Path | None = None
) -> RecordStore:
    """Open and validate the records at ``location`` (module docstring) on ``spark``; close the store when done.

    ``events``: outcome names accepted besides :data:`ab_router.records.OUTCOME_EVENTS`. ``workdir``: where the
    validated JSON Lines rows are kept as Parquet (default: a new temporary directory, deleted on close).
    """
    names = allowed_events(events)
    text = str(location)
    scheme = text.split("://", 1)[0].split("+", 1)[0].lower() if "://" in text else ""
    if scheme in SQL_SCHEMES:
        raise ValueError(
            f"records {text!r}: engine=spark reads records directories (JSON Lines, Parquet), tables:<database> "
            "or a Parquet URI, not a SQL database: use engine=duckdb, which reduces a database in the database"
        )
    scratch = Path(tempfile.mkdtemp(prefix="abtest-spark-ingest-", dir=workdir))
    views: list[str] = []

    def cleanup() -> None:
        for view in views:
            spark.catalog.dropTempView(view)
        shutil.rmtree(scratch, ignore_errors=True)

    store = RecordStore(text, "spark", spark, runner=lambda sql: _run(spark, sql), _cleanup=cleanup)
    try:
        files, torn = {}, []
        for record_type in RECORD_TYPES.values():
            if text.startswith(TABLES_PREFIX):
                frame = _catalog_table(spark, text.removeprefix(TABLES_PREFIX), record_type)
                _check_values(frame, record_type, names, where=text)
                files[record_type.table] = ()
            elif scheme and scheme != "file":
                frame = _remote_parquet(spark, text.rstrip("/") + "/" + record_type.table, record_type)
                _check_values(frame, record_type, names, where=text)
                files[record_type.table] = ()
            else:
                directory = Path(text.removeprefix("file://"))
                if not directory.is_dir():
                    raise FileNotFoundError(
                        f"records directory {directory} does not exist "
                        "(expected <dir>/<table>/*.jsonl or *.parquet)"
                    )
                frame, table_torn, paths = _local_table(spark, directory, record_type, names, scratch)
                files[record_type.table] = paths
                torn += table_torn
            frame.createOrReplaceTempView(record_type.sql_table)
            views.append(record_type.sql_table)
        store.files, store.torn_tails = files, tuple(torn)
        for tail in torn:
            log.warning("torn tail skipped: %s", tail)
        log.info("records in %s opened on Spark %s", text, spark.version)
        return store
    except BaseException:
        store.close()
        raise


def _run(spark: Any, sql: str) -> pd.DataFrame:
    """One Spark SQL statement; its rows as pandas (DDL and CACHE TABLE have no columns: an empty frame)."""
    frame = spark.sql(sql)
    if not frame.columns:
        return pd.DataFrame()
    return frame.toPandas()


def _typed_select(record_type: RecordType, present: Sequence[str]) -> list[str]:
    """Every records column cast to its Spark type; an absent (optional) column as a typed null."""
    return [
        f"CAST({'`' + f.name + '`' if f.name in present else 'NULL'} AS {_SPARK_TYPES[f.kind]}) AS `{f.name}`"
        for f in record_type.fields
    ]


def _empty(spark: Any, record_type: RecordType) -> Any:
    schema = ", ".join(f"`{f.name}` {_SPARK_TYPES[f.kind]}" for f in record_type.fields)
    from pyspark.sql import functions as sf

    return spark.createDataFrame([], schema).withColumn(_FILE, sf.lit(""))


# ------------------------------------------------------------------------------------- local directory
def _local_table(
    spark: Any, directory: Path, record_type: RecordType, events: tuple[str, ...], scratch: Path
) -> tuple[Any, list[TornTail], tuple[Path, ...]]:
    """One table's JSON Lines and Parquet files as one validated frame (with the source file in ``_file``)."""
    found = table_files(directory, record_type)
    parts, torn = [], []
    if found.parquet:
        for path in found.parquet:
            problem = schema_problem(parquet_schema(path), record_type)
            if problem is not None:
                raise RecordError(str(path), *problem)
        parquet = _parquet_frame(spark, [str(p) for p in found.parquet], record_type)
        _check_values(parquet, record_type, events, where=str(directory))
        parts.append(parquet)
    if found.jsonl:
        frame, torn = _jsonl_frame(spark, found.jsonl, record_type, events, scratch)
        if frame is not None:
            parts.append(frame)
    if not parts:
        return _empty(spark, record_type), torn, ()
    frame = parts[0]
    for part in parts[1:]:
        frame = frame.unionByName(part)
    return frame, torn, found.jsonl + found.parquet


def _parquet_frame(spark: Any, paths: Sequence[str], record_type: RecordType) -> Any:
    from pyspark.sql import functions as sf

    raw = spark.read.parquet(*paths)
    return raw.selectExpr(*_typed_select(record_type, raw.columns)).withColumn(_FILE, sf.input_file_name())


def _jsonl_frame(
    spark: Any, paths: Sequence[Path], record_type: RecordType, events: tuple[str, ...], scratch: Path
) -> tuple[Any | None, list[TornTail]]:
    """Parse, check and store the JSON Lines files once; re-read a bad file in Python to name its line."""
    torn: list[TornTail] = []
    readable: dict[Path, Path] = {}
    for path in paths:
        source, tail = _complete_lines(path, scratch)
        if tail is not None:
            torn.append(tail)
        if source is not None:
            readable[path] = source
    if not readable:
        return None, torn
    while True:
        target = scratch / f"{record_type.table}-{len(torn)}.parquet"
        bad_file = _parse_to_parquet(spark, readable, record_type, events, target)
        if bad_file is None:
            break
        original = next(
            (p for p, source in readable.items() if Path(source).resolve() == bad_file.resolve()), bad_file
        )
        bad = first_bad_line(readable[original], record_type, events)
        last = _line_count(readable[original])
        if bad is not None and bad[1] == RULE_JSON and bad[0] == last and readable[original] == original:
            # The last line is complete but unreadable (e.g. zeros after a crash): a torn tail too.
            torn.append(TornTail(original, bad[0], _last_line_size(original)))
            prefix = scratch / f"prefix-{original.parent.name}-{original.name}"
            shutil.copyfile(original, prefix)
            _truncate_last_line(prefix)
            readable[original] = prefix
            continue
        if bad is None:
            raise RecordError(str(original), "unreadable", "Spark's JSON parser refused a line Python accepts")
        line, rule, detail = bad
        raise RecordError(f"{original}, line {line}", rule, detail)
    frame = spark.read.parquet(str(target)).drop("_bad")
    sources = {str(source): str(path) for path, source in readable.items()}
    if any(key != value for key, value in sources.items()):
        # Rows read from a copy without its torn tail name the original file.
        from pyspark.sql import functions as sf

        mapping = sf.create_map(*[sf.lit(x) for pair in sources.items() for x in pair])
        frame = frame.withColumn(_FILE, sf.coalesce(mapping[sf.col(_FILE)], sf.col(_FILE)))
    return frame, torn


def _parse_to_parquet(
    spark: Any, readable: dict[Path, Path], record_type: RecordType, events: tuple[str, ...], target: Path
) -> Path | None:
    """Write the typed rows and a per-row rule flag as Parquet in one pass; the first bad row's file, or None."""
    from pyspark.sql import functions as sf

    schema = ", ".join(
        [f"`{f.name}` {_SPARK_TYPES[f.kind] if f.kind != 'timestamp' else 'STRING'}" for f in record_type.fields]
        + [f"`{_CORRUPT}` STRING"]
    )
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT, "allowNonNumericNumbers": "false"}
    lines = spark.read.text([str(p) for p in readable.values()]).withColumn(_FILE, sf.input_file_name())
    parsed = lines.select("value", _FILE, sf.from_json("value", schema, options).alias("r"))
    broken = [f"r.`{_CORRUPT}` IS NOT NULL"]
    for f in record_type.fields:
        column = f"r.`{f.name}`"
        if f.required and f.kind != "double":
            broken.append(f"{column} IS NULL")
        if f.kind in ("string", "timestamp"):
            quoted = sql_literal(f'"{f.name}"[ \t]*:[ \t]*"')
            broken.append(f"({column} IS NOT NULL AND NOT value RLIKE {quoted})")
        if f.kind == "timestamp":
            unparsed = f"try_cast({column} AS TIMESTAMP) IS NULL"
            broken.append(f"({column} IS NOT NULL AND (NOT {column} RLIKE '{_OFFSET}' OR {unparsed}))")
    if record_type.table == OUTCOMES.table:
        listed = ", ".join(sql_literal(name) for name in events)
        broken.append(f"(r.event IS NOT NULL AND r.event NOT IN ({listed}))")
    columns = [
        f"try_cast(r.`{f.name}` AS TIMESTAMP) AS `{f.name}`"
        if f.kind == "timestamp"
        else f"r.`{f.name}` AS `{f.name}`"
        for f in record_type.fields
    ]
    flagged = parsed.selectExpr(*columns, _FILE, f"({' OR '.join(broken)}) AS _bad")
    flagged.write.mode("overwrite").parquet(str(target))
    stored = spark.read.parquet(str(target))
    bad = stored.filter("_bad").select(_FILE).limit(1).collect()
    return Path(_local_path(bad[0][0])) if bad else None


def _local_path(uri: str) -> str:
    from urllib.parse import unquote, urlparse

    return unquote(urlparse(uri).path) if uri.startswith("file:") else uri


# --------------------------------------------------------------------------------- tables and remote Parquet
def _catalog_table(spark: Any, database: str, record_type: RecordType) -> Any:
    from pyspark.sql import functions as sf

    if not database:
        raise ValueError("records tables:<database> needs the database, e.g. tables:main.abtest; got 'tables:'")
    name = f"{database}.{record_type.sql_table}"
    if not spark.catalog.tableExists(name):
        log.warning("no table %s: read as empty", name)
        return _empty(spark, record_type)
    raw = spark.table(name)
    _check_spark_schema(raw, record_type, where=f"table {name}")
    return raw.selectExpr(*_typed_select(record_type, raw.columns)).withColumn(_FILE, sf.lit(name))


def _remote_parquet(spark: Any, uri: str, record_type: RecordType) -> Any:
    from pyspark.sql import functions as sf

    raw = spark.read.option("recursiveFileLookup", "true").parquet(uri)
    _check_spark_schema(raw, record_type, where=uri)
    return raw.selectExpr(*_typed_select(record_type, raw.columns)).withColumn(_FILE, sf.input_file_name())


def _check_spark_schema(frame: Any, record_type: RecordType, *, where: str) -> None:
    """layout.schema_problem's rules on a Spark schema (a catalog table, or Parquet this driver cannot list)."""
    types = {field.name: field.dataType.simpleString() for field in frame.schema.fields}
    for f in record_type.fields:
        if f.name not in types:
            if f.required:
                raise RecordError(
                    where, RULE_MISSING, f"{record_type.table} column {f.name!r} ({f.kind}) is absent"
                )
            continue
        if types[f.name] not in _SPARK_ACCEPTED[f.kind]:
            raise RecordError(
                where,
                RULE_TYPE,
                f"{record_type.table} column {f.name!r} must hold a {f.kind}, its type is {types[f.name]}",
            )


def _check_values(frame: Any, record_type: RecordType, events: tuple[str, ...], *, where: str) -> None:
    """Required values not null (doubles may be) and events declared: the first offender by file and key."""
    checks = [
        (f"`{f.name}` IS NULL", RULE_MISSING, f"{record_type.table} field {f.name!r} ({f.kind}) is null")
        for f in record_type.fields
        if f.required and f.kind != "double"
    ]
    if record_type.table == OUTCOMES.table:
        listed = ", ".join(sql_literal(name) for name in events)
        checks.append((f"event NOT IN ({listed})", RULE_EVENT, f"event is not one of {list(events)}"))
    flags = [f"COALESCE({condition}, false) AS `_check_{i}`" for i, (condition, _, _) in enumerate(checks)]
    any_flag = " OR ".join(f"`_check_{i}`" for i in range(len(checks)))
    rows = frame.selectExpr("*", *flags).filter(any_flag).limit(1).collect()
    if not rows:
        return
    row = rows[0].asDict()
    _, rule, detail = next(check for i, check in enumerate(checks) if row[f"_check_{i}"])
    key = ", ".join(f"{name}={row[name]!r}" for name in record_type.key)
    shown = {k: v for k, v in row.items() if k in record_type.columns}
    raise RecordError(f"{_local_path(row[_FILE]) or where}, row with {key}", rule, f"{detail}: {shown}")
