"""Team-mode fixtures: a throwaway PostgreSQL cluster and MLflow tracking servers on free loopback ports.

Everything here is session-scoped and started lazily, only by tests marked ``postgres``; the finalizers stop the
servers (their whole process group) and the cluster, and delete their temp dirs. Without PostgreSQL binaries the
tests skip, unless ABTEST_REQUIRE_POSTGRES=1 (set by .ci/run), where a missing PostgreSQL is a failure.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from team.postgres import PostgresCluster, find_postgres_bindir, free_loopback_port, throwaway_postgres
from team.server import ServerConfig, running_server
from tests.fixtures.team import TeamServer


def require_postgres() -> None:
    """Skip without PostgreSQL locally; fail in CI (ABTEST_REQUIRE_POSTGRES=1), where it must be installed."""
    if find_postgres_bindir() is not None:
        return
    message = "PostgreSQL server binaries not found (apt-get install postgresql)"
    if os.environ.get("ABTEST_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{message}, and ABTEST_REQUIRE_POSTGRES=1 says they must be here")
    pytest.skip(message)


@pytest.fixture(scope="session")
def team_postgres() -> Iterator[PostgresCluster]:
    """One throwaway cluster for the session: a database per server, plus one for the auth app's users."""
    require_postgres()
    with throwaway_postgres(databases=("mlflow", "mlflow_authsrv", "mlflow_users")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def team_server(team_postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamServer]:
    """The tracking server without auth: PostgreSQL backend, artifacts proxied into a temp dir."""
    root = tmp_path_factory.mktemp("team-server")
    config = ServerConfig(
        backend_store_uri=team_postgres.uri("mlflow"),
        artifacts_destination=str(root / "artifacts"),
        port=free_loopback_port(),
        workers=2,
    )
    with running_server(config, log_path=root / "server.log") as url:
        yield TeamServer(url=url, artifacts_dir=root / "artifacts")


@pytest.fixture(scope="session")
def auth_server(team_postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamServer]:
    """The tracking server with MLflow's basic-auth app; the admin's credentials exist only in this process."""
    root = tmp_path_factory.mktemp("auth-server")
    admin = ("abtest-admin", secrets.token_urlsafe(16))
    env = {
        **os.environ,
        "MLFLOW_AUTH_ADMIN_USERNAME": admin[0],
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin[1],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
    }
    config = ServerConfig(
        backend_store_uri=team_postgres.uri("mlflow_authsrv"),
        artifacts_destination=str(root / "artifacts"),
        port=free_loopback_port(),
        workers=1,
        auth=True,
        auth_database_uri=team_postgres.uri("mlflow_users"),
    )
    with running_server(config, env=env, log_path=root / "server.log") as url:
        yield TeamServer(url=url, artifacts_dir=root / "artifacts", admin=admin)


@pytest.fixture(scope="session")
def team_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temp dir (outside the checkout) that end-to-end runs use as their cwd."""
    return Path(tempfile.mkdtemp(prefix="abtest-team-cwd-", dir=tmp_path_factory.getbasetemp()))
