"""The A/B test library, one subpackage per stage in the order the data flows.

- :mod:`abtest.data`: raw MovieLens (GroupLens layouts, the recbole wheel, a synthetic generator) → validated,
  labelled and split interactions.
- :mod:`abtest.features`: the splits → the feature frame both policies read and the lookup tables the router
  serves.
- :mod:`abtest.policies`: policy A (logistic regression) and policy B (LightGBM): fit, predict, log a training run.
- :mod:`abtest.evaluation`: the offline comparison of A and B on the same test rows, with honest statistics.
- :mod:`abtest.experiment`: the online experiment: traffic through the router, a click model, the statistics
  engine and the readout.
- :mod:`abtest.tracking`: how the stages meet in MLflow: tag names, lineage by run id, the registry's aliases, the
  pipeline DAG and its reuse rule, the tracking store.

``ab_router`` (what gets served) is the other package: it imports nothing from here; this package imports the
feature schema and the arm table from it. ``steps/`` holds only the MLproject entry points over this library.
"""
