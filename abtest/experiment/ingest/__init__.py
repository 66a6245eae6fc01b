"""The experiment's records in, one row per user and day out: the step between the logs and the statistics.

- ``read``: open a directory of JSON Lines (DuckDB) or a SQL database (SQLAlchemy) and validate every record
  against :mod:`ab_router.records` (types, required fields, declared outcome events; torn tails reported and
  skipped).
- ``reduce``: one experiment (router version or salt, a UTC window) reduced by SQL to per-(day, user) sufficient
  statistics, per-arm summaries and health counts (:class:`ExperimentData`), the same query on every backend.
"""
