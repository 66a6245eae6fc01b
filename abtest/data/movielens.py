"""Parse and validate MovieLens in its original GroupLens layouts (ML-100K, ML-1M) into one normalised schema.

Inputs: a zip as GroupLens publishes it (``ml-100k.zip`` with folder ``ml-100k/``; ``ml-1m.zip`` with ``ml-1m/``)
or its extracted folder. Outputs: :class:`MovieLensTables`, the same three tables whichever dataset was read:

- interactions: user_id, item_id, rating (1..5), timestamp (unix s), all int64, in file order;
- users: user_id int64, age int64, gender str (M/F), occupation str (a name), zip_code str;
- items: item_id int64, title str, release_year float64 (NaN if unknown), then GENRE_COLUMNS int64 (0/1).

``release_year`` is the year in the title's ``(YYYY)``, which both layouts carry (ML-100K's release-date column
is a later video/theatrical date for 191 of its movies); only a title without a year falls back to ML-100K's
release date. Every problem in the files raises :class:`DataValidationError` naming the file, the line or count
and the rule that was broken, so a bad download never surfaces later as a puzzling model.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ab_router.schema import GENRE_COLUMNS, GENRES, ITEM_ID, RATING, TIMESTAMP, USER_ID, genre_column

INTERACTION_COLUMNS: tuple[str, ...] = (USER_ID, ITEM_ID, RATING, TIMESTAMP)
USER_COLUMNS: tuple[str, ...] = (USER_ID, "age", "gender", "occupation", "zip_code")
ITEM_COLUMNS: tuple[str, ...] = (ITEM_ID, "title", "release_year", *GENRE_COLUMNS)
RATING_RANGE = (1, 5)
GENDERS = ("M", "F")

# Member files of each original layout, relative to the zip's top folder.
ML100K_MEMBERS: tuple[str, ...] = ("u.data", "u.user", "u.item", "u.genre", "u.occupation")
ML1M_MEMBERS: tuple[str, ...] = ("ratings.dat", "users.dat", "movies.dat")
LAYOUT_MEMBERS: dict[str, tuple[str, ...]] = {"ml-100k": ML100K_MEMBERS, "ml-1m": ML1M_MEMBERS}

# ML-1M README: "Age is chosen from the following ranges" (the code is the range's lower bound) and occupations.
ML1M_AGE_CODES: tuple[int, ...] = (1, 18, 25, 35, 45, 50, 56)
ML1M_OCCUPATIONS: tuple[str, ...] = (
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)

_TITLE_YEAR = re.compile(r"\((\d{4})\)")
# "::" is ML-1M's two-character separator; pandas' fast parser needs one character, and this one never occurs
# in text.
_UNIT_SEPARATOR = "\x1f"


class DataValidationError(ValueError):
    """The raw data breaks a rule of its layout; the message names the file, the line or count and the rule."""


@dataclass(frozen=True)
class MovieLensTables:
    """One dataset in the normalised schema (see the module docstring)."""

    dataset: str
    interactions: pd.DataFrame
    users: pd.DataFrame
    items: pd.DataFrame


# --------------------------------------------------------------------------------------------------- reading files
def read_members(path: str | Path, *, folder: str, members: Sequence[str]) -> dict[str, bytes]:
    """Bytes of ``members`` from a GroupLens zip (``<folder>/<member>``) or an extracted folder.

    A folder may be the dataset folder itself or its parent. Corrupt or truncated zips and missing members raise
    DataValidationError.
    """
    path = Path(path)
    if path.is_dir():
        base = path / folder if (path / folder).is_dir() else path
        missing = [m for m in members if not (base / m).is_file()]
        if missing:
            present = sorted(p.name for p in base.iterdir())
            raise DataValidationError(
                f"{base}: missing member file(s) {missing}; the {folder} layout needs {list(members)}, "
                f"found {present}"
            )
        return {m: (base / m).read_bytes() for m in members}
    if not path.is_file():
        raise FileNotFoundError(f"no zip or folder at {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = [m for m in members if f"{folder}/{m}" not in names]
            if missing:
                raise DataValidationError(
                    f"{path}: missing member(s) {[f'{folder}/{m}' for m in missing]}; the {folder} layout needs "
                    f"{[f'{folder}/{m}' for m in members]}, the zip has {sorted(names)[:20]}"
                )
            return {m: archive.read(f"{folder}/{m}") for m in members}
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DataValidationError(
            f"{path}: not a readable zip ({exc}); the file is corrupt or truncated - delete it and fetch it again"
        ) from exc


def _decode(data: bytes, *, file: str, encoding: str) -> str:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataValidationError(f"{file} line {line}: not valid {encoding} text ({exc.reason})") from exc
    if not text.strip():
        raise DataValidationError(f"{file}: file is empty; expected at least one record")
    return text


def _data_lines(text: str, *, skip_header: bool) -> list[tuple[int, str]]:
    """(1-based line number, line) of every non-blank record line."""
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    return lines[1:] if skip_header else lines


def _locate_bad_line(
    text: str,
    *,
    file: str,
    sep: str,
    shown_sep: str,
    columns: Sequence[str],
    ints: Sequence[str],
    skip_header: bool,
) -> None:
    """Raise for the first line with the wrong field count or a non-integer where an integer belongs."""
    int_positions = [columns.index(c) for c in ints]
    for number, line in _data_lines(text, skip_header=skip_header):
        fields = line.split(sep)
        if len(fields) != len(columns):
            raise DataValidationError(
                f"{file} line {number}: malformed line, expected {len(columns)} fields separated by "
                f"{shown_sep!r} ({', '.join(columns)}), found {len(fields)}: {line[:120]!r}"
            )
        for position in int_positions:
            try:
                int(fields[position])
            except ValueError:
                raise DataValidationError(
                    f"{file} line {number}: malformed line, field {columns[position]!r} must be an integer, "
                    f"got {fields[position]!r}"
                ) from None


def read_delimited(
    data: bytes,
    *,
    file: str,
    sep: str,
    columns: Sequence[str],
    ints: Sequence[str] = (),
    encoding: str = "latin-1",
    skip_header: bool = False,
) -> pd.DataFrame:
    """Parse a headerless delimited file into str columns and int64 ``ints``, reporting the first bad line.

    The C parser does the work (1M ratings in well under a second); only when it fails is the text scanned line
    by line to say where and why.
    """
    text = _decode(data, file=file, encoding=encoding)
    shown_sep = sep
    if len(sep) > 1:
        text = text.replace(sep, _UNIT_SEPARATOR)
        sep = _UNIT_SEPARATOR
    columns = list(columns)
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=sep,
            header=None,
            names=columns,
            skiprows=1 if skip_header else 0,
            dtype={c: (np.int64 if c in ints else str) for c in columns},
            keep_default_na=False,
            quoting=csv.QUOTE_NONE,
            engine="c",
        )
        failed = frame.isna().any().any()  # a short line leaves its last fields missing
    except (ValueError, pd.errors.ParserError):
        failed = True
    if failed:
        _locate_bad_line(
            text, file=file, sep=sep, shown_sep=shown_sep, columns=columns, ints=ints, skip_header=skip_header
        )
        raise DataValidationError(f"{file}: could not be parsed as {len(columns)} {shown_sep!r}-separated fields")
    if frame.empty:
        raise DataValidationError(f"{file}: file has no records")
    return frame


def _line_of_row(data: bytes, row: int, *, skip_header: bool = False) -> int:
    """1-based line number of the ``row``-th record (blank lines are not records)."""
    lines = _data_lines(data.decode("latin-1"), skip_header=skip_header)
    return lines[row][0]


def _check_values(
    frame: pd.DataFrame,
    column: str,
    allowed: Callable[[pd.Series], pd.Series],
    *,
    file: str,
    data: bytes,
    rule: str,
    skip_header: bool = False,
) -> None:
    ok = allowed(frame[column]).to_numpy(dtype=bool)
    if not ok.all():
        bad = np.flatnonzero(~ok)
        line = _line_of_row(data, int(bad[0]), skip_header=skip_header)
        raise DataValidationError(
            f"{file}: {bad.size} line(s) break the rule {column} {rule}; first at line {line}: "
            f"{column}={frame[column].iloc[bad[0]]!r}"
        )


# --------------------------------------------------------------------------------------------------- normalising
def release_year_from_title(titles: pd.Series) -> pd.Series:
    """Year of the last ``(YYYY)`` in each title as float64, NaN where a title has none."""
    years = titles.str.findall(_TITLE_YEAR).str[-1]
    return pd.to_numeric(years, errors="coerce").astype(np.float64)


def genre_flags(genre_lists: Sequence[Sequence[str]], *, file: str) -> pd.DataFrame:
    """Multi-hot GENRE_COLUMNS (int64) from lists of genre names; an unknown name is a validation error."""
    index = {g: k for k, g in enumerate(GENRES)}
    flags = np.zeros((len(genre_lists), len(GENRES)), dtype=np.int64)
    for row, names in enumerate(genre_lists):
        for name in names:
            if name not in index:
                raise DataValidationError(
                    f"{file}: record {row + 1} has unknown genre {name!r}; allowed genres are {list(GENRES)}"
                )
            flags[row, index[name]] = 1
    return pd.DataFrame(flags, columns=list(GENRE_COLUMNS))


def _items_frame(item_ids: pd.Series, titles: pd.Series, years: pd.Series, genres: pd.DataFrame) -> pd.DataFrame:
    items = pd.DataFrame(
        {
            ITEM_ID: item_ids.to_numpy(dtype=np.int64),
            "title": titles.str.strip().to_numpy(),
            "release_year": years.to_numpy(dtype=np.float64),
        }
    )
    return pd.concat([items, genres.reset_index(drop=True)], axis=1)


def _users_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            USER_ID: frame[USER_ID].to_numpy(dtype=np.int64),
            "age": frame["age"].to_numpy(dtype=np.int64),
            "gender": frame["gender"].astype(str).to_numpy(),
            "occupation": frame["occupation"].astype(str).to_numpy(),
            "zip_code": frame["zip_code"].astype(str).to_numpy(),
        }
    )


def _interactions_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[:, list(INTERACTION_COLUMNS)].astype(np.int64).reset_index(drop=True)


# --------------------------------------------------------------------------------------------------- ML-100K
def parse_ml100k(files: Mapping[str, bytes], *, origin: str = "ml-100k") -> MovieLensTables:
    """Normalise ML-100K's u.data, u.user, u.item (latin-1), u.genre and u.occupation."""
    name = {m: f"{origin}/{m}" for m in ML100K_MEMBERS}

    genre_table = read_delimited(
        files["u.genre"], file=name["u.genre"], sep="|", columns=["genre", "index"], ints=["index"]
    )
    if list(genre_table["index"]) != list(range(len(genre_table))):
        raise DataValidationError(
            f"{name['u.genre']}: genre indexes must run 0..{len(genre_table) - 1} in file order, "
            f"got {list(genre_table['index'])}"
        )
    genre_names = list(genre_table["genre"])
    unknown = [g for g in genre_names if g not in GENRES]
    if unknown:
        raise DataValidationError(f"{name['u.genre']}: unknown genre(s) {unknown}; allowed are {list(GENRES)}")

    flag_columns = [f"flag_{k}" for k in range(len(genre_names))]
    raw_items = read_delimited(
        files["u.item"],
        file=name["u.item"],
        sep="|",
        columns=[ITEM_ID, "title", "release_date", "video_release_date", "imdb_url", *flag_columns],
        ints=[ITEM_ID, *flag_columns],
    )
    for column in flag_columns:
        _check_values(
            raw_items,
            column,
            lambda s: s.isin([0, 1]),
            file=name["u.item"],
            data=files["u.item"],
            rule="in {0, 1}",
        )
    dates = pd.to_datetime(raw_items["release_date"], format="%d-%b-%Y", errors="coerce")
    _check_values(
        raw_items.assign(_ok=dates.notna() | raw_items["release_date"].eq("")),
        "_ok",
        lambda s: s,
        file=name["u.item"],
        data=files["u.item"],
        rule="(release date is empty or dd-Mon-yyyy)",
    )
    years = release_year_from_title(raw_items["title"]).fillna(dates.dt.year.astype(np.float64))
    flags = raw_items[flag_columns].to_numpy(dtype=np.int64)
    genres = pd.DataFrame(0, index=range(len(raw_items)), columns=list(GENRE_COLUMNS), dtype=np.int64)
    for k, genre in enumerate(genre_names):
        genres[genre_column(genre)] = flags[:, k]
    items = _items_frame(raw_items[ITEM_ID], raw_items["title"], years, genres)

    raw_users = read_delimited(
        files["u.user"], file=name["u.user"], sep="|", columns=USER_COLUMNS, ints=[USER_ID, "age"]
    )
    occupations = [
        line.strip()
        for line in _decode(files["u.occupation"], file=name["u.occupation"], encoding="latin-1").splitlines()
        if line.strip()
    ]
    _check_values(
        raw_users,
        "occupation",
        lambda s: s.isin(occupations),
        file=name["u.user"],
        data=files["u.user"],
        rule=f"listed in u.occupation {occupations}",
    )
    users = _users_frame(raw_users)
    _check_user_fields(users, file=name["u.user"], data=files["u.user"])

    raw_ratings = read_delimited(
        files["u.data"], file=name["u.data"], sep="\t", columns=INTERACTION_COLUMNS, ints=INTERACTION_COLUMNS
    )
    tables = MovieLensTables("ml-100k", _interactions_frame(raw_ratings), users, items)
    validate_tables(
        tables,
        files={"interactions": name["u.data"], "users": name["u.user"], "items": name["u.item"]},
        ratings_data=files["u.data"],
    )
    return tables


def _check_user_fields(users: pd.DataFrame, *, file: str, data: bytes, skip_header: bool = False) -> None:
    _check_values(
        users,
        "gender",
        lambda s: s.isin(GENDERS),
        file=file,
        data=data,
        rule=f"in {list(GENDERS)}",
        skip_header=skip_header,
    )
    _check_values(users, "age", lambda s: s.gt(0), file=file, data=data, rule="> 0", skip_header=skip_header)


# --------------------------------------------------------------------------------------------------- ML-1M
def parse_ml1m(files: Mapping[str, bytes], *, origin: str = "ml-1m") -> MovieLensTables:
    """Normalise ML-1M's ratings.dat, users.dat and movies.dat (latin-1), all ``::``-separated."""
    name = {m: f"{origin}/{m}" for m in ML1M_MEMBERS}

    raw_movies = read_delimited(
        files["movies.dat"],
        file=name["movies.dat"],
        sep="::",
        columns=[ITEM_ID, "title", "genres"],
        ints=[ITEM_ID],
    )
    genre_lists = [g.split("|") if g else [] for g in raw_movies["genres"]]
    genres = genre_flags(genre_lists, file=name["movies.dat"])
    items = _items_frame(
        raw_movies[ITEM_ID], raw_movies["title"], release_year_from_title(raw_movies["title"]), genres
    )

    raw_users = read_delimited(
        files["users.dat"],
        file=name["users.dat"],
        sep="::",
        columns=[USER_ID, "gender", "age", "occupation_code", "zip_code"],
        ints=[USER_ID, "age", "occupation_code"],
    )
    _check_values(
        raw_users,
        "age",
        lambda s: s.isin(ML1M_AGE_CODES),
        file=name["users.dat"],
        data=files["users.dat"],
        rule=f"an ML-1M age code {list(ML1M_AGE_CODES)}",
    )
    _check_values(
        raw_users,
        "occupation_code",
        lambda s: s.between(0, len(ML1M_OCCUPATIONS) - 1),
        file=name["users.dat"],
        data=files["users.dat"],
        rule=f"an ML-1M occupation code 0..{len(ML1M_OCCUPATIONS) - 1}",
    )
    raw_users["occupation"] = np.asarray(ML1M_OCCUPATIONS, dtype=object)[raw_users["occupation_code"].to_numpy()]
    users = _users_frame(raw_users)
    _check_user_fields(users, file=name["users.dat"], data=files["users.dat"])

    raw_ratings = read_delimited(
        files["ratings.dat"],
        file=name["ratings.dat"],
        sep="::",
        columns=INTERACTION_COLUMNS,
        ints=INTERACTION_COLUMNS,
    )
    tables = MovieLensTables("ml-1m", _interactions_frame(raw_ratings), users, items)
    validate_tables(
        tables,
        files={"interactions": name["ratings.dat"], "users": name["users.dat"], "items": name["movies.dat"]},
        ratings_data=files["ratings.dat"],
    )
    return tables


# --------------------------------------------------------------------------------------------------- recbole
RECBOLE_ML100K_DIR = "recbole/dataset_example/ml-100k"
RECBOLE_MEMBERS: tuple[str, ...] = ("ml-100k.inter", "ml-100k.user", "ml-100k.item")
_RECBOLE_HEADERS: dict[str, tuple[str, ...]] = {
    "ml-100k.inter": ("user_id", "item_id", "rating", "timestamp"),
    "ml-100k.user": ("user_id", "age", "gender", "occupation", "zip_code"),
    "ml-100k.item": ("item_id", "movie_title", "release_year", "class"),
}
# recbole writes this (sic) where ML-100K has "unknown" (movie 267: no title, no date).
_RECBOLE_UNKNOWN = ("unkonwn", "unknown")


def _check_recbole_header(data: bytes, member: str, *, file: str) -> None:
    first = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").rstrip("\r")
    names = tuple(field.split(":", 1)[0] for field in first.split("\t"))
    if names != _RECBOLE_HEADERS[member]:
        raise DataValidationError(
            f"{file} line 1: header fields {list(names)} are not recbole's {list(_RECBOLE_HEADERS[member])}"
        )


def parse_recbole_ml100k(files: Mapping[str, bytes], *, origin: str = RECBOLE_ML100K_DIR) -> MovieLensTables:
    """Normalise recbole's atomic files of ML-100K (``ml-100k.inter/.user/.item``, UTF-8, tab, typed header).

    The result equals what :func:`parse_ml100k` gives on the original zip: recbole keeps every rating and user
    field; its items carry the title without "(YYYY)", the year as its own field (the title year, or "V" for the
    one video title "... (1995) (V)") and genres by name, so the original title is rebuilt as
    "<title> (<year field>)". Only the release date, video release date and IMDb URL are absent (unused here).
    """
    name = {m: f"{origin}/{m}" for m in RECBOLE_MEMBERS}
    for member in RECBOLE_MEMBERS:
        _decode(files[member], file=name[member], encoding="utf-8")
        _check_recbole_header(files[member], member, file=name[member])

    raw_ratings = read_delimited(
        files["ml-100k.inter"],
        file=name["ml-100k.inter"],
        sep="\t",
        columns=INTERACTION_COLUMNS,
        ints=[USER_ID, ITEM_ID],
        encoding="utf-8",
        skip_header=True,
    )
    for column in (RATING, TIMESTAMP):  # typed "float" by recbole, whole numbers in fact
        values = pd.to_numeric(raw_ratings[column], errors="coerce")
        _check_values(
            raw_ratings.assign(**{column: values}),
            column,
            lambda s: s.notna() & s.eq(s.round()),
            file=name["ml-100k.inter"],
            data=files["ml-100k.inter"],
            rule="is a whole number",
            skip_header=True,
        )
        raw_ratings[column] = values.astype(np.int64)

    raw_users = read_delimited(
        files["ml-100k.user"],
        file=name["ml-100k.user"],
        sep="\t",
        columns=USER_COLUMNS,
        ints=[USER_ID, "age"],
        encoding="utf-8",
        skip_header=True,
    )
    users = _users_frame(raw_users)
    _check_user_fields(users, file=name["ml-100k.user"], data=files["ml-100k.user"], skip_header=True)

    raw_items = read_delimited(
        files["ml-100k.item"],
        file=name["ml-100k.item"],
        sep="\t",
        columns=[ITEM_ID, "title", "year", "genres"],
        ints=[ITEM_ID],
        encoding="utf-8",
        skip_header=True,
    )
    unknown_year = raw_items["year"].isin(_RECBOLE_UNKNOWN) | raw_items["year"].eq("")
    titles = raw_items["title"].where(~raw_items["title"].isin(_RECBOLE_UNKNOWN), "unknown")
    titles = titles.where(unknown_year, titles + " (" + raw_items["year"] + ")")
    genres = genre_flags([g.split() for g in raw_items["genres"]], file=name["ml-100k.item"])
    items = _items_frame(raw_items[ITEM_ID], titles, release_year_from_title(titles), genres)

    tables = MovieLensTables("ml-100k", _interactions_frame(raw_ratings), users, items)
    validate_tables(
        tables,
        files={
            "interactions": name["ml-100k.inter"],
            "users": name["ml-100k.user"],
            "items": name["ml-100k.item"],
        },
        ratings_data=files["ml-100k.inter"],
        skip_header=True,
    )
    return tables


# --------------------------------------------------------------------------------------------------- validation
def validate_tables(
    tables: MovieLensTables,
    *,
    files: Mapping[str, str],
    ratings_data: bytes | None = None,
    skip_header: bool = False,
) -> None:
    """Cross-file rules: unique ids, ratings in 1..5, one rating per (user, item), every id known.

    ``files`` names the file behind "interactions", "users" and "items" for the messages; ``ratings_data`` (the
    raw ratings bytes) lets a message give the line number of the first offending rating.
    """
    for role, table, key in (("users", tables.users, USER_ID), ("items", tables.items, ITEM_ID)):
        if table.empty:
            raise DataValidationError(f"{files[role]}: file has no records")
        duplicated = table[key].duplicated()
        if duplicated.any():
            raise DataValidationError(
                f"{files[role]}: {int(duplicated.sum())} duplicate {key}(s), e.g. "
                f"{int(table[key][duplicated].iloc[0])}; each {key} must be listed once"
            )
    ratings = tables.interactions
    source = files["interactions"]
    if ratings.empty:
        raise DataValidationError(f"{source}: file has no ratings")

    def where(mask: np.ndarray) -> str:
        first = int(np.flatnonzero(mask)[0])
        if ratings_data is None:
            return f"first at record {first + 1}"
        return f"first at line {_line_of_row(ratings_data, first, skip_header=skip_header)}"

    low, high = RATING_RANGE
    bad = ~ratings[RATING].between(low, high).to_numpy()
    if bad.any():
        raise DataValidationError(
            f"{source}: {int(bad.sum())} rating(s) outside {low}..{high} ({where(bad)}: "
            f"rating={int(ratings[RATING].to_numpy()[bad][0])}); ratings must be whole stars {low}..{high}"
        )
    for key, role, table in ((USER_ID, "users", tables.users), (ITEM_ID, "items", tables.items)):
        unknown = ~ratings[key].isin(table[key]).to_numpy()
        if unknown.any():
            examples = sorted(set(ratings[key].to_numpy()[unknown].tolist()))[:5]
            raise DataValidationError(
                f"{source}: {int(unknown.sum())} rating(s) reference {key}(s) missing from {files[role]} "
                f"({where(unknown)}; e.g. {examples}); every rating must reference a listed {role[:-1]}"
            )
    duplicated = ratings.duplicated([USER_ID, ITEM_ID]).to_numpy()
    if duplicated.any():
        raise DataValidationError(
            f"{source}: {int(duplicated.sum())} repeated (user_id, item_id) pair(s) ({where(duplicated)}); "
            "each user rates an item at most once"
        )


# --------------------------------------------------------------------------------------------------- entry point
def read_movielens(path: str | Path, *, dataset: str) -> MovieLensTables:
    """Read and validate ``dataset`` ("ml-100k" | "ml-1m") from its original zip or extracted folder."""
    if dataset not in LAYOUT_MEMBERS:
        raise ValueError(f"dataset must be one of {sorted(LAYOUT_MEMBERS)}, got {dataset!r}")
    files = read_members(path, folder=dataset, members=LAYOUT_MEMBERS[dataset])
    origin = f"{Path(path).name}:{dataset}"
    if dataset == "ml-100k":
        return parse_ml100k(files, origin=origin)
    return parse_ml1m(files, origin=origin)
