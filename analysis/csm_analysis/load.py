"""Reading tables for a time range and a set of hosts, with pyarrow or DuckDB."""

from __future__ import annotations

import datetime as _dt
import os
import re
from typing import Iterable, Optional, Sequence, Tuple, Union

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

TABLES = ("cpu", "mem", "net", "net_uid", "ping", "ubc", "events")
ROLLUPS = ("cpu_1m", "net_1m", "net_uid_1m", "mem_1m", "ping_1m")

TimeLike = Union[str, _dt.datetime, pd.Timestamp, None]
Hosts = Union[str, Iterable[str], None]

_DURATION = re.compile(r"^-(\d+)(ms|s|m|h|d)$")
_UNITS = {"ms": "milliseconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _timestamp(value: TimeLike) -> Optional[pd.Timestamp]:
    """RFC 3339, a date (UTC midnight), a negative duration from now (``-24h``), or a
    datetime; naive values are UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        m = _DURATION.match(value.strip())
        if m:
            delta = _dt.timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
            return pd.Timestamp.now(tz="UTC") - delta
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def time_range(start: TimeLike = None, end: TimeLike = None) -> Tuple[Optional[pd.Timestamp], Optional[pd.Timestamp]]:
    """``[start, end)`` as UTC timestamps (either may be None: open)."""
    return _timestamp(start), _timestamp(end)


def _hosts(hosts: Hosts) -> Optional[list]:
    if hosts is None:
        return None
    if isinstance(hosts, str):
        return [hosts]
    return list(hosts)


def _check_table(table: str) -> None:
    if table not in TABLES + ROLLUPS:
        raise ValueError(f"unknown table {table!r}; csm writes {', '.join(TABLES + ROLLUPS)}")


def _dataset(data_dir: Union[str, os.PathLike], table: str) -> Optional[ds.Dataset]:
    root = os.path.join(os.fspath(data_dir), table)
    if not os.path.isdir(root):
        return None
    partitioning = ds.partitioning(
        pa.schema([("host", pa.string()), ("date", pa.string())]), flavor="hive"
    )
    files = []
    for dirpath, _dirs, names in os.walk(root):
        files.extend(
            os.path.join(dirpath, n) for n in names if n.endswith(".parquet") and not n.startswith(".")
        )
    if not files:
        return None
    files.sort()
    # Schemas only ever gain nullable columns: unify the oldest and newest files' schemas
    # so that old and new files read together.
    schemas = {}
    for f in {files[0], files[-1]}:
        try:
            schema = pq.read_schema(f)
        except (OSError, pa.ArrowInvalid):
            continue
        schemas[str(schema)] = schema
    if not schemas:
        return None
    schema = pa.unify_schemas(list(schemas.values()))
    schema = schema.append(pa.field("host", pa.string())).append(pa.field("date", pa.string()))
    return ds.dataset(files, format="parquet", partitioning=partitioning, partition_base_dir=root, schema=schema)


def load(
    data_dir: Union[str, os.PathLike],
    table: str,
    start: TimeLike = None,
    end: TimeLike = None,
    hosts: Hosts = None,
    columns: Optional[Sequence[str]] = None,
) -> pd.DataFrame:
    """Rows of ``table`` with ``start <= ts < end`` from the given hosts (all by default),
    sorted by host and time, as a pandas DataFrame with ``host`` and ``date`` columns.
    An absent table gives an empty frame."""
    _check_table(table)
    dataset = _dataset(data_dir, table)
    if dataset is None:
        return pd.DataFrame(columns=list(columns) if columns else ["ts", "host", "date"])
    lo, hi = time_range(start, end)
    flt = None

    def both(a, b):
        return b if a is None else a & b

    if lo is not None:
        # Date partitions prune whole folders; ts then trims inside the day.
        flt = both(flt, ds.field("date") >= lo.strftime("%Y-%m-%d"))
        flt = both(flt, ds.field("ts") >= pa.scalar(lo.to_pydatetime(), pa.timestamp("us", "UTC")))
    if hi is not None:
        flt = both(flt, ds.field("date") <= hi.strftime("%Y-%m-%d"))
        flt = both(flt, ds.field("ts") < pa.scalar(hi.to_pydatetime(), pa.timestamp("us", "UTC")))
    host_list = _hosts(hosts)
    if host_list is not None:
        flt = both(flt, ds.field("host").isin(host_list))
    cols = None
    if columns is not None:
        cols = list(dict.fromkeys(list(columns) + ["ts", "host"]))
    frame = dataset.to_table(columns=cols, filter=flt).to_pandas()
    return frame.sort_values(["host", "ts"], kind="stable").reset_index(drop=True)


def table_glob(data_dir: Union[str, os.PathLike], table: str) -> str:
    """The glob DuckDB (or Spark, Trino…) reads a table with."""
    _check_table(table)
    return os.path.join(os.fspath(data_dir), table, "**", "*.parquet")


def connect(data_dir: Union[str, os.PathLike], database: str = ":memory:"):
    """A DuckDB connection with one view per table present under ``data_dir``
    (``cpu``, ``net``, ``cpu_1m``…), Hive partitions ``host`` and ``date`` included."""
    import duckdb

    con = duckdb.connect(database)
    for table in TABLES + ROLLUPS:
        root = os.path.join(os.fspath(data_dir), table)
        if not os.path.isdir(root) or not any(
            n.endswith(".parquet") for _d, _s, names in os.walk(root) for n in names
        ):
            continue
        glob = table_glob(data_dir, table).replace("'", "''")
        con.execute(
            f"create or replace view {table} as select * from read_parquet('{glob}', "
            "hive_partitioning = true, hive_types = {'host': VARCHAR, 'date': VARCHAR}, union_by_name = true)"
        )
    return con


def load_duckdb(
    data_dir: Union[str, os.PathLike],
    table: str,
    start: TimeLike = None,
    end: TimeLike = None,
    hosts: Hosts = None,
    columns: Optional[Sequence[str]] = None,
) -> pd.DataFrame:
    """Same as :func:`load`, through DuckDB."""
    _check_table(table)
    con = connect(data_dir)
    views = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
    if table not in views:
        return pd.DataFrame(columns=list(columns) if columns else ["ts", "host", "date"])
    lo, hi = time_range(start, end)
    where, params = [], []
    if lo is not None:
        where += ["date >= ?", "ts >= ?"]
        params += [lo.strftime("%Y-%m-%d"), lo.to_pydatetime()]
    if hi is not None:
        where += ["date <= ?", "ts < ?"]
        params += [hi.strftime("%Y-%m-%d"), hi.to_pydatetime()]
    host_list = _hosts(hosts)
    if host_list is not None:
        where.append("host in (" + ", ".join("?" for _ in host_list) + ")")
        params += host_list
    select = "*"
    if columns is not None:
        select = ", ".join(f'"{c}"' for c in dict.fromkeys(list(columns) + ["ts", "host"]))
    sql = f"select {select} from {table}"
    if where:
        sql += " where " + " and ".join(where)
    sql += " order by host, ts"
    return con.execute(sql, params).df()
