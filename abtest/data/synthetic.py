"""Synthetic MovieLens zips in the ORIGINAL GroupLens layouts, for tests and benchmarks.

Inputs: a layout ("ml-100k" | "ml-1m"), sizes and a seed. Output: a zip that the real parser reads exactly like
the GroupLens download - ``ml-100k/`` with u.data, u.user, u.item (latin-1, with a non-ASCII title and an empty
release date), u.genre, u.occupation, README; or ``ml-1m/`` with ratings.dat, users.dat, movies.dat (latin-1),
README - plus :func:`write_recbole_wheel`, a wheel-shaped zip with recbole's ML-100K atomic files.

The ratings carry learnable signal, so models trained on them beat chance clearly: a rating is the quantile of
user bias + item quality (tied to popularity) + the user's taste for the item's genres (shifted by gender and
age) + noise, cut so the star distribution resembles MovieLens (6/11/27/34/22 %). User activity is log-normal
and item popularity Zipf-like, so both are long-tailed. Everything is vectorised: ML-1M size (1,000,209 ratings)
takes a few seconds.

CLI: ``python -m abtest.data.synthetic --layout ml-1m --scale 1 --out data/x.zip``.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import re
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ab_router.schema import GENRE_COLUMNS, GENRES
from abtest.data.movielens import ML1M_AGE_CODES, ML1M_OCCUPATIONS, RECBOLE_ML100K_DIR, MovieLensTables

log = logging.getLogger(__name__)

LAYOUTS: tuple[str, ...] = ("ml-100k", "ml-1m")
# (users, items, ratings) of the real datasets; --scale multiplies them (scaled_sizes).
REAL_SIZES: dict[str, tuple[int, int, int]] = {"ml-100k": (943, 1682, 100_000), "ml-1m": (6040, 3706, 1_000_209)}
# ML-100K's u.occupation.
ML100K_OCCUPATIONS: tuple[str, ...] = (
    "administrator",
    "artist",
    "doctor",
    "educator",
    "engineer",
    "entertainment",
    "executive",
    "healthcare",
    "homemaker",
    "lawyer",
    "librarian",
    "marketing",
    "none",
    "other",
    "programmer",
    "retired",
    "salesman",
    "scientist",
    "student",
    "technician",
    "writer",
)
TIME_RANGES: dict[str, tuple[int, int]] = {
    "ml-100k": (874_724_710, 893_286_638),  # Sept 1997 - April 1998
    "ml-1m": (956_703_932, 1_046_454_590),  # April 2000 - Feb 2003
}
STAR_SHARES = (0.06, 0.11, 0.27, 0.34, 0.22)
MIN_RATINGS_PER_USER = 20  # as in both real datasets
_REAL_GENRES = GENRES[1:]  # "unknown" is only ML-100K's placeholder for movie 267
_GENRE_WEIGHTS = np.array([6, 4, 1, 2, 12, 4, 1, 17, 1, 1, 3, 2, 2, 6, 3, 6, 1, 1], dtype=float)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_NON_ASCII_TITLES = ("Misérables {n}, Les", "Café Müller {n}", "Señorita Björk {n}", "Amélie {n}")


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes and seed of a synthetic dataset (validated on construction)."""

    layout: str
    n_users: int
    n_items: int
    n_ratings: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {self.layout!r}")
        if self.n_users < 1 or self.n_items < 2:
            raise ValueError(f"need n_users >= 1 and n_items >= 2, got {self.n_users} and {self.n_items}")
        capacity = self.n_users * _max_per_user(self.n_items)
        if not self.n_users <= self.n_ratings <= capacity:
            raise ValueError(
                f"n_ratings must be between n_users ({self.n_users}) and n_users * n_items / 2 ({capacity}), "
                f"got {self.n_ratings}"
            )


def scaled_sizes(layout: str, scale: float) -> tuple[int, int, int]:
    """(users, items, ratings) of the real ``layout`` times ``scale`` (> 0), kept generatable.

    Users and items scale linearly; ratings too, but never past a quarter of the user x item grid (each user
    rating at most half the catalogue, see ``_max_per_user``): below scale ~0.25 (ml-100k) / ~0.18 (ml-1m) the
    real ratings-per-user would not fit the shrunken catalogue, so the data gets denser instead.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a number > 0 (1 = the real dataset's size), got {scale}")
    real_users, real_items, real_ratings = REAL_SIZES[layout]
    n_users, n_items = max(1, round(real_users * scale)), max(2, round(real_items * scale))
    grid_cap = max(n_users, n_users * _max_per_user(n_items) // 2)
    return n_users, n_items, max(n_users, min(round(real_ratings * scale), grid_cap))


def _max_per_user(n_items: int) -> int:
    # A user rating more than half the catalogue makes duplicate-free sampling slow and is unlike MovieLens.
    return max(1, n_items // 2)


# --------------------------------------------------------------------------------------------------- the model
def generate_tables(spec: SyntheticSpec) -> MovieLensTables:
    """Users, items and ratings in the normalised schema (ages/occupations as the layout writes them)."""
    rng = np.random.default_rng(spec.seed)
    users = _users(rng, spec)
    items = _items(rng, spec)
    user_index, item_index = _pairs(rng, spec)
    ratings = _ratings(rng, spec, users, items, user_index, item_index)
    start, end = TIME_RANGES[spec.layout]
    # Each user is active in a window of their own, so a temporal split has new users in val/test like the
    # real data.
    user_start = rng.uniform(start, end, size=spec.n_users)
    user_span = np.minimum(rng.exponential((end - start) / 6, size=spec.n_users), end - user_start)
    timestamps = (user_start[user_index] + rng.uniform(0, 1, size=user_index.size) * user_span[user_index]).astype(
        np.int64
    )
    interactions = pd.DataFrame(
        {
            "user_id": user_index.astype(np.int64) + 1,
            "item_id": item_index.astype(np.int64) + 1,
            "rating": ratings,
            "timestamp": timestamps,
        }
    )
    return MovieLensTables(spec.layout, interactions, users, items)


def _users(rng: np.random.Generator, spec: SyntheticSpec) -> pd.DataFrame:
    n = spec.n_users
    if spec.layout == "ml-100k":
        ages = np.clip(np.round(rng.normal(33, 12, size=n)), 7, 73).astype(np.int64)
        occupations = rng.choice(np.array(ML100K_OCCUPATIONS, dtype=object), size=n)
        zips = np.char.zfill(rng.integers(0, 100_000, size=n).astype(str), 5)
    else:
        shares = np.array([0.04, 0.18, 0.35, 0.2, 0.09, 0.08, 0.06])
        ages = rng.choice(np.array(ML1M_AGE_CODES, dtype=np.int64), size=n, p=shares)
        occupations = rng.choice(np.array(ML1M_OCCUPATIONS, dtype=object), size=n)
        zips = np.char.zfill(rng.integers(0, 100_000, size=n).astype(str), 5).astype(object)
        plus4 = rng.random(n) < 0.02  # a few ZIP+4 codes, as in users.dat
        zips[plus4] = (
            zips[plus4] + "-" + np.char.zfill(rng.integers(0, 10_000, size=int(plus4.sum())).astype(str), 4)
        )
    return pd.DataFrame(
        {
            "user_id": np.arange(1, n + 1, dtype=np.int64),
            "age": ages,
            "gender": np.where(rng.random(n) < 0.71, "M", "F"),
            "occupation": occupations.astype(str),
            "zip_code": np.asarray(zips).astype(str),
        }
    )


def _items(rng: np.random.Generator, spec: SyntheticSpec) -> pd.DataFrame:
    n = spec.n_items
    flags = np.zeros((n, len(GENRES)), dtype=np.int64)
    n_genres = rng.choice([1, 2, 3], size=n, p=[0.5, 0.35, 0.15])
    for k in range(3):  # up to three genres per movie, drawn by genre popularity
        has = n_genres > k
        picked = rng.choice(len(_REAL_GENRES), size=n, p=_GENRE_WEIGHTS / _GENRE_WEIGHTS.sum())
        flags[np.flatnonzero(has), picked[has] + 1] = 1
    years = np.clip(1998 - np.floor(rng.exponential(9, size=n)), 1922, 1998).astype(np.int64)
    titles = np.array([f"Synthetic Movie {i}" for i in range(1, n + 1)], dtype=object)
    non_ascii = np.arange(1, n, max(2, n // 8))  # a few latin-1 titles, as in the real u.item/movies.dat
    titles[non_ascii] = [
        _NON_ASCII_TITLES[k % len(_NON_ASCII_TITLES)].format(n=i + 1) for k, i in enumerate(non_ascii)
    ]
    full_titles = titles + " (" + years.astype(str).astype(object) + ")"
    release_year = years.astype(np.float64)
    if spec.layout == "ml-100k":
        # ML-100K's movie 267: title "unknown", no date, genre "unknown" only.
        full_titles[0] = "unknown"
        release_year[0] = np.nan
        flags[0] = 0
        flags[0, 0] = 1
    items = pd.DataFrame(
        {
            "item_id": np.arange(1, n + 1, dtype=np.int64),
            "title": full_titles.astype(str),
            "release_year": release_year,
        }
    )
    return pd.concat([items, pd.DataFrame(flags, columns=list(GENRE_COLUMNS))], axis=1)


def _per_user_counts(rng: np.random.Generator, spec: SyntheticSpec) -> np.ndarray:
    cap = _max_per_user(spec.n_items)
    floor = min(MIN_RATINGS_PER_USER, cap, spec.n_ratings // spec.n_users)
    activity = rng.lognormal(0.0, 1.0, size=spec.n_users)
    counts = np.full(spec.n_users, floor, dtype=np.int64)
    remaining = spec.n_ratings - counts.sum()
    while remaining > 0:  # hand out the rest by activity, never above the cap
        room = counts < cap
        weights = activity * room
        extra = rng.multinomial(remaining, weights / weights.sum())
        counts = np.minimum(counts + extra, cap)
        remaining = spec.n_ratings - counts.sum()
    return counts


def _pairs(rng: np.random.Generator, spec: SyntheticSpec) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (user, item) index pairs: per-user counts by activity, items by Zipf-like popularity."""
    counts = _per_user_counts(rng, spec)
    user_index = np.repeat(np.arange(spec.n_users), counts)
    popularity = 1.0 / (np.arange(spec.n_items) + 10.0) ** 1.1
    popularity = rng.permutation(popularity / popularity.sum())
    item_index = rng.choice(spec.n_items, size=user_index.size, p=popularity)
    for attempt in range(100):
        keys = user_index * spec.n_items + item_index
        order = np.argsort(keys, kind="stable")
        repeated = np.zeros(keys.size, dtype=bool)
        repeated[order[1:]] = keys[order[1:]] == keys[order[:-1]]
        if not repeated.any():
            break
        # Redraw the repeats; late attempts draw uniformly so heavy users find their rare items.
        p = popularity if attempt < 10 else None
        item_index[repeated] = rng.choice(spec.n_items, size=int(repeated.sum()), p=p)
    else:
        raise RuntimeError("could not draw distinct (user, item) pairs; lower n_ratings")
    return user_index, item_index


def _ratings(
    rng: np.random.Generator,
    spec: SyntheticSpec,
    users: pd.DataFrame,
    items: pd.DataFrame,
    user_index: np.ndarray,
    item_index: np.ndarray,
) -> np.ndarray:
    n_genres = len(GENRES)
    user_bias = rng.normal(0, 0.45, size=spec.n_users)
    counts = np.bincount(item_index, minlength=spec.n_items)
    log_pop = np.log1p(counts)
    item_quality = rng.normal(0, 0.5, size=spec.n_items) + 0.35 * (log_pop - log_pop.mean()) / (
        log_pop.std() + 1e-9
    )
    taste = rng.normal(0, 0.7, size=(spec.n_users, n_genres))
    # Demographic taste shifts, so profile features carry signal for users without history.
    genre_index = {g: k for k, g in enumerate(GENRES)}
    female = (users["gender"].to_numpy() == "F").astype(float)
    age = (users["age"].to_numpy(dtype=float) - 30.0) / 12.0
    for genre, by_gender, by_age in (
        ("Romance", 0.6, 0.1),
        ("Drama", 0.3, 0.3),
        ("Action", -0.5, -0.2),
        ("Horror", -0.5, -0.4),
        ("War", -0.3, 0.4),
        ("Film-Noir", 0.0, 0.4),
        ("Animation", 0.2, -0.4),
        ("Sci-Fi", -0.4, -0.1),
    ):
        taste[:, genre_index[genre]] += by_gender * (2 * female - 1) / 2 + by_age * age
    flags = items[list(GENRE_COLUMNS)].to_numpy(dtype=float)
    genre_share = flags / np.maximum(flags.sum(axis=1, keepdims=True), 1.0)
    affinity = np.einsum("ij,ij->i", taste[user_index], genre_share[item_index])
    score = user_bias[user_index] + item_quality[item_index] + affinity + rng.normal(0, 0.6, size=user_index.size)
    cuts = np.quantile(score, np.cumsum(STAR_SHARES)[:-1])
    return (np.searchsorted(cuts, score) + 1).astype(np.int64)


# --------------------------------------------------------------------------------------------------- writing
def _readme(layout: str, tables: MovieLensTables) -> str:
    return (
        f"SYNTHETIC data in the layout of MovieLens {layout} (GroupLens); not real ratings.\n"
        f"{len(tables.interactions)} ratings (1-5) from {len(tables.users)} users on {len(tables.items)} movies.\n"
        "Generated by abtest/data/synthetic.py for tests and benchmarks.\n"
    )


def _latin1(text: str) -> bytes:
    return text.encode("latin-1")


def _delimited(frame: pd.DataFrame, sep: str) -> str:
    """Rows joined by ``sep`` (which may be "::"), newline-terminated, no header, no quoting."""
    text = frame.to_csv(sep="\t", header=False, index=False, lineterminator="\n", quoting=3)
    return text if sep == "\t" else text.replace("\t", sep)


def _ml100k_members(rng: np.random.Generator, tables: MovieLensTables) -> dict[str, bytes]:
    items = tables.items
    n = len(items)
    years = items["release_year"].to_numpy()
    days = rng.integers(1, 29, size=n)
    months = rng.integers(0, 12, size=n)
    dates = np.array(
        [
            "" if np.isnan(y) else f"{d:02d}-{_MONTHS[m]}-{int(y)}"
            for y, d, m in zip(years, days, months, strict=True)
        ],
        dtype=object,
    )
    urls = np.array([f"http://us.imdb.com/M/title-exact?synthetic{i}" for i in items["item_id"]], dtype=object)
    urls[~pd.notna(years)] = ""
    u_item = pd.DataFrame(
        {"id": items["item_id"], "title": items["title"], "date": dates, "video": "", "url": urls}
    ).join(items[list(GENRE_COLUMNS)])
    ratings = tables.interactions.sample(frac=1.0, random_state=int(rng.integers(2**31)))  # u.data is unordered
    return {
        "u.data": _delimited(ratings, "\t").encode("ascii"),
        "u.user": _delimited(tables.users, "|").encode("ascii"),
        "u.item": _latin1(_delimited(u_item, "|")),
        "u.genre": ("".join(f"{g}|{k}\n" for k, g in enumerate(GENRES)) + "\n").encode("ascii"),
        "u.occupation": "".join(f"{o}\n" for o in ML100K_OCCUPATIONS).encode("ascii"),
        "README": _readme("ml-100k", tables).encode("ascii"),
    }


def _ml1m_members(tables: MovieLensTables) -> dict[str, bytes]:
    items = tables.items
    flags = items[list(GENRE_COLUMNS)].to_numpy()
    genre_names = np.array(GENRES, dtype=object)
    genres = ["|".join(genre_names[row.astype(bool)]) for row in flags]
    movies = pd.DataFrame({"id": items["item_id"], "title": items["title"], "genres": genres})
    occupation_code = {name: code for code, name in enumerate(ML1M_OCCUPATIONS)}
    users = pd.DataFrame(
        {
            "id": tables.users["user_id"],
            "gender": tables.users["gender"],
            "age": tables.users["age"],
            "occupation": tables.users["occupation"].map(occupation_code),
            "zip": tables.users["zip_code"],
        }
    )
    ratings = tables.interactions.sort_values(["user_id", "timestamp"], kind="stable")  # as in ratings.dat
    return {
        "ratings.dat": _delimited(ratings, "::").encode("ascii"),
        "users.dat": _delimited(users, "::").encode("ascii"),
        "movies.dat": _latin1(_delimited(movies, "::")),
        "README": _readme("ml-1m", tables).encode("ascii"),
    }


def _write_zip_atomically(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in members.items():
                if name.endswith("/"):
                    archive.writestr(zipfile.ZipInfo(name), b"")
                else:
                    archive.writestr(name, data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_synthetic_zip(
    path: str | Path, *, layout: str, n_users: int, n_items: int, n_ratings: int, seed: int = 0
) -> Path:
    """Write a synthetic dataset as a zip in the original GroupLens ``layout``; returns the path."""
    spec = SyntheticSpec(layout, n_users, n_items, n_ratings, seed)
    tables = generate_tables(spec)
    rng = np.random.default_rng(spec.seed + 1)
    members = _ml100k_members(rng, tables) if layout == "ml-100k" else _ml1m_members(tables)
    folder = f"{layout}/"
    return _write_zip_atomically(Path(path), {folder: b"", **{folder + k: v for k, v in members.items()}})


# --------------------------------------------------------------------------------------------------- recbole
_TRAILING_PARENS = re.compile(r"^(.*) \(([^()]*)\)$")


def write_recbole_wheel(path: str | Path, tables: MovieLensTables) -> Path:
    """A zip shaped like recbole's wheel, holding ``tables`` (ML-100K) as recbole's atomic files.

    Mirrors recbole's conversion: the last "(...)" of a title becomes the year field ("unkonwn" [sic] when a
    title has none), genres become a space-separated class field, files are UTF-8 with typed headers.
    """
    parts = tables.items["title"].str.extract(_TRAILING_PARENS)
    no_year = parts[0].isna()
    names = parts[0].where(~no_year, tables.items["title"].replace("unknown", "unkonwn"))
    year_field = parts[1].where(~no_year, "unkonwn")
    genre_names = np.array(GENRES, dtype=object)
    flags = tables.items[list(GENRE_COLUMNS)].to_numpy().astype(bool)
    item = pd.DataFrame(
        {
            "item_id:token": tables.items["item_id"],
            "movie_title:token_seq": names,
            "release_year:token": year_field,
            "class:token_seq": [" ".join(genre_names[row]) for row in flags],
        }
    )
    inter = tables.interactions.set_axis(
        ["user_id:token", "item_id:token", "rating:float", "timestamp:float"], axis=1
    )
    user = tables.users.set_axis(
        ["user_id:token", "age:token", "gender:token", "occupation:token", "zip_code:token"], axis=1
    )

    def tsv(frame: pd.DataFrame) -> bytes:
        buffer = io.StringIO()
        frame.to_csv(buffer, sep="\t", index=False, lineterminator="\n", quoting=3)
        return buffer.getvalue().encode("utf-8")

    members = {
        "recbole/__init__.py": b"",
        f"{RECBOLE_ML100K_DIR}/ml-100k.inter": tsv(inter),
        f"{RECBOLE_ML100K_DIR}/ml-100k.user": tsv(user),
        f"{RECBOLE_ML100K_DIR}/ml-100k.item": tsv(item),
    }
    return _write_zip_atomically(Path(path), members)


# --------------------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> Path:
    """``python -m abtest.data.synthetic --layout ml-1m --scale 1 --out data/x.zip``: sizes = real x scale."""
    parser = argparse.ArgumentParser(prog="python -m abtest.data.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", choices=LAYOUTS, default="ml-100k")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="> 0; multiplies the real dataset's sizes (see scaled_sizes)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        n_users, n_items, n_ratings = scaled_sizes(args.layout, args.scale)
    except ValueError as error:
        parser.error(f"argument --scale: {error}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    path = write_synthetic_zip(
        args.out, layout=args.layout, n_users=n_users, n_items=n_items, n_ratings=n_ratings, seed=args.seed
    )
    log.info("wrote %s: %s layout, %d users, %d items, %d ratings", path, args.layout, n_users, n_items, n_ratings)
    return path


if __name__ == "__main__":
    main()
