"""The server launcher's rules, without starting anything: PostgreSQL only, no secret on the command line."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from team.server import (
    ServerConfig,
    is_loopback,
    server_command,
    server_environment,
    validate_config,
    write_auth_config,
)

URI = "postgresql://mlflow:s3cr%40t@127.0.0.1:5432/mlflow"


def test_command_binds_loopback_proxies_artifacts_and_holds_no_secret() -> None:
    command = server_command(ServerConfig(backend_store_uri=URI, artifacts_destination="/srv/a", port=5001))
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "5001"
    assert "--serve-artifacts" in command
    assert command[command.index("--artifacts-destination") + 1] == "/srv/a"
    assert not any("s3cr" in part or "postgresql" in part for part in command)
    assert "--app-name" not in command


def test_environment_carries_the_backend_and_auth_settings(tmp_path: Path) -> None:
    config = ServerConfig(backend_store_uri=URI, artifacts_destination="/srv/a", auth=True)
    with pytest.raises(ValueError, match="MLFLOW_AUTH_ADMIN_PASSWORD"):
        server_environment(config, {"MLFLOW_AUTH_ADMIN_USERNAME": "admin"}, auth_config_path=tmp_path / "a.ini")
    base = {
        "MLFLOW_AUTH_ADMIN_USERNAME": "a",
        "MLFLOW_AUTH_ADMIN_PASSWORD": "b",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "c",
    }
    env = server_environment(config, base, auth_config_path=tmp_path / "a.ini")
    assert env["MLFLOW_BACKEND_STORE_URI"] == URI
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == str(tmp_path / "a.ini")
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert "--app-name" in server_command(config)


def test_auth_ini_is_private_and_keeps_percent_encoded_passwords(tmp_path: Path) -> None:
    config = ServerConfig(backend_store_uri=URI, artifacts_destination="/a", auth=True, default_permission="READ")
    path = write_auth_config(tmp_path / "basic_auth.ini", config)
    assert path.stat().st_mode & 0o777 == 0o600
    parsed = configparser.ConfigParser()
    parsed.read(path)
    assert parsed["mlflow"]["database_uri"] == URI  # "%40" survives ConfigParser's interpolation
    assert parsed["mlflow"]["default_permission"] == "READ"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"backend_store_uri": "sqlite:///mlflow.db"}, "backend store must be PostgreSQL"),
        (
            {"backend_store_uri": "postgresql://u:hidden@h/db", "artifacts_destination": ""},
            "artifacts_destination",
        ),
        ({"port": 0}, "port must be in 1..65535, got 0"),
        ({"workers": 0}, "workers must be >= 1, got 0"),
        ({"default_permission": "ALL"}, "default_permission must be one of"),
    ],
)
def test_invalid_configurations_are_rejected(change: dict, message: str) -> None:
    config = ServerConfig(**{"backend_store_uri": URI, "artifacts_destination": "/a", **change})
    with pytest.raises(ValueError, match=message) as info:
        validate_config(config)
    assert "hidden" not in str(info.value) and "s3cr" not in str(info.value)


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("mlflow.internal")
