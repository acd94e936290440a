"""Files planted under a data dir's file names: a FIFO named like an hour file (which
would block pyarrow and DuckDB forever), a link (which may point anywhere) and a file
past the size bound are skipped with one warning naming each, and the rest still loads."""

import os
import shutil
import signal
import warnings

import pytest

import csm_analysis as csm


@pytest.fixture()
def planted_dir(fixture_dir, tmp_path):
    """A copy of the fixture's ``cpu`` table with a planted file beside the real ones."""
    data = tmp_path / "data"
    shutil.copytree(fixture_dir / "cpu", data / "cpu")
    day = next((data / "cpu" / "host=hostB").iterdir())
    return data, day


def _hung(_signum, _frame):
    raise TimeoutError("the reader blocked on a planted file")


def rows_and_warnings(data, read):
    # A reader that opens a FIFO blocks forever: fail after a minute instead.
    signal.signal(signal.SIGALRM, _hung)
    signal.alarm(60)
    try:
        return _read(data, read)
    finally:
        signal.alarm(0)


def _read(data, read):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = read(data, "cpu")
    skipped = [str(w.message) for w in caught if issubclass(w.category, csm.SkippedFile)]
    return len(frame), skipped


@pytest.mark.parametrize("read", [csm.load, csm.load_duckdb])
def test_a_fifo_named_like_an_hour_file_is_skipped_without_blocking(planted_dir, read):
    data, day = planted_dir
    fifo = day / "06.parquet"
    os.mkfifo(fifo)
    rows, skipped = rows_and_warnings(data, read)
    assert rows == 14400
    assert skipped == [f"{fifo}: not read: not a regular file"]


@pytest.mark.parametrize("read", [csm.load, csm.load_duckdb])
def test_a_link_is_not_followed(planted_dir, read, tmp_path):
    data, day = planted_dir
    # A link to a real csm file: followed, it would count its rows twice.
    target = next(day.iterdir())
    link = day / "07.parquet"
    os.symlink(target, link)
    rows, skipped = rows_and_warnings(data, read)
    assert rows == 14400
    assert skipped == [f"{link}: not read: a link"]


@pytest.mark.parametrize("read", [csm.load, csm.load_duckdb])
def test_a_file_past_the_size_bound_is_not_read(planted_dir, read):
    data, day = planted_dir
    big = day / "08.parquet"
    with open(big, "wb") as f:
        # Sparse: the size is what is checked, before anything is read.
        f.truncate(csm.MAX_FILE_BYTES + 1)
    rows, skipped = rows_and_warnings(data, read)
    assert rows == 14400
    assert skipped == [
        f"{big}: not read: {csm.MAX_FILE_BYTES + 1} bytes, more than the {csm.MAX_FILE_BYTES} a csm file holds"
    ]
