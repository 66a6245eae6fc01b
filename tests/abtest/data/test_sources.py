"""Acquisition: local files, GroupLens download (against local servers only), recbole's wheel, the auto chain."""

from __future__ import annotations

import functools
import hashlib
import http.server
import logging
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from abtest.data import sources
from abtest.data.movielens import DataValidationError, read_movielens
from abtest.data.sources import (
    RECBOLE_WHEEL,
    SourceError,
    SourceUnavailableError,
    acquire,
    download,
    fetch_recbole_wheel,
    file_digest,
    from_grouplens,
    from_local,
    read_recbole_wheel,
)
from abtest.data.synthetic import write_recbole_wheel


def closed_port_url() -> str:
    """An http URL on localhost where nothing listens (connection refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server over a temp folder: (base URL, folder)."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # keep the test output quiet
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


@pytest.fixture
def fake_wheel_cache(tmp_path: Path, synthetic_ml100k_zip: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache dir holding a recbole-shaped wheel of the synthetic data, accepted as the published one."""
    cache = tmp_path / "cache"
    wheel = write_recbole_wheel(
        cache / "pypi" / RECBOLE_WHEEL, read_movielens(synthetic_ml100k_zip, dataset="ml-100k")
    )
    monkeypatch.setattr(sources, "RECBOLE_WHEEL_SHA256", file_digest(wheel))
    return cache


def no_pip(monkeypatch: pytest.MonkeyPatch, *, returncode: int = 1, stderr: str = "ERROR: no index") -> list:
    """Replace the pip subprocess by a failing stub; returns the list of commands it was called with."""
    calls: list = []

    def run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, returncode, stdout="", stderr=stderr)

    monkeypatch.setattr(sources.subprocess, "run", run)
    return calls


# --------------------------------------------------------------------------------------------------- local
def test_local_reads_data_dir_zip_and_warns_on_checksum(
    synthetic_ml100k_zip: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copy(synthetic_ml100k_zip, data_dir / "ml-100k.zip")
    with caplog.at_level(logging.WARNING, logger="abtest.data.sources"):
        acquired = from_local("ml-100k", data_dir=data_dir, data_path="")
    assert acquired.source == "local"
    assert acquired.sha256 == hashlib.sha256(synthetic_ml100k_zip.read_bytes()).hexdigest()
    assert len(acquired.tables.interactions) == 20_000
    assert "differs from GroupLens' published 0e33842e24a9c977be4e0107933c0723" in caplog.text


def test_local_missing_is_unavailable_and_explicit_local_says_how_to_supply(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailableError, match="does not exist"):
        from_local("ml-100k", data_dir=tmp_path, data_path="")
    with pytest.raises(SourceError) as caught:
        acquire("ml-100k", source="local", data_dir=tmp_path, data_path="")
    message = str(caught.value)
    assert "tried:\n  - local" in message
    assert f"put it at {tmp_path / 'ml-100k.zip'}" in message and "-P source=local" in message


def test_local_folder_digest_is_stable(synthetic_ml100k_zip: Path, tmp_path: Path) -> None:
    shutil.unpack_archive(synthetic_ml100k_zip, tmp_path)
    first = from_local("ml-100k", data_path=tmp_path / "ml-100k")
    second = from_local("ml-100k", data_path=str(tmp_path))
    assert first.sha256 == second.sha256 and len(first.sha256) == 64


# --------------------------------------------------------------------------------------------------- grouplens
def test_download_fails_fast_on_unreachable_host(tmp_path: Path) -> None:
    url = f"{closed_port_url()}/ml-100k.zip"
    started = time.monotonic()
    with pytest.raises(SourceUnavailableError, match=f"could not download {url}: ConnectionError"):
        download(url, tmp_path / "ml-100k.zip", expected_md5="0" * 32, connect_timeout=2)
    assert time.monotonic() - started < 10
    assert list(tmp_path.iterdir()) == []  # no partial file left


def test_grouplens_downloads_verifies_and_caches(
    file_server: tuple[str, Path], synthetic_ml100k_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url, served = file_server
    shutil.copy(synthetic_ml100k_zip, served / "ml-100k.zip")
    md5 = file_digest(synthetic_ml100k_zip, "md5")
    monkeypatch.setitem(sources.GROUPLENS_MD5, "ml-100k", md5)
    cache = tmp_path / "cache"
    acquired = from_grouplens("ml-100k", cache_dir=cache, base_url=base_url)
    assert acquired.source == "grouplens" and acquired.location == f"{base_url}/ml-100k.zip"
    assert file_digest(cache / "grouplens" / "ml-100k.zip", "md5") == md5
    assert [p.name for p in (cache / "grouplens").iterdir()] == ["ml-100k.zip"]
    (served / "ml-100k.zip").unlink()  # the second call must not need the server
    again = from_grouplens("ml-100k", cache_dir=cache, base_url=base_url)
    pd.testing.assert_frame_equal(again.tables.interactions, acquired.tables.interactions)


def test_grouplens_rejects_a_checksum_mismatch_and_keeps_nothing(
    file_server: tuple[str, Path], synthetic_ml100k_zip: Path, tmp_path: Path
) -> None:
    base_url, served = file_server
    shutil.copy(synthetic_ml100k_zip, served / "ml-100k.zip")
    with pytest.raises(SourceUnavailableError, match="the published checksum is 0e33842e24a9c977be4e0107933c0723"):
        from_grouplens("ml-100k", cache_dir=tmp_path / "cache", base_url=base_url)
    assert list((tmp_path / "cache" / "grouplens").iterdir()) == []


def test_grouplens_http_error_is_unavailable(file_server: tuple[str, Path], tmp_path: Path) -> None:
    base_url, _ = file_server
    with pytest.raises(SourceUnavailableError, match="404"):
        from_grouplens("ml-1m", cache_dir=tmp_path, base_url=base_url)


# --------------------------------------------------------------------------------------------------- pypi
def test_recbole_conversion_equals_the_original_layout(synthetic_ml100k_zip: Path, tmp_path: Path) -> None:
    original = read_movielens(synthetic_ml100k_zip, dataset="ml-100k")
    converted = read_recbole_wheel(write_recbole_wheel(tmp_path / RECBOLE_WHEEL, original))
    pd.testing.assert_frame_equal(converted.interactions, original.interactions)
    pd.testing.assert_frame_equal(converted.users, original.users)
    pd.testing.assert_frame_equal(converted.items, original.items)


def test_recbole_wheel_without_the_dataset_is_rejected(tmp_path: Path) -> None:
    import zipfile

    wheel = tmp_path / RECBOLE_WHEEL
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("recbole/__init__.py", "")
    with pytest.raises(DataValidationError, match=r"missing member\(s\) \['ml-100k.inter'"):
        read_recbole_wheel(wheel)


def test_cached_wheel_is_used_without_pip(fake_wheel_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = no_pip(monkeypatch)
    acquired = acquire("ml-100k", source="pypi", cache_dir=fake_wheel_cache, data_path="")
    assert acquired.source == "pypi" and calls == []
    assert acquired.location == str(fake_wheel_cache / "pypi" / RECBOLE_WHEEL)


def test_pip_failure_is_reported_with_its_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = no_pip(monkeypatch, returncode=1, stderr="line\nERROR: No matching distribution found for recbole")
    with pytest.raises(SourceUnavailableError, match=r"failed \(exit 1\): .*No matching distribution"):
        fetch_recbole_wheel(tmp_path)
    command = calls[0]
    assert command[1:4] == ["-m", "pip", "download"] and "recbole==1.2.1" in command and "--no-deps" in command


def test_pip_timeout_and_wrong_wheel_are_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def timeout(command, **kwargs):
        raise subprocess.TimeoutExpired(command, kwargs["timeout"])

    monkeypatch.setattr(sources.subprocess, "run", timeout)
    with pytest.raises(SourceUnavailableError, match="timed out after 7 s"):
        fetch_recbole_wheel(tmp_path, timeout=7)

    def wrong_wheel(command, **kwargs):
        dest = Path(command[command.index("--dest") + 1])
        (dest / RECBOLE_WHEEL).write_bytes(b"not the published wheel")
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(sources.subprocess, "run", wrong_wheel)
    with pytest.raises(SourceUnavailableError, match="is not the expected 9c9948202011"):
        fetch_recbole_wheel(tmp_path)
    assert not (tmp_path / "pypi" / RECBOLE_WHEEL).exists()


def test_pypi_has_only_ml100k(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"carries only \['ml-100k'\], not ml-1m"):
        acquire("ml-1m", source="pypi", cache_dir=tmp_path, data_path="")


# --------------------------------------------------------------------------------------------------- auto
def test_auto_falls_through_to_pypi_and_records_attempts(
    fake_wheel_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_pip(monkeypatch)
    acquired = acquire(
        "ml-100k",
        data_dir=tmp_path / "data",
        cache_dir=fake_wheel_cache,
        grouplens_base_url=closed_port_url(),
        source="auto",
        data_path="",
    )
    assert acquired.source == "pypi"
    assert [a.source for a in acquired.attempts] == ["local", "grouplens"]
    assert "does not exist" in acquired.attempts[0].outcome
    assert "ConnectionError" in acquired.attempts[1].outcome


def test_auto_prefers_a_local_zip(
    synthetic_ml1m_zip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(sources.GROUPLENS_URL_ENV, closed_port_url())
    acquired = acquire("ml-1m", data_path=synthetic_ml1m_zip, cache_dir=tmp_path, source="auto")
    assert acquired.source == "local" and acquired.attempts == ()


def test_auto_failing_everywhere_gives_one_error_listing_each_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_pip(monkeypatch, stderr="ERROR: Could not find a version that satisfies the requirement recbole==1.2.1")
    url = closed_port_url()
    with pytest.raises(SourceError) as caught:
        acquire(
            "ml-100k",
            data_dir=tmp_path / "data",
            cache_dir=tmp_path / "cache",
            grouplens_base_url=url,
            source="auto",
            data_path="",
        )
    message = str(caught.value)
    assert message.startswith("could not get ml-100k with source=auto; tried:")
    assert f"  - local ({tmp_path / 'data' / 'ml-100k.zip'}): " in message
    assert f"  - grouplens ({url}/ml-100k.zip): could not download" in message
    assert "  - pypi (pip download recbole==1.2.1): pip download recbole==1.2.1 failed (exit 1)" in message
    assert (
        "To supply the data yourself: download ml-100k.zip from https://grouplens.org/datasets/movielens/"
        in message
    )


def test_auto_does_not_hide_a_broken_local_zip(tmp_path: Path) -> None:
    broken = tmp_path / "ml-100k.zip"
    broken.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataValidationError, match="not a readable zip"):
        acquire("ml-100k", data_path=broken, cache_dir=tmp_path, source="auto")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset": "ml-10m"}, "dataset must be one of"),
        ({"source": "ftp"}, "source must be one of"),
        ({"source": "pypi", "data_path": "x.zip"}, "data_path is read by source=local"),
    ],
)
def test_acquire_validates_its_arguments(kwargs: dict, message: str) -> None:
    arguments = {"dataset": "ml-100k", "source": "auto", "data_path": "", **kwargs}
    with pytest.raises(ValueError, match=message):
        acquire(arguments.pop("dataset"), **arguments)
