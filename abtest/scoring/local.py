"""``engine=local``: the router loaded in this process scores the pairs chunk by chunk.

Each chunk of ``chunk_rows`` pairs (:meth:`abtest.scoring.inputs.PairsInput.chunks`) goes through the loaded
pyfunc's ``predict`` (MLflow's schema enforcement, then the router: exactly what a caller of the router gets)
and its answer is appended to the current Parquet part file with :data:`abtest.scoring.output.OUTPUT_SCHEMA`.
Memory holds a few chunks (the scanner's read-ahead, the chunk, its answer), whatever the table's size. A part
file is closed after about :data:`PART_ROWS` rows, so no single file grows with the table.

Without a ``request_id`` column the router generates one id per ``predict`` call: here, one per chunk.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ab_router.arms import EXPERIMENT_ARMS
from abtest.scoring.inputs import PairsInput
from abtest.scoring.output import OUTPUT_SCHEMA

log = logging.getLogger(__name__)

PART_ROWS = 1_000_000  # rows per part file (whole chunks: a part holds at least one)
LOG_EVERY_ROWS = 1_000_000


def part_name(index: int) -> str:
    """The file name of part ``index``, so path order is row order."""
    return f"part-{index:05d}.parquet"


def arm_counts(table: pa.Table) -> dict[str, int]:
    """Rows per value of the ``policy`` column."""
    return {entry["values"]: entry["counts"] for entry in table.column("policy").value_counts().to_pylist()}


def score_local(model: Any, pairs: PairsInput, directory: Path, *, chunk_rows: int) -> dict[str, int]:
    """Score every pair with ``model.predict`` in chunks into Parquet parts under ``directory`` (created here).

    Returns the rows written per arm (every arm of ``EXPERIMENT_ARMS``, 0 when none).
    """
    directory.mkdir(parents=True)
    arms: Counter[str] = Counter({arm: 0 for arm in EXPERIMENT_ARMS})
    writer: pq.ParquetWriter | None = None
    parts = part_rows = done = 0
    logged = 0
    try:
        for chunk in pairs.chunks(chunk_rows):
            answer = model.predict(chunk.to_pandas())
            table = pa.Table.from_pandas(answer, schema=OUTPUT_SCHEMA, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(directory / part_name(parts), OUTPUT_SCHEMA)
            writer.write_table(table)
            arms.update(arm_counts(table))
            part_rows += table.num_rows
            done += table.num_rows
            if part_rows >= PART_ROWS:
                writer.close()
                writer, parts, part_rows = None, parts + 1, 0
            if done - logged >= LOG_EVERY_ROWS:
                log.info("scored %d of %d pairs", done, pairs.rows)
                logged = done
    finally:
        if writer is not None:
            writer.close()
    return dict(arms)
