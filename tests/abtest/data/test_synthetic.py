"""`python -m abtest.data.synthetic --scale` below 1: sizes that can be generated, and a clear error for scale <=
0."""

from __future__ import annotations

import zipfile

import pytest

from abtest.data import synthetic


@pytest.mark.parametrize("layout", synthetic.LAYOUTS)
@pytest.mark.parametrize("scale", [0.001, 0.01, 0.1, 0.3, 1.0])
def test_scaled_sizes_are_always_generatable(layout, scale):
    n_users, n_items, n_ratings = synthetic.scaled_sizes(layout, scale)
    synthetic.SyntheticSpec(layout, n_users, n_items, n_ratings)  # validates on construction
    real_users, real_items, real_ratings = synthetic.REAL_SIZES[layout]
    assert n_users == max(1, round(real_users * scale)) and n_items == max(2, round(real_items * scale))
    assert n_ratings <= round(real_ratings * scale) or n_ratings == n_users


def test_full_scale_keeps_the_real_sizes_and_small_scales_cap_the_ratings():
    assert synthetic.scaled_sizes("ml-100k", 1.0) == (943, 1682, 100_000)
    assert synthetic.scaled_sizes("ml-1m", 1.0) == (6040, 3706, 1_000_209)
    # 94 users x 168 items: each user rates at most 84 items, the data at most a quarter of the grid
    assert synthetic.scaled_sizes("ml-100k", 0.1) == (94, 168, 94 * 84 // 2)


def test_cli_at_scale_one_tenth_writes_the_zip(tmp_path):
    path = synthetic.main(["--layout", "ml-100k", "--scale", "0.1", "--out", str(tmp_path / "small.zip")])
    with zipfile.ZipFile(path) as archive:
        lines = archive.read("ml-100k/u.data").decode().splitlines()
        users = archive.read("ml-100k/u.user").decode().splitlines()
    assert len(lines) == 3948 and len(users) == 94


@pytest.mark.parametrize("scale", ["0", "-1", "nan", "inf"])
def test_cli_rejects_a_scale_that_is_not_positive_naming_it(tmp_path, capsys, scale):
    with pytest.raises(SystemExit):
        synthetic.main(["--scale", scale, "--out", str(tmp_path / "x.zip")])
    error = capsys.readouterr().err
    assert "argument --scale: scale must be a number > 0" in error and f"got {float(scale)}" in error
    assert not (tmp_path / "x.zip").exists()


def test_scaled_sizes_rejects_an_unknown_layout():
    with pytest.raises(ValueError, match="layout must be one of"):
        synthetic.scaled_sizes("ml-20m", 1.0)
