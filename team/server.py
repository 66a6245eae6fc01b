"""Start the team's MLflow tracking server: PostgreSQL backend store, proxied artifacts, optional basic auth.

Inputs (environment, never the repo or the command line, so no secret lands in `ps`, shell history or git):
    MLFLOW_BACKEND_STORE_URI        postgresql://user:password@host:5432/mlflow (required)
    with --auth:
    MLFLOW_AUTH_ADMIN_USERNAME      admin user created on first start (MLflow's own variable)
    MLFLOW_AUTH_ADMIN_PASSWORD      its password (MLflow's own variable)
    MLFLOW_FLASK_SERVER_SECRET_KEY  static CSRF key, identical on every server replica (MLflow's own variable)
    ABTEST_AUTH_DATABASE_URI        user/permission store; default: the backend store (own tables)
Output: a server on http://HOST:PORT (127.0.0.1 unless --host says otherwise) that clients reach with
``MLFLOW_TRACKING_URI``; artifacts are stored under --artifacts-destination and served through the server
(``mlflow-artifacts:/``), so clients need no storage credentials.

    MLFLOW_BACKEND_STORE_URI=postgresql://... python -m team.server --artifacts-destination /srv/mlflow/artifacts
    python -m team.server --throwaway-postgres      # try it: a private PostgreSQL in a temp dir
"""

from __future__ import annotations

import argparse
import configparser
import ipaddress
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from team.postgres import free_loopback_port, throwaway_postgres

log = logging.getLogger(__name__)

BACKEND_SCHEMES: tuple[str, ...] = ("postgresql", "postgresql+psycopg", "postgresql+psycopg2")
AUTH_ENV: tuple[str, ...] = (
    "MLFLOW_AUTH_ADMIN_USERNAME",
    "MLFLOW_AUTH_ADMIN_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
)
PERMISSIONS: tuple[str, ...] = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")


@dataclass(frozen=True)
class ServerConfig:
    """How to run one tracking server. The backend URI (with its password) travels only in the environment."""

    backend_store_uri: str
    artifacts_destination: str
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 2
    auth: bool = False
    auth_database_uri: str = ""
    default_permission: str = "READ"


def _redact(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    return uri.replace(f":{parts.password}@", ":***@", 1)


def validate_config(config: ServerConfig) -> None:
    """Reject a configuration that would silently do something other than team mode."""
    scheme = urlsplit(config.backend_store_uri).scheme
    if scheme not in BACKEND_SCHEMES:
        raise ValueError(
            f"backend store must be PostgreSQL, one of schemes {BACKEND_SCHEMES}; got "
            f"{_redact(config.backend_store_uri)!r}. Set MLFLOW_BACKEND_STORE_URI=postgresql://user:pw@host/db"
        )
    if not config.artifacts_destination:
        raise ValueError("artifacts_destination must be set (a local dir, s3://, gs://, ...); got ''")
    if not 1 <= config.port <= 65535:
        raise ValueError(f"port must be in 1..65535, got {config.port}")
    if config.workers < 1:
        raise ValueError(f"workers must be >= 1, got {config.workers}")
    if config.default_permission not in PERMISSIONS:
        raise ValueError(f"default_permission must be one of {PERMISSIONS}, got {config.default_permission!r}")
    if config.auth and config.auth_database_uri and urlsplit(config.auth_database_uri).scheme == "":
        raise ValueError(f"auth_database_uri must be a SQLAlchemy URI, got {_redact(config.auth_database_uri)!r}")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def write_auth_config(path: Path, config: ServerConfig) -> Path:
    """The basic-auth app's ini file (it holds a database URI, so it is created readable by the owner only)."""
    parser = configparser.ConfigParser()
    parser["mlflow"] = {
        "default_permission": config.default_permission,
        # ConfigParser interpolates "%": escape it, or a URL-encoded password breaks the file.
        "database_uri": (config.auth_database_uri or config.backend_store_uri).replace("%", "%%"),
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    path.touch(mode=0o600)
    with path.open("w") as handle:
        parser.write(handle)
    return path


def server_command(config: ServerConfig) -> list[str]:
    """The ``mlflow server`` command line; it carries no secret (the backend URI is read from the environment)."""
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--host", config.host, "--port", str(config.port), "--workers", str(config.workers),
        "--serve-artifacts", "--artifacts-destination", config.artifacts_destination,
    ]  # fmt: skip
    if config.auth:
        command += ["--app-name", "basic-auth"]
    return command


def server_environment(config: ServerConfig, base: Mapping[str, str], *, auth_config_path: Path | None) -> dict:
    """Environment for the server process: the caller's, plus the backend URI and the auth ini's path."""
    env = {**base, "MLFLOW_BACKEND_STORE_URI": config.backend_store_uri}
    # The server's job executor (huey consumers for GenAI scorers) is unused here and costs 7 processes.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if config.auth:
        missing = [name for name in AUTH_ENV if not env.get(name)]
        if missing:
            raise ValueError(f"--auth needs these environment variables set (non-empty): {missing}")
        if auth_config_path is None:
            raise ValueError("--auth needs an auth config file path")
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_config_path)
    return env


def wait_until_healthy(url: str, *, process: subprocess.Popen | None = None, timeout_s: float = 90.0) -> None:
    """Poll ``url``/health until the server answers; fail early if the server process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with code {process.returncode} before becoming healthy")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise TimeoutError(f"mlflow server at {url} not healthy after {timeout_s:.0f} s")


def _stop(process: subprocess.Popen) -> None:
    """Stop the server and its workers (they share the process group the server was started in)."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextmanager
def running_server(
    config: ServerConfig, *, env: Mapping[str, str] | None = None, log_path: Path | None = None
) -> Iterator[str]:
    """Run the server in the background until the block ends; yields its URL once /health answers."""
    validate_config(config)
    with ExitStack() as stack:
        state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="abtest-mlflow-server-")))
        auth_path = write_auth_config(state_dir / "basic_auth.ini", config) if config.auth else None
        environment = server_environment(config, os.environ if env is None else env, auth_config_path=auth_path)
        output = stack.enter_context((log_path or state_dir / "server.log").open("ab"))
        process = subprocess.Popen(
            server_command(config),
            env=environment,
            cwd=state_dir,  # anything the server writes relative to its cwd stays out of the caller's dirs
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stack.callback(_stop, process)
        url = f"http://{config.host}:{config.port}"
        try:
            wait_until_healthy(url, process=process)
        except (RuntimeError, TimeoutError) as exc:
            output.flush()
            tail = (log_path or state_dir / "server.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{exc}; server log tail:\n{tail}") from exc
        log.info("MLflow tracking server on %s (backend %s)", url, _redact(config.backend_store_uri))
        yield url


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="team.server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind; default loopback only")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--artifacts-destination", default="", help="where the server stores artifacts")
    parser.add_argument("--auth", action="store_true", help="MLflow basic-auth app (credentials from env)")
    parser.add_argument("--default-permission", default="READ", choices=PERMISSIONS)
    parser.add_argument(
        "--throwaway-postgres",
        action="store_true",
        help="start a private PostgreSQL in a temp dir (deleted on exit) instead of MLFLOW_BACKEND_STORE_URI",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server in the foreground until Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _parse_args(argv)
    # SIGTERM (kill, systemd, a container stop) unwinds like Ctrl-C: server, workers and PostgreSQL all stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if not is_loopback(args.host):
        log.warning("binding %s: the server is reachable from the network; turn on --auth and TLS", args.host)
    with ExitStack() as stack:
        backend = os.environ.get("MLFLOW_BACKEND_STORE_URI", "")
        artifacts = args.artifacts_destination
        if args.throwaway_postgres:
            cluster = stack.enter_context(throwaway_postgres())
            backend = cluster.uri("mlflow")
            if not artifacts:
                artifacts = stack.enter_context(tempfile.TemporaryDirectory(prefix="abtest-artifacts-"))
        config = ServerConfig(
            backend_store_uri=backend,
            artifacts_destination=artifacts,
            host=args.host,
            port=args.port or free_loopback_port(),
            workers=args.workers,
            auth=args.auth,
            auth_database_uri=os.environ.get("ABTEST_AUTH_DATABASE_URI", ""),
            default_permission=args.default_permission,
        )
        try:
            url = stack.enter_context(
                running_server(config, log_path=Path(tempfile.gettempdir()) / "mlflow-server.log")
            )
        except ValueError as exc:
            log.error("%s", exc)
            return 2
        print(f"export MLFLOW_TRACKING_URI={url}   # server log: {tempfile.gettempdir()}/mlflow-server.log")
        try:
            signal.pause()
        except KeyboardInterrupt:
            log.info("stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
