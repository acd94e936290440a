"""The original tool's questions, as small functions over loaded frames."""

from __future__ import annotations

import math

import pandas as pd


def cpu_by_user(cpu: pd.DataFrame) -> pd.DataFrame:
    """CPU per host and user: seconds used, mean and peak % (100 = one core) over the
    time covered."""
    if cpu.empty:
        return pd.DataFrame(columns=["host", "user", "uid", "cpu_s", "cpu_pct_mean", "cpu_pct_max"])
    frame = cpu.assign(user=cpu["user"].fillna(cpu["uid"].astype(str)))
    # Time covered: every distinct interval once (rows of one interval share their ts).
    covered_s = frame.drop_duplicates(["host", "ts"]).groupby("host")["dur_ms"].sum() / 1000
    out = (
        frame.groupby(["host", "user", "uid"], as_index=False)
        .agg(cpu_ns=("cpu_ns", "sum"), cpu_pct_max=("cpu_pct", "max"))
        .assign(cpu_s=lambda d: d["cpu_ns"] / 1e9)
    )
    span = out["host"].map(covered_s).clip(lower=1e-9)
    out["cpu_pct_mean"] = out["cpu_s"] * 100 / span
    return out[["host", "user", "uid", "cpu_s", "cpu_pct_mean", "cpu_pct_max"]].sort_values(
        ["host", "cpu_s"], ascending=[True, False], ignore_index=True
    )


def mem_by_user(mem: pd.DataFrame) -> pd.DataFrame:
    """Memory per host and user: mean and peak RSS in MiB (works on `mem` and `mem_1m`)."""
    mean_col = "rss_bytes" if "rss_bytes" in mem else "rss_bytes_mean"
    max_col = "rss_bytes" if "rss_bytes" in mem else "rss_bytes_max"
    if mem.empty:
        return pd.DataFrame(columns=["host", "user", "uid", "rss_mib_mean", "rss_mib_max"])
    frame = mem.assign(user=mem["user"].fillna(mem["uid"].astype(str)))
    out = frame.groupby(["host", "user", "uid"], as_index=False).agg(
        rss_mib_mean=(mean_col, "mean"), rss_mib_max=(max_col, "max")
    )
    out[["rss_mib_mean", "rss_mib_max"]] /= 2**20
    return out.sort_values(["host", "rss_mib_mean"], ascending=[True, False], ignore_index=True)


def traffic_by_interface(net: pd.DataFrame) -> pd.DataFrame:
    """Bytes and packets in and out per host and interface, and the peak rates."""
    if net.empty:
        return pd.DataFrame(columns=["host", "iface", "rx_bytes", "tx_bytes"])
    frame = net.assign(
        rx_rate=net["rx_bytes"] * 1000 / net["dur_ms"].clip(lower=1),
        tx_rate=net["tx_bytes"] * 1000 / net["dur_ms"].clip(lower=1),
    )
    return frame.groupby(["host", "iface"], as_index=False).agg(
        rx_bytes=("rx_bytes", "sum"),
        tx_bytes=("tx_bytes", "sum"),
        rx_packets=("rx_packets", "sum"),
        tx_packets=("tx_packets", "sum"),
        rx_bytes_per_s_max=("rx_rate", "max"),
        tx_bytes_per_s_max=("tx_rate", "max"),
    )


def asymmetry(net: pd.DataFrame) -> pd.DataFrame:
    """How asymmetric the traffic was, per host and interface: out minus in, interval by
    interval, summed separately where more went out (a relay's hidden uploads) and where
    more came in; the totals are bytes."""
    if net.empty:
        return pd.DataFrame(columns=["host", "iface", "extra_out_bytes", "extra_in_bytes", "net_out_bytes"])
    diff = net["tx_bytes"] - net["rx_bytes"]
    frame = net.assign(extra_out=diff.clip(lower=0), extra_in=(-diff).clip(lower=0))
    out = frame.groupby(["host", "iface"], as_index=False).agg(
        extra_out_bytes=("extra_out", "sum"), extra_in_bytes=("extra_in", "sum")
    )
    out["net_out_bytes"] = out["extra_out_bytes"] - out["extra_in_bytes"]
    return out


#: The columns of an outage, the same in :func:`ping_outages` and
#: ``queries/ping_outages.sql`` (see there for what each means).
OUTAGE_COLUMNS = [
    "host",
    "target",
    "start_ts",
    "end_ts",
    "duration",
    "duration_s",
    "measurements",
    "first_error",
    "ongoing",
]


def ping_outages(ping: pd.DataFrame) -> pd.DataFrame:
    """When each ping target was down, by the one definition ``queries/ping_outages.sql``
    also implements (a test holds them equal to the microsecond): an outage is a run of
    consecutive measurements of a target (on one host) with no reply (``received = 0``).

    ``start_ts`` is the first of them; ``end_ts`` the first answered measurement after it,
    NaT while the outage goes on (``ongoing``); ``duration`` runs to ``end_ts``, or for an
    ongoing outage to its last measurement plus one interval (the step before that
    measurement); ``first_error`` is the first measurement's error (None for plain loss).

    A measurement the daemon could not send on time (``sent = 0`` and an error starting
    with ``not measured``: the daemon was stalled, not the target) is left out, as if the
    daemon had not run then.
    """
    ping = ping[~_not_measured(ping)]
    if ping.empty:
        return pd.DataFrame(columns=OUTAGE_COLUMNS)
    rows = []
    frame = ping.sort_values(["host", "target", "ts"], kind="stable")
    for (host, target), group in frame.groupby(["host", "target"], sort=True):
        ts = list(group["ts"])
        down = list(group["received"] == 0)
        errors = list(group["error"]) if "error" in group else [None] * len(ts)
        first = 0
        while first < len(ts):
            if not down[first]:
                first += 1
                continue
            last = first
            while last + 1 < len(ts) and down[last + 1]:
                last += 1
            rows.append(_outage(host, target, ts, errors, first, last))
            first = last + 1
    out = pd.DataFrame(rows, columns=OUTAGE_COLUMNS)
    out["measurements"] = out["measurements"].astype("int64")
    out["ongoing"] = out["ongoing"].astype(bool)
    return out.sort_values(["host", "target", "start_ts"], ignore_index=True)


def _not_measured(ping: pd.DataFrame) -> pd.Series:
    """Measurements the daemon could not send on time (see ``ping_outages``)."""
    if "error" not in ping or "sent" not in ping:
        return pd.Series(False, index=ping.index)
    late = ping["error"].fillna("").astype(str).str.startswith("not measured")
    return late & (ping["sent"] == 0)


def _outage(host, target, ts, errors, first, last) -> dict:
    """One outage: measurements ``first..=last`` of a target failed."""
    ongoing = last + 1 == len(ts)
    end = pd.NaT if ongoing else ts[last + 1]
    if ongoing:
        step = ts[last] - ts[last - 1] if last > 0 else pd.Timedelta(0)
        stop = ts[last] + step
    else:
        stop = end
    error = errors[first]
    return {
        "host": host,
        "target": target,
        "start_ts": ts[first],
        "end_ts": end,
        "duration": stop - ts[first],
        "duration_s": (stop - ts[first]).total_seconds(),
        "measurements": last - first + 1,
        "first_error": None if pd.isna(error) else error,
        "ongoing": ongoing,
    }


def ping_summary(ping: pd.DataFrame) -> pd.DataFrame:
    """Loss and RTT percentiles per host and target, by csm's one definition of each
    (``queries/ping_summary.sql`` implements the same; a test holds both equal to the Rust
    definitions that ``csm report``, the roll-ups and the charts use).

    ``loss_pct`` is ``100 * (sent - received) / sent`` (a reply beyond the echoes sent
    counts for none), None when nothing was sent; ``rtt_p50_ms``, ``rtt_p90_ms`` and
    ``rtt_p99_ms`` are nearest-rank percentiles over every reply (the ⌈n·q⌉-th smallest of
    the n RTTs, not pandas' interpolating ``quantile``); ``rtt_max_ms`` the largest.
    """
    rows = []
    for (host, target), group in ping.groupby(["host", "target"], sort=True):
        sent = int(group["sent"].sum())
        received = int(group["received"].sum())
        rtts = sorted(float(r) for replies in group["rtts_ms"] for r in replies)
        rows.append(
            {
                "host": host,
                "target": target,
                "sent": sent,
                "received": received,
                "loss_pct": loss_pct(sent, received),
                "rtt_p50_ms": nearest_rank(rtts, 0.5),
                "rtt_p90_ms": nearest_rank(rtts, 0.9),
                "rtt_p99_ms": nearest_rank(rtts, 0.99),
                "rtt_max_ms": rtts[-1] if rtts else None,
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


#: The columns of :func:`ping_summary` and ``queries/ping_summary.sql``.
SUMMARY_COLUMNS = [
    "host",
    "target",
    "sent",
    "received",
    "loss_pct",
    "rtt_p50_ms",
    "rtt_p90_ms",
    "rtt_p99_ms",
    "rtt_max_ms",
]


def loss_pct(sent: int, received: int):
    """The share of echoes lost in percent; None when nothing was sent."""
    if sent <= 0:
        return None
    return 100.0 * (sent - min(max(received, 0), sent)) / sent


def nearest_rank(sorted_values: list, q: float):
    """The ⌈n·q⌉-th smallest of n sorted values (at least the first); None when empty."""
    if not sorted_values:
        return None
    rank = math.ceil(len(sorted_values) * min(max(q, 0.0), 1.0))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]
