"""Team mode: a shared PostgreSQL-backed MLflow tracking server, and the path to a Kubernetes cluster.

Nothing in ``steps/`` or ``ab_router/`` imports this package: the pipeline reaches a server only through
``MLFLOW_TRACKING_URI``, so the same code runs against the embedded SQLite default and a team server.
"""
