"""Team-mode fixtures: a throwaway PostgreSQL cluster and MLflow tracking servers on free loopback ports.

Everything here is session-scoped and started lazily, only by tests marked ``postgres``; the finalizers stop the
servers (their whole process group) and the cluster, and delete their temp dirs. Without PostgreSQL binaries the
tests skip, unless ABTEST_REQUIRE_POSTGRES=1 (set by .ci/run), where a missing PostgreSQL is a failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from abtest.config import PROJECT_DIR
from team.postgres import PostgresCluster, find_postgres_bindir, free_loopback_port, throwaway_postgres
from team.server import ServerConfig, running_server

TRACKING_ENV: tuple[str, ...] = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_RUN_ID",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
)


def require_postgres() -> None:
    """Skip without PostgreSQL locally; fail in CI (ABTEST_REQUIRE_POSTGRES=1), where it must be installed."""
    if find_postgres_bindir() is not None:
        return
    message = "PostgreSQL server binaries not found (apt-get install postgresql)"
    if os.environ.get("ABTEST_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{message}, and ABTEST_REQUIRE_POSTGRES=1 says they must be here")
    pytest.skip(message)


@dataclass(frozen=True)
class TeamServer:
    """A running tracking server and what a test needs to talk to it."""

    url: str
    artifacts_dir: Path
    admin: tuple[str, str] | None = None

    def client_env(self, base: Mapping[str, str] | None = None, *, auth: tuple[str, str] | None = None) -> dict:
        """Environment for a subprocess that must talk to this server and to nothing else."""
        env = {k: v for k, v in (os.environ if base is None else base).items() if k not in TRACKING_ENV}
        env["MLFLOW_TRACKING_URI"] = self.url
        if auth or self.admin:
            env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"] = auth or self.admin
        return env


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


def project_copy(destination: Path) -> Path:
    """The project's files (tracked and not ignored) copied to ``destination``: a clean place to run from.

    A copy makes "nothing was written locally" checkable: any mlruns/ or mlflow.db appearing in it came from the
    run under test, not from another engineer's or test's run in the shared checkout.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_DIR,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for relative in filter(None, listed.split("\0")):
        source = PROJECT_DIR / relative
        if source.is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def local_store_leftovers(*directories: Path) -> list[str]:
    """Paths of a local MLflow store (mlruns/, mlartifacts/, mlflow.db) anywhere under ``directories``."""
    found: list[str] = []
    for directory in directories:
        for pattern in ("mlruns", "mlartifacts", "mlflow.db"):
            found += [str(p) for p in directory.rglob(pattern)]
    return sorted(found)


def mlflow_run_command(project: Path, entry_point: str, params: Mapping[str, str]) -> list[str]:
    """``mlflow run <project> -e <entry> --env-manager local -P k=v ...`` with the current interpreter's mlflow."""
    command = [sys.executable, "-m", "mlflow", "run", str(project), "-e", entry_point, "--env-manager", "local"]
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    return command


@pytest.fixture(scope="session")
def team_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temp dir (outside the checkout) that end-to-end runs use as their cwd."""
    return Path(tempfile.mkdtemp(prefix="abtest-team-cwd-", dir=tmp_path_factory.getbasetemp()))
