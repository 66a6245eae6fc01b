"""The router's decision log: both sinks (fields and types exactly as ab_router.records), request ids, the split in
force, the router's identity, torn tails, and a real `mlflow models serve -w 2` with concurrent clients, then
killed with SIGKILL under load.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
import sqlalchemy as sa
from mlflow.exceptions import MlflowException

import ab_router
from ab_router.assignment import AssignmentConfig, assign_arms
from ab_router.decision_log import ROUTER_NAME_ENV, ROUTER_VERSION_ENV, RouterIdentity, router_identity
from ab_router.model import (
    FEATURE_DEFAULTS_ARTIFACT,
    ITEM_FEATURES_ARTIFACT,
    USER_FEATURES_ARTIFACT,
    ABRouterModel,
    router_config,
    router_signature,
)
from ab_router.records import DECISION_LOG_ENV, DECISIONS, RECORD_TYPES, Kind
from ab_router.sinks import Batch, DirectorySink, read_jsonl_file, read_jsonl_records, sql_table, table_files
from abtest.config import FEATURE_DEFAULTS_FILE, ITEM_FEATURES_FILE, PROJECT_DIR, USER_FEATURES_FILE
from abtest.experiment.router_client import request_body
from benchmarks.served import free_port
from team.postgres import find_postgres_bindir, throwaway_postgres
from tests.fixtures.router import (
    REQUIREMENTS,
    SKOPS_TRUSTED,
    fit_handmade_policies,
    handmade_tables,
    random_pairs,
    write_feature_tables,
)

SALT = "log-salt"
VERSIONS = {"A": ("policies", "3"), "B": ("policies", "4")}
ROUTER_NAME = "log_router"
JSON_TYPES: dict[Kind, type] = {"string": str, "long": int, "double": float, "boolean": bool, "timestamp": str}


@pytest.fixture(scope="module")
def router_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A router pyfunc saved to a directory (hash, split 0.5) from the hand-made policies and feature tables."""
    root = tmp_path_factory.mktemp("decision-log-router")
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
    features = write_feature_tables(tables, root / "features")
    assignment = AssignmentConfig(0.5, SALT, "hash")
    mlflow.pyfunc.save_model(
        str(root / "router"),
        python_model=ABRouterModel(),
        artifacts={
            "policy_a": str(root / "policy_a"),
            "policy_b": str(root / "policy_b"),
            USER_FEATURES_ARTIFACT: str(features / USER_FEATURES_FILE),
            ITEM_FEATURES_ARTIFACT: str(features / ITEM_FEATURES_FILE),
            FEATURE_DEFAULTS_ARTIFACT: str(features / FEATURE_DEFAULTS_FILE),
        },
        model_config=router_config(assignment, versions=VERSIONS, router_name=ROUTER_NAME),
        code_paths=[str(Path(ab_router.__file__).parent)],
        signature=router_signature(split=assignment.split),
        pip_requirements=REQUIREMENTS,
    )
    return root / "router"


def load_router(router_uri: str, monkeypatch: pytest.MonkeyPatch, sink: str) -> mlflow.pyfunc.PyFuncModel:
    """The router loaded with ``ABTEST_DECISION_LOG=sink`` (read once, at load)."""
    monkeypatch.setenv(DECISION_LOG_ENV, sink)
    monkeypatch.delenv(ROUTER_NAME_ENV, raising=False)
    monkeypatch.delenv(ROUTER_VERSION_ENV, raising=False)
    return mlflow.pyfunc.load_model(router_uri)


def directory_records(root: Path) -> list[dict]:
    records = []
    for path in table_files(root, DECISIONS):
        rows, torn = read_jsonl_records(path)
        assert not torn, path
        records += rows
    return records


def sqlite_records(url: str) -> list[dict]:
    table = sql_table(DECISIONS, sa.MetaData())
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(sa.select(table))]
    engine.dispose()
    return rows


def assert_json_types(record: dict) -> None:
    """Every field of DECISIONS, nothing else, each with its kind's JSON type; times UTC with an offset."""
    assert list(record) == list(DECISIONS.columns) or sorted(record) == sorted(DECISIONS.columns)
    for f in DECISIONS.fields:
        value = record[f.name]
        assert type(value) is JSON_TYPES[f.kind], (f.name, value)
        if f.kind == "timestamp":
            assert value.endswith("+00:00") and datetime.fromisoformat(value).utcoffset() == timedelta(0)


def test_directory_sink_records_every_row_with_the_records_types(
    router_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = load_router(str(router_dir), monkeypatch, str(tmp_path / "log"))
    pairs = random_pairs(handmade_tables()[0], 50)
    before = datetime.now(UTC)
    out = router.predict(pairs)
    records = directory_records(tmp_path / "log")
    assert len(records) == 50
    for record in records:
        assert_json_types(record)
    # one generated id for the request, returned with every row and recorded with it
    (request_id,) = set(out["request_id"])
    assert len(request_id) == 32 and int(request_id, 16) >= 0
    frame = pd.DataFrame(records).sort_values("row").reset_index(drop=True)
    assert frame["row"].tolist() == list(range(50))
    assert frame["request_id"].eq(request_id).all()
    assert frame["arm"].tolist() == out["policy"].tolist()
    for column in ("user_id", "item_id", "bucket", "model_name", "model_version", "cold_user", "cold_item"):
        assert frame[column].tolist() == out[column].tolist(), column
    assert frame["score"].tolist() == out["score"].tolist()  # repr round-trips every double exactly
    expected = assign_arms(pairs["user_id"], AssignmentConfig(0.5, SALT, "hash"))
    assert frame["bucket"].tolist() == expected.bucket.tolist()
    assert set(frame["router_name"]) == {ROUTER_NAME} and set(frame["router_version"]) == {""}
    assert set(frame["salt"]) == {SALT} and set(frame["assignment"]) == {"hash"}
    assert set(frame["split"]) == {0.5} and set(frame["forced"]) == {False}
    assert set(frame["writer"]) == {f"{socket.gethostname()}:{os.getpid()}"}
    assert frame["latency_ms"].nunique() == 1 and frame["latency_ms"].iloc[0] > 0
    event_time = datetime.fromisoformat(frame["event_time"].iloc[0])
    assert before <= event_time <= datetime.now(UTC)
    files = table_files(tmp_path / "log", DECISIONS)
    assert len(files) == 1 and files[0].name.startswith(f"{socket.gethostname()}-{os.getpid()}-")


def test_given_request_ids_are_kept_and_missing_ones_get_the_requests_id(
    router_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = load_router(str(router_dir), monkeypatch, str(tmp_path / "log"))
    pairs = random_pairs(handmade_tables()[0], 4).assign(request_id=["page-1", "page-1", None, "page-2"])
    out = router.predict(pairs)
    generated = out["request_id"].iloc[2]
    assert out["request_id"].tolist() == ["page-1", "page-1", generated, "page-2"]
    assert generated not in ("page-1", "page-2") and len(generated) == 32
    again = router.predict(random_pairs(handmade_tables()[0], 3))
    assert again["request_id"].nunique() == 1 and again["request_id"].iloc[0] != generated
    records = sorted(directory_records(tmp_path / "log"), key=lambda r: (r["event_time"], r["row"]))
    assert [(r["request_id"], r["row"]) for r in records] == [
        ("page-1", 0),
        ("page-1", 1),
        (generated, 2),
        ("page-2", 3),
        *((again["request_id"].iloc[0], row) for row in range(3)),
    ]


def test_split_override_and_forcing_are_recorded_per_request(
    router_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = load_router(str(router_dir), monkeypatch, str(tmp_path / "log"))
    pairs = random_pairs(handmade_tables()[0], 30, seed=3)
    low = router.predict(pairs, params={"split": 0.2})
    forced = router.predict(pairs, params={"force_policy": "B"})
    records = pd.DataFrame(directory_records(tmp_path / "log"))
    by_request = records.groupby("request_id")
    low_rows = by_request.get_group(low["request_id"].iloc[0])
    forced_rows = by_request.get_group(forced["request_id"].iloc[0])
    assert set(low_rows["split"]) == {0.2} and set(low_rows["forced"]) == {False}
    expected = assign_arms(pairs["user_id"], AssignmentConfig(0.2, SALT, "hash")).policy
    assert low_rows.sort_values("row")["arm"].tolist() == expected.tolist()
    assert set(forced_rows["split"]) == {0.5} and set(forced_rows["forced"]) == {True}
    assert set(forced_rows["arm"]) == {"B"} and set(forced_rows["model_version"]) == {"4"}


def test_an_empty_request_records_nothing_and_returns_the_request_id_column(
    router_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = load_router(str(router_dir), monkeypatch, str(tmp_path / "log"))
    out = router.predict(pd.DataFrame({"user_id": pd.Series(dtype="int64"), "item_id": pd.Series(dtype="int64")}))
    assert len(out) == 0 and "request_id" in out.columns
    assert directory_records(tmp_path / "log") == []


def test_sqlite_sink_commits_every_row_with_the_records_types(
    router_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'decisions.db'}"
    router = load_router(str(router_dir), monkeypatch, url)
    pairs = random_pairs(handmade_tables()[0], 40, seed=5)
    out = router.predict(pairs.assign(request_id="checkout-7"), params={"split": 0.3})
    engine = sa.create_engine(url)
    columns = {c["name"]: type(c["type"]).__name__ for c in sa.inspect(engine).get_columns("abtest_decisions")}
    engine.dispose()
    assert columns == {
        f.name: {
            "string": "TEXT",
            "long": "BIGINT",
            "double": "DOUBLE",
            "boolean": "BOOLEAN",
            "timestamp": "DATETIME",
        }[f.kind]
        for f in DECISIONS.fields
    }
    rows = pd.DataFrame(sqlite_records(url)).sort_values("row").reset_index(drop=True)
    assert rows["row"].tolist() == list(range(40))
    assert set(rows["request_id"]) == {"checkout-7"} and set(out["request_id"]) == {"checkout-7"}
    assert rows["arm"].tolist() == out["policy"].tolist()
    assert rows["score"].tolist() == out["score"].tolist()
    assert rows["cold_item"].tolist() == out["cold_item"].tolist()
    assert set(rows["split"]) == {0.3} and set(rows["router_name"]) == {ROUTER_NAME}
    first = rows.iloc[0]
    assert type(first["forced"]) in (bool, np.bool_) and type(first["user_id"]) in (int, np.int64)
    # SQLite has no time zone: the stored text is UTC (SQLAlchemy reads it back naive)
    assert abs(first["event_time"].replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(minutes=5)


def require_postgres() -> None:
    """Skip without PostgreSQL locally; fail in CI (ABTEST_REQUIRE_POSTGRES=1), where it must be installed."""
    if find_postgres_bindir() is not None:
        return
    message = "PostgreSQL server binaries not found (apt-get install postgresql)"
    if os.environ.get("ABTEST_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{message}, and ABTEST_REQUIRE_POSTGRES=1 says they must be here")
    pytest.skip(message)


@pytest.mark.postgres
def test_postgres_sink_commits_every_row_with_time_zones(
    router_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_postgres()
    with throwaway_postgres(databases=("abtest_records",)) as cluster:
        url = cluster.uri("abtest_records")
        router = load_router(str(router_dir), monkeypatch, url)
        out = router.predict(random_pairs(handmade_tables()[0], 25, seed=6))
        engine = sa.create_engine(url)
        with engine.connect() as connection:
            rows = [dict(r._mapping) for r in connection.execute(sa.select(sql_table(DECISIONS, sa.MetaData())))]
            kinds = {
                c["name"]: type(c["type"]).__name__ for c in sa.inspect(connection).get_columns("abtest_decisions")
            }
        engine.dispose()
        router.unwrap_python_model().decision_log.sink.close()
    assert kinds["event_time"] == "TIMESTAMP" and kinds["score"] in ("DOUBLE_PRECISION", "DOUBLE")
    rows.sort(key=lambda r: r["row"])
    assert [r["row"] for r in rows] == list(range(25))
    assert [r["score"] for r in rows] == out["score"].tolist()
    assert {r["request_id"] for r in rows} == set(out["request_id"])
    assert rows[0]["event_time"].utcoffset() == timedelta(0) and type(rows[0]["forced"]) is bool


def test_loading_says_where_it_writes_or_that_it_writes_nothing(
    router_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("INFO", logger="ab_router"):
        load_router(str(router_dir), monkeypatch, "")
    assert "ABTEST_DECISION_LOG is unset, this router records no decisions" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO", logger="ab_router"):
        load_router(str(router_dir), monkeypatch, str(tmp_path / "ok"))
    assert f"decision log: every scored row goes to directory {tmp_path / 'ok'}" in caplog.text
    assert f"router '{ROUTER_NAME}' version '' (not registered) (from model config)" in caplog.text


def test_a_sink_that_cannot_be_opened_fails_the_load_naming_it(
    router_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(OSError, match="not-a-dir"):
        load_router(str(router_dir), monkeypatch, str(blocker / "log"))
    with pytest.raises(ValueError, match="unsupported URL scheme"):
        load_router(str(router_dir), monkeypatch, "s3://bucket/log")
    # an unreachable database fails the load: a router must not serve an experiment it cannot record
    with pytest.raises(sa.exc.OperationalError), caplog.at_level("INFO", logger="ab_router"):
        load_router(str(router_dir), monkeypatch, "postgresql://abtest:s3cret@127.0.0.1:1/x?connect_timeout=1")
    assert "s3cret" not in caplog.text


def test_a_failed_write_fails_the_request_with_an_internal_error_naming_the_sink(
    router_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = load_router(str(router_dir), monkeypatch, str(tmp_path / "log"))
    (tmp_path / "log" / "decisions").rmdir()
    (tmp_path / "log" / "decisions").write_text("")  # the table's directory is now a file: the open fails
    failed = r"decision log: could not record the request's 3 rows in directory"
    with pytest.raises(MlflowException, match=failed) as error:
        router.predict(random_pairs(handmade_tables()[0], 3))
    assert error.value.get_http_status_code() == 500  # not the scoring server's generic 400: the request was fine


def test_docs_describe_every_field_of_every_record() -> None:
    text = (PROJECT_DIR / "docs" / "records.md").read_text()
    for record_type in RECORD_TYPES.values():
        for f in record_type.fields:
            assert f"`{f.name}`" in text, (record_type.table, f.name)
        assert f"`{record_type.sql_table}`" in text


def test_a_registered_router_records_its_name_and_version(
    router_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_tracking: str
) -> None:
    # the saved router as a run's artifact, registered: loading models:/<name>/<version> downloads it
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(router_dir), artifact_path="router")
    version = mlflow.register_model(f"runs:/{run.info.run_id}/router", "decision_log_router").version
    router = load_router(f"models:/decision_log_router/{version}", monkeypatch, str(tmp_path / "log"))
    router.predict(random_pairs(handmade_tables()[0], 3))
    records = directory_records(tmp_path / "log")
    assert {(r["router_name"], r["router_version"]) for r in records} == {("decision_log_router", str(version))}


def test_the_environment_names_a_router_served_from_a_copy(tmp_path: Path) -> None:
    (tmp_path / "MLmodel").write_text("")
    env = {ROUTER_NAME_ENV: "movielens_ctr_router", ROUTER_VERSION_ENV: "7"}
    assert router_identity(tmp_path, config_name="cfg", env=env) == RouterIdentity(
        "movielens_ctr_router", "7", "environment"
    )
    assert router_identity(tmp_path, config_name="cfg", env={}) == RouterIdentity("cfg", "", "model config")
    (tmp_path / "registered_model_meta").write_text("model_name: movielens_ctr_router\nmodel_version: '3'\n")
    assert router_identity(tmp_path, config_name="cfg", env={}).version == "3"
    assert router_identity(tmp_path, env={ROUTER_VERSION_ENV: "4"}) == RouterIdentity(
        "movielens_ctr_router", "4", "environment"
    )


# --------------------------------------------------------------------------------------------------- reader
def _batch(n: int, request_id: str) -> Batch:
    now = datetime.now(UTC)
    columns = {"row": list(range(n)), "user_id": list(range(n)), "score": [0.25] * n}
    constants = {
        "event_time": now, "request_id": request_id, "router_name": "r", "router_version": "1", "salt": "s",
        "assignment": "hash", "split": 0.5, "item_id": 9, "arm": "A", "forced": False, "bucket": 3,
        "model_name": "m", "model_version": "1", "cold_user": False, "cold_item": True, "latency_ms": 1.5,
        "writer": "h:1",
    }  # fmt: skip
    return Batch(DECISIONS, n, columns=columns, constants=constants)


def test_reader_reports_and_skips_a_torn_tail_and_refuses_a_bad_middle_line(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path)
    sink.append(_batch(3, "one"))
    sink.append(_batch(2, "two"))
    (path,) = table_files(tmp_path, DECISIONS)
    sink.close()
    complete = path.read_bytes()
    path.write_bytes(complete + b'{"event_time": "2026-12-01T09:4')
    records, torn = read_jsonl_file(path)
    assert [(r["request_id"], r["row"]) for r in records] == [
        ("one", 0),
        ("one", 1),
        ("one", 2),
        ("two", 0),
        ("two", 1),
    ]
    assert torn is not None and torn.line == 6 and torn.size == len(b'{"event_time": "2026-12-01T09:4')
    assert read_jsonl_records(path)[1] is True
    path.write_bytes(complete)
    assert read_jsonl_records(path)[1] is False
    lines = complete.split(b"\n")
    path.write_bytes(b"\n".join([lines[0], lines[1][:20], *lines[2:]]))
    with pytest.raises(ValueError, match=rf"{path.name}:2: not a JSON object"):
        read_jsonl_records(path)


def test_a_failed_write_abandons_the_file_so_a_torn_line_stays_last(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path)
    sink.append(_batch(2, "one"))
    (first,) = table_files(tmp_path, DECISIONS)
    fd = sink._files[DECISIONS.table][1]
    os.close(fd)  # the next write fails (EBADF), as a full disk would
    with pytest.raises(OSError, match=first.name):
        sink.append(_batch(2, "two"))
    time.sleep(0.001)  # a new file name (start time in microseconds)
    sink.append(_batch(1, "three"))
    files = table_files(tmp_path, DECISIONS)
    assert len(files) == 2
    assert [r["request_id"] for r in read_jsonl_records(files[1])[0]] == ["three"]


# --------------------------------------------------------------------------------------------------- serving
def _serve(router_dir: Path, log_dir: Path, port: int, log_path: Path) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", str(router_dir), "-h", "127.0.0.1",
        "-p", str(port), "--env-manager", "local", "-w", "2",
    ]  # fmt: skip
    env = {
        **os.environ,
        DECISION_LOG_ENV: str(log_dir),
        ROUTER_NAME_ENV: "movielens_ctr_router",
        ROUTER_VERSION_ENV: "5",
    }
    with log_path.open("w") as server_log:
        return subprocess.Popen(
            command, env=env, stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait_for_workers(url: str, process: subprocess.Popen, log_path: Path, workers: int) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text()[-3000:]
        # each uvicorn worker loads the router itself and logs its decision-log line when it is ready
        if log_path.read_text().count("decision log: every scored row goes to") >= workers:
            try:
                if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
        time.sleep(0.5)
    raise TimeoutError(log_path.read_text()[-3000:])


def _client(url: str, frames: list[pd.DataFrame], answered: list, stop: threading.Event) -> None:
    """Posts each frame on a new connection (so both workers get traffic); keeps what was answered 200."""
    for frame in frames:
        if stop.is_set():
            return
        try:
            response = requests.post(f"{url}/invocations", json=request_body(frame), timeout=60)
        except requests.RequestException:
            continue
        if response.status_code == 200:
            predictions = response.json()["predictions"]
            answered.extend((p["request_id"], row) for row, p in enumerate(predictions))


@pytest.mark.e2e
def test_served_with_two_workers_every_answered_row_is_logged_once_even_after_sigkill(
    router_dir: Path, tmp_path: Path
) -> None:
    log_dir, log_path, port = tmp_path / "decisions", tmp_path / "server.log", free_port()
    url = f"http://127.0.0.1:{port}"
    process = _serve(router_dir, log_dir, port, log_path)
    try:
        _wait_for_workers(url, process, log_path, workers=2)
        tables = handmade_tables()[0]
        # Phase 1: 8 concurrent clients, small requests; some with the caller's request id.
        answered: list[tuple[str, int]] = []
        stop = threading.Event()
        frames = [
            random_pairs(tables, 1 + i % 7, seed=i).assign(request_id=f"client-{i}")
            if i % 2
            else random_pairs(tables, 1 + i % 7, seed=i)
            for i in range(160)
        ]
        threads = [threading.Thread(target=_client, args=(url, frames[k::8], answered, stop)) for k in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len({key for key, _ in answered}) == 160
        records = directory_records(log_dir)
        logged = [(r["request_id"], r["row"]) for r in records]
        assert sorted(logged) == sorted(answered) and len(set(logged)) == len(logged)
        files = table_files(log_dir, DECISIONS)
        writers = {path: {r["writer"] for r in read_jsonl_records(path)[0]} for path in files}
        # one file per worker process, each written by that process only
        assert len(files) == 2 and all(len(w) == 1 for w in writers.values())
        assert len({next(iter(w)) for w in writers.values()}) == 2
        assert {(r["router_name"], r["router_version"]) for r in records} == {("movielens_ctr_router", "5")}

        # Phase 2: big and small requests from 6 clients, then SIGKILL to the whole server mid-load.
        answered_before_kill: list[tuple[str, int]] = []
        big = [random_pairs(tables, 3000, seed=1000 + i) for i in range(40)]
        threads = [
            threading.Thread(target=_client, args=(url, big[k::6], answered_before_kill, stop)) for k in range(6)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(answered_before_kill) < 3 * 3000 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
    assert answered_before_kill, "no request was answered before the kill"
    logged: list[tuple[str, int]] = []
    for path in table_files(log_dir, DECISIONS):
        records, torn = read_jsonl_file(path)  # at most the last line can be torn; anything else raises
        if torn is not None:
            assert torn.line == len(records) + 1
        logged += [(r["request_id"], r["row"]) for r in records]
    assert len(set(logged)) == len(logged)
    assert sorted((set(answered) | set(answered_before_kill)) - set(logged)) == []
