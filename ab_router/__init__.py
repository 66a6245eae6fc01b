"""What gets served: the A/B router pyfunc model and the feature schema it shares with the pipeline.

Nothing here imports from ``steps/``; the served model ships this package as code.
"""
