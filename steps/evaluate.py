"""`evaluate` step: offline A/B comparison of policy A and policy B on the same test rows.

Inputs (by lineage): ``train_a_run`` / ``train_b_run`` (training run ids; "" = latest FINISHED run of that step) or
``policy_a_uri`` / ``policy_b_uri`` (``models:/movielens_ctr_ab@PolicyA``, ...); both policies must come from one
prepare run (``prepare_run`` "" = the one they name), whose test split is scored by both models in the same order.
Parameters: ``alpha``, ``n_bootstrap``, ``k``, ``cv_folds`` (0 or 1 = no cross-validation; negative is refused),
``cv_jobs`` (processes for the folds, 0 = one per available core; results do not depend on it), ``seed``. The
cross-validation scheme follows the prepare run's split: forward in time for ``temporal``, random K-fold otherwise
(param ``cv_scheme``, tag ``abtest.cv_scheme``).

Outputs (the evaluate run): metrics ``a.*``, ``b.*``, ``diff.*`` (B − A with user-clustered bootstrap intervals),
``delong.*``, ``decision.*`` and ``cv.*``; param ``cv_scheme``; tags ``abtest.decision`` ("B wins" / "A wins" /
"no significant difference"), ``abtest.winner``, ``abtest.decision_reason``, ``abtest.cv_scheme`` and the
resolved lineage; artifacts
``evaluation/report.html`` (self-contained), ``evaluation/*.csv|json`` (raw tables) and ``evaluation/plots/*.png``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict

import mlflow
import pandas as pd

from ab_router.policy import positive_scores
from ab_router.schema import to_feature_frame
from steps import features, policies
from steps.cli import check_seed, configure_logging, parse_params
from steps.evaluation.analysis import (
    EvaluationConfig,
    EvaluationResult,
    decision_tags,
    evaluate_policies,
    headline_metrics,
)
from steps.evaluation.crossval import (
    CV_SCHEME_DESCRIPTIONS,
    CrossValidationResult,
    CvScheme,
    cross_validate,
    cv_scheme_for_split,
)
from steps.evaluation.inputs import PolicySource, resolve_policy, shared_prepare_run
from steps.evaluation.metrics import all_metrics
from steps.evaluation.report import ReportInputs, render_html
from steps.lineage import load_prepared, records_failure, step_run
from steps.tracking_store import ensure_store_ready
from steps.training import log_resolved_params

log = logging.getLogger(__name__)

ARTIFACT_DIR = "evaluation"


def run_cross_validation(
    prepared_train: pd.DataFrame,
    prepared_val: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    sources: dict[str, PolicySource],
    *,
    cv_folds: int,
    seed: int,
    k: int,
    cv_jobs: int = 1,
    scheme: CvScheme = "random",
) -> CrossValidationResult | None:
    """K-fold refits of both policies on train ∪ val with their training runs' parameters (None if disabled).

    ``scheme``: ``"forward"`` (in time; for a temporal split) or ``"random"`` (shuffled K-fold).
    """
    if cv_folds <= 1:
        log.info("cross-validation disabled (cv_folds=%d)", cv_folds)
        return None
    return cross_validate(
        pd.concat([prepared_train, prepared_val], ignore_index=True),
        users,
        items,
        params_a=sources["A"].params,
        params_b=sources["B"].params,
        n_folds=cv_folds,
        seed=seed,
        k=k,
        metrics=all_metrics(k),
        build_features=features.build_features,
        fit_policy=policies.fit_policy,
        n_jobs=cv_jobs,
        scheme=scheme,
    )


def _log_tables(result: EvaluationResult, cross_validation: CrossValidationResult | None) -> None:
    mlflow.log_table(result.comparison, f"{ARTIFACT_DIR}/comparison.json")
    mlflow.log_text(result.comparison.to_csv(index=False), f"{ARTIFACT_DIR}/comparison.csv")
    mlflow.log_text(result.segments.to_csv(index=False), f"{ARTIFACT_DIR}/segments.csv")
    mlflow.log_dict(asdict(result.delong), f"{ARTIFACT_DIR}/delong.json")
    if cross_validation is not None:
        mlflow.log_text(cross_validation.folds.to_csv(index=False), f"{ARTIFACT_DIR}/cv_folds.csv")
        mlflow.log_text(cross_validation.summary.to_csv(index=False), f"{ARTIFACT_DIR}/cv_summary.csv")


def check_cv_folds(cv_folds: int) -> int:
    """``cv_folds`` as given; negative values are refused (0 or 1 = no cross-validation, >= 2 = folds)."""
    if cv_folds < 0:
        raise ValueError(f"cv_folds must be 0 or 1 (no cross-validation) or >= 2 folds, got {cv_folds}")
    return cv_folds


def cross_validation_jobs(requested: int) -> int:
    """Worker processes for the folds: ``requested``, or one per core this process may run on when 0."""
    if requested < 0:
        raise ValueError(f"cv_jobs must be >= 0 (0 = one per available core), got {requested}")
    return requested or len(os.sched_getaffinity(0))


@records_failure
def main(argv: Sequence[str] | None = None) -> str:
    """Compare A and B, log metrics, tags, tables and the HTML report; returns the evaluate run's id."""
    params = parse_params("evaluate", argv, description=__doc__)
    configure_logging()
    check_seed(params.seed)
    config = EvaluationConfig(alpha=params.alpha, n_bootstrap=params.n_bootstrap, k=params.k, seed=params.seed)
    cv_jobs = cross_validation_jobs(params.cv_jobs)  # checked before a run exists
    cv_folds = check_cv_folds(params.cv_folds)
    started = time.perf_counter()
    # Resolved before the run starts (read-only lookups), so a bad run id or model URI leaves no failed run.
    ensure_store_ready()
    sources = {
        "A": resolve_policy("A", run_id=params.train_a_run, model_uri=params.policy_a_uri),
        "B": resolve_policy("B", run_id=params.train_b_run, model_uri=params.policy_b_uri),
    }
    prepare_run = shared_prepare_run(sources["A"], sources["B"], requested=params.prepare_run)
    with step_run("evaluate") as run:
        log_resolved_params(
            {
                "prepare_run": prepare_run,
                "train_a_run": sources["A"].training_run,
                "train_b_run": sources["B"].training_run,
                "policy_a_uri": sources["A"].model_uri,
                "policy_b_uri": sources["B"].model_uri,
                "cv_jobs": cv_jobs,
            }
        )
        mlflow.set_tags({"abtest.prepare_run": prepare_run})
        prepared = load_prepared(prepare_run)
        cv_scheme = cv_scheme_for_split(prepared.params.get("split", ""))
        if cv_folds > 1:
            log_resolved_params({"cv_scheme": cv_scheme})
            mlflow.set_tags({"abtest.cv_scheme": CV_SCHEME_DESCRIPTIONS[cv_scheme]})
        test = prepared.test
        feature_frame = to_feature_frame(test)
        scores = {
            policy: positive_scores(mlflow.pyfunc.load_model(source.model_uri), feature_frame)
            for policy, source in sources.items()
        }
        cv_started = time.perf_counter()
        cross_validation = run_cross_validation(
            prepared.train,
            prepared.val,
            prepared.users,
            prepared.items,
            sources,
            cv_folds=cv_folds,
            seed=params.seed,
            k=params.k,
            cv_jobs=cv_jobs,
            scheme=cv_scheme,
        )
        cv_seconds = time.perf_counter() - cv_started
        result = evaluate_policies(
            test,
            scores["A"],
            scores["B"],
            train=prepared.train,
            users=prepared.users,
            items=prepared.items,
            config=config,
            cross_validation=cross_validation,
        )
        setup = {
            "policy A": f"{sources['A'].model_uri} (train_a run {sources['A'].training_run})",
            "policy B": f"{sources['B'].model_uri} (train_b run {sources['B'].training_run})",
            "prepare run": f"{prepare_run} ({prepared.params.get('dataset', '?')}, split="
            f"{prepared.params.get('split', '?')})",
            "test rows / users / items": f"{result.n_rows} / {result.n_users} / {result.n_items}",
            "test positive rate": f"{test['label'].mean():.4f}",
            "alpha, bootstrap replicates, k": f"{config.alpha:g}, {config.n_bootstrap}, {config.k}",
            "cross-validation": f"{cv_folds} folds, {CV_SCHEME_DESCRIPTIONS[cv_scheme]}"
            if cross_validation is not None
            else "disabled",
            "evaluate run": run.info.run_id,
        }
        html = render_html(
            ReportInputs(
                decision=result.decision,
                setup=setup,
                comparison=result.comparison,
                delong=result.delong,
                segments=result.segments,
                figures=result.figures,
                cross_validation=cross_validation,
                n_bootstrap=config.n_bootstrap,
                alpha=config.alpha,
            )
        )
        mlflow.log_text(html, f"{ARTIFACT_DIR}/report.html")
        for name, figure in result.figures.items():
            mlflow.log_figure(figure, f"{ARTIFACT_DIR}/plots/{name}.png")
        _log_tables(result, cross_validation)
        mlflow.log_dict(
            {
                "decision": result.decision.label,
                "reason": result.decision.reason,
                "setup": {k: str(v) for k, v in setup.items()},
            },
            f"{ARTIFACT_DIR}/decision.json",
        )
        metrics = headline_metrics(result)
        metrics |= {"time.cv_seconds": cv_seconds, "time.total_seconds": time.perf_counter() - started}
        mlflow.log_metrics(metrics)
        mlflow.set_tags(decision_tags(result))
    log.info("%s", result.decision.reason)
    print(result.comparison.round(4).to_string(index=False))  # the CLI's final human summary
    print(f"decision: {result.decision.label}")
    return run.info.run_id


if __name__ == "__main__":
    main()
