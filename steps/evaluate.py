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

import argparse
import logging
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ab_router.arms import CONTROL, EXPERIMENT_ARMS, TREATMENT, policy_arm
from abtest.evaluation.analysis import EvaluationConfig
from steps.cli import check_seed, configure_logging, parse_params

if TYPE_CHECKING:
    from abtest.evaluation.analysis import EvaluationResult
    from abtest.evaluation.crossval import CrossValidationResult

log = logging.getLogger(__name__)

ARTIFACT_DIR = "evaluation"
# MLflow, the models' libraries and the figures' are imported inside main: the cross-validation's spawned workers
# import this module again (it is their __main__) and main's check_params imports it, neither of which needs them.


def _log_tables(result: EvaluationResult, cross_validation: CrossValidationResult | None) -> None:
    import mlflow

    mlflow.log_table(result.comparison, f"{ARTIFACT_DIR}/comparison.json")
    mlflow.log_text(result.comparison.to_csv(index=False), f"{ARTIFACT_DIR}/comparison.csv")
    mlflow.log_text(result.segments.to_csv(index=False), f"{ARTIFACT_DIR}/segments.csv")
    mlflow.log_dict(asdict(result.delong), f"{ARTIFACT_DIR}/delong.json")
    if cross_validation is not None:
        mlflow.log_text(cross_validation.folds.to_csv(index=False), f"{ARTIFACT_DIR}/cv_folds.csv")
        mlflow.log_text(cross_validation.summary.to_csv(index=False), f"{ARTIFACT_DIR}/cv_summary.csv")


def _log_pngs(pngs: Mapping[str, bytes]) -> None:
    """Every figure's PNG under ``evaluation/plots/`` in one artifact upload (the bytes the report embeds)."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="evaluate-plots-") as directory:
        for name, png in pngs.items():
            (Path(directory) / f"{name}.png").write_bytes(png)
        mlflow.log_artifacts(directory, f"{ARTIFACT_DIR}/plots")


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


def evaluation_config(params: argparse.Namespace) -> EvaluationConfig:
    """The statistics options of evaluate's parameters (the config checks its own ranges)."""
    return EvaluationConfig(alpha=params.alpha, n_bootstrap=params.n_bootstrap, k=params.k, seed=params.seed)


def check_params(params: argparse.Namespace, pipeline: Mapping[str, argparse.Namespace] | None = None) -> None:
    """Seed, statistics options, cross-validation folds and processes, checked before a run exists."""
    check_seed(params.seed)
    evaluation_config(params)
    cross_validation_jobs(params.cv_jobs)
    check_cv_folds(params.cv_folds)


def main(argv: Sequence[str] | None = None) -> str:
    """Compare A and B, log metrics, tags, tables and the HTML report; returns the evaluate run's id."""
    from abtest.tracking.lineage import records_failure

    return records_failure(_evaluate)(argv)


def _evaluate(argv: Sequence[str] | None) -> str:
    import mlflow

    from ab_router.policy import positive_scores
    from ab_router.schema import LABEL, to_feature_frame
    from abtest.evaluation.analysis import decision_tags, evaluate_policies, headline_metrics, make_figures
    from abtest.evaluation.crossval import CV_SCHEME_DESCRIPTIONS, cv_scheme_for_split, start_cross_validation
    from abtest.evaluation.inputs import resolve_policy, shared_prepare_run
    from abtest.evaluation.plots import cross_validation_figure
    from abtest.evaluation.report import ReportInputs, comparison_setup, render_html
    from abtest.reporting import figure_png
    from abtest.tracking import tags
    from abtest.tracking.lineage import load_prepared, run_parameter, step_run
    from abtest.tracking.params import log_resolved_params
    from abtest.tracking.store import ensure_store_ready

    params = parse_params("evaluate", argv, description=__doc__)
    configure_logging()
    check_params(params)
    config = evaluation_config(params)
    cv_jobs = cross_validation_jobs(params.cv_jobs)
    cv_folds = params.cv_folds
    started = time.perf_counter()
    # Resolved before the run starts (read-only lookups), so a bad run id or model URI leaves no failed run.
    ensure_store_ready()
    sources = {
        arm.name: resolve_policy(
            arm.name,
            run_id=getattr(params, run_parameter(arm.train_entry_point)),
            model_uri=getattr(params, arm.uri_param),
        )
        for arm in map(policy_arm, EXPERIMENT_ARMS)
    }
    prepare_run = shared_prepare_run(sources[CONTROL], sources[TREATMENT], requested=params.prepare_run)
    with step_run("evaluate") as run:
        log_resolved_params(
            {
                "prepare_run": prepare_run,
                **{
                    run_parameter(arm.train_entry_point): sources[arm.name].training_run
                    for arm in map(policy_arm, EXPERIMENT_ARMS)
                },
                **{arm.uri_param: sources[arm.name].model_uri for arm in map(policy_arm, EXPERIMENT_ARMS)},
                "cv_jobs": cv_jobs,
            }
        )
        mlflow.set_tag(tags.PREPARE_RUN, prepare_run)
        prepared = load_prepared(prepare_run)
        cv_scheme = cv_scheme_for_split(prepared.params.get("split", ""))
        if cv_folds > 1:
            log_resolved_params({"cv_scheme": cv_scheme})
            mlflow.set_tag(tags.CV_SCHEME, CV_SCHEME_DESCRIPTIONS[cv_scheme])
        test = prepared.test
        cv_started = time.perf_counter()
        # The folds go to worker processes first; the test split is scored and compared while they run.
        pending = start_cross_validation(
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
        try:
            feature_frame = to_feature_frame(test)
            scores = {
                policy: positive_scores(mlflow.pyfunc.load_model(source.model_uri), feature_frame)
                for policy, source in sources.items()
            }
            result = evaluate_policies(
                test,
                scores[CONTROL],
                scores[TREATMENT],
                train=prepared.train,
                users=prepared.users,
                items=prepared.items,
                config=config,
                with_figures=False,
            )
            # Every figure but the folds' box plots is drawn and rendered while the workers still run.
            by_arm = {arm: scores[arm] for arm in EXPERIMENT_ARMS}
            result.figures.update(make_figures(result, test[LABEL].to_numpy(), by_arm))
            pngs = {name: figure_png(figure) for name, figure in result.figures.items()}  # rendered once
            cross_validation = pending.result() if pending is not None else None
        finally:
            if pending is not None:
                pending.close(cancel=True)
        cv_seconds = time.perf_counter() - cv_started
        result = replace(result, cross_validation=cross_validation)
        if cross_validation is not None:
            result.figures["cross_validation"] = cross_validation_figure(cross_validation.folds)
            pngs["cross_validation"] = figure_png(result.figures["cross_validation"])
        setup = comparison_setup(
            sources,
            result,
            prepare_run=prepare_run,
            prepare_params=prepared.params,
            positive_rate=float(test[LABEL].mean()),
            cross_validation=f"{cv_folds} folds, {CV_SCHEME_DESCRIPTIONS[cv_scheme]}"
            if cross_validation is not None
            else "disabled",
            evaluate_run=run.info.run_id,
        )
        html = render_html(
            ReportInputs(
                decision=result.decision,
                setup=setup,
                comparison=result.comparison,
                delong=result.delong,
                segments=result.segments,
                figures=pngs,
                cross_validation=cross_validation,
                n_bootstrap=config.n_bootstrap,
                alpha=config.alpha,
            )
        )
        mlflow.log_text(html, f"{ARTIFACT_DIR}/report.html")
        _log_pngs(pngs)
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
