"""Make the embedded SQLite tracking store safe to share between steps running at the same time.

What MLflow 3.17 does with one SQLite file and several writers (measured, docs/team-mode.md):

- On an initialised store, concurrent writers queue: every MLflow session sets ``PRAGMA busy_timeout = 20000``,
  so a writer waits up to 20 s for the lock. Two concurrent pipelines finish; only a lock held longer than that
  surfaces as ``sqlite3.OperationalError: database is locked``.
- On a fresh file, the first contact creates the schema and runs ~60 Alembic migrations. The SQLAlchemy store
  does this without the file lock MLflow keeps for it (``_safe_initialize_tables`` exists but is not called), so
  two processes starting at once both migrate: "duplicate column name", "table _alembic_tmp_... already exists"
  or "Online migration expected to match one row", and the file is left half-migrated.

:func:`ensure_store_ready` initialises a SQLite store under an exclusive file lock before a step writes to it, and
:func:`retry_when_locked` retries a tracking call that met a held lock, then fails with a message that says what
happened and what to do instead of a raw "database is locked". Neither does anything for a tracking server.
"""

from __future__ import annotations

import fcntl
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import mlflow
from mlflow.exceptions import MlflowException

log = logging.getLogger(__name__)

T = TypeVar("T")

LOCKED_MARKERS: tuple[str, ...] = ("database is locked", "database table is locked")
MIGRATION_RACE_MARKERS: tuple[str, ...] = (
    "duplicate column name",
    "_alembic_tmp_",
    "Online migration expected",
    "already exists",
)
ADVICE = (
    "several processes share one SQLite file. Run one pipeline at a time on it, or give each its own "
    "MLFLOW_TRACKING_URI=sqlite:///<file>, or share a tracking server (python -m team.server; docs/team-mode.md)"
)


class TrackingStoreBusyError(RuntimeError):
    """The SQLite tracking store stayed locked, or was being created by another process, past every retry."""


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI; None for any other store (server, databricks, ...)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def ensure_store_ready(tracking_uri: str | None = None) -> None:
    """Create a SQLite store's schema once, under an exclusive lock beside the file; a no-op for other stores.

    Whoever takes the lock first migrates; the others then find every table and only verify the schema.
    """
    path = sqlite_path(tracking_uri or mlflow.get_tracking_uri())
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.init-lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments(max_results=1)
        except MlflowException as exc:
            if any(marker in str(exc) for marker in MIGRATION_RACE_MARKERS):
                raise TrackingStoreBusyError(
                    f"SQLite tracking store {path} is half-created: another process created it at the same "
                    f"moment without this lock (e.g. two `mlflow run` started together on a new file). Delete "
                    f"{path} (it holds no runs yet) and start again; {ADVICE}"
                ) from exc
            raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def is_locked_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) is SQLite's "database is locked"."""
    while exc is not None:
        if any(marker in str(exc) for marker in LOCKED_MARKERS):
            return True
        exc = exc.__cause__
    return False


def retry_when_locked(
    call: Callable[[], T],
    *,
    what: str,
    attempts: int = 4,
    first_wait_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run a tracking call; when SQLite's lock outlasted MLflow's 20 s busy timeout, wait and try again.

    Waits ``first_wait_s``, then doubles. Errors other than a held lock are raised at once, unchanged.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except MlflowException as exc:
            if not is_locked_error(exc):
                raise
            if attempt == attempts:
                raise TrackingStoreBusyError(
                    f"{what}: the SQLite tracking store {mlflow.get_tracking_uri()} stayed locked through "
                    f"{attempts} attempts (each waits up to 20 s); {ADVICE}"
                ) from exc
            wait = first_wait_s * 2 ** (attempt - 1)
            log.warning(
                "%s: SQLite store locked (attempt %d/%d); retrying in %.0f s", what, attempt, attempts, wait
            )
            sleep(wait)
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> str:
    """``python -m abtest.tracking.store [URI]``: create the store's schema once, before concurrent runs start."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = sys.argv[1:] if argv is None else argv
    uri = args[0] if args else mlflow.get_tracking_uri()
    ensure_store_ready(uri)
    log.info("tracking store ready: %s", uri)
    return uri


if __name__ == "__main__":
    main()
