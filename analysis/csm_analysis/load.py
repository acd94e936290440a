"""Reading tables for a time range and a set of hosts, with pyarrow or DuckDB."""

from __future__ import annotations

import datetime as _dt
import os
import re
import stat
import warnings
from typing import Iterable, Optional, Sequence, Tuple, Union

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

TABLES = ("cpu", "mem", "net", "net_uid", "ping", "ubc", "events")
ROLLUPS = ("cpu_1m", "net_1m", "net_uid_1m", "mem_1m", "ping_1m")

TimeLike = Union[str, _dt.datetime, pd.Timestamp, None]
Hosts = Union[str, Iterable[str], None]

# Durations as csm-plot reads them (the Rust `humantime` crate): a number and a unit,
# several of them in a row (`1h30m`, `1h 30m`); `m` is minutes and `M` months.
_DURATION_PART = re.compile(r"\s*(\d+)\s*([A-Za-z]+)")
_SECONDS = {}
for _names, _seconds in (
    (("nsec", "ns"), 1e-9),
    (("usec", "us"), 1e-6),
    (("msec", "ms"), 1e-3),
    (("seconds", "second", "sec", "s"), 1),
    (("minutes", "minute", "min", "m"), 60),
    (("hours", "hour", "hr", "h"), 3600),
    (("days", "day", "d"), 86400),
    (("weeks", "week", "w"), 7 * 86400),
    (("months", "month", "M"), 2_630_016),  # 30.44 days, as humantime
    (("years", "year", "y"), 31_557_600),  # 365.25 days
):
    for _name in _names:
        _SECONDS[_name] = _seconds

_TIME_HELP = (
    "use RFC 3339 (2026-11-25T08:00:00Z), a date (2026-11-25, UTC midnight), "
    "a negative duration (-24h, -1w, -1h30m) or now, as csm-plot does"
)


def parse_duration(text: str) -> _dt.timedelta:
    """A duration as csm-plot reads it: ``500ms``, ``90s``, ``5m``, ``2h``, ``1w``,
    ``1h30m``; ValueError naming the text otherwise."""
    rest, total, parts = text.strip(), 0.0, 0
    while rest:
        m = _DURATION_PART.match(rest)
        if not m or m.group(2) not in _SECONDS:
            raise ValueError(f"invalid duration {text!r}; use a number and a unit, like 500ms, 1s, 5m, 2h, 90d or 1w")
        total += int(m.group(1)) * _SECONDS[m.group(2)]
        rest, parts = rest[m.end():].lstrip(), parts + 1
    if parts == 0 or total <= 0:
        raise ValueError(f"invalid duration {text!r}: must be more than zero")
    return _dt.timedelta(seconds=total)


def _timestamp(value: TimeLike, now: Optional[pd.Timestamp] = None) -> Optional[pd.Timestamp]:
    """A time as csm-plot's ``--from``/``--to`` read it: RFC 3339, a date (UTC midnight),
    ``now`` or a negative duration from now (``-24h``, ``-1w``); also a datetime or
    Timestamp. Naive values are UTC. ValueError naming the text otherwise."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        now = pd.Timestamp.now(tz="UTC") if now is None else now
        if text == "now":
            return now
        if text.startswith("-"):
            return now - parse_duration(text[1:])
        try:
            ts = pd.Timestamp(text)
        except ValueError:
            raise ValueError(f"invalid time {value!r}; {_TIME_HELP}") from None
    else:
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


def _check_data_dir(data_dir: Union[str, os.PathLike]) -> str:
    """The data dir as a path; a missing one is an error naming it (an empty frame would
    hide a typo)."""
    path = os.fspath(data_dir)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"csm data dir {path!r} does not exist or is not a folder")
    return path


# Largest data file read: csm's biggest (a million-row hour part) is tens of megabytes;
# a larger one was not written by csm, and pyarrow would hold it whole.
MAX_FILE_BYTES = 256 * 2**20


class SkippedFile(UserWarning):
    """A file under the data dir that is not read: not a regular file (a FIFO would
    block the reader forever, a link may point anywhere) or larger than
    :data:`MAX_FILE_BYTES`. The message names the file and why."""


def _readable(path: str) -> bool:
    """Whether ``path`` is a regular file (by ``lstat``: a link is not followed) of at
    most :data:`MAX_FILE_BYTES`; else a :class:`SkippedFile` warning names it."""
    try:
        st = os.lstat(path)
    except OSError as err:
        warnings.warn(f"{path}: not read: {err.strerror}", SkippedFile, stacklevel=3)
        return False
    if not stat.S_ISREG(st.st_mode):
        kind = "a link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        warnings.warn(f"{path}: not read: {kind}", SkippedFile, stacklevel=3)
        return False
    if st.st_size > MAX_FILE_BYTES:
        warnings.warn(
            f"{path}: not read: {st.st_size} bytes, more than the {MAX_FILE_BYTES} a csm file holds",
            SkippedFile,
            stacklevel=3,
        )
        return False
    return True


def _parquet_files(root: str) -> list:
    """Every complete data file under a table: ``*.parquet``, not hidden (temporaries),
    regular files within the size bound only (see :func:`_readable`)."""
    files = []
    for dirpath, _dirs, names in os.walk(root):
        files.extend(
            os.path.join(dirpath, n) for n in names if n.endswith(".parquet") and not n.startswith(".")
        )
    return sorted(f for f in files if _readable(f))


def unified_schema(files: Sequence[str]) -> Optional[pa.Schema]:
    """The union by name of every file's schema: schemas only ever gain nullable columns,
    so a fleet of mixed csm versions reads as one table with every column, null where a
    file lacks it. Reads only the footers. Unreadable files are left to the read itself."""
    schemas = {}
    for f in files:
        try:
            schema = pq.read_schema(f)
        except (OSError, pa.ArrowInvalid):
            continue
        schemas.setdefault(str(schema.remove_metadata()), schema.remove_metadata())
    if not schemas:
        return None
    return pa.unify_schemas(list(schemas.values()))


def _dataset(data_dir: Union[str, os.PathLike], table: str) -> Optional[ds.Dataset]:
    root = os.path.join(_check_data_dir(data_dir), table)
    if not os.path.isdir(root):
        return None
    partitioning = ds.partitioning(
        pa.schema([("host", pa.string()), ("date", pa.string())]), flavor="hive"
    )
    files = _parquet_files(root)
    schema = unified_schema(files)
    if schema is None:
        return None
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
    Times read as csm-plot's (``-1w``, ``2026-11-25``, RFC 3339). An absent table gives an
    empty frame; a missing data dir is a FileNotFoundError naming it."""
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

    _check_data_dir(data_dir)
    con = duckdb.connect(database)
    for table in TABLES + ROLLUPS:
        root = os.path.join(os.fspath(data_dir), table)
        files = _parquet_files(root) if os.path.isdir(root) else []
        if not files:
            continue
        # The files checked one by one, not a glob: DuckDB would open a FIFO and block.
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        con.execute(
            f"create or replace view {table} as select * from read_parquet([{listed}], "
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
