"""`main` checks every value it passes on with the owning step's own rule, before any step runs."""

from __future__ import annotations

import mlflow
import pytest

from abtest.tracking.pipeline import active_steps, steps_until
from steps import main
from steps.cli import entry_points
from tests.fixtures.pipeline_runs import FAST_PARAMS

PIPELINE = active_steps(entry_points())


@pytest.mark.parametrize(
    ("user_params", "message"),
    [
        (
            {"router_split": "2"},
            "step router would reject the parameters main passes it {'router_split': '2'}: split (share of users "
            "sent to B) must be a number in [0, 1], got 2.0; nothing was run",
        ),
        (
            {"split": "foo"},
            "step prepare would reject the parameters main passes it {'split': 'foo'}: parameter split must be "
            "one of ['temporal', 'random', 'autoint'], got 'foo'; nothing was run",
        ),
        (
            {"C": "-1"},
            "step train_a would reject the parameters main passes it {'C': '-1'}: C must be in (0.0, inf], got "
            "-1.0; nothing was run",
        ),
        (
            {"n_estimators": "0"},
            "step train_b would reject the parameters main passes it {'n_estimators': '0'}: n_estimators must be "
            "in [1, inf], got 0; nothing was run",
        ),
        (
            {"alpha": "1.5"},
            "step evaluate would reject the parameters main passes it {'alpha': '1.5'}: alpha must be in (0, 1), "
            "got 1.5; nothing was run",
        ),
        (
            {"n_bootstrap": "0"},
            "step evaluate would reject the parameters main passes it {'n_bootstrap': '0'}: n_bootstrap must be a "
            "positive int, got 0; nothing was run",
        ),
        (
            {"cv_folds": "-1"},
            "step evaluate would reject the parameters main passes it {'cv_folds': '-1'}: cv_folds must be 0 or 1 "
            "(no cross-validation) or >= 2 folds, got -1; nothing was run",
        ),
        (
            {"days": "0"},
            "step simulate would reject the parameters main passes it {'days': '0'}: parameter days must be an "
            "integer >= 1, got 0; nothing was run",
        ),
        (
            {"router_split": "1"},
            "step simulate would reject this pipeline's parameters: the router's split (share of users sent to B) "
            "must be strictly between 0 and 1 for an A/B test, got 1.0; nothing was run",
        ),
    ],
)
def test_a_value_some_step_rejects_fails_before_anything_runs(user_params: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError) as raised:
        main.check_parameter_values(user_params, PIPELINE)
    assert str(raised.value) == message


def test_a_bad_model_name_is_refused_with_the_registry_rule() -> None:
    with pytest.raises(ValueError, match=r"step register would reject .*'model_name': 'a/b'.*cannot contain '/'"):
        main.check_parameter_values({"model_name": "a/b"}, PIPELINE)


def test_good_values_pass_and_only_the_steps_that_run_are_checked() -> None:
    main.check_parameter_values({}, PIPELINE)
    main.check_parameter_values({**FAST_PARAMS, "router_split": "0.3", "seed": "7", "C": "0.5"}, PIPELINE)
    # All users to B is a valid router; only the simulated A/B test needs both arms.
    main.check_parameter_values({"router_split": "1"}, steps_until(PIPELINE, "router"))
    main.check_parameter_values({"router_split": "2"}, steps_until(PIPELINE, "register"))


def test_main_refuses_a_bad_value_before_opening_any_run(fresh_tracking: str) -> None:
    with pytest.raises(ValueError, match="step router would reject"):
        main.main(["--router_split", "2"])
    experiment = mlflow.get_experiment_by_name("abtest-fresh")
    assert mlflow.search_runs([experiment.experiment_id]).empty
