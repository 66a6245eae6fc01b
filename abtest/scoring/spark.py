"""``engine=spark``: the pairs scored by ``mlflow.pyfunc.spark_udf`` on a Spark session, written by Spark.

Spark reads the checked input files (:class:`abtest.scoring.inputs.PairsInput`: Parquet as it is, CSV with a
header, every column read as text and cast), casts the ids to ``long`` and ``request_id`` to string, and calls
the router through ``spark_udf(spark, model_uri, result_type=<struct of ROUTER_OUTPUT>, env_manager="local")``:
each Python worker loads the router once and runs its own ``predict`` (schema enforcement included) on every
Arrow batch of the partition. The struct's fields are the router's output columns, in order, as Spark types
(:func:`result_type`), and are written as the output's columns.

Without a ``request_id`` column the router generates one id per ``predict`` call: here, one per Arrow batch
(``spark.sql.execution.arrow.maxRecordsPerBatch`` rows, 10,000 by default) of each partition.

The workers load the router with ``ABTEST_DECISION_LOG`` set to "" (``extra_env``, which MLflow applies in
the worker around loading and scoring; "" means no log, as unset does): a worker inherits the environment of
whoever started Spark's JVM, which may be a live deployment's, and an offline scoring must not write into that
experiment's decision log.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow

from ab_router.records import DECISION_LOG_ENV, REQUEST_ID
from ab_router.schema import ITEM_ID, ROUTER_OUTPUT, ROUTER_OUTPUT_COLUMNS, USER_ID
from abtest.scoring.inputs import PairsInput

log = logging.getLogger(__name__)

MIN_SPLIT_BYTES = 1 << 20  # smaller splits cost more in scheduling than they gain
SCORED = "scored"  # the struct column the UDF returns, before it is flattened into the output's columns


def result_type() -> Any:
    """The router's output columns (``ROUTER_OUTPUT``, in order) as a Spark struct type."""
    from pyspark.sql import types

    spark_types = {
        "long": types.LongType(),
        "double": types.DoubleType(),
        "string": types.StringType(),
        "boolean": types.BooleanType(),
    }
    return types.StructType(
        [types.StructField(column, spark_types[kind]) for column, kind in ROUTER_OUTPUT.items()]
    )


def read_pairs(spark: Any, pairs: PairsInput) -> Any:
    """The input files as a Spark DataFrame of the router's input columns (ids ``long``, request_id string)."""
    from pyspark.sql import functions

    if pairs.format == "csv":
        frame = spark.read.option("header", "true").option("inferSchema", "false").csv(list(pairs.files))
    else:
        frame = spark.read.parquet(*pairs.files)
    types = {USER_ID: "long", ITEM_ID: "long", REQUEST_ID: "string"}
    return frame.select(*(functions.col(name).cast(types[name]).alias(name) for name in pairs.columns))


def score_spark(spark: Any, model_uri: str, pairs: PairsInput, directory: Path) -> None:
    """Score every pair through ``model_uri`` with ``spark_udf`` and write the Parquet parts to ``directory``."""
    from pyspark.sql import functions

    router = mlflow.pyfunc.spark_udf(
        spark,
        model_uri,
        result_type=result_type(),
        env_manager="local",
        extra_env={DECISION_LOG_ENV: ""},
    )
    frame = read_pairs(spark, pairs)
    scored = frame.select(router(functions.struct(*pairs.columns)).alias(SCORED))
    columns = [functions.col(f"{SCORED}.{column}").alias(column) for column in ROUTER_OUTPUT_COLUMNS]
    log.info("scoring %d pairs with spark_udf through %s", pairs.rows, model_uri)
    with _split_for_every_core(spark, pairs):
        scored.select(*columns).write.parquet(str(directory))
    _drop_bookkeeping(directory)


@contextmanager
def _split_for_every_core(spark: Any, pairs: PairsInput) -> Iterator[None]:
    """``spark.sql.files.maxPartitionBytes`` lowered meanwhile so the input is read as at least one split per core.

    Spark splits files at 128 MB: 10 million pairs in one Parquet file are one or two tasks, and scoring (the
    router's work, in the Python workers) would run on one core. Smaller splits (whole row groups, in file order)
    keep the rows' order and use every core; the session's own setting is restored after.
    """
    try:
        cores = int(spark.sparkContext.defaultParallelism)
    except Exception:  # Spark Connect has no SparkContext: the server's settings decide
        yield
        return
    key = "spark.sql.files.maxPartitionBytes"
    before = spark.conf.get(key)
    total = sum(Path(name).stat().st_size for name in pairs.files)
    wanted = max(MIN_SPLIT_BYTES, math.ceil(total / max(cores, 1)))
    if wanted >= _bytes(before):
        yield
        return
    spark.conf.set(key, str(wanted))
    try:
        yield
    finally:
        spark.conf.set(key, before)


def _bytes(setting: str) -> int:
    """A Spark size setting (``134217728b``, ``128m``, ``134217728``) in bytes."""
    text = setting.strip().lower().removesuffix("b")
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    return int(float(text[:-1]) * units[text[-1]]) if text[-1:] in units else int(text)


def _drop_bookkeeping(directory: Path) -> None:
    """Remove what Hadoop's local writer leaves beside the parts (``_SUCCESS``, ``.*.crc``): the output is its
    Parquet files, which every reader finds without them (a folder on a cluster file system is left as it is)."""
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if path.is_file() and path.name.startswith(("_", ".")):
            path.unlink()
