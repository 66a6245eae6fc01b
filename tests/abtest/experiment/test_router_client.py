"""abtest/experiment/router_client.py's decision recording: the in-process router's own log pointed at the run's
directory for the load only, the ground truth's scorer unrecorded, a served router's answers recorded by
simulate."""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ab_router.assignment import AssignmentConfig
from ab_router.decision_log import DecisionLog, RouterIdentity
from ab_router.records import DECISION_LOG_ENV, DECISIONS
from ab_router.sinks import DirectorySink, read_jsonl_file, table_files
from abtest.experiment.router_client import (
    endpoint_scorer,
    load_router,
    pyfunc_scorer,
    recording_scorer,
    resolve_router,
)
from abtest.tracking.lineage import LineageError
from tests.fixtures.experiment import StandInRouter, item_hash_score
from tests.fixtures.promotion import register_router
from tests.fixtures.router import log_handmade_runs
from tests.fixtures.tracking import point_mlflow_at


def _decisions(directory: Path) -> list[dict]:
    return [row for path in table_files(directory, DECISIONS) for row in read_jsonl_file(path)[0]]


def _pairs(n: int, request_id: str) -> pd.DataFrame:
    return pd.DataFrame({"user_id": np.arange(1, n + 1), "item_id": 1, "request_id": request_id})


@pytest.fixture(scope="module")
def router_uri(tmp_path_factory: pytest.TempPathFactory, session_tracking: str) -> Iterator[str]:
    """A registered router over hand-made policies, in a store of this module."""
    point_mlflow_at(tmp_path_factory.mktemp("router-client-store"), "abtest-router-client")
    registered = register_router(log_handmade_runs(), model="policies", router_model="rc_router", split=0.5)
    yield f"models:/{registered.router_model}/{registered.router_version}"
    point_mlflow_at(Path(session_tracking.removeprefix("sqlite:///")).parent, "abtest-tests")


def test_the_in_process_router_logs_to_the_given_directory_and_the_environment_is_restored(
    router_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DECISION_LOG_ENV, str(tmp_path / "production-log"))
    model, split = load_router(resolve_router(router_uri, router_run=""), decision_log=tmp_path / "run-log")
    assert os.environ[DECISION_LOG_ENV] == str(tmp_path / "production-log") and split == 0.5
    answered = pyfunc_scorer(model)(_pairs(6, "sim-1"), None)
    pyfunc_scorer(model, recorded=False)(_pairs(6, "sim-2"), {"force_policy": "B"})
    decisions = _decisions(tmp_path / "run-log")
    assert [(d["request_id"], d["row"]) for d in decisions] == [("sim-1", row) for row in range(6)]
    assert [d["arm"] for d in decisions] == answered["policy"].tolist()
    assert (decisions[0]["router_name"], decisions[0]["router_version"]) == ("rc_router", "1")
    assert not (tmp_path / "production-log").exists()
    # recording is back on after the unrecorded call
    pyfunc_scorer(model)(_pairs(2, "sim-3"), None)
    assert len(_decisions(tmp_path / "run-log")) == 8


@pytest.fixture
def served_stand_in() -> Iterator[str]:
    """A stand-in of `mlflow models serve` answering /invocations with the request ids it was sent."""
    router = StandInRouter(item_hash_score, item_hash_score, split=0.3)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            split = body["dataframe_split"]
            pairs = pd.DataFrame(split["data"], columns=split["columns"])
            out = router(pairs, body.get("params")).assign(request_id=pairs["request_id"])
            payload = json.dumps({"predictions": out.astype({"model_version": str}).to_dict("records")}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_a_served_routers_answers_are_recorded_with_the_split_in_force(
    served_stand_in: str, tmp_path: Path
) -> None:
    decision_log = DecisionLog(DirectorySink(tmp_path), RouterIdentity("r", "4", "simulate"))
    scorer = recording_scorer(
        endpoint_scorer(served_stand_in, model_uri="models:/r/4"),
        decision_log,
        AssignmentConfig(split=0.3, salt="test", assignment="hash"),
    )
    answered = scorer(_pairs(5, "sim-0"), None)
    scorer(_pairs(3, "sim-1"), {"split": 0.6})
    decisions = _decisions(tmp_path)
    assert [d["request_id"] for d in decisions] == ["sim-0"] * 5 + ["sim-1"] * 3
    assert [d["split"] for d in decisions] == [0.3] * 5 + [0.6] * 3
    assert [d["arm"] for d in decisions[:5]] == answered["policy"].tolist()
    assert {(d["router_name"], d["router_version"], d["salt"]) for d in decisions} == {("r", "4", "test")}
    assert all(d["latency_ms"] > 0 and not d["forced"] for d in decisions)


def test_a_served_router_that_returns_no_request_id_is_refused_naming_the_fix(tmp_path: Path) -> None:
    router = StandInRouter(item_hash_score, item_hash_score)
    scorer = recording_scorer(
        router,
        DecisionLog(DirectorySink(tmp_path), RouterIdentity("r", "1", "simulate")),
        AssignmentConfig(split=0.5, salt="test", assignment="hash"),
    )
    with pytest.raises(LineageError, match=r"predates the decision log; run `mlflow run \. -e router`"):
        scorer(_pairs(2, "sim-0"), None)
    assert _decisions(tmp_path) == []
