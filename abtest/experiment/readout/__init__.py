"""The experiment readout.

- Records (`analyze`, and `simulate` once it writes records): :mod:`.experiment` (``analyse_records``: health
  checks, metrics with Holm, Bayesian P(B better), guardrails, the plan) and :mod:`.page` (HTML, JSON, CSV).
- In-memory traffic (today's `simulate`): statistics (``analysis``), the decision rule and sentence
  (``decision``), and the HTML, JSON and CSV files (``report``).
"""
