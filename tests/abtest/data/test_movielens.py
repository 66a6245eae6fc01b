"""Parsing both original GroupLens layouts, and every validation rule with the message it gives."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ab_router.schema import GENRE_COLUMNS, genre_column
from abtest.data.movielens import (
    INTERACTION_COLUMNS,
    ITEM_COLUMNS,
    ML1M_OCCUPATIONS,
    USER_COLUMNS,
    DataValidationError,
    read_delimited,
    read_movielens,
    release_year_from_title,
)
from tests.fixtures.data import SMALL_ML1M, SMALL_ML100K


def rewrite_member(source: Path, target: Path, member: str, edit: Callable[[bytes], bytes] | None) -> Path:
    """Copy a zip, editing one member's bytes (``edit`` None = drop the member)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == member:
                if edit is None:
                    continue
                data = edit(data)
            dst.writestr(info, data)
    return target


def replace_line(number: int, new: bytes) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        lines = data.split(b"\n")
        lines[number - 1] = new
        return b"\n".join(lines)

    return edit


# --------------------------------------------------------------------------------------------------- happy paths
def test_ml100k_layout_parses_to_the_normalised_schema(synthetic_ml100k_zip: Path) -> None:
    tables = read_movielens(synthetic_ml100k_zip, dataset="ml-100k")
    assert tables.dataset == "ml-100k"
    assert list(tables.interactions.columns) == list(INTERACTION_COLUMNS)
    assert list(tables.users.columns) == list(USER_COLUMNS)
    assert list(tables.items.columns) == list(ITEM_COLUMNS)
    assert (len(tables.interactions), len(tables.users), len(tables.items)) == (
        SMALL_ML100K["n_ratings"],
        SMALL_ML100K["n_users"],
        SMALL_ML100K["n_items"],
    )
    assert all(tables.interactions[c].dtype == np.int64 for c in INTERACTION_COLUMNS)
    assert tables.users["age"].dtype == np.int64
    assert set(tables.users["gender"]) == {"M", "F"}
    assert tables.items["release_year"].dtype == np.float64
    assert all(tables.items[c].dtype == np.int64 for c in GENRE_COLUMNS)
    # the "unknown" movie: no year, only the unknown genre; a latin-1 title decoded correctly
    unknown = tables.items.iloc[0]
    assert unknown["title"] == "unknown" and np.isnan(unknown["release_year"])
    assert unknown[genre_column("unknown")] == 1 and unknown[list(GENRE_COLUMNS)].sum() == 1
    assert tables.items["title"].str.contains("é").any()
    assert tables.interactions["rating"].between(1, 5).all()


def test_ml1m_layout_maps_codes_to_names(synthetic_ml1m_zip: Path) -> None:
    tables = read_movielens(synthetic_ml1m_zip, dataset="ml-1m")
    assert len(tables.interactions) == SMALL_ML1M["n_ratings"]
    assert len(tables.users) == SMALL_ML1M["n_users"]
    assert set(tables.users["age"]) <= {1, 18, 25, 35, 45, 50, 56}
    assert set(tables.users["occupation"]) <= set(ML1M_OCCUPATIONS)
    assert tables.items[genre_column("unknown")].sum() == 0
    assert tables.items["release_year"].notna().all()
    assert tables.items["title"].str.contains("é").any()


def test_ml1m_users_and_movies_lines_are_read_as_documented(tmp_path: Path) -> None:
    files = {
        "ratings.dat": b"1::10::5::978300760\n2::20::3::978302109\n",
        "users.dat": b"1::F::1::10::48067\n2::M::56::16::70072-1234\n",
        "movies.dat": "10::Misérables, Les (1995)::Drama|Musical\n20::Heat (1995)::Action|Crime|Thriller\n".encode(
            "latin-1"
        ),
    }
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    tables = read_movielens(tmp_path, dataset="ml-1m")  # the parent of the extracted folder works too
    assert tables.users.to_dict("records") == [
        {"user_id": 1, "age": 1, "gender": "F", "occupation": "K-12 student", "zip_code": "48067"},
        {"user_id": 2, "age": 56, "gender": "M", "occupation": "self-employed", "zip_code": "70072-1234"},
    ]
    first = tables.items.iloc[0]
    assert first["title"] == "Misérables, Les (1995)" and first["release_year"] == 1995.0
    assert first[genre_column("Drama")] == 1 and first[genre_column("Musical")] == 1
    assert tables.items.iloc[1][list(GENRE_COLUMNS)].sum() == 3
    assert tables.interactions.values.tolist() == [[1, 10, 5, 978300760], [2, 20, 3, 978302109]]


def test_extracted_folder_reads_like_the_zip(synthetic_ml100k_zip: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(synthetic_ml100k_zip) as archive:
        archive.extractall(tmp_path)
    from_zip = read_movielens(synthetic_ml100k_zip, dataset="ml-100k")
    from_folder = read_movielens(tmp_path / "ml-100k", dataset="ml-100k")
    pd.testing.assert_frame_equal(from_zip.interactions, from_folder.interactions)
    pd.testing.assert_frame_equal(from_zip.items, from_folder.items)


def test_release_year_is_the_last_year_in_the_title() -> None:
    titles = pd.Series(["Toy Story (1995)", "Land Before Time III (1995) (V)", "unknown", "1984 (1956)"])
    years = release_year_from_title(titles).tolist()
    assert years[:2] == [1995.0, 1995.0] and np.isnan(years[2]) and years[3] == 1956.0


def test_title_without_year_falls_back_to_the_release_date(synthetic_ml100k_zip: Path, tmp_path: Path) -> None:
    bad = rewrite_member(
        synthetic_ml100k_zip,
        tmp_path / "ml-100k.zip",
        "ml-100k/u.item",
        replace_line(3, b"3|No Year Here|05-Mar-1971||http://x|" + b"|".join([b"0"] * 8 + [b"1"] + [b"0"] * 10)),
    )
    items = read_movielens(bad, dataset="ml-100k").items
    assert items.loc[items["item_id"] == 3, "release_year"].item() == 1971.0


# --------------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("member", "edit", "message"),
    [
        ("ml-100k/u.data", replace_line(5, b"1\t2\t3"), r"u.data line 5: malformed line, expected 4 fields"),
        ("ml-100k/u.data", replace_line(7, b"1\t2\tfive\t880000000"), r"u.data line 7: .*'rating' must be an int"),
        ("ml-100k/u.data", replace_line(9, b"1\t2\t3\t4\t5"), r"u.data line 9: malformed line"),
        (
            "ml-100k/u.data",
            replace_line(4, b"1\t2\t7\t880000000"),
            r"1 rating\(s\) outside 1..5 \(first at line 4",
        ),
        ("ml-100k/u.data", replace_line(3, b"9999\t2\t4\t880000000"), r"user_id\(s\) missing from .*u.user.*9999"),
        ("ml-100k/u.data", replace_line(3, b"1\t9999\t4\t880000000"), r"item_id\(s\) missing from .*u.item.*9999"),
        ("ml-100k/u.data", lambda data: b"", r"u.data: file is empty"),
        ("ml-100k/u.data", lambda data: data + data.split(b"\n")[0] + b"\n", r"repeated \(user_id, item_id\)"),
        ("ml-100k/u.user", replace_line(2, b"2|30|X|writer|12345"), r"u.user: 1 line\(s\) break the rule gender"),
        ("ml-100k/u.user", replace_line(2, b"2|30|M|astronaut|12345"), r"break the rule occupation listed in"),
        ("ml-100k/u.user", lambda data: data + data.split(b"\n")[0] + b"\n", r"duplicate user_id"),
        ("ml-100k/u.item", replace_line(2, b"2|Title (1990)|01-Jan-1990"), r"u.item line 2: malformed line"),
        (
            "ml-100k/u.item",
            replace_line(2, b"2|T (1990)|31-Foo-1990||u" + b"|0" * 19),
            r"release date is empty or",
        ),
        (
            "ml-100k/u.item",
            replace_line(2, b"2|T (1990)|||u|2" + b"|0" * 18),
            r"break the rule flag_0 in \{0, 1\}",
        ),
        ("ml-100k/u.genre", replace_line(2, b"Cartoon|1"), r"unknown genre\(s\) \['Cartoon'\]"),
        ("ml-100k/u.data", None, r"missing member\(s\) \['ml-100k/u.data'\]"),
    ],
)
def test_ml100k_validation_errors_name_file_line_and_rule(
    synthetic_ml100k_zip: Path, tmp_path: Path, member: str, edit, message: str
) -> None:
    bad = rewrite_member(synthetic_ml100k_zip, tmp_path / "ml-100k.zip", member, edit)
    with pytest.raises(DataValidationError, match=message):
        read_movielens(bad, dataset="ml-100k")


@pytest.mark.parametrize(
    ("member", "edit", "message"),
    [
        (
            "ml-1m/ratings.dat",
            replace_line(2, b"1::2::3"),
            r"ratings.dat line 2: malformed line, expected 4 .*'::'",
        ),
        (
            "ml-1m/ratings.dat",
            replace_line(2, b"1::2::0::978300760"),
            r"rating\(s\) outside 1..5 \(first at line 2",
        ),
        ("ml-1m/users.dat", replace_line(1, b"1::F::17::10::48067"), r"break the rule age an ML-1M age code"),
        ("ml-1m/users.dat", replace_line(1, b"1::F::18::21::48067"), r"occupation_code an ML-1M occupation code"),
        ("ml-1m/movies.dat", replace_line(1, b"1::Toy Story (1995)::Cartoon"), r"unknown genre 'Cartoon'"),
        ("ml-1m/movies.dat", lambda data: b"\n\n", r"movies.dat: file is empty"),
    ],
)
def test_ml1m_validation_errors(synthetic_ml1m_zip: Path, tmp_path: Path, member: str, edit, message: str) -> None:
    bad = rewrite_member(synthetic_ml1m_zip, tmp_path / "ml-1m.zip", member, edit)
    with pytest.raises(DataValidationError, match=message):
        read_movielens(bad, dataset="ml-1m")


def test_corrupt_and_truncated_zips_are_named(synthetic_ml100k_zip: Path, tmp_path: Path) -> None:
    data = synthetic_ml100k_zip.read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataValidationError, match=r"truncated.zip: not a readable zip .*corrupt or truncated"):
        read_movielens(truncated, dataset="ml-100k")
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(DataValidationError, match=r"garbage.zip: not a readable zip"):
        read_movielens(garbage, dataset="ml-100k")


def test_corrupted_member_bytes_fail_the_crc_check(synthetic_ml100k_zip: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(synthetic_ml100k_zip) as archive:
        info = archive.getinfo("ml-100k/u.data")
    data = bytearray(synthetic_ml100k_zip.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 100
    data[start : start + 50] = bytes(50)  # flip bytes inside the compressed u.data
    broken = tmp_path / "ml-100k.zip"
    broken.write_bytes(bytes(data))
    with pytest.raises(DataValidationError, match="not a readable zip"):
        read_movielens(broken, dataset="ml-100k")


def test_missing_file_and_wrong_layout(synthetic_ml1m_zip: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no zip or folder"):
        read_movielens(tmp_path / "absent.zip", dataset="ml-100k")
    with pytest.raises(DataValidationError, match=r"missing member\(s\) \['ml-100k/u.data'"):
        read_movielens(synthetic_ml1m_zip, dataset="ml-100k")
    with pytest.raises(ValueError, match="dataset must be one of"):
        read_movielens(synthetic_ml1m_zip, dataset="ml-20m")


def test_read_delimited_reports_invalid_encoding() -> None:
    with pytest.raises(DataValidationError, match=r"x.tsv line 2: not valid utf-8"):
        read_delimited(b"1\ta\n2\t\xff\n", file="x.tsv", sep="\t", columns=["id", "name"], encoding="utf-8")
