"""The report of ``supervisor_bench.py``: the markdown table of every metric,
pg-supervise next to gunicorn with the ratio of medians, and the table of
anomalous log lines by phase."""

from __future__ import annotations

from harness.lifecycle_trial import SERVERS
from harness.results import summary

METRICS = [
    # key, title, scale, decimals
    ("startup_s", "startup: launch → N workers ready (s)", 1, 3),
    ("replacement_s", "replacement: kill -9 → new worker ready (ms)", 1000, 1),
    ("victim_reaped_s", "  · kill -9 → killed worker reaped (ms)", 1000, 1),
    ("new_process_s", "  · kill -9 → new child process seen (ms)", 1000, 1),
    ("stop_all_gone_s", "idle stop: TERM → master reaped, no descendant (s)", 1, 3),
    ("stop_master_exit_s", "  · TERM → master reaped (s)", 1, 3),
    ("master_wakeups_per_s", "master wake-ups/s (/proc/pid/status)", 1, 2),
    ("master_wakeups_all_threads_per_s", "  · master wake-ups/s, all threads", 1, 2),
    ("master_cpu_ms", "master CPU in idle window (ms, utime+stime)", 1, 0),
    ("master_cpu_sched_ms", "  · same from schedstat (ms, ns resolution)", 1, 2),
    ("worker_wakeups_per_s", "worker wake-ups/s (median of workers)", 1, 2),
]


def fmt_cell(s, scale, dec):
    if not s or s["n"] == 0:
        return "–"
    med = s["median"] * scale
    lo, hi = s["min"] * scale, s["max"] * scale
    out = f"{med:.{dec}f}"
    if f"{lo:.{dec}f}" != f"{hi:.{dec}f}":
        out += f" ({lo:.{dec}f}–{hi:.{dec}f})"
    return out


def ratio(a, b):
    if not a or not b or a["n"] == 0 or b["n"] == 0 or a["median"] is None or b["median"] is None:
        return "–"
    if b["median"] == 0:
        return "– (both 0)" if a["median"] == 0 else "– (gunicorn 0)"
    return f"{a['median'] / b['median']:.2f}×"


def make_table(trials, ns, modes, window):
    groups = {}
    for t in trials:
        groups.setdefault((t["server"], t["workers"], t["preload"]), []).append(t)
    lines = [
        "| metric | N | preload | pg-supervise | gunicorn | ours / gunicorn |",
        "|---|---|---|---|---|---|",
    ]
    summaries = {}
    for key, title, scale, dec in METRICS:
        for n in ns:
            for preload in modes:
                cells = {}
                for server in SERVERS:
                    ts = groups.get((server, n, preload), [])
                    vals = [t[key] for t in ts]
                    s = summary(vals)
                    s["of"] = sum(1 for t in ts if key not in IDLE_KEYS or t.get("idle_window_s"))
                    cells[server] = s
                    summaries[(key, server, n, preload)] = s
                ours, gun = cells["pg-supervise"], cells["gunicorn"]

                def cell(s, scale=scale, dec=dec):
                    txt = fmt_cell(s, scale, dec)
                    if s["n"] < s["of"]:
                        txt += f" [{s['n']}/{s['of']} ok]"
                    return txt

                lines.append(
                    f"| {title} | {n} | {'yes' if preload else 'no'} | {cell(ours)} | "
                    f"{cell(gun)} | {ratio(ours, gun)} |"
                )
    return "\n".join(lines), summaries


IDLE_KEYS = {
    "master_wakeups_per_s",
    "master_wakeups_all_threads_per_s",
    "master_cpu_ms",
    "master_cpu_sched_ms",
    "worker_wakeups_per_s",
}


def anomaly_report(trials):
    counts = {}
    for t in trials:
        for a in t.get("log_anomalies", []):
            k = (t["server"], a["phase"], a["level"], a["event"])
            counts[k] = counts.get(k, 0) + 1
    if not counts:
        return "No warning/error/unformatted log lines."
    out = ["| server | phase | level | line (numbers elided for gunicorn) | count |", "|---|---|---|---|---|"]
    for (server, phase, level, event), c in sorted(counts.items()):
        out.append(f"| {server} | {phase} | {level} | `{event.replace('|', '/')}` | {c} |")
    return "\n".join(out)


def fmt_num(x, dec, scale=1):
    """A number for the progress line: x * scale with dec decimals, or an en dash."""
    return "–" if x is None else f"{x * scale:.{dec}f}"
