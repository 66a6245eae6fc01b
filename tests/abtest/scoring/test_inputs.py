"""Reading and checking the pairs to score: formats, folders, chunking, and the errors that name what is wrong."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from abtest.scoring import InputError, open_pairs


def _write(path: Path, table: pa.Table) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def test_a_parquet_file_is_read_with_its_columns_rows_and_int64_ids(tmp_path: Path) -> None:
    table = pa.table(
        {
            "user_id": pa.array([1, 2, 3], pa.int32()),
            "item_id": pa.array([7, 8, 9], pa.uint16()),
            "rating": [5, 4, 3],  # extra columns are ignored
            "request_id": ["a", None, "c"],
        }
    )
    pairs = open_pairs(_write(tmp_path / "pairs.parquet", table))
    assert (pairs.format, pairs.columns, pairs.rows) == ("parquet", ("user_id", "item_id", "request_id"), 3)
    (chunk,) = list(pairs.chunks(10))
    typed = [("user_id", pa.int64()), ("item_id", pa.int64()), ("request_id", pa.string())]
    assert chunk.schema == pa.schema(typed)
    assert chunk.to_pydict() == {"user_id": [1, 2, 3], "item_id": [7, 8, 9], "request_id": ["a", None, "c"]}


def test_a_folder_is_read_in_path_order_skipping_bookkeeping_files_and_chunked_exactly(tmp_path: Path) -> None:
    folder = tmp_path / "pairs"
    # Two files of several row groups each: chunks cut across row groups and files.
    for index, start in enumerate((0, 23)):
        rows = range(start, start + 23)
        table = pa.table({"user_id": list(rows), "item_id": [r * 10 for r in rows]})
        (folder / "day=1").mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "day=1" / f"part-{index}.parquet", row_group_size=5)
    (folder / "_SUCCESS").write_text("")
    (folder / ".part-0.parquet.crc").write_text("junk")
    pairs = open_pairs(folder)
    assert pairs.rows == 46 and len(pairs.files) == 2
    chunks = list(pairs.chunks(10))
    assert [c.num_rows for c in chunks] == [10, 10, 10, 10, 6]
    assert pa.concat_tables(chunks).column("user_id").to_pylist() == list(range(46))
    assert pairs.columns == ("user_id", "item_id")


def test_row_groups_smaller_than_a_chunk_are_joined(tmp_path: Path) -> None:
    path = tmp_path / "pairs.parquet"
    pq.write_table(pa.table({"user_id": list(range(50)), "item_id": list(range(50))}), path, row_group_size=7)
    chunks = list(open_pairs(path).chunks(20))
    assert [c.num_rows for c in chunks] == [20, 20, 10]
    assert pa.concat_tables(chunks).column("item_id").to_pylist() == list(range(50))


def test_csv_keeps_request_ids_as_text(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("user_id,item_id,request_id\n1,2,007\n3,4,\n")
    pairs = open_pairs(path)
    assert (pairs.format, pairs.rows) == ("csv", 2)
    (chunk,) = list(pairs.chunks(100))
    assert chunk.column("request_id").to_pylist()[0] == "007"
    assert chunk.column("user_id").type == pa.int64()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            pa.table({"user_id": [1], "rating": [5]}),
            r"pairs\.parquet: missing column\(s\) \['item_id'\] .*its columns are \['user_id', 'rating'\]",
        ),
        (
            pa.table({"user_id": [1.0, 2.5], "item_id": [1, 2]}),
            r"pairs\.parquet: column 'user_id' must hold an integer .*its type is double",
        ),
        (
            pa.table({"user_id": [1], "item_id": ["x"]}),
            r"pairs\.parquet: column 'item_id' must hold an integer .*its type is string",
        ),
        (
            pa.table({"user_id": pa.array([1], pa.uint64()), "item_id": [1]}),
            r"'user_id' must hold an integer \(signed, or unsigned of at most 32 bits\), its type is uint64",
        ),
        (
            pa.table({"user_id": [1], "item_id": [1], "request_id": [12]}),
            r"column 'request_id' must hold a string, its type is int64",
        ),
        (
            pa.table({"user_id": [1, 2, None, None], "item_id": [1, 2, 3, 4]}),
            r"pairs\.parquet: column 'user_id' has 2 null value\(s\), the first at row 2 \(rule: every pair has",
        ),
        (
            pa.table({"user_id": pa.array([], pa.int64()), "item_id": pa.array([], pa.int64())}),
            r"input .*pairs\.parquet has no rows \(rule: at least one pair to score\)",
        ),
    ],
)
def test_bad_parquet_input_is_refused_naming_file_column_rule_and_value(
    tmp_path: Path, content: pa.Table, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        open_pairs(_write(tmp_path / "pairs.parquet", content))


def test_a_csv_value_that_is_not_an_integer_is_refused_naming_the_file_and_value(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("user_id,item_id\n1,2\nabc,3\n")
    rule = r"\['user_id', 'item_id'\] are integer ids\)"
    with pytest.raises(InputError, match=r"pairs\.csv: .*'abc'.*" + rule):
        open_pairs(path)


def test_a_csv_empty_id_is_a_null(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text("user_id,item_id\n1,2\n5,\n")
    with pytest.raises(InputError, match=r"column 'item_id' has 1 null value\(s\), the first at row 1"):
        open_pairs(path)


def test_a_later_file_of_a_folder_is_checked_too(tmp_path: Path) -> None:
    _write(tmp_path / "in" / "a.parquet", pa.table({"user_id": [1], "item_id": [1]}))
    _write(tmp_path / "in" / "b.parquet", pa.table({"user_id": [1], "item_id": [1.5]}))
    with pytest.raises(InputError, match=r"b\.parquet: column 'item_id' must hold an integer"):
        open_pairs(tmp_path / "in")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, r"holds no Parquet .* or CSV files"),
        ({"a.parquet": "parquet", "b.csv": "csv"}, r"mixes Parquet .* and CSV .* \(rule: one format per folder\)"),
    ],
)
def test_a_folder_without_one_kind_of_data_files_is_refused(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name, kind in files.items():
        if kind == "csv":
            (folder / name).write_text("user_id,item_id\n1,2\n")
        else:
            _write(folder / name, pa.table({"user_id": [1], "item_id": [2]}))
    with pytest.raises(InputError, match=message):
        open_pairs(folder)


def test_a_file_that_is_not_parquet_is_refused_naming_it(tmp_path: Path) -> None:
    (tmp_path / "pairs.parquet").write_text("user_id,item_id\n1,2\n")
    with pytest.raises(InputError, match=r"pairs\.parquet: not readable as parquet pairs"):
        open_pairs(tmp_path / "pairs.parquet")


def test_a_missing_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nowhere: no such file or folder"):
        open_pairs(tmp_path / "nowhere")


def test_the_digest_changes_with_the_files(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.parquet", pa.table({"user_id": [1], "item_id": [2]}))
    before = open_pairs(path).digest()
    pd.DataFrame({"user_id": [1, 2], "item_id": [2, 3]}).to_parquet(path)
    assert open_pairs(path).digest() != before
