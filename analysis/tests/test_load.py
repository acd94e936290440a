"""The package against Parquet csm wrote: every table loads, filters work, pandas and
DuckDB agree, and the questions come out with the exact known numbers."""

import glob

import pandas as pd
import pyarrow.parquet as pq
import pytest

import csm_analysis as csm


def test_every_table_loads_with_host_and_date_columns(fixture_dir):
    expected = {"cpu": 14400, "mem": 1440, "net": 14400, "net_uid": 7200, "ping": 240, "events": 2,
                "cpu_1m": 240, "net_1m": 240, "net_uid_1m": 120, "mem_1m": 240, "ping_1m": 240}
    for table, rows in expected.items():
        frame = csm.load(fixture_dir, table)
        assert len(frame) == rows, table
        assert set(frame["host"]) == {"hostB"}
        assert "date" in frame and "ts" in frame
        assert str(frame["ts"].dt.tz) == "UTC"
    assert csm.load(fixture_dir, "ubc").empty


def test_unknown_table_is_a_clear_error(fixture_dir):
    with pytest.raises(ValueError, match="unknown table"):
        csm.load(fixture_dir, "nope")


def test_time_range_is_half_open_and_hosts_filter(fixture_dir):
    part = csm.load(fixture_dir, "cpu", start="2026-11-25T10:30:00Z", end="2026-11-25T10:31:00Z")
    assert len(part) == 2 * 60
    assert part["ts"].min() >= pd.Timestamp("2026-11-25T10:30:00Z")
    assert part["ts"].max() < pd.Timestamp("2026-11-25T10:31:00Z")
    assert csm.load(fixture_dir, "cpu", hosts="elsewhere").empty
    assert len(csm.load(fixture_dir, "cpu", hosts=["hostB", "x"])) == 14400
    assert csm.load(fixture_dir, "cpu", start="2026-11-26").empty


@pytest.mark.parametrize("table", ["cpu", "mem", "net", "net_uid", "ping", "events", "cpu_1m", "net_1m", "mem_1m", "ping_1m"])
def test_pandas_and_duckdb_agree(fixture_dir, table):
    a = csm.load(fixture_dir, table, start="2026-11-25T10:00:00Z", end="2026-11-25T11:30:00Z")
    b = csm.load_duckdb(fixture_dir, table, start="2026-11-25T10:00:00Z", end="2026-11-25T11:30:00Z")
    assert len(a) == len(b) > 0
    keys = ["host", "ts"] + [k for k in ("uid", "iface", "target", "event") if k in a]
    a = a.sort_values(keys, ignore_index=True)
    b = b.sort_values(keys, ignore_index=True)
    for col in keys + [c for c in a.columns if c.endswith("_ns") or "bytes" in c]:
        pd.testing.assert_series_equal(a[col], b[col], check_dtype=False, check_names=False, obj=col)


def test_plain_pandas_and_pyarrow_read_the_layout(fixture_dir):
    frame = pd.read_parquet(fixture_dir / "cpu")
    assert len(frame) == 14400 and "host" in frame
    for path in glob.glob(str(fixture_dir / "**" / "*.parquet"), recursive=True):
        meta = pq.read_metadata(path).metadata
        assert meta[b"csm.host"] == b"hostB"
        assert b"csm.schema_version" in meta


def test_questions_have_exact_answers(fixture_dir):
    cpu = csm.cpu_by_user(csm.load(fixture_dir, "cpu", end="2026-11-25T12:00:00Z"))
    alice = cpu.set_index("user").loc["alice"]
    assert alice["cpu_s"] == pytest.approx(0.1 * 7199)
    assert alice["cpu_pct_mean"] == pytest.approx(10.0)
    mem = csm.mem_by_user(csm.load(fixture_dir, "mem")).set_index("user")
    assert mem.loc["bob", "rss_mib_mean"] == 300
    asym = csm.asymmetry(csm.load(fixture_dir, "net")).set_index("iface")
    assert asym.loc["eth0", "extra_out_bytes"] == 2000 * 7200
    assert asym.loc["lo", "net_out_bytes"] == 0
    outages = csm.ping_outages(csm.load(fixture_dir, "ping"))
    assert list(outages["target"]) == ["gw.example"]
    assert outages["duration"].iloc[0] == pd.Timedelta(minutes=15)
    assert outages["start_ts"].iloc[0] == pd.Timestamp("2026-11-25T10:30:00Z")


def test_rollups_match_raw_totals(fixture_dir):
    raw = csm.load(fixture_dir, "cpu", end="2026-11-25T12:00:00Z")
    rolled = csm.load(fixture_dir, "cpu_1m")
    assert rolled["cpu_ns"].sum() == raw["cpu_ns"].sum()
    assert (rolled["cpu_pct_max"] >= rolled["cpu_pct"] - 1e-9).all()
    net = csm.load(fixture_dir, "net_1m")
    assert net.groupby("iface")["tx_bytes_per_s_max"].max()["eth0"] == 3000
    ping_raw = csm.load(fixture_dir, "ping", end="2026-11-25T12:00:00Z")
    ping = csm.load(fixture_dir, "ping_1m")
    for col in ("sent", "received"):
        assert ping[col].sum() == ping_raw[col].sum()
    assert ping["measurements"].sum() == len(ping_raw)
    down = ping[ping["received"] == 0]
    assert list(down["target"].unique()) == ["gw.example"] and len(down) == 15
    assert (down["loss_pct"] == 100).all() and down["rtt_p50_ms"].isna().all()
    up = ping[ping["received"] > 0]
    # Every minute's replies are 10, 12 and 14 ms: nearest ranks.
    assert (up["rtt_min_ms"] == 10).all() and (up["rtt_p50_ms"] == 12).all()
    assert (up["rtt_p90_ms"] == 14).all() and (up["rtt_p99_ms"] == 14).all()
    assert (up["rtt_avg_ms"] == 12).all() and (up["loss_pct"] == 0).all()
