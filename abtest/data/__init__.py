"""Stage 1, data: MovieLens from wherever it is (``sources``), parsed and validated (``movielens``), labelled and
split into train / val / test (``split``); ``synthetic`` writes MovieLens-layout zips for tests and benchmarks."""
