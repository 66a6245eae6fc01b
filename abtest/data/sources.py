"""Where the raw MovieLens data comes from: ``source`` = auto | local | grouplens | pypi.

Inputs: the dataset name ("ml-100k" | "ml-1m"), the source and an optional ``data_path``. Output:
:class:`AcquiredData` - the validated tables (see abtest.data.movielens) plus provenance: the source actually used,
where the raw file is, its sha256 and every source tried on the way.

- ``local``: ``data_path`` (a zip or its extracted folder), else ``data/<dataset>.zip``. A zip whose checksum
  differs from GroupLens' published one is used with a warning once its content validates (re-packed copies
  are common).
- ``grouplens``: the official zip, downloaded once with a short connect timeout and a progress bar, checked
  against the published md5, written atomically into the cache (abtest.config.CACHE_DIR).
- ``pypi`` (ML-100K only): recbole 1.2.1's wheel carries the full ML-100K as atomic files. ``pip download``
  fetches it into the cache (no install, no torch), its sha256 is checked and the members are read straight from
  the wheel, which is a zip.
- ``auto``: local, then grouplens, then pypi. When none works, one error lists each attempt with its reason and
  how to supply the zip. A local file that exists but is broken is an error, not a reason to fall through: the
  user put it there.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import requests
from tqdm.auto import tqdm

from abtest.config import CACHE_DIR, DATA_DIR, DATASETS
from abtest.data.movielens import (
    LAYOUT_MEMBERS,
    RECBOLE_MEMBERS,
    RECBOLE_ML100K_DIR,
    DataValidationError,
    MovieLensTables,
    parse_recbole_ml100k,
    read_members,
    read_movielens,
)

log = logging.getLogger(__name__)

SOURCES: tuple[str, ...] = ("auto", "local", "grouplens", "pypi")
AUTO_ORDER: tuple[str, ...] = ("local", "grouplens", "pypi")

GROUPLENS_BASE_URL = "https://files.grouplens.org/datasets/movielens"
# Published next to each zip as <url>.md5.
GROUPLENS_MD5: dict[str, str] = {
    "ml-100k": "0e33842e24a9c977be4e0107933c0723",
    "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
}
# A mirror of GroupLens (same file names) can be given here.
GROUPLENS_URL_ENV = "ABTEST_GROUPLENS_URL"

RECBOLE_REQUIREMENT = "recbole==1.2.1"
RECBOLE_WHEEL = "recbole-1.2.1-py3-none-any.whl"
RECBOLE_WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
PYPI_DATASETS: tuple[str, ...] = ("ml-100k",)

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 60.0
PIP_TIMEOUT_S = 300.0


class SourceError(RuntimeError):
    """No source could provide the dataset; the message lists what was tried and how to supply it."""


class SourceUnavailableError(RuntimeError):
    """One source cannot provide the dataset here (missing file, no network, pip failed): try the next one."""


@dataclass(frozen=True)
class Attempt:
    """One source tried: where it looked and what happened."""

    source: str
    location: str
    outcome: str


@dataclass(frozen=True)
class AcquiredData:
    """Validated tables plus where they came from."""

    tables: MovieLensTables
    source: str
    location: str
    sha256: str
    attempts: tuple[Attempt, ...] = ()


# --------------------------------------------------------------------------------------------------- helpers
def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


def _folder_digest(path: Path, dataset: str) -> str:
    """sha256 over the member files of an extracted dataset folder (name and bytes, in layout order)."""
    digest = hashlib.sha256()
    for name, data in read_members(path, folder=dataset, members=LAYOUT_MEMBERS[dataset]).items():
        digest.update(name.encode())
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()


def _check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {list(DATASETS)}, got {dataset!r}")


def _how_to_supply(dataset: str, data_dir: Path) -> str:
    return (
        f"To supply the data yourself: download {dataset}.zip from https://grouplens.org/datasets/movielens/ on a "
        f"machine with internet, put it at {data_dir / f'{dataset}.zip'} (or pass -P data_path=<zip or extracted "
        "folder>) and run with -P source=local."
    )


# --------------------------------------------------------------------------------------------------- local
def local_path(dataset: str, *, data_path: str | Path, data_dir: Path = DATA_DIR) -> Path:
    """The file ``local`` reads: ``data_path`` when given, else ``<data_dir>/<dataset>.zip``."""
    return Path(data_path).expanduser() if str(data_path) else data_dir / f"{dataset}.zip"


def from_local(dataset: str, *, data_path: str | Path, data_dir: Path = DATA_DIR) -> AcquiredData:
    """Read a local zip or extracted folder; raises SourceUnavailableError when there is none."""
    _check_dataset(dataset)
    path = local_path(dataset, data_path=data_path, data_dir=data_dir)
    if not path.exists():
        raise SourceUnavailableError(f"{path} does not exist")
    tables = read_movielens(path, dataset=dataset)
    if path.is_dir():
        return AcquiredData(tables, "local", str(path), _folder_digest(path, dataset))
    md5 = file_digest(path, "md5")
    if md5 != GROUPLENS_MD5[dataset]:
        log.warning(
            "%s: md5 %s differs from GroupLens' published %s (a re-packed copy?); its content validated, using it",
            path,
            md5,
            GROUPLENS_MD5[dataset],
        )
    return AcquiredData(tables, "local", str(path), file_digest(path))


# --------------------------------------------------------------------------------------------------- grouplens
def grouplens_url(dataset: str, *, base_url: str | None = None) -> str:
    """URL of the official zip (or of a mirror given by ``base_url`` / $ABTEST_GROUPLENS_URL)."""
    base = base_url or os.environ.get(GROUPLENS_URL_ENV) or GROUPLENS_BASE_URL
    return f"{base.rstrip('/')}/{dataset}.zip"


def download(
    url: str,
    destination: Path,
    *,
    expected_md5: str,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    read_timeout: float = READ_TIMEOUT_S,
) -> Path:
    """Download ``url`` to ``destination`` atomically, checking its md5; raises SourceUnavailableError on failure.

    The bytes go to a temp file beside the destination and are renamed into place only after the checksum
    matched, so an interrupted or corrupted download never looks like a valid cached file.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    tmp = Path(tmp_name)
    md5 = hashlib.md5()
    try:
        with (
            os.fdopen(handle, "wb") as out,
            requests.get(url, stream=True, timeout=(connect_timeout, read_timeout)) as response,
        ):
            response.raise_for_status()
            total = int(response.headers.get("content-length", 0)) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name, leave=False) as bar:
                for chunk in response.iter_content(chunk_size=1 << 16):
                    out.write(chunk)
                    md5.update(chunk)
                    bar.update(len(chunk))
        if md5.hexdigest() != expected_md5:
            raise SourceUnavailableError(
                f"{url}: downloaded file has md5 {md5.hexdigest()}, the published checksum is {expected_md5}"
            )
        os.replace(tmp, destination)
    except requests.RequestException as exc:
        raise SourceUnavailableError(f"could not download {url}: {exc.__class__.__name__}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return destination


def from_grouplens(
    dataset: str,
    *,
    cache_dir: Path = CACHE_DIR,
    base_url: str | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> AcquiredData:
    """The official zip, from the cache when an earlier download verified, else downloaded now."""
    _check_dataset(dataset)
    url = grouplens_url(dataset, base_url=base_url)
    cached = cache_dir / "grouplens" / f"{dataset}.zip"
    if cached.exists() and file_digest(cached, "md5") == GROUPLENS_MD5[dataset]:
        log.info("using cached %s (md5 verified)", cached)
    else:
        log.info("downloading %s (connect timeout %.0f s)", url, connect_timeout)
        download(url, cached, expected_md5=GROUPLENS_MD5[dataset], connect_timeout=connect_timeout)
    return AcquiredData(read_movielens(cached, dataset=dataset), "grouplens", url, file_digest(cached))


# --------------------------------------------------------------------------------------------------- pypi
def fetch_recbole_wheel(
    cache_dir: Path = CACHE_DIR,
    *,
    expected_sha256: str | None = None,
    timeout: float = PIP_TIMEOUT_S,
    wheel_name: str = RECBOLE_WHEEL,
) -> Path:
    """recbole's wheel in ``<cache_dir>/pypi``, fetched with ``pip download --no-deps`` unless already cached.

    ``expected_sha256`` None = the published wheel's (RECBOLE_WHEEL_SHA256).
    """
    expected_sha256 = expected_sha256 or RECBOLE_WHEEL_SHA256
    wheel = cache_dir / "pypi" / wheel_name
    if wheel.exists() and file_digest(wheel) == expected_sha256:
        log.info("using cached %s (sha256 verified)", wheel)
        return wheel
    wheel.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=wheel.parent, prefix=".pip-download-") as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            RECBOLE_REQUIREMENT,
            "--no-deps",
            "--only-binary=:all:",
            "--dest",
            tmp,
            "--quiet",
            "--disable-pip-version-check",
        ]
        log.info("fetching %s's wheel (data only, no install): %s", RECBOLE_REQUIREMENT, " ".join(command[1:]))
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise SourceUnavailableError(
                f"pip download {RECBOLE_REQUIREMENT} timed out after {timeout:.0f} s"
            ) from exc
        if done.returncode != 0:
            tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise SourceUnavailableError(
                f"pip download {RECBOLE_REQUIREMENT} failed (exit {done.returncode}): {tail}"
            )
        fetched = Path(tmp) / wheel_name
        if not fetched.exists():
            raise SourceUnavailableError(f"pip download {RECBOLE_REQUIREMENT} did not produce {wheel_name}")
        digest = file_digest(fetched)
        if digest != expected_sha256:
            raise SourceUnavailableError(f"{wheel_name}: sha256 {digest} is not the expected {expected_sha256}")
        os.replace(fetched, wheel)
    return wheel


def read_recbole_wheel(wheel: Path) -> MovieLensTables:
    """ML-100K from the atomic files inside recbole's wheel (read from the zip, nothing extracted)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = set(archive.namelist())
            missing = [m for m in RECBOLE_MEMBERS if f"{RECBOLE_ML100K_DIR}/{m}" not in names]
            if missing:
                raise DataValidationError(f"{wheel}: missing member(s) {missing} under {RECBOLE_ML100K_DIR}/")
            files = {m: archive.read(f"{RECBOLE_ML100K_DIR}/{m}") for m in RECBOLE_MEMBERS}
    except zipfile.BadZipFile as exc:
        raise DataValidationError(f"{wheel}: not a readable zip/wheel ({exc})") from exc
    return parse_recbole_ml100k(files, origin=f"{wheel.name}:{RECBOLE_ML100K_DIR}")


def from_pypi(dataset: str, *, cache_dir: Path = CACHE_DIR, timeout: float = PIP_TIMEOUT_S) -> AcquiredData:
    """ML-100K converted from recbole's wheel."""
    _check_dataset(dataset)
    if dataset not in PYPI_DATASETS:
        raise SourceUnavailableError(f"the pypi source carries only {list(PYPI_DATASETS)}, not {dataset}")
    wheel = fetch_recbole_wheel(cache_dir, timeout=timeout)
    return AcquiredData(read_recbole_wheel(wheel), "pypi", str(wheel), file_digest(wheel))


# --------------------------------------------------------------------------------------------------- acquire
def acquire(
    dataset: str,
    *,
    source: str,
    data_path: str | Path,
    data_dir: Path = DATA_DIR,
    cache_dir: Path = CACHE_DIR,
    grouplens_base_url: str | None = None,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    pip_timeout: float = PIP_TIMEOUT_S,
) -> AcquiredData:
    """Get ``dataset`` from ``source`` (auto: local, then grouplens, then pypi) as validated tables."""
    _check_dataset(dataset)
    if source not in SOURCES:
        raise ValueError(f"source must be one of {list(SOURCES)}, got {source!r}")
    if data_path and source not in ("auto", "local"):
        raise ValueError(
            f"data_path is read by source=local (or auto), not by source={source!r}; got {data_path!r}"
        )
    fetchers = {
        "local": lambda: from_local(dataset, data_path=data_path, data_dir=data_dir),
        "grouplens": lambda: from_grouplens(
            dataset, cache_dir=cache_dir, base_url=grouplens_base_url, connect_timeout=connect_timeout
        ),
        "pypi": lambda: from_pypi(dataset, cache_dir=cache_dir, timeout=pip_timeout),
    }
    locations = {
        "local": str(local_path(dataset, data_path=data_path, data_dir=data_dir)),
        "grouplens": grouplens_url(dataset, base_url=grouplens_base_url),
        "pypi": f"pip download {RECBOLE_REQUIREMENT}",
    }
    order: Iterable[str] = AUTO_ORDER if source == "auto" else (source,)
    attempts: list[Attempt] = []
    for name in order:
        try:
            acquired = fetchers[name]()
        except SourceUnavailableError as exc:
            attempts.append(Attempt(name, locations[name], str(exc)))
            log.info("source %s unavailable: %s", name, exc)
            continue
        except DataValidationError as exc:
            if name == "local" or source != "auto":
                raise
            attempts.append(Attempt(name, locations[name], f"invalid data: {exc}"))
            continue
        log.info("%s: %s from %s (sha256 %s)", dataset, acquired.source, acquired.location, acquired.sha256[:12])
        return AcquiredData(acquired.tables, acquired.source, acquired.location, acquired.sha256, tuple(attempts))
    tried = "\n".join(f"  - {a.source} ({a.location}): {a.outcome}" for a in attempts)
    raise SourceError(
        f"could not get {dataset} with source={source}; tried:\n{tried}\n{_how_to_supply(dataset, data_dir)}"
    )
