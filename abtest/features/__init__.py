"""Stage 2, features: profile codes and history statistics learnt from the training split (``build``), including a
matrix factorisation of the ratings (``factorization``), and what `prepare` writes of it all, at once or not at all
(``prepared``); the router serves the same features from the saved tables (``ab_router.features``)."""
