"""The experiment readout, one path for simulated and real traffic (`simulate` writes the records `analyze` reads).

- :mod:`.experiment`: ``readout_of_records`` reads and reduces the records, then ``analyse_records``: health
  checks, metrics with Holm, Bayesian P(B better), guardrails, the plan, the decision.
- :mod:`.page`: the readout's HTML, JSON and CSV files; :mod:`.evidence`: its tags and metric histories.
"""
