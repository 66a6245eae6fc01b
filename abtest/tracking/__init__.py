"""Stage 6, tracking: how the stages meet in MLflow: tag names (``tags``), lineage by run id (``lineage``),
resolved parameters (``params``), registry versions and aliases (``registry``), the pipeline DAG and its reuse rule
(``pipeline``) and the tracking store's set-up (``store``)."""
