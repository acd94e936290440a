"""csm defines loss %, the RTT percentiles and the outages once in Rust (csm-store's
``stats`` and ``outages``: the roll-ups, ``csm report``, ``csm top``, the charts); the
analysis package keeps its own Python and SQL. This test holds them equal on the same
files: ``target/release/examples/definitions`` writes ping rows with known loss, RTTs and
outages through the real store, reads them back and prints the Rust answers as JSON; the
Python functions and the SQL queries run over the files it wrote.

Build it with ``cargo build --release -p csm-store --example definitions``.
"""

import json
import subprocess
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from conftest import REPO, TARGET, _binary

import csm_analysis

QUERIES = REPO / "analysis" / "queries"
HOST = "defs"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The data dir the Rust example wrote, and its answers by target."""
    data = tmp_path_factory.mktemp("definitions") / "data"
    out = subprocess.run(
        [str(_binary(TARGET / "examples" / "definitions")), "--data-dir", str(data), "--host", HOST],
        check=True,
        capture_output=True,
        text=True,
    )
    return data, json.loads(out.stdout)


def _sql(query: str, data: Path) -> pd.DataFrame:
    text = (QUERIES / query).read_text().replace("<data-dir>", str(data))
    return duckdb.sql(text).df()


def _none(value):
    return None if value is None or pd.isna(value) else value


def _us(value) -> int:
    return None if value is None or pd.isna(value) else pd.Timestamp(value).value // 1000


def _summaries(frame: pd.DataFrame) -> dict:
    columns = ["sent", "received", "loss_pct", "rtt_p50_ms", "rtt_p90_ms", "rtt_p99_ms", "rtt_max_ms"]
    return {
        row["target"]: {c: _none(row[c]) for c in columns}
        for _, row in frame.iterrows()
        if row["host"] == HOST
    }


def _outages(frame: pd.DataFrame) -> dict:
    found: dict = {}
    for _, row in frame.iterrows():
        found.setdefault(row["target"], []).append(
            {
                "start_us": _us(row["start_ts"]),
                "end_us": _us(row["end_ts"]),
                "duration_s": float(row["duration_s"]),
                "measurements": int(row["measurements"]),
                "ongoing": bool(row["ongoing"]),
            }
        )
    return found


def _rust_summaries(answers: dict) -> dict:
    return {target: {k: v for k, v in a.items() if k != "outages"} for target, a in answers.items()}


def _rust_outages(answers: dict) -> dict:
    return {target: a["outages"] for target, a in answers.items() if a["outages"]}


def test_the_fixture_exercises_every_case(written):
    _, rust = written
    # Partial loss, nothing sent (no figure) and no loss at all; a p99 where nearest rank
    # differs from quantile_disc's floor index; closed and ongoing outages.
    assert rust["a"]["loss_pct"] == 100 * 18 / 30
    assert rust["b"]["loss_pct"] is None and rust["b"]["sent"] == 0
    assert rust["c"]["loss_pct"] == 100 * 1 / 12
    assert rust["a"]["rtt_p99_ms"] == 30.25 and rust["a"]["rtt_p90_ms"] == 20.5
    assert [o["ongoing"] for o in rust["a"]["outages"]] == [False, False, True]


def test_python_gives_the_rust_loss_and_percentiles(written):
    data, rust = written
    ping = csm_analysis.load(data, "ping")
    assert _summaries(csm_analysis.ping_summary(ping)) == _rust_summaries(rust)


def test_sql_gives_the_rust_loss_and_percentiles(written):
    data, rust = written
    assert _summaries(_sql("ping_summary.sql", data)) == _rust_summaries(rust)


def test_python_and_sql_give_the_rust_outages(written):
    data, rust = written
    ping = csm_analysis.load(data, "ping")
    assert _outages(csm_analysis.ping_outages(ping)) == _rust_outages(rust)
    assert _outages(_sql("ping_outages.sql", data)) == _rust_outages(rust)
