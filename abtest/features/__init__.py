"""Stage 2, features: profile codes and history statistics learnt from the training split (``build``), including a
matrix factorisation of the ratings (``factorization``); the router serves the same features from the saved
tables (``ab_router.features``)."""
