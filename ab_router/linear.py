"""Policy A's fitted scikit-learn pipeline as plain numpy arithmetic, for the router's per-request path.

Why: on a one-row request the pipeline's ``ColumnTransformer`` costs ~6 ms (pandas column selection and
validation in every sub-transformer) while the arithmetic is a few hundred multiply-adds. The served router gives
half its users to policy A, so that overhead set its latency (1.46x PolicyB's p50, issue 9).

What: :func:`compile_pipeline` reads the fitted parameters of the components policy A is built from
(``ColumnTransformer``, ``SimpleImputer``, ``StandardScaler``, ``OneHotEncoder(handle_unknown="ignore")``,
passthrough, then ``LogisticRegression``) and returns a scorer computing the same probabilities. It refuses
anything else (:class:`UnsupportedPipelineError`), and :func:`checked_compile` hands out the compiled scorer only
after checking it against the pipeline's own ``predict_proba`` on probe rows (real feature rows plus the same rows
with missing numbers and unknown category codes); on any difference it keeps the pipeline: scikit-learn stays the
reference. The router calls the compiled scorer on its feature matrix (:meth:`LinearScorer.matrix_predictor`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

from ab_router.policy import column_order

log = logging.getLogger(__name__)

# Largest |compiled - pipeline| accepted on the probe rows: float64 round-off of a ~70-term dot product.
MATCH_TOLERANCE = 1e-9


class UnsupportedPipelineError(ValueError):
    """The fitted estimator has a component (or a setting) the compiler does not reproduce exactly."""


def _imputer(imputer) -> Callable[[np.ndarray], np.ndarray]:
    if imputer.keep_empty_features or np.isnan(imputer.statistics_).any():
        # An all-missing training column is dropped by the imputer; rare, and not worth reproducing.
        raise UnsupportedPipelineError("SimpleImputer with empty features")
    if not (isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values)):
        raise UnsupportedPipelineError(f"SimpleImputer(missing_values={imputer.missing_values!r})")
    statistics = imputer.statistics_.astype(np.float64)
    indicator = imputer.indicator_.features_ if imputer.add_indicator else None

    def transform(x: np.ndarray) -> np.ndarray:
        missing = np.isnan(x)
        filled = np.where(missing, statistics, x)
        return filled if indicator is None else np.hstack([filled, missing[:, indicator].astype(np.float64)])

    return transform


def _scaler(scaler) -> Callable[[np.ndarray], np.ndarray]:
    mean = scaler.mean_ if scaler.with_mean else 0.0
    scale = scaler.scale_ if scaler.with_std else 1.0
    return lambda x: (x - mean) / scale


def _one_hot(encoder) -> Callable[[np.ndarray], np.ndarray]:
    if encoder.handle_unknown != "ignore" or encoder.drop_idx_ is not None:
        raise UnsupportedPipelineError(
            f"OneHotEncoder(handle_unknown={encoder.handle_unknown!r}, drop={encoder.drop!r}); "
            "only handle_unknown='ignore' without drop is compiled"
        )
    if getattr(encoder, "infrequent_categories_", None) is not None and any(
        c is not None for c in encoder.infrequent_categories_
    ):
        raise UnsupportedPipelineError("OneHotEncoder with infrequent categories")
    categories = [np.asarray(c, dtype=np.float64) for c in encoder.categories_]

    def transform(x: np.ndarray) -> np.ndarray:
        # An unknown code matches no category: an all-zero block, as handle_unknown="ignore" gives.
        return np.hstack([(x[:, [k]] == c[None, :]).astype(np.float64) for k, c in enumerate(categories)])

    return transform


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def _transformer(step) -> Callable[[np.ndarray], np.ndarray]:
    """The numpy equivalent of one fitted transformer (or a Pipeline of them)."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    if step == "passthrough" or (isinstance(step, FunctionTransformer) and step.func is None):
        return _identity
    if isinstance(step, Pipeline):
        parts = [_transformer(inner) for _, inner in step.steps]

        def chained(x: np.ndarray) -> np.ndarray:
            for part in parts:
                x = part(x)
            return x

        return chained
    # Exact types: a subclass may transform differently.
    builders = {SimpleImputer: _imputer, StandardScaler: _scaler, OneHotEncoder: _one_hot}
    if type(step) not in builders:
        raise UnsupportedPipelineError(f"transformer {type(step).__name__} is not compiled")
    return builders[type(step)](step)


@dataclass(frozen=True)
class LinearScorer:
    """P(positive) = sigmoid(coef · transformed(x) + intercept), computed without scikit-learn."""

    columns: tuple[str, ...]  # the pipeline's input columns, in its fitted order
    transforms: tuple[Callable[[np.ndarray], np.ndarray], ...]  # the pipeline's steps before the classifier
    coef: np.ndarray
    intercept: float

    def transform(self, values: np.ndarray) -> np.ndarray:
        """The classifier's input for a float matrix of ``columns``."""
        for step in self.transforms:
            values = step(values)
        return values

    def probability(self, values: np.ndarray) -> np.ndarray:
        """P(positive) of each row of a float matrix of ``columns``.

        The dot product is einsum's, which adds each row's terms in one order whatever the batch: BLAS's
        matrix-vector product (``@``) blocks rows, so a row's last bits depended on the batch around it.
        """
        return expit(np.einsum("ij,j->i", self.transform(values), self.coef) + self.intercept)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """P(positive), 1-D, for a frame holding (at least) ``columns``."""
        return self.probability(frame.loc[:, list(self.columns)].to_numpy(dtype=np.float64))

    def matrix_predictor(self) -> Callable[[np.ndarray], np.ndarray]:
        """P(positive), 1-D, for the router's feature matrix (float64, FEATURE_COLUMNS order): no frame at all.

        The numbers are :meth:`predict`'s on the typed frame of the same rows (a frame's int64 codes reach it
        as the same float64 values the matrix holds).
        """
        take = column_order(self.columns, model="the compiled policy A")

        def predict(matrix: np.ndarray) -> np.ndarray:
            return self.probability(matrix if take is None else matrix[:, take])

        return predict


def _column_transformer(transformer, columns: tuple[str, ...]) -> Callable[[np.ndarray], np.ndarray]:
    """A fitted ColumnTransformer over the pipeline's input columns: each block's transform, side by side."""
    position = {c: k for k, c in enumerate(columns)}
    blocks = []
    for _, step, selected in transformer.transformers_:
        if step == "drop" or len(selected) == 0:
            continue
        integer_positions = np.issubdtype(np.asarray(selected).dtype, np.integer)
        names = [columns[s] for s in selected] if integer_positions else selected
        blocks.append((np.array([position[str(n)] for n in names]), _transformer(step)))

    def transform(x: np.ndarray) -> np.ndarray:
        return np.hstack([block(x[:, positions]) for positions, block in blocks])

    return transform


def compile_pipeline(pipeline) -> LinearScorer:
    """Compile a fitted ``Pipeline`` of supported transformers ending in a binary ``LogisticRegression``.

    Raises UnsupportedPipelineError for any other structure or a setting the numpy version does not reproduce.
    A ``ColumnTransformer`` is supported as the first step (where it sees the named input columns).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline) or len(pipeline.steps) < 2:
        raise UnsupportedPipelineError(f"expected a Pipeline ending in LogisticRegression, got {pipeline!r:.80}")
    classifier = pipeline.steps[-1][1]
    if type(classifier) is not LogisticRegression or classifier.coef_.shape[0] != 1:
        raise UnsupportedPipelineError(f"expected a binary LogisticRegression last, got {classifier!r:.80}")
    if not hasattr(pipeline, "feature_names_in_"):
        raise UnsupportedPipelineError("the pipeline was fitted without column names")
    columns = tuple(str(c) for c in pipeline.feature_names_in_)
    transforms = []
    for index, (_, step) in enumerate(pipeline.steps[:-1]):
        if type(step) is ColumnTransformer:
            if index:
                raise UnsupportedPipelineError("a ColumnTransformer is compiled only as the first step")
            transforms.append(_column_transformer(step, columns))
        else:
            transforms.append(_transformer(step))
    scorer = LinearScorer(
        columns=columns,
        transforms=tuple(transforms),
        coef=classifier.coef_[0].astype(np.float64),
        intercept=float(classifier.intercept_[0]),
    )
    n_out = scorer.transform(np.zeros((1, len(columns)))).shape[1]
    if n_out != len(scorer.coef):
        raise UnsupportedPipelineError(
            f"compiled {n_out} transformed columns, the classifier has {len(scorer.coef)}"
        )
    return scorer


def probe_rows(example: pd.DataFrame, integer_columns: Sequence[str]) -> pd.DataFrame:
    """The example rows, the same with every float missing, and with unknown codes in the integer columns."""
    floats = [c for c in example.columns if c not in integer_columns]
    missing = example.copy()
    missing[floats] = np.nan
    unknown = example.copy()
    unknown[list(integer_columns)] = -1
    unseen = example.copy()
    unseen[list(integer_columns)] = 10**6
    return pd.concat([example, missing, unknown, unseen], ignore_index=True)


def checked_compile(pipeline, probe: pd.DataFrame) -> LinearScorer | None:
    """The compiled pipeline if it reproduces ``pipeline.predict_proba`` on ``probe``, else None (logged why)."""
    try:
        scorer = compile_pipeline(pipeline)
        difference = float(np.max(np.abs(scorer.predict(probe) - pipeline.predict_proba(probe)[:, 1])))
    except UnsupportedPipelineError as exc:
        log.info("policy A keeps scikit-learn's predict_proba: %s", exc)
        return None
    except (KeyError, ValueError) as exc:  # probe rows the pipeline or the compiled scorer cannot read
        log.warning("policy A keeps scikit-learn's predict_proba: probe failed (%s)", exc)
        return None
    if not difference <= MATCH_TOLERANCE:
        log.warning(
            "policy A keeps scikit-learn's predict_proba: the compiled scorer differs by %.3g on probe rows",
            difference,
        )
        return None
    return scorer


def fast_scorer(pipeline, probe: pd.DataFrame) -> Callable[[pd.DataFrame], np.ndarray]:
    """The compiled scorer when it reproduces ``pipeline.predict_proba`` on ``probe``, else predict_proba's P(1).

    Either way the result maps a feature frame to a 1-D array of P(positive).
    """
    scorer = checked_compile(pipeline, probe)
    if scorer is None:
        return lambda frame: pipeline.predict_proba(frame)[:, 1]
    return scorer.predict
