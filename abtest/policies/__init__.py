"""Stage 3, policies: the two policies as pure fit / predict functions (``models``), their figures (``plots``) and
what a training run logs to MLflow (``training``)."""
