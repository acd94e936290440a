"""Several hosts' data dirs copied into one tree are one data set, with host a column —
the daemon's own output (hostA, real eBPF collection) beside the fixture (hostB)."""

import glob

import pyarrow.parquet as pq

import csm_analysis as csm


def test_daemon_output_reads(daemon_dir):
    files = glob.glob(str(daemon_dir / "**" / "*.parquet"), recursive=True)
    assert files
    for path in files:
        pq.read_table(path)  # every visible file is complete
    events = csm.load(daemon_dir, "events")
    assert {"start", "stop"} <= set(events["event"])
    cpu = csm.load(daemon_dir, "cpu")
    assert len(cpu) > 0 and set(cpu["source"]) == {"ebpf"}


def test_two_hosts_are_one_dataset_in_pandas_and_duckdb(fleet_dir, daemon_dir, fixture_dir):
    cpu = csm.load(fleet_dir, "cpu")
    assert set(cpu["host"]) == {"hostA", "hostB"}
    assert (cpu["host"] == "hostA").sum() == len(csm.load(daemon_dir, "cpu"))
    assert (cpu["host"] == "hostB").sum() == len(csm.load(fixture_dir, "cpu"))
    only_b = csm.load(fleet_dir, "cpu", hosts="hostB")
    assert set(only_b["host"]) == {"hostB"}

    con = csm.connect(fleet_dir)
    per_host = dict(con.sql("select host, count(*) from cpu group by host").fetchall())
    assert per_host == {"hostA": (cpu["host"] == "hostA").sum(), "hostB": 14400}
    events = dict(con.sql("select host, count(*) from events where event = 'start' group by host").fetchall())
    assert set(events) == {"hostA", "hostB"}
