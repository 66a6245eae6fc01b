"""Batch scoring through a registered router: offline replays and backfills of (user_id, item_id) pairs.

The stages, in the order data flows:

- :mod:`.inputs`: the pairs table (a Parquet file or folder, or CSV), its columns checked before anything is
  scored (``user_id`` / ``item_id`` integers without nulls, ``request_id`` optional string; not empty);
- :mod:`.local` (``engine=local``): the router loaded in this process, ``predict`` on chunks of ``chunk_rows``
  rows, each chunk's answer appended to Parquet part files, so memory is bounded by the chunk, not the table;
- :mod:`.spark` (``engine=spark``): ``mlflow.pyfunc.spark_udf`` with the router's output columns as a struct,
  written by Spark as Parquet part files;
- :mod:`.output`: the output folder, refused when it exists with files in it, written under a temporary sibling
  and renamed into place, so a failure leaves nothing half-written;
- :mod:`.runner`: one entry, :func:`~abtest.scoring.runner.score_pairs`, which keeps the router's decision log
  off while it scores (an offline replay must not write decisions into a live experiment's log).

Every engine writes exactly the rows the router's own ``predict`` returns for the same input: the columns of
``ab_router.schema.ROUTER_OUTPUT`` in that order, with the Arrow types of :data:`.output.OUTPUT_SCHEMA`.
"""

from __future__ import annotations

from abtest.scoring.inputs import InputError, PairsInput, open_pairs
from abtest.scoring.output import OUTPUT_SCHEMA, OutputError
from abtest.scoring.runner import ENGINES, ScoreResult, score_pairs

__all__ = [
    "ENGINES",
    "OUTPUT_SCHEMA",
    "InputError",
    "OutputError",
    "PairsInput",
    "ScoreResult",
    "open_pairs",
    "score_pairs",
]
