"""Stage 4, offline evaluation: A and B on the same test rows: metrics, paired statistics, the decision, report.

Modules, each with one job:

- ``metrics``: the metrics of one policy as functions of per-user bootstrap weights (point estimate = all ones).
- ``delong``: DeLong's test for two correlated AUCs (written by hand: no kept library has it).
- ``bootstrap``: paired, user-clustered bootstrap intervals for A, B and B − A.
- ``decision``: the rule that names a winner (the clustered interval and DeLong's test must agree).
- ``segments``: the same comparison within cold-start, popularity, genre, gender and age segments (point values
  only below a minimum number of users).
- ``crossval``: retraining of both policies with their logged parameters on folds (forward in time for a
  temporal split, random K-fold otherwise).
- ``inputs``: which two models, on which prepare run's test rows (by lineage); ``analysis``: all of it as one
  pure function.
- ``plots`` and ``report``: figures and one self-contained HTML report.
"""
