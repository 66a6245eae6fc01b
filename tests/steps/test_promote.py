"""The `promote` step: parameters checked before a run, the latest analyze run by default, refusals recorded on a
FAILED run, the promote run's tags, and `mlflow run . -e promote` end to end.

Against a store of this module's own (tests/steps/conftest.py ``handmade_runs``); each test registers its own
policies and router, and logs the analyze runs it acts on (tests/fixtures/promotion.py).
"""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import pytest
from mlflow import MlflowClient

from abtest.config import PROJECT_DIR
from abtest.tracking import tags
from abtest.tracking.lineage import LineageError
from abtest.tracking.params import effective_params
from abtest.tracking.promotion import PromotionRefusedError
from steps import promote
from steps.cli import parse_params
from tests.fixtures.promotion import RegisteredRouter, log_analyze_run, register_router
from tests.fixtures.router import HandmadeRuns


@pytest.fixture
def registered(handmade_runs: HandmadeRuns, request: pytest.FixtureRequest) -> RegisteredRouter:
    """Policies and a router (split 0.3) registered under this test's own names."""
    name = request.node.name.replace("[", "_").replace("]", "")
    return register_router(handmade_runs, model=f"policies_{name}", router_model=f"router_{name}", split=0.3)


def _runs() -> list[mlflow.entities.Run]:
    return mlflow.search_runs(search_all_experiments=True, output_format="list")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--ramp_split", "big"],
            r'parameter ramp_split must be "" \(promote the winner\) or a share .*got \'big\'',
        ),
        (["--ramp_split", "1.5"], r"parameter ramp_split .* in \(0, 1\], got '1\.5'"),
        (["--ramp_split", "0"], "parameter ramp_split must be larger than 0"),
        (["--force", "yes"], r"parameter force must be one of \['true', 'false'\], got 'yes'"),
    ],
)
def test_bad_parameters_are_refused_before_a_run_opens(
    handmade_runs: HandmadeRuns, argv: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        promote.check_params(parse_params("promote", argv))
    before = len(_runs())
    with pytest.raises(ValueError, match=message):
        promote.main(argv)
    assert len(_runs()) == before


def test_promote_acts_on_the_latest_analyze_run_and_tags_its_run(registered: RegisteredRouter) -> None:
    log_analyze_run(registered.router_version, winner="A")
    latest = log_analyze_run(registered.router_version, winner="B")
    run_id = promote.main(["--router_model_name", registered.router_model])
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags[tags.STEP] == "promote"
    assert run.data.tags[tags.ANALYZE_RUN] == latest
    assert effective_params(run)["analyze_run"] == latest
    assert (run.data.tags[tags.WINNER], run.data.tags[tags.PROMOTION_FORCED]) == ("B", "false")
    champion = client.get_model_version_by_alias(registered.model, tags.CHAMPION_ALIAS)
    assert str(champion.version) == registered.policy_versions["B"]
    assert run.data.tags[tags.PROMOTION] == (
        f"{registered.model}@champion -> version {champion.version} (policy B; was unset) on analyze run {latest}"
    )


def test_the_router_is_the_one_the_analyze_run_names_unless_another_is_given(registered: RegisteredRouter) -> None:
    uri = f"models:/{registered.router_model}/{registered.router_version}"
    analyze_run = log_analyze_run(registered.router_version, winner="A", router_uri=uri)
    run_id = promote.main(["--analyze_run", analyze_run])
    assert effective_params(MlflowClient().get_run(run_id))["router_model_name"] == registered.router_model
    champion = MlflowClient().get_model_version_by_alias(registered.model, tags.CHAMPION_ALIAS)
    assert str(champion.version) == registered.policy_versions["A"]
    with pytest.raises(ValueError, match=rf"router_model_name is 'other', but analyze run {analyze_run} read out"):
        promote.main(["--analyze_run", analyze_run, "--router_model_name", "other"])


def test_a_refusal_fails_the_run_with_its_reason_and_moves_nothing(registered: RegisteredRouter) -> None:
    analyze_run = log_analyze_run(registered.router_version, winner="B", guardrails_held=False)
    with pytest.raises(PromotionRefusedError, match="a guardrail did not hold"):
        promote.main(["--analyze_run", analyze_run, "--router_model_name", registered.router_model])
    failed = next(r for r in _runs() if r.data.tags.get(tags.STEP) == "promote")  # the latest first
    assert failed.info.status == "FAILED"
    assert failed.data.tags[tags.ERROR].startswith("PromotionRefusedError: analyze run")
    assert "Pass -P force=true to act anyway" in failed.data.tags[tags.ERROR]
    assert tags.CHAMPION_ALIAS not in MlflowClient().get_registered_model(registered.model).aliases


def test_promote_refuses_a_run_that_is_not_an_analyze_run(registered: RegisteredRouter) -> None:
    with mlflow.start_run() as other:
        mlflow.set_tag(tags.STEP, "simulate")
    with pytest.raises(LineageError, match="is a 'simulate' run, not a 'analyze' run"):
        promote.main(["--analyze_run", other.info.run_id, "--router_model_name", registered.router_model])


@pytest.mark.e2e
def test_mlflow_run_promote_ramps_the_router(registered: RegisteredRouter) -> None:
    analyze_run = log_analyze_run(registered.router_version, winner="B")
    command = [sys.executable, "-m", "mlflow", "run", str(PROJECT_DIR), "-e", "promote", "--env-manager", "local"]
    command += ["-P", f"analyze_run={analyze_run}", "-P", f"router_model_name={registered.router_model}"]
    command += ["-P", "ramp_split=0.6"]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=os.getcwd())
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient()
    live = client.get_model_version_by_alias(registered.router_model, "router")
    assert str(live.version) != registered.router_version
    assert (live.tags[tags.SPLIT], live.tags[tags.RAMPED_FROM]) == ("0.6", registered.router_version)
    [run] = [r for r in _runs() if r.data.tags.get(tags.STEP) == "promote" and r.info.run_id == live.run_id]
    assert run.data.tags[tags.ROUTER_VERSION] == str(live.version)
    assert run.info.status == "FINISHED" and run.data.params["ramp_split"] == "0.6"
