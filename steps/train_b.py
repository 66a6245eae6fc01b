"""Step `train_b`: policy B, LightGBM with native categorical features over the raw feature frame.

Inputs: a `prepare` run (``--prepare_run``, or the latest FINISHED one with ``--dataset`` / ``--split``), read with
``abtest.tracking.lineage.load_prepared``; hyperparameters num_leaves, learning_rate, n_estimators,
min_child_samples, feature_fraction, bagging_fraction, lambda_l2, early_stopping_rounds (on validation AUC),
monotone (the schema's per-feature monotone constraints, or none), seed (MLproject). Outputs (this run): params
(with ``prepare_run``), ``train_*`` / ``val_*`` metrics (auc, pr_auc, logloss, brier), ``best_iteration``,
per-iteration ``curve_val_auc`` / ``curve_val_logloss``, ``validation_curve.csv/.png``, ``importance.csv`` +
``importance.png`` (gain), ``features.json``, the model as the ``mlflow.lightgbm`` artifact ``model`` (pyfunc
predict = probability of a positive) and the tag ``abtest.model_uri`` pointing at it.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence

import mlflow

from abtest.policies import models, plots, training
from abtest.tracking.lineage import records_failure
from steps.cli import check_seed, configure_logging, inherit_defaults, parameter_defaults, parse_params

log = logging.getLogger(__name__)


def check_params(params: argparse.Namespace, pipeline: Mapping[str, argparse.Namespace] | None = None) -> None:
    """The seed (prepare's when "") and every hyperparameter, before the tracking store is asked anything."""
    check_seed(inherit_defaults(params, "prepare", ["seed"]).seed)
    models.LightGBMParams.from_params(vars(params))


@records_failure
def main(argv: Sequence[str] | None = None) -> str:
    """Train policy B and log it; returns the run id."""
    namespace = inherit_defaults(parse_params("train_b", argv, description=__doc__), "prepare", ["seed"])
    configure_logging()
    check_params(namespace)
    model_params = models.LightGBMParams.from_params(vars(namespace))
    with training.training_run(
        "train_b", vars(namespace), prepare_defaults=parameter_defaults("prepare")
    ) as training_run:
        data, frames = training_run.data, training_run.frames
        mlflow.log_param("num_threads", models.LIGHTGBM_NUM_THREADS)

        fit = models.fit_lightgbm(data.train, data.val, params=model_params)
        scores = {split: models.predict_lightgbm(fit.booster, frame) for split, frame in frames.items()}
        metrics = training.log_split_metrics(frames, scores)
        mlflow.log_metric("best_iteration", fit.best_iteration)
        training.log_curve(fit.curve)
        mlflow.log_text(fit.curve.to_csv(index=False), "validation_curve.csv")
        mlflow.log_figure(
            plots.validation_curve_figure(fit.curve, best_iteration=fit.best_iteration),
            "validation_curve.png",
        )

        importance = models.importance_table(fit.booster)
        mlflow.log_text(importance.to_csv(index=False), "importance.csv")
        mlflow.log_figure(plots.importance_figure(importance), "importance.png")
        training.log_feature_list()

        signature, example = training.signature_and_example(data.val, scores["val"])
        with training.without_integer_column_hint():
            model_info = mlflow.lightgbm.log_model(
                fit.booster,
                name=training.MODEL_ARTIFACT,
                signature=signature,
                input_example=example,
                pip_requirements=training.pip_requirements(
                    "mlflow", "lightgbm", "numpy", "pandas", "scikit-learn"
                ),
            )
        training.set_model_uri(model_info.model_uri)
    log.info(
        "policy B: best iteration %d, train AUC %.4f, val AUC %.4f, val logloss %.4f; model %s",
        fit.best_iteration,
        metrics["train_auc"],
        metrics["val_auc"],
        metrics["val_logloss"],
        model_info.model_uri,
    )
    return training_run.run.info.run_id


if __name__ == "__main__":
    main()
