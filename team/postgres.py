"""A throwaway PostgreSQL cluster on a loopback port: for tests, CI and trying team mode on one machine.

A team's real database is run by whoever runs databases; this module only makes a private one that lives in a
temp dir and disappears with it. PostgreSQL refuses to run as root, so as root (CI, containers) every server
command runs as the ``postgres`` system user that Debian's package creates.
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SERVER_BINARIES: tuple[str, ...] = ("initdb", "pg_ctl", "createdb")


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL's server binaries are not installed (``apt-get install postgresql``)."""


def find_postgres_bindir() -> Path | None:
    """Directory holding initdb/pg_ctl: on PATH, else Debian's /usr/lib/postgresql/<newest>/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name), reverse=True
    )
    return versions[0].parent if versions else None


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class PostgresCluster:
    """A running cluster: where it lives and how to reach it."""

    data_dir: Path
    port: int
    user: str
    password: str
    bindir: Path
    run_as: str | None

    def uri(self, database: str) -> str:
        """SQLAlchemy URI of one database of this cluster (the form ``mlflow server`` takes)."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"


def _command(bindir: Path, run_as: str | None, tool: str, *args: str) -> list[str]:
    command = [str(bindir / tool), *args]
    return ["runuser", "-u", run_as, "--", *command] if run_as else command


def _run(command: Sequence[str], *, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:6])} ... failed ({result.returncode}): {result.stderr.strip()}")


@contextmanager
def throwaway_postgres(
    *, databases: Sequence[str] = ("mlflow",), user: str = "mlflow", port: int | None = None
) -> Iterator[PostgresCluster]:
    """Start a private cluster with a password-protected ``user`` owning ``databases``; remove it on exit.

    Listens on 127.0.0.1 only, with scram-sha-256 password authentication, so the tracking server connects
    exactly as it would to a shared database.
    """
    bindir = find_postgres_bindir()
    if bindir is None or not all((bindir / tool).exists() for tool in SERVER_BINARIES):
        raise PostgresUnavailableError(
            f"PostgreSQL server binaries {SERVER_BINARIES} not found on PATH or in /usr/lib/postgresql/*/bin; "
            "install them with: apt-get install postgresql"
        )
    run_as = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="abtest-pg-"))
    data_dir, socket_dir, password = root / "data", root / "socket", secrets.token_urlsafe(18)
    socket_dir.mkdir()
    password_file = root / "pwfile"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    if run_as:
        account = pwd.getpwnam(run_as)
        for path in (root, socket_dir, password_file):
            os.chown(path, account.pw_uid, account.pw_gid)
    port = port or free_loopback_port()
    cluster = PostgresCluster(data_dir, port, user, password, bindir, run_as)
    started = False
    try:
        _run(
            _command(
                bindir, run_as, "initdb", "-D", str(data_dir), "-U", user, f"--pwfile={password_file}",
                "--auth=scram-sha-256", "-E", "UTF8", "--no-instructions",
            )
        )  # fmt: skip
        options = f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        _run(
            _command(
                bindir,
                run_as,
                "pg_ctl",
                "-D",
                str(data_dir),
                "-o",
                options,
                "-l",
                str(root / "log"),
                "-w",
                "start",
            )
        )
        started = True
        env = {**os.environ, "PGPASSWORD": password}
        for database in databases:
            _run(
                _command(bindir, None, "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", user, database),
                env=env,
            )
        log.info("PostgreSQL %s on 127.0.0.1:%d (data in %s)", bindir.parent.name, port, data_dir)
        yield cluster
    finally:
        if started:
            _run(_command(bindir, run_as, "pg_ctl", "-D", str(data_dir), "-m", "fast", "-w", "stop"))
        shutil.rmtree(root, ignore_errors=True)
