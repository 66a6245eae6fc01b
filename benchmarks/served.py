"""Run `mlflow models serve` for a while: used by the serving tests and the serving benchmark (the client side,
request bodies and scoring, is `abtest.experiment.router_client`). :class:`FloorModel` is the serving benchmark's
floor: a pyfunc with the router's signature that does no work.

The server is started in its own process group and always stopped (SIGTERM to that group, then SIGKILL), so an
interrupted test or benchmark leaves no uvicorn worker behind.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import requests

from abtest.experiment.router_client import request_body

log = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def served_model(
    model_uri: str,
    *,
    port: int | None = None,
    start_timeout_s: float = 240.0,
    env: Mapping[str, str] | None = None,
) -> Iterator[str]:
    """Serve ``model_uri`` on 127.0.0.1 with ``--env-manager local``; yields the base URL, stops it on exit."""
    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri,
        "-h", "127.0.0.1", "-p", str(port), "--env-manager", "local", "-w", "1",
    ]  # fmt: skip
    with tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False) as server_log:
        log_path = Path(server_log.name)
    with log_path.open("w") as sink:
        process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_until_up(base_url, process, deadline=time.monotonic() + start_timeout_s, log_path=log_path)
        log.info("serving %s at %s (pid %d)", model_uri, base_url, process.pid)
        yield base_url
    finally:
        _stop(process)
        log_path.unlink(missing_ok=True)


def _wait_until_up(base_url: str, process: subprocess.Popen, *, deadline: float, log_path: Path) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"mlflow models serve exited with {process.returncode}:\n{log_path.read_text()[-3000:]}"
            )
        try:
            if requests.get(f"{base_url}/ping", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    _stop(process)
    raise TimeoutError(f"mlflow models serve did not answer /ping in time:\n{log_path.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    # The server's own process group: the CLI and its uvicorn worker, nothing else.
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)


def invoke(
    base_url: str,
    frame: pd.DataFrame,
    *,
    params: Mapping[str, Any] | None = None,
    session: requests.Session | None = None,
    timeout_s: float = 60.0,
) -> pd.DataFrame:
    """Score ``frame`` on a served model; returns its predictions as a frame (raises on a non-200 answer)."""
    response = (session or requests).post(
        f"{base_url}/invocations", json=request_body(frame, params=params), timeout=timeout_s
    )
    if response.status_code != 200:
        raise RuntimeError(f"{base_url}/invocations answered {response.status_code}: {response.text[:2000]}")
    return pd.DataFrame(response.json()["predictions"])


class FloorModel(mlflow.pyfunc.PythonModel):
    """The router's signature and answer columns with no routing or scoring: what serving itself costs.

    It builds its answer with the router's own ``output_frame``, so router / floor measures the routing,
    feature look-up and scoring, not a different way of making a frame.
    """

    def predict(
        self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        """A constant answer (policy A, score 0.5) for each input row, with the input's ids."""
        from ab_router.model import output_frame
        from ab_router.records import REQUEST_ID
        from ab_router.schema import ITEM_ID, USER_ID

        n_rows = len(model_input)
        return output_frame(
            {
                USER_ID: model_input[USER_ID].to_numpy(dtype=np.int64),
                ITEM_ID: model_input[ITEM_ID].to_numpy(dtype=np.int64),
                "policy": np.full(n_rows, "A", dtype=object),
                "model_name": np.full(n_rows, "floor", dtype=object),
                "model_version": np.full(n_rows, "1", dtype=object),
                "score": np.full(n_rows, 0.5),
                "bucket": np.zeros(n_rows, dtype=np.int64),
                "cold_user": np.zeros(n_rows, dtype=bool),
                "cold_item": np.zeros(n_rows, dtype=bool),
                REQUEST_ID: np.full(n_rows, "", dtype=object),
            }
        )


def save_floor_model(directory: Path, *, split: float) -> Path:
    """Save :class:`FloorModel` with the router's signature (``router_signature(split=split)``) to ``directory``.

    The model refers to this module by name: a server needs the project on its ``PYTHONPATH``.
    """
    from ab_router.model import router_signature

    mlflow.pyfunc.save_model(
        str(directory),
        python_model=FloorModel(),
        signature=router_signature(split=split),
        pip_requirements=["mlflow", "pandas", "numpy"],
    )
    return directory
