"""The Spark session the Spark engines run on (``analyze -P engine=spark``, ``score -P engine=spark``).

One place decides how a session is made, so both steps take the same parameters the same way:

- ``SPARK_REMOTE`` set (``sc://host:15002``): a Spark Connect session on that server; ``spark_master`` is then
  the server's business and ignored (said in the log);
- else ``spark_master`` (``local[*]``, ``local[2]``, ``spark://host:7077``, ``yarn``, ``k8s://...``): a classic
  session; a ``local`` master needs a Java runtime on this machine, checked first so that its absence is one clear
  line rather than a JVM-gateway traceback;
- ``spark_conf``: more settings, ``key=value,key=value``
  (``spark.driver.memory=8g,spark.sql.shuffle.partitions=64``).

Nothing is downloaded: no ``spark.jars.packages``, no extensions; pyspark's own jars are all a session uses.
The session is in UTC (``spark.sql.session.timeZone``: a day is a UTC day, as in the DuckDB engine), takes
double-quoted identifiers (the reduction's SQL is the same text on every engine) and runs without the web UI.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

REMOTE_ENV = "SPARK_REMOTE"
# A records location naming tables in the session's catalog: tables:<database> -> <database>.abtest_<table>.
TABLES_PREFIX = "tables:"
DEFAULT_MASTER = "local[*]"
# Settings every session gets unless spark_conf says otherwise.
BASE_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.ansi.enabled": "true",
    "spark.sql.ansi.doubleQuotedIdentifiers": "true",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # What this project's Spark writes (the JSON Lines' validated rows, score's output): Parquet's own instant
    # type, not the legacy INT96 Spark writes by default.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
}
# A local session's driver is its only executor: more than Spark's 1g default, so 10^8 rows do not thrash.
LOCAL_DRIVER_MEMORY = "4g"
# Shuffle partitions of a local session: a few per core instead of Spark's 200 (sized for a cluster), which on a
# 2-core machine means thousands of tiny tasks per analysis; adaptive execution still coalesces what is small.
LOCAL_SHUFFLE_PARTITIONS_PER_CORE = 4
INSTALL_HINT = "pip install -r requirements-dev.txt (pyspark is pinned in requirements-test.txt)"


def parse_spark_conf(text: str) -> dict[str, str]:
    """``key=value,key=value`` as a dict; "" is no settings. A malformed entry is refused, naming it."""
    conf: dict[str, str] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        key, sep, value = entry.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(
                f"parameter spark_conf must be key=value pairs separated by commas "
                f"(e.g. spark.driver.memory=8g,spark.sql.shuffle.partitions=64), got entry {entry!r} in {text!r}"
            )
        conf[key.strip()] = value.strip()
    return conf


def check_spark_available(master: str = DEFAULT_MASTER) -> None:
    """Fail at once, with what to install, when pyspark or (for a local master) a Java runtime is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise RuntimeError(f"engine=spark needs pyspark, which is not installed here: {INSTALL_HINT}") from None
    if os.environ.get(REMOTE_ENV) or not master.startswith("local"):
        return
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.path.exists(java):
        where = f"JAVA_HOME={java_home} has no bin/java" if java_home else "no `java` on PATH"
        raise RuntimeError(
            f"engine=spark with master {master!r} runs Spark in this process's JVM and needs a Java 17+ runtime: "
            f"{where}. Install one (Debian: apt-get install openjdk-17-jre-headless) or set SPARK_REMOTE to a "
            "Spark Connect server"
        )


def spark_session(
    master: str = DEFAULT_MASTER, conf: Mapping[str, str] | None = None, *, app_name: str = "abtest"
) -> Any:
    """A SparkSession as the module docstring says (an existing active one with the same master is reused)."""
    check_spark_available(master)
    from pyspark.sql import SparkSession

    settings = {**BASE_CONF, **(conf or {})}
    remote = os.environ.get(REMOTE_ENV)
    if remote:
        log.info("Spark Connect session on %s (%s is set; spark_master %r is ignored)", remote, REMOTE_ENV, master)
        builder = SparkSession.builder.remote(remote)
    else:
        builder = SparkSession.builder.master(master).appName(app_name)
        if master.startswith("local"):
            settings.setdefault("spark.driver.memory", LOCAL_DRIVER_MEMORY)
            partitions = LOCAL_SHUFFLE_PARTITIONS_PER_CORE * (os.cpu_count() or 1)
            settings.setdefault("spark.sql.shuffle.partitions", str(partitions))
    for key, value in settings.items():
        builder = builder.config(key, value)
    logging.getLogger("py4j").setLevel(logging.WARNING)  # py4j logs every gateway call at INFO
    # pyspark warns on every toPandas that pandas 3 is not "fully" supported; the conversions this project uses
    # are checked value for value against the DuckDB engine (tests/abtest/experiment/ingest/test_spark.py).
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    session = builder.getOrCreate()
    if not remote:
        session.sparkContext.setLogLevel("ERROR")
        # getOrCreate returns an already running session as it is: its time zone must still be UTC.
        for key in ("spark.sql.session.timeZone", "spark.sql.ansi.doubleQuotedIdentifiers"):
            session.conf.set(key, settings[key])
    log.info("Spark %s session: master %s", session.version, remote or master)
    return session
