"""What analysis/ promises beside csm-plot and the SQL queries: the same time syntax, a
missing data dir named, every column of a mixed-version fleet kept, and one outage
definition in Python and SQL."""

import datetime as dt
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import csm_analysis as csm
from csm_analysis.load import _timestamp

QUERIES = Path(__file__).resolve().parents[1] / "queries"
NOW = pd.Timestamp("2026-11-25T12:00:00Z")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("-1w", "2026-11-18T12:00:00Z"),
        ("-24h", "2026-11-24T12:00:00Z"),
        ("-90m", "2026-11-25T10:30:00Z"),
        ("-1h30m", "2026-11-25T10:30:00Z"),
        ("-500ms", "2026-11-25T11:59:59.5Z"),
        ("now", "2026-11-25T12:00:00Z"),
        ("2026-11-20", "2026-11-20T00:00:00Z"),
        ("2026-11-20T08:30:00+01:00", "2026-11-20T07:30:00Z"),
    ],
)
def test_times_read_as_csm_plot_reads_them(text, expected):
    assert _timestamp(text, now=NOW) == pd.Timestamp(expected)


@pytest.mark.parametrize("text", ["yesterday", "-1x", "-0s", "-"])
def test_a_bad_time_is_an_error_naming_it(text):
    with pytest.raises(ValueError, match=repr(text[1:] if text.startswith("-") else text)):
        _timestamp(text, now=NOW)


def test_load_takes_a_week_back(fixture_dir):
    # csm-plot --from -1w works; so does load: the rows of the last 7 days from now.
    everything = csm.load(fixture_dir, "cpu")
    week_ago = pd.Timestamp.now(tz="UTC") - pd.Timedelta(days=7)
    frame = csm.load(fixture_dir, "cpu", start="-1w")
    assert len(frame) == (everything["ts"] >= week_ago).sum()
    assert len(csm.load(fixture_dir, "cpu", start="2026-11-25T11:00:00Z", end="2026-11-25T11:00:10Z")) == 20


def test_a_missing_data_dir_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "no-such-dir"
    for call in (csm.load, csm.load_duckdb):
        with pytest.raises(FileNotFoundError, match="no-such-dir"):
            call(missing, "cpu")
    with pytest.raises(FileNotFoundError, match="no-such-dir"):
        csm.connect(missing)
    # An existing data dir without the table is still just empty.
    assert csm.load(tmp_path, "cpu").empty


def _drop_column(table_dir: Path, column: str) -> None:
    """Rewrites every file of a table without `column`: what an older csm wrote."""
    for path in table_dir.rglob("*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.drop_columns([column]), path)


def test_a_mixed_version_fleet_keeps_every_column_for_every_host(fixture_dir, tmp_path):
    fleet = tmp_path / "fleet"
    for host in ("a-old", "m-new", "z-old"):
        source = fixture_dir / "cpu" / "host=hostB"
        shutil.copytree(source, fleet / "cpu" / f"host={host}")
    for old in ("a-old", "z-old"):
        _drop_column(fleet / "cpu" / f"host={old}", "source")
    cpu = csm.load(fleet, "cpu")
    assert "source" in cpu.columns
    per_host = cpu.groupby("host")["source"].apply(lambda s: s.notna().sum())
    rows = cpu.groupby("host").size()
    assert per_host.to_dict() == {"a-old": 0, "m-new": rows["m-new"], "z-old": 0}
    assert rows["m-new"] == len(csm.load(fixture_dir, "cpu")) > 0
    assert set(cpu.loc[cpu["host"] == "m-new", "source"]) == {"ebpf"}


def _sql_outages(data_dir: Path) -> pd.DataFrame:
    sql = (QUERIES / "ping_outages.sql").read_text().replace("<data-dir>", str(data_dir))
    return duckdb.sql(sql).df()


def _write_ping(data_dir: Path, host: str, rows: list) -> None:
    """Ping rows (ts, target, sent, received, error) into csm's layout, one file per hour."""
    frame = pd.DataFrame(rows, columns=["ts", "target", "sent", "received", "error"])
    schema = pa.schema(
        [
            ("ts", pa.timestamp("us", "UTC")),
            ("target", pa.string()),
            ("sent", pa.int64()),
            ("received", pa.int64()),
            ("error", pa.string()),
        ]
    )
    for hour, part in frame.groupby(frame["ts"].dt.floor("h")):
        folder = data_dir / "ping" / f"host={host}" / f"date={hour:%Y-%m-%d}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False), folder / f"{hour:%H}.parquet")


def _outage_fixture(data_dir: Path) -> None:
    t0 = pd.Timestamp("2026-11-25T22:08:00.123456Z")
    us = pd.Timedelta(microseconds=1)
    rows = []
    # gw: measurements ~2 s apart with microsecond jitter; silent from the 5th to the 10th,
    # answered again, then silent from the 20th to the last (an ongoing outage).
    for i in range(25):
        ts = t0 + pd.Timedelta(seconds=2 * i) + 7 * i * us
        silent = 5 <= i < 11 or i >= 20
        rows.append((ts, "gw", 3, 0 if silent else 3, None))
    # nohost: never resolves, every measurement sent nothing, with the resolver's error.
    for i in range(4):
        rows.append((t0 + pd.Timedelta(seconds=10 * i), "nohost.invalid", 0, 0, "nohost.invalid: Name or service not known"))
    _write_ping(data_dir, "h1", rows)


def test_python_and_sql_outages_agree_to_the_microsecond(tmp_path):
    _outage_fixture(tmp_path)
    python = csm.ping_outages(csm.load(tmp_path, "ping"))
    sql = _sql_outages(tmp_path)
    assert list(python.columns) == list(sql.columns) == csm.OUTAGE_COLUMNS
    assert len(python) == len(sql) == 3
    for column in csm.OUTAGE_COLUMNS:
        left, right = list(python[column]), list(sql[column])
        if column in ("start_ts", "end_ts"):
            left = [None if pd.isna(v) else pd.Timestamp(v).tz_convert("UTC") for v in left]
            right = [None if pd.isna(v) else pd.Timestamp(v).tz_localize("UTC") if pd.Timestamp(v).tzinfo is None else pd.Timestamp(v).tz_convert("UTC") for v in right]
        if column == "duration":
            left, right = [pd.Timedelta(v) for v in left], [pd.Timedelta(v) for v in right]
        if column == "first_error":
            left, right = [None if pd.isna(v) else v for v in left], [None if pd.isna(v) else v for v in right]
        assert left == right, column
    gw = python[python["target"] == "gw"].reset_index(drop=True)
    # Closed: from the 5th measurement to the 11th (the first answered one).
    assert gw.loc[0, "start_ts"] == pd.Timestamp("2026-11-25T22:08:10.123491Z")
    assert gw.loc[0, "end_ts"] == pd.Timestamp("2026-11-25T22:08:22.123533Z")
    assert gw.loc[0, "duration_s"] == 12.000042
    assert not gw.loc[0, "ongoing"]
    # Ongoing: no end, the duration runs one step past the last measurement.
    assert pd.isna(gw.loc[1, "end_ts"]) and gw.loc[1, "ongoing"]
    assert gw.loc[1, "measurements"] == 5
    assert gw.loc[1, "duration_s"] == 10.000035
    nohost = python[python["target"] == "nohost.invalid"].iloc[0]
    assert nohost["first_error"] == "nohost.invalid: Name or service not known"
    assert nohost["ongoing"] and nohost["duration_s"] == 40.0


def test_measurements_not_sent_on_time_are_left_out_by_both(tmp_path):
    """A stalled daemon (``not measured``) makes no outage; real loss after it does."""
    t0 = pd.Timestamp("2026-11-25T22:08:00Z")
    late = "not measured: started after its deadline"
    rows = [(t0, "lo", 3, 3, None)]
    rows += [(t0 + pd.Timedelta(seconds=s), "lo", 0, 0, late) for s in (1, 2, 3)]
    rows += [(t0 + pd.Timedelta(seconds=4), "lo", 3, 3, None)]
    rows += [(t0 + pd.Timedelta(seconds=5), "lo", 0, 0, late)]
    rows += [(t0 + pd.Timedelta(seconds=6), "lo", 3, 0, None)]
    rows += [(t0 + pd.Timedelta(seconds=7), "lo", 3, 3, None)]
    _write_ping(tmp_path, "h1", rows)
    python = csm.ping_outages(csm.load(tmp_path, "ping"))
    sql = _sql_outages(tmp_path)
    assert list(python["measurements"]) == list(sql["measurements"]) == [1]
    assert list(python["duration_s"]) == list(sql["duration_s"]) == [1.0]
    assert python.loc[0, "start_ts"] == t0 + pd.Timedelta(seconds=6)


def test_python_and_sql_outages_agree_on_the_store_fixture(fixture_dir):
    python = csm.ping_outages(csm.load(fixture_dir, "ping"))
    sql = _sql_outages(fixture_dir)
    assert list(python["duration_s"]) == list(sql["duration_s"]) == [900.0]
    assert list(python["measurements"]) == list(sql["measurements"])
    assert list(python["ongoing"]) == list(sql["ongoing"]) == [False]
