"""Stage 6, tracking: how the stages meet in MLflow.

- ``tags``: every ``abtest.*`` tag name and the tag-length limits.
- ``lineage``: steps hand each other run ids; a step's run and its recorded failure; the prepare run's tables.
- ``params``: parameters resolved after `mlflow run` logged them as "".
- ``registry``: versions and aliases; ``registration_inputs``: what register may register, checked first;
  ``router_bundle``: the router logged, registered and aliased.
- ``pipeline``: the DAG and the loop that runs it; ``reuse``: when an earlier run stands in for a step;
  ``launcher``: a step started as a nested `mlflow run`; ``stale``: runs whose process is gone, marked KILLED;
  ``pipeline_summary``: main's step table and its children's results.
- ``store``: the embedded SQLite store made safe for steps running at once.
"""
