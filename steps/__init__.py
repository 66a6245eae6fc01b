"""The pipeline: one thin CLI module per MLproject entry point, the logic in importable modules beside them."""
