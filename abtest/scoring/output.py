"""Where scored rows go: a folder of Parquet part files with the router's output columns, written all or nothing.

The folder must not exist, or be empty: scoring into a folder that already holds files would mix two scorings
(or overwrite a backfill someone relies on). It is written as a temporary sibling
(``.<name>.partial-<random>``, same file system, so the final step is one ``rename``) and renamed into place
only when every part is written; on any failure the sibling is removed, so a reader never sees half an output.

:data:`OUTPUT_SCHEMA` is the Arrow schema of ``ab_router.schema.ROUTER_OUTPUT`` (MLflow type -> Arrow type),
what both engines write, in that column order.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa

from ab_router.schema import ROUTER_OUTPUT

log = logging.getLogger(__name__)

# MLflow's column types (the router's signature) as Arrow types.
ARROW_TYPES: dict[str, pa.DataType] = {
    "long": pa.int64(),
    "double": pa.float64(),
    "string": pa.string(),
    "boolean": pa.bool_(),
}
OUTPUT_SCHEMA: pa.Schema = pa.schema(
    [pa.field(column, ARROW_TYPES[kind]) for column, kind in ROUTER_OUTPUT.items()]
)
PARTIAL_MARK = ".partial-"


class OutputError(ValueError):
    """The output folder cannot be written as the module docstring says; the message names it."""


def check_output_free(destination: Path) -> None:
    """Refuse an output folder that exists with something in it, or a path that is a file."""
    if destination.is_file():
        raise OutputError(f"parameter output: {destination} is a file (rule: a new or empty folder)")
    if destination.is_dir() and any(destination.iterdir()):
        raise OutputError(
            f"parameter output: folder {destination} exists and is not empty (rule: a new or empty folder; "
            "scoring never mixes with or overwrites earlier output); pass another folder or remove it"
        )


@contextmanager
def staged_output(destination: Path) -> Iterator[Path]:
    """A path to write the output folder at (not yet created), renamed to ``destination`` when the body succeeds.

    The staging path does not exist when yielded: Spark's writer creates its folder itself.
    """
    destination = Path(destination).absolute()
    check_output_free(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = destination.parent / f".{destination.name}{PARTIAL_MARK}{uuid.uuid4().hex[:12]}"
    try:
        yield staging
        if not staging.is_dir():
            raise OutputError(f"scoring wrote no output folder at {staging}")
        check_output_free(destination)  # someone may have written there meanwhile
        if destination.is_dir():
            destination.rmdir()
        os.rename(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("output written: %s", destination)
