"""Stage 5, the online experiment: simulated traffic (``traffic``), a click model (``click_model``), the experiment
runner (``runner``), the statistics engine (``stats``) and the readout (``readout``)."""
