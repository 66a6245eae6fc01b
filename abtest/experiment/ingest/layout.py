"""Where a records directory keeps its files, and what a Parquet records file must look like (every engine).

A records directory holds, per table of :mod:`ab_router.records`, JSON Lines written by the sinks
(``<dir>/<table>/<writer>.jsonl``, the router's and the application's own format) and/or Parquet
(``<dir>/<table>/**/*.parquet``: compacted logs, an export, or files a data platform already writes; Spark's
``part-*.snappy.parquet`` and partition folders such as ``day=3/`` included). Both kinds make one table. Paths
with a part starting with ``_`` or ``.`` are not records (Spark's and Hive's rule: ``_temporary/`` of a write in
progress, ``_SUCCESS``, ``.crc`` files).

A Parquet file is typed, so its rules are on its schema and on its values:

- every required column is present (an optional one may be absent: read as null), under its records.py name;
  unknown extra columns are ignored, as in JSON Lines;
- each column's Arrow type is one its kind accepts (:data:`ACCEPTED`): a ``long`` any signed integer (or an
  unsigned one of at most 32 bits), a ``double`` a float or any integer, a ``string`` a string (a dictionary of
  strings too: pandas' categoricals), a ``boolean`` a boolean, a ``timestamp`` a timestamp *with* a time zone (an
  instant; Spark's ``TIMESTAMP`` and pyarrow's ``timestamp(unit, tz="UTC")``), or Parquet's legacy ``INT96``, which
  Spark writes by default and which is an instant by definition (:func:`parquet_schema` reads it as UTC). A naive
  timestamp (Spark's ``TIMESTAMP_NTZ``) is refused: which instant it means is a guess;
- required values are not null (a ``double`` may be: the sinks write NaN as null) and an outcome's ``event`` is
  a declared event, checked by query like a SQL database's rows.

:func:`arrow_schema` is the canonical schema, the one this project writes (the compactor, the benchmarks'
generator).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ab_router.records import RecordType

JSONL_SUFFIX = ".jsonl"
PARQUET_SUFFIX = ".parquet"

# What an Arrow type must satisfy to hold a field of each kind.
ACCEPTED: dict[str, Callable[[pa.DataType], bool]] = {
    "long": lambda t: pa.types.is_signed_integer(t) or (pa.types.is_unsigned_integer(t) and t.bit_width <= 32),
    "double": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t),
    "string": lambda t: _is_string(t) or (pa.types.is_dictionary(t) and _is_string(t.value_type)),
    "boolean": pa.types.is_boolean,
    "timestamp": lambda t: pa.types.is_timestamp(t) and t.tz is not None,
}


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


_CANONICAL: dict[str, pa.DataType] = {
    "long": pa.int64(),
    "double": pa.float64(),
    "string": pa.string(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


@dataclass(frozen=True)
class TableFiles:
    """One table's files in a records directory, each kind sorted by path."""

    jsonl: tuple[Path, ...]
    parquet: tuple[Path, ...]

    @property
    def empty(self) -> bool:
        """No file of either kind."""
        return not self.jsonl and not self.parquet


def table_files(directory: Path, record_type: RecordType) -> TableFiles:
    """The JSON Lines (``<table>/*.jsonl``) and Parquet (``<table>/**/*.parquet``) files of one table."""
    folder = Path(directory) / record_type.table

    def is_record_file(path: Path) -> bool:
        hidden = any(part.startswith(("_", ".")) for part in path.relative_to(folder).parts)
        return not hidden and path.is_file()

    jsonl = tuple(sorted(p for p in folder.glob(f"*{JSONL_SUFFIX}") if is_record_file(p)))
    parquet = tuple(sorted(p for p in folder.rglob(f"*{PARQUET_SUFFIX}") if is_record_file(p)))
    return TableFiles(jsonl, parquet)


def parquet_schema(path: Path) -> pa.Schema:
    """The Arrow schema of a Parquet file, its ``INT96`` columns read as UTC instants.

    pyarrow reads ``INT96`` (Spark's default timestamp encoding) as a naive ``timestamp[ns]``, but the format
    defines it as an instant in UTC; every engine here reads it so (DuckDB in its UTC session, Spark natively).
    """
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(path).schema
    int96 = {metadata.column(i).path for i in range(len(metadata)) if metadata.column(i).physical_type == "INT96"}
    schema = metadata.to_arrow_schema()
    for name in int96 & set(schema.names):
        index = schema.get_field_index(name)
        schema = schema.set(index, schema.field(index).with_type(pa.timestamp("ns", tz="UTC")))
    return schema


def arrow_schema(record_type: RecordType) -> pa.Schema:
    """The canonical Arrow / Parquet schema of a record type, in storage order, nullability as records.py says."""
    nullable = {f.name: not f.required or f.kind == "double" for f in record_type.fields}
    return pa.schema([pa.field(f.name, _CANONICAL[f.kind], nullable=nullable[f.name]) for f in record_type.fields])


def schema_problem(schema: pa.Schema, record_type: RecordType) -> tuple[str, str] | None:
    """(rule, detail) for the first column of ``schema`` that breaks a rule of the module docstring, else None.

    The rules' names are :mod:`.read`'s (``missing required field``, ``wrong type``), so an error reads the same
    whichever engine and file format found it.
    """
    from abtest.experiment.ingest.read import RULE_MISSING, RULE_TYPE

    names = set(schema.names)
    for f in record_type.fields:
        if f.name not in names:
            if f.required:
                return RULE_MISSING, f"{record_type.table} column {f.name!r} ({f.kind}) is absent"
            continue
        arrow_type = schema.field(f.name).type
        if not ACCEPTED[f.kind](arrow_type):
            detail = f"{record_type.table} column {f.name!r} must hold a {f.kind}, its type is {arrow_type}"
            return RULE_TYPE, detail
    return None
