"""The router pyfunc on its own (saved to a directory, no registry): routing, scores, cold start, params, speed."""

from __future__ import annotations

import ast
import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

import ab_router
from ab_router.assignment import AssignmentConfig, assign_arms
from ab_router.features import assemble_features
from ab_router.model import (
    FEATURE_DEFAULTS_ARTIFACT,
    ITEM_FEATURES_ARTIFACT,
    OUTPUT_TYPES,
    USER_FEATURES_ARTIFACT,
    ABRouterModel,
    code_digest,
    empty_output,
    router_config,
    router_signature,
)
from ab_router.policy import positive_scores
from ab_router.schema import ROUTER_OUTPUT_COLUMNS, to_feature_frame
from abtest.config import FEATURE_DEFAULTS_FILE, ITEM_FEATURES_FILE, USER_FEATURES_FILE
from tests.fixtures.router import (
    REQUIREMENTS,
    SKOPS_TRUSTED,
    fit_handmade_policies,
    handmade_tables,
    random_pairs,
    write_feature_tables,
)

SALT = "test-salt"
VERSIONS = {"A": ("policies", "3"), "B": ("policies", "4")}


def save_router(
    directory: Path, tables, policies: dict[str, Path], assignment: AssignmentConfig, **config_overrides: str
) -> Path:
    """Save a router pyfunc to ``directory`` from local policy model dirs and feature tables."""
    features = write_feature_tables(tables, directory.parent / f"{directory.name}-features")
    mlflow.pyfunc.save_model(
        str(directory),
        python_model=ABRouterModel(),
        artifacts={
            "policy_a": str(policies["A"]),
            "policy_b": str(policies["B"]),
            USER_FEATURES_ARTIFACT: str(features / USER_FEATURES_FILE),
            ITEM_FEATURES_ARTIFACT: str(features / ITEM_FEATURES_FILE),
            FEATURE_DEFAULTS_ARTIFACT: str(features / FEATURE_DEFAULTS_FILE),
        },
        model_config={**router_config(assignment, versions=VERSIONS), **config_overrides},
        code_paths=[str(Path(ab_router.__file__).parent)],
        signature=router_signature(split=assignment.split),
        pip_requirements=REQUIREMENTS,
    )
    return directory


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory):
    """(tables, loaded policy pyfuncs, router dirs: hash/0.5, modulo, hash/0.5 logged by other ab_router code)."""
    root = tmp_path_factory.mktemp("router-model")
    tables, _, _ = handmade_tables()
    policy_a, policy_b = fit_handmade_policies(tables)
    mlflow.sklearn.save_model(
        policy_a,
        str(root / "policy_a"),
        pyfunc_predict_fn="predict_proba",
        skops_trusted_types=SKOPS_TRUSTED,
        pip_requirements=REQUIREMENTS,
    )
    mlflow.lightgbm.save_model(policy_b, str(root / "policy_b"), pip_requirements=REQUIREMENTS)
    policies = {"A": root / "policy_a", "B": root / "policy_b"}
    hashed = save_router(root / "router", tables, policies, AssignmentConfig(0.5, SALT, "hash"))
    modulo = save_router(root / "router-modulo", tables, policies, AssignmentConfig(0.5, SALT, "modulo"))
    loaded = {arm: mlflow.pyfunc.load_model(str(path)) for arm, path in policies.items()}
    stale = save_router(
        root / "router-stale", tables, policies, AssignmentConfig(0.5, SALT, "hash"), code_digest="x"
    )
    return tables, loaded, hashed, modulo, stale


@pytest.fixture(scope="module")
def router(saved) -> mlflow.pyfunc.PyFuncModel:
    return mlflow.pyfunc.load_model(str(saved[2]))


@pytest.fixture(scope="module")
def doctored(saved):
    """(tables, policy pyfuncs, router) where the lookup tables hold codes no policy saw and missing numbers."""
    tables, policies, hashed = saved[:3]
    users, items = tables.user_features.copy(), tables.item_features.copy()
    users.loc[0, "occupation"] = 10**6  # a code neither policy was trained on
    users.loc[1, "zip_prefix"] = -1
    users.loc[2, ["age", "user_pos_rate"]] = np.nan
    items.loc[0, ["release_year", "item_mean_rating"]] = np.nan
    tables = dataclasses.replace(tables, user_features=users, item_features=items)
    dirs = {"A": hashed.parent / "policy_a", "B": hashed.parent / "policy_b"}
    directory = save_router(hashed.parent / "router-doctored", tables, dirs, AssignmentConfig(0.5, SALT, "hash"))
    return tables, policies, mlflow.pyfunc.load_model(str(directory))


def test_scores_equal_each_policys_own_model_on_every_test_row_alone_and_in_a_batch(doctored) -> None:
    tables, policies, router = doctored
    users, items = tables.user_features["user_id"], tables.item_features["item_id"]
    pairs = pd.concat(
        [
            tables.splits["test"][["user_id", "item_id"]],
            pd.DataFrame({"user_id": users.iloc[:3], "item_id": items.iloc[:3]}),  # the doctored rows
            pd.DataFrame({"user_id": [-1, 10**9, int(users.iloc[5])], "item_id": [int(items.iloc[5]), -1, 10**9]}),
        ],
        ignore_index=True,
    ).astype(np.int64)
    features = to_feature_frame(
        assemble_features(pairs, tables.user_features, tables.item_features, tables.defaults)
    )
    assert features["occupation"].max() == 10**6 and (features["zip_prefix"] == -1).any()
    assert features[["age", "release_year", "item_mean_rating"]].isna().any().all()
    # The reference: each logged policy's own pyfunc predict, as evaluate scores it.
    expected = {arm: positive_scores(policy, features) for arm, policy in policies.items()}

    def check(out: pd.DataFrame, rows: np.ndarray, arm: str) -> None:
        if arm == "B":  # Booster.predict on the same float64 numbers: the same bits
            np.testing.assert_array_equal(out["score"].to_numpy()[rows], expected[arm][rows])
        else:  # the compiled pipeline against scikit-learn's predict_proba
            np.testing.assert_allclose(out["score"].to_numpy()[rows], expected[arm][rows], rtol=0, atol=1e-12)

    batch = router.predict(pairs)
    assert {"A", "B"} == set(batch["policy"])
    assert batch["cold_user"].iloc[-3:].tolist() == [True, True, False]
    for arm in ("A", "B"):
        check(batch, (batch["policy"] == arm).to_numpy(), arm)
        check(router.predict(pairs, params={"force_policy": arm}), np.ones(len(pairs), dtype=bool), arm)
    singles = pd.concat([router.predict(pairs.iloc[[k]]) for k in range(len(pairs))], ignore_index=True)
    np.testing.assert_array_equal(singles["score"].to_numpy(), batch["score"].to_numpy())
    assert singles["policy"].tolist() == batch["policy"].tolist()


def test_each_row_gets_its_users_arm_and_that_policys_score(saved, router) -> None:
    tables, policies = saved[:2]
    pairs = random_pairs(tables, 400)
    out = router.predict(pairs)
    assert list(out.columns) == list(ROUTER_OUTPUT_COLUMNS)
    assert out["user_id"].tolist() == pairs["user_id"].tolist()
    assert out["item_id"].tolist() == pairs["item_id"].tolist()
    expected = assign_arms(pairs["user_id"], AssignmentConfig(0.5, SALT, "hash"))
    assert out["policy"].tolist() == expected.policy.tolist()
    assert out["bucket"].tolist() == expected.bucket.tolist()
    assert {"A", "B"} == set(out["policy"])
    features = assemble_features(pairs, tables.user_features, tables.item_features, tables.defaults)
    for arm, (name, version) in VERSIONS.items():
        rows = (out["policy"] == arm).to_numpy()
        np.testing.assert_allclose(
            out.loc[rows, "score"], positive_scores(policies[arm], to_feature_frame(features[rows])), rtol=1e-12
        )
        assert set(out.loc[rows, "model_name"]) == {name}
        assert set(out.loc[rows, "model_version"]) == {version}
    assert out["score"].between(0, 1).all()


def test_unknown_user_and_item_get_defaults_and_flags_never_an_error(saved, router) -> None:
    tables = saved[0]
    known_user, known_item = (
        int(tables.user_features["user_id"].iloc[0]),
        int(tables.item_features["item_id"].iloc[0]),
    )
    pairs = pd.DataFrame(
        {"user_id": [known_user, 987_654, known_user, 987_654], "item_id": [known_item] * 2 + [55_555] * 2}
    )
    out = router.predict(pairs)
    warm_user = bool(tables.user_features["user_count"].iloc[0] > 0)
    warm_item = bool(tables.item_features["item_count"].iloc[0] > 0)
    assert out["cold_user"].tolist() == [not warm_user, True, not warm_user, True]
    assert out["cold_item"].tolist() == [not warm_item, not warm_item, True, True]
    assert np.isfinite(out["score"]).all()
    # Two unseen users on the same (unseen) item in the same arm get the same, default-feature score.
    twins = router.predict(pd.DataFrame({"user_id": [987_654, 987_654], "item_id": [55_555, 66_666]}))
    assert twins["score"].nunique() == 1


def test_force_policy_sends_every_row_to_one_arm(saved, router) -> None:
    tables = saved[0]
    pairs = random_pairs(tables, 200, seed=1)
    for arm in ("A", "B"):
        out = router.predict(pairs, params={"force_policy": arm})
        assert set(out["policy"]) == {arm}
        assert set(out["model_version"]) == {VERSIONS[arm][1]}


def test_split_param_overrides_the_configured_split(saved, router) -> None:
    pairs = random_pairs(saved[0], 300, seed=2)
    assert set(router.predict(pairs, params={"split": 1.0})["policy"]) == {"B"}
    assert set(router.predict(pairs, params={"split": 0.0})["policy"]) == {"A"}
    low = router.predict(pairs, params={"split": 0.2})
    expected = assign_arms(pairs["user_id"], AssignmentConfig(0.2, SALT, "hash")).policy
    assert low["policy"].tolist() == expected.tolist()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"split": 1.5}, r"split .*must be a number in \[0, 1\], got 1.5"),
        ({"force_policy": "C"}, r"force_policy must be one of \['', 'A', 'B'\], got 'C'"),
    ],
)
def test_invalid_params_are_rejected(saved, router, params: dict, message: str) -> None:
    with pytest.raises(MlflowException, match=message):
        router.predict(random_pairs(saved[0], 5), params=params)


@pytest.mark.parametrize("params", [None, {"force_policy": "B"}, {"split": 0.2}])
def test_empty_request_gets_no_rows_with_every_output_column(router, params) -> None:
    empty = pd.DataFrame({"user_id": pd.Series(dtype="int64"), "item_id": pd.Series(dtype="int64")})
    out = router.predict(empty, params=params)
    assert len(out) == 0
    assert list(out.columns) == list(ROUTER_OUTPUT_COLUMNS)
    assert out.dtypes.astype(str).to_dict() == {
        "user_id": "int64",
        "item_id": "int64",
        "policy": "object",
        "model_name": "object",
        "model_version": "object",
        "score": "float64",
        "bucket": "int64",
        "cold_user": "bool",
        "cold_item": "bool",
        "request_id": "object",
    }


def test_empty_request_with_an_invalid_param_is_still_rejected(router) -> None:
    empty = pd.DataFrame({"user_id": pd.Series(dtype="int64"), "item_id": pd.Series(dtype="int64")})
    with pytest.raises(MlflowException, match="force_policy must be one of"):
        router.predict(empty, params={"force_policy": "C"})


def test_missing_column_is_rejected_naming_it(router) -> None:
    with pytest.raises(MlflowException, match="item_id"):
        router.predict(pd.DataFrame({"user_id": [1, 2]}))


def test_modulo_router_reproduces_the_seed_rule(saved) -> None:
    router = mlflow.pyfunc.load_model(str(saved[3]))
    pairs = random_pairs(saved[0], 300, seed=3)
    out = router.predict(pairs)
    assert out["policy"].tolist() == np.where(pairs["user_id"] % 2 == 0, "A", "B").tolist()
    with pytest.raises(MlflowException, match="cannot override a 'modulo' router"):
        router.predict(pairs, params={"split": 0.3})


def test_ten_thousand_rows_are_routed_fast(saved, router) -> None:
    pairs = random_pairs(saved[0], 10_000, seed=4)
    router.predict(pairs.head(10))
    start = time.perf_counter()
    out = router.predict(pairs)
    elapsed = time.perf_counter() - start
    assert len(out) == 10_000
    assert elapsed < 1.0, f"10,000 rows took {elapsed:.3f} s"


def test_router_loads_in_a_fresh_process_without_the_project_on_the_path(saved, tmp_path: Path) -> None:
    code = (
        "import sys, mlflow, pandas as pd; "
        "assert not any(p.rstrip('/').endswith('main') for p in sys.path[1:]), sys.path; "
        f"m = mlflow.pyfunc.load_model({str(saved[2])!r}); "
        "print(m.predict(pd.DataFrame({'user_id': [1, 2, 3], 'item_id': [1, 2, 3]}))['policy'].tolist())"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    expected = assign_arms([1, 2, 3], AssignmentConfig(0.5, SALT, "hash")).policy.tolist()
    assert result.stdout.strip().splitlines()[-1] == str(expected)


def test_ab_router_imports_nothing_from_steps() -> None:
    for path in Path(ab_router.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = [
            alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
        ] + [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        assert not [m for m in imported if m == "steps" or m.startswith("steps.")], path


def test_loading_warns_when_this_process_runs_other_ab_router_code(
    saved, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="ab_router.model"):
        current = mlflow.pyfunc.load_model(str(saved[2]))
    assert "differs from the code bundled" not in caplog.text
    # router_config records the digest itself (the stale router below overrides it), so the check is live
    assert current.model_config["code_digest"] == code_digest()
    with caplog.at_level("WARNING", logger="ab_router.model"):
        mlflow.pyfunc.load_model(str(saved[4]))
    assert "differs from the code bundled with the router" in caplog.text


def test_router_scores_both_policies_on_the_feature_matrix(router) -> None:
    # A frame per request and a second pyfunc schema check per policy call were most of a single-row request:
    # policy B is LightGBM's Booster.predict on the matrix, policy A its pipeline compiled to numpy
    # (ab_router.linear), each accepted at load only because it reproduced its policy's own model.
    scorers = router.unwrap_python_model().scorers
    kinds = {arm: scorer.kind for arm, scorer in scorers.items()}
    assert kinds == {"A": "compiled pipeline", "B": "lightgbm Booster"}


def test_output_types_list_the_router_output_columns_in_order() -> None:
    assert tuple(OUTPUT_TYPES) == ROUTER_OUTPUT_COLUMNS
    assert router_signature(split=0.5).outputs.input_names() == list(ROUTER_OUTPUT_COLUMNS)
    assert empty_output().dtypes.astype(str).to_dict() == {
        "user_id": "int64",
        "item_id": "int64",
        "policy": "object",
        "model_name": "object",
        "model_version": "object",
        "score": "float64",
        "bucket": "int64",
        "cold_user": "bool",
        "cold_item": "bool",
        "request_id": "object",
    }
