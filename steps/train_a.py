"""Step `train_a`: policy A, a logistic regression over the raw feature frame.

Inputs: a `prepare` run (``--prepare_run``, or the latest FINISHED one with ``--dataset`` / ``--split``), read with
``abtest.tracking.lineage.load_prepared``; hyperparameters C, penalty, class_weight, max_iter, seed (MLproject).
Outputs (this run): params (with ``prepare_run``), ``train_*`` / ``val_*`` metrics (auc, pr_auc, logloss, brier),
``coefficients.csv`` + ``coefficients.png``, ``features.json``, the model as the ``mlflow.sklearn`` artifact
``model`` (pyfunc predict = predict_proba) and the tag ``abtest.model_uri`` pointing at it.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence

import mlflow

from ab_router import schema
from abtest.policies import models, plots, training
from abtest.tracking.lineage import records_failure
from steps.cli import check_seed, configure_logging, inherit_defaults, parameter_defaults, parse_params

log = logging.getLogger(__name__)

# skops (MLflow's sklearn format) refuses types outside its allow-list on load; the fitted preprocessing keeps a
# numpy dtype object (the dtype the imputer was fitted on), which is data, not code.
SKOPS_TRUSTED_TYPES = ["numpy.dtype"]


def check_params(params: argparse.Namespace, pipeline: Mapping[str, argparse.Namespace] | None = None) -> None:
    """The seed (prepare's when "") and every hyperparameter, before the tracking store is asked anything."""
    check_seed(inherit_defaults(params, "prepare", ["seed"]).seed)
    models.LogisticParams.from_params(vars(params))


@records_failure
def main(argv: Sequence[str] | None = None) -> str:
    """Train policy A and log it; returns the run id."""
    namespace = inherit_defaults(parse_params("train_a", argv, description=__doc__), "prepare", ["seed"])
    configure_logging()
    check_params(namespace)
    model_params = models.LogisticParams.from_params(vars(namespace))
    with training.training_run(
        "train_a", vars(namespace), prepare_defaults=parameter_defaults("prepare")
    ) as training_run:
        data, frames = training_run.data, training_run.frames
        pipeline = models.fit_logistic(data.train, params=model_params)
        scores = {split: models.predict_logistic(pipeline, frame) for split, frame in frames.items()}
        metrics = training.log_split_metrics(frames, scores)

        coefficients = models.coefficient_table(pipeline)
        mlflow.log_text(coefficients.to_csv(index=False), "coefficients.csv")
        mlflow.log_figure(plots.coefficient_figure(coefficients), "coefficients.png")
        training.log_feature_list()

        signature, example = training.signature_and_example(
            data.val, pipeline.predict_proba(schema.to_feature_frame(data.val))
        )
        with training.without_integer_column_hint():
            model_info = mlflow.sklearn.log_model(
                pipeline,
                name=training.MODEL_ARTIFACT,
                pyfunc_predict_fn="predict_proba",
                skops_trusted_types=SKOPS_TRUSTED_TYPES,
                signature=signature,
                input_example=example,
                pip_requirements=training.pip_requirements(
                    "mlflow", "scikit-learn", "numpy", "pandas", "scipy", "skops"
                ),
            )
        training.set_model_uri(model_info.model_uri)
    log.info(
        "policy A: train AUC %.4f, val AUC %.4f, val logloss %.4f; model %s",
        metrics["train_auc"],
        metrics["val_auc"],
        metrics["val_logloss"],
        model_info.model_uri,
    )
    return training_run.run.info.run_id


if __name__ == "__main__":
    main()
