"""The pairs to score: a Parquet file, a folder of Parquet files, or CSV (a file or a folder of them).

Input columns (others are ignored, so a prepare run's ``processed/test.parquet`` can be scored as it is):

- ``user_id``, ``item_id``: integer ids (any signed integer type, or unsigned of at most 32 bits: what the
  router's ``long`` holds, the rule of ``abtest.experiment.ingest.layout.ACCEPTED``), never null;
- ``request_id`` (optional): a string; a null or empty value gets the id the router generates for its call.

Everything is checked before a row is scored, file by file, so an error names the file, the column, the rule and
the value: the types from each file's schema (metadata only), the nulls by one pass over the two id columns
(bounded memory: batch by batch). CSV is read with those three columns typed (ids ``int64``, ``request_id``
string), so a value that is not an integer is reported with its row by the CSV reader. A table with no rows is
refused too: scoring it would write an empty output that looks like a success.

A folder is read recursively, files in path order; names starting with ``.`` or ``_`` (Spark's ``_SUCCESS``,
``.crc`` files) are skipped, as pyarrow and Spark skip them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as ds

from ab_router.records import REQUEST_ID
from ab_router.schema import ITEM_ID, USER_ID
from abtest.experiment.ingest.layout import ACCEPTED

log = logging.getLogger(__name__)

ID_COLUMNS: tuple[str, str] = (USER_ID, ITEM_ID)
PARQUET_SUFFIXES = (".parquet", ".parq", ".pq")
CSV_SUFFIXES = (".csv",)
CSV_TYPES: dict[str, pa.DataType] = {USER_ID: pa.int64(), ITEM_ID: pa.int64(), REQUEST_ID: pa.string()}
# Batches the validation pass reads at a time (two int64 columns: 16 MB).
CHECK_BATCH_ROWS = 1_000_000

Format = Literal["parquet", "csv"]


class InputError(ValueError):
    """The pairs table breaks a rule of the module docstring; the message names file, column, rule and value."""


@dataclass(frozen=True)
class PairsInput:
    """A checked pairs table: where it is, its files, the input columns it has and its row count."""

    location: str
    format: Format
    files: tuple[str, ...]
    columns: tuple[str, ...]  # user_id, item_id[, request_id]
    rows: int

    def dataset(self) -> ds.Dataset:
        """The files as one pyarrow dataset (in path order)."""
        return _dataset(list(self.files), self.format)

    def digest(self) -> str:
        """A fingerprint of the files (path, size, modification time), cheap at any size: the dataset digest."""
        digest = hashlib.sha256()
        for name in self.files:
            stat = Path(name).stat()
            digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        return digest.hexdigest()[:16]

    def chunks(self, chunk_rows: int) -> Iterator[pa.Table]:
        """The pairs in input order, ``chunk_rows`` rows at a time (the last chunk fewer), typed as the router
        takes them: ids ``int64``, ``request_id`` string.

        The scanner's batches follow the files' row groups; they are cut and joined here so every ``predict``
        call but the last gets exactly ``chunk_rows`` rows, and at most about two chunks are held at once.
        """
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be an integer >= 1, got {chunk_rows}")
        scanner = self.dataset().scanner(
            columns=list(self.columns), batch_size=chunk_rows, batch_readahead=2, fragment_readahead=1
        )
        pending: list[pa.RecordBatch] = []
        held = 0
        for batch in scanner.to_batches():
            while batch.num_rows:
                take = min(batch.num_rows, chunk_rows - held)
                pending.append(batch.slice(0, take))
                held += take
                batch = batch.slice(take)
                if held == chunk_rows:
                    yield self._typed(pa.Table.from_batches(pending))
                    pending, held = [], 0
        if held:
            yield self._typed(pa.Table.from_batches(pending))

    def _typed(self, table: pa.Table) -> pa.Table:
        schema = pa.schema([pa.field(name, CSV_TYPES[name]) for name in self.columns])
        return table.select(list(self.columns)).cast(schema)


def input_format(path: Path) -> Format:
    """Parquet or CSV, by the file's suffix (a file without a known suffix is read as Parquet)."""
    return "csv" if path.suffix.lower() in CSV_SUFFIXES else "parquet"


def input_files(location: str | Path) -> tuple[tuple[str, ...], Format]:
    """The data files of ``location`` (a file, or a folder read recursively) and their one format."""
    path = Path(location)
    if path.is_file():
        return (str(path),), input_format(path)
    if not path.is_dir():
        raise InputError(f"input {location}: no such file or folder (rule: a Parquet or CSV file, or a folder)")
    found: dict[Format, list[str]] = {"parquet": [], "csv": []}
    for candidate in sorted(path.rglob("*")):
        hidden = any(part.startswith((".", "_")) for part in candidate.relative_to(path).parts)
        if hidden or not candidate.is_file():
            continue
        suffix = candidate.suffix.lower()
        if suffix in PARQUET_SUFFIXES:
            found["parquet"].append(str(candidate))
        elif suffix in CSV_SUFFIXES:
            found["csv"].append(str(candidate))
        else:
            log.warning("input %s: skipping %s (not %s)", location, candidate, PARQUET_SUFFIXES + CSV_SUFFIXES)
    if found["parquet"] and found["csv"]:
        raise InputError(
            f"input folder {location} mixes Parquet ({found['parquet'][0]}, ...) and CSV ({found['csv'][0]}, ...) "
            "files (rule: one format per folder)"
        )
    kind: Format = "csv" if found["csv"] else "parquet"
    if not found[kind]:
        raise InputError(
            f"input folder {location} holds no Parquet ({', '.join(PARQUET_SUFFIXES)}) or CSV files (rule: pairs "
            "to score)"
        )
    return tuple(found[kind]), kind


def _dataset(files: list[str], kind: Format) -> ds.Dataset:
    if kind == "csv":
        fmt = ds.CsvFileFormat(convert_options=pacsv.ConvertOptions(column_types=CSV_TYPES))
        return ds.dataset(files, format=fmt)
    return ds.dataset(files, format="parquet")


def _column_problem(name: str, arrow_type: pa.DataType) -> str | None:
    """Why a column of this type cannot be a pairs column (None when it can)."""
    kind = "string" if name == REQUEST_ID else "long"
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if ACCEPTED[kind](arrow_type) or (name == REQUEST_ID and pa.types.is_null(arrow_type)):
        return None
    wanted = "a string" if kind == "string" else "an integer (signed, or unsigned of at most 32 bits)"
    return f"column {name!r} must hold {wanted}, its type is {arrow_type}"


def _check_schema(file: str, schema: pa.Schema) -> tuple[str, ...]:
    names = schema.names
    missing = [c for c in ID_COLUMNS if c not in names]
    if missing:
        raise InputError(
            f"input {file}: missing column(s) {missing} (rule: pairs have {list(ID_COLUMNS)}, optional "
            f"{REQUEST_ID!r}); its columns are {names}"
        )
    columns = (*ID_COLUMNS, *((REQUEST_ID,) if REQUEST_ID in names else ()))
    for name in columns:
        problem = _column_problem(name, schema.field(name).type)
        if problem:
            raise InputError(f"input {file}: {problem}")
    return columns


def _count_checked_rows(file: str, fragment: ds.Fragment) -> int:
    """The fragment's rows, after one pass over its id columns that refuses nulls and non-integers."""
    rows = 0
    try:
        for batch in fragment.to_batches(columns=list(ID_COLUMNS), batch_size=CHECK_BATCH_ROWS):
            for name in ID_COLUMNS:
                column = batch.column(name)
                if column.null_count:
                    first = rows + pc.index(pc.is_null(column), True).as_py()
                    raise InputError(
                        f"input {file}: column {name!r} has {column.null_count} null value(s), the first at row "
                        f"{first} (rule: every pair has both ids)"
                    )
            rows += batch.num_rows
    except pa.ArrowInvalid as error:
        raise InputError(f"input {file}: {error} (rule: {list(ID_COLUMNS)} are integer ids)") from None
    return rows


def open_pairs(location: str | Path) -> PairsInput:
    """The checked pairs table at ``location`` (see the module docstring for the rules); raises InputError."""
    files, kind = input_files(location)
    try:
        dataset = _dataset(list(files), kind)
    except pa.ArrowInvalid as error:
        # pyarrow's message names the file; a CSV's first block is parsed here, with the ids typed.
        raise InputError(
            f"input {location}: not readable as {kind} pairs: {error} (rule: a {kind} table whose "
            f"{list(ID_COLUMNS)} are integer ids)"
        ) from None
    columns: tuple[str, ...] | None = None
    rows = 0
    for fragment in dataset.get_fragments():
        file = fragment.path
        try:
            schema = fragment.physical_schema
        except pa.ArrowInvalid as error:
            raise InputError(f"input {file}: not readable as {kind} ({error})") from None
        file_columns = _check_schema(file, schema)
        if columns is not None and file_columns != columns:
            raise InputError(
                f"input {file}: columns {list(file_columns)} differ from the other files' {list(columns)} (rule: "
                f"every file has {REQUEST_ID!r} or none does)"
            )
        columns = file_columns
        rows += _count_checked_rows(file, fragment)
    if not rows or columns is None:
        raise InputError(f"input {location} has no rows (rule: at least one pair to score)")
    log.info("input %s: %d pairs in %d %s file(s), columns %s", location, rows, len(files), kind, list(columns))
    return PairsInput(location=str(location), format=kind, files=files, columns=columns, rows=rows)
