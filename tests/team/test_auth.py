"""Basic auth on the team server: no credentials → 401; a read-only user can read but not register (403)."""

from __future__ import annotations

import secrets

import pytest
import requests

from tests.fixtures.team import TeamServer

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

MODEL = "movielens_ctr_ab"


def _api(server: TeamServer, path: str) -> str:
    return f"{server.url}/api/2.0/mlflow/{path}"


@pytest.fixture(scope="module")
def viewer(auth_server: TeamServer) -> tuple[str, str]:
    """A user created through the auth REST API by the admin; it gets the server's default permission, READ."""
    credentials = ("viewer", secrets.token_urlsafe(12))
    response = requests.post(
        _api(auth_server, "users/create"),
        json={"username": credentials[0], "password": credentials[1]},
        auth=auth_server.admin,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["user"]["username"] == "viewer"
    return credentials


@pytest.fixture(scope="module")
def registered_by_admin(auth_server: TeamServer) -> tuple[str, str]:
    """The admin registers the policy model with one version under alias PolicyA, as the register step would."""
    created = requests.post(
        _api(auth_server, "registered-models/create"), json={"name": MODEL}, auth=auth_server.admin, timeout=30
    )
    assert created.status_code == 200, created.text
    run = requests.post(
        _api(auth_server, "runs/create"), json={"experiment_id": "0"}, auth=auth_server.admin, timeout=30
    )
    assert run.status_code == 200, run.text
    run_id = run.json()["run"]["info"]["run_id"]
    version = requests.post(
        _api(auth_server, "model-versions/create"),
        json={"name": MODEL, "source": f"runs:/{run_id}/model", "run_id": run_id},
        auth=auth_server.admin,
        timeout=30,
    )
    assert version.status_code == 200, version.text
    number = version.json()["model_version"]["version"]
    alias = requests.post(
        _api(auth_server, "registered-models/alias"),
        json={"name": MODEL, "alias": "PolicyA", "version": number},
        auth=auth_server.admin,
        timeout=30,
    )
    assert alias.status_code == 200, alias.text
    return number, run_id


def test_request_without_credentials_is_refused(auth_server: TeamServer) -> None:
    response = requests.get(_api(auth_server, "experiments/search"), params={"max_results": 1}, timeout=30)
    assert response.status_code == 401
    assert "Basic" in response.headers.get("WWW-Authenticate", "")


def test_wrong_password_is_refused(auth_server: TeamServer) -> None:
    response = requests.get(
        _api(auth_server, "experiments/search"),
        params={"max_results": 1},
        auth=(auth_server.admin[0], "not-the-password"),
        timeout=30,
    )
    assert response.status_code == 401


def test_read_only_user_reads_but_cannot_register(
    auth_server: TeamServer, viewer: tuple[str, str], registered_by_admin: tuple[str, str]
) -> None:
    version, run_id = registered_by_admin
    read = requests.get(
        _api(auth_server, "registered-models/alias"),
        params={"name": MODEL, "alias": "PolicyA"},
        auth=viewer,
        timeout=30,
    )
    assert read.status_code == 200, read.text
    assert read.json()["model_version"]["version"] == version

    new_version = requests.post(
        _api(auth_server, "model-versions/create"),
        json={"name": MODEL, "source": f"runs:/{run_id}/model", "run_id": run_id},
        auth=viewer,
        timeout=30,
    )
    assert new_version.status_code == 403, new_version.text
    moved_alias = requests.post(
        _api(auth_server, "registered-models/alias"),
        json={"name": MODEL, "alias": "PolicyB", "version": version},
        auth=viewer,
        timeout=30,
    )
    assert moved_alias.status_code == 403, moved_alias.text
    unchanged = requests.get(
        _api(auth_server, "registered-models/get"), params={"name": MODEL}, auth=auth_server.admin, timeout=30
    ).json()["registered_model"]
    assert [a["alias"] for a in unchanged.get("aliases", [])] == ["PolicyA"]
    assert unchanged["latest_versions"][-1]["version"] == version


def test_read_only_user_cannot_create_users(auth_server: TeamServer, viewer: tuple[str, str]) -> None:
    response = requests.post(
        _api(auth_server, "users/create"),
        json={"username": "intruder", "password": "x" * 12},
        auth=viewer,
        timeout=30,
    )
    assert response.status_code == 403, response.text
