"""Load csm's Parquet tables into pandas or DuckDB.

The layout is ``<data-dir>/<table>/host=<host>/date=<YYYY-MM-DD>/<HH>[.N].parquet`` (UTC),
so ``host`` and ``date`` are Hive partitions: they come back as columns, and a tree holding
several hosts' data dirs is one data set.
"""

from .load import (
    MAX_FILE_BYTES,
    ROLLUPS,
    SkippedFile,
    TABLES,
    connect,
    load,
    load_duckdb,
    parse_duration,
    table_glob,
    time_range,
    unified_schema,
)
from .questions import (
    asymmetry,
    cpu_by_user,
    mem_by_user,
    OUTAGE_COLUMNS,
    ping_outages,
    ping_summary,
    traffic_by_interface,
)

__all__ = [
    "TABLES",
    "ROLLUPS",
    "MAX_FILE_BYTES",
    "SkippedFile",
    "connect",
    "load",
    "load_duckdb",
    "table_glob",
    "time_range",
    "parse_duration",
    "unified_schema",
    "OUTAGE_COLUMNS",
    "cpu_by_user",
    "mem_by_user",
    "traffic_by_interface",
    "asymmetry",
    "ping_outages",
    "ping_summary",
]
