"""Load csm's Parquet tables into pandas or DuckDB.

The layout is ``<data-dir>/<table>/host=<host>/date=<YYYY-MM-DD>/<HH>[.N].parquet`` (UTC),
so ``host`` and ``date`` are Hive partitions: they come back as columns, and a tree holding
several hosts' data dirs is one data set.
"""

from .load import TABLES, ROLLUPS, connect, load, load_duckdb, table_glob, time_range
from .questions import (
    asymmetry,
    cpu_by_user,
    mem_by_user,
    ping_outages,
    traffic_by_interface,
)

__all__ = [
    "TABLES",
    "ROLLUPS",
    "connect",
    "load",
    "load_duckdb",
    "table_glob",
    "time_range",
    "cpu_by_user",
    "mem_by_user",
    "traffic_by_interface",
    "asymmetry",
    "ping_outages",
]
