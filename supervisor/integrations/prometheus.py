"""Prometheus metrics for ``supervise``, in prometheus_client's multiprocess mode.

On when ``PROMETHEUS_MULTIPROC_DIR`` is set and ``prometheus_client`` is
installed (``pip install 'pg-supervise[prometheus]'``); scraped from
``/metrics`` on the master's ``--health-bind`` listener. Every process writes
its values to files in that directory and the master adds them up when it is
scraped, so a scrape never waits on a worker.

* master: ``supervise_workers_started_total`` (each fork) and
  ``supervise_workers_exited_total{reason}`` (``stopped``: the master asked;
  ``finished``: ``main`` returned; ``crashed``; ``killed``: the master killed
  it for missing its heartbeat or its stop deadline). When a worker is reaped
  the master calls ``mark_process_dead(pid)``, so its live gauges disappear.
* each worker: ``supervise_worker_up{worker}`` and, per database,
  ``supervise_pool_size``, ``supervise_pool_available``,
  ``supervise_pool_requests_waiting`` and ``supervise_pool_max``, refreshed
  when it is ready and then every ``UPDATE_EVERY`` seconds.

* per worker, read by the master from the worker's heartbeat page at each
  scrape (nothing to write, nothing on the request path):
  ``supervise_requests_admitted_total``, ``supervise_requests_shed_total``
  (refused as overload, 503), ``supervise_requests_expired_total`` (past
  ``--request-timeout``, 504), ``supervise_requests_abandoned_total{when}``
  (the client left while ``queued`` or ``running``),
  ``supervise_queries_cancelled_total`` (cancelled in PostgreSQL for a request
  that ended early), ``supervise_request_start_ignored_total`` (a malformed
  ``X-Request-Start``), ``supervise_overloaded{worker}`` (1 while the worker's
  managed queue is overloaded) and ``supervise_queue_seconds`` (a histogram of
  the time from a request's arrival to its connection or thread).

Metrics the application itself records with prometheus_client in its workers
land in the same directory and are served too.
"""

from __future__ import annotations

import glob
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from supervisor.logging import get_logger

log = get_logger()

UPDATE_EVERY = 5.0  # seconds between a worker's refreshes of its pool gauges

_metrics: dict[str, Any] = {}


def enable(
    hooks: Any,
    *,
    fresh: bool = True,
    workers: Callable[[], list[dict[str, Any]]] | None = None,
) -> Callable[[], tuple[bytes, str]] | None:
    """Register the metric steps on ``hooks`` (the master's) and return what
    renders ``/metrics``; None, with a warning, without prometheus_client.
    ``fresh``: clear the directory of a previous run's files (not after a
    re-exec, whose workers still write there)."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    if sys.modules.get("prometheus_client") is not None and not _multiprocess_ready():
        log.warning(
            "metrics off: prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set",
        )
        return None
    try:
        import prometheus_client
        from prometheus_client import multiprocess
    except ImportError:
        log.warning(
            "metrics off: PROMETHEUS_MULTIPROC_DIR is set but prometheus_client is not "
            "installed (pip install 'pg-supervise[prometheus]')"
        )
        return None
    os.makedirs(directory, exist_ok=True)
    if fresh:
        # prometheus_client sums every file it finds: a previous run's would count
        for path in glob.glob(os.path.join(directory, "*.db")):
            os.unlink(path)
    if not _metrics:
        _metrics.update(
            started=prometheus_client.Counter(
                "supervise_workers_started", "Worker processes forked by the master."
            ),
            exited=prometheus_client.Counter(
                "supervise_workers_exited", "Worker processes that exited, by reason.", ["reason"]
            ),
            up=prometheus_client.Gauge(
                "supervise_worker_up", "1 while the worker runs.", ["worker"], multiprocess_mode="liveall"
            ),
            **{
                key: prometheus_client.Gauge(
                    f"supervise_{key}",
                    text,
                    ["worker", "database"],
                    multiprocess_mode="liveall",
                )
                for key, text in (
                    ("pool_size", "Connections the worker's pool holds."),
                    ("pool_available", "Idle connections in the worker's pool."),
                    ("pool_requests_waiting", "Requests queued for a connection."),
                    ("pool_max", "Most connections the worker's pool may hold."),
                )
            },
        )
    hooks.register("child_exit", _child_exit, builtin=True)
    hooks.register("worker_ready", _worker_ready, builtin=True)
    # Not built-in, so it runs after every user before_fork: a failing one
    # means no fork, and then nothing was started.
    hooks.register("before_fork", _before_fork)
    log.info("metrics on", directory=directory)

    def render() -> tuple[bytes, str]:
        registry = prometheus_client.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
        if workers is not None:
            registry.register(_LoadCollector(workers))
        return prometheus_client.generate_latest(registry), prometheus_client.CONTENT_TYPE_LATEST

    return render


class _LoadCollector:
    """The workers' request counts (``status.workers`` rows), as metric families."""

    def __init__(self, workers: Callable[[], list[dict[str, Any]]]) -> None:
        self._workers = workers

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        from supervisor.shared.channel import QUEUE_BUCKETS

        counters = {
            "admitted": CounterMetricFamily(
                "supervise_requests_admitted", "Requests given a connection or a thread.", labels=["worker"]
            ),
            "shed": CounterMetricFamily(
                "supervise_requests_shed", "Requests refused as overload (503).", labels=["worker"]
            ),
            "expired": CounterMetricFamily(
                "supervise_requests_expired", "Requests past --request-timeout (504).", labels=["worker"]
            ),
            "cancelled": CounterMetricFamily(
                "supervise_queries_cancelled",
                "Queries cancelled in PostgreSQL for requests that ended early.",
                labels=["worker"],
            ),
            "bad_request_start": CounterMetricFamily(
                "supervise_request_start_ignored", "Malformed X-Request-Start headers.", labels=["worker"]
            ),
        }
        abandoned = CounterMetricFamily(
            "supervise_requests_abandoned", "Requests whose client left first.", labels=["worker", "when"]
        )
        overloaded = GaugeMetricFamily(
            "supervise_overloaded", "1 while the worker's managed queue is overloaded.", labels=["worker"]
        )
        queue = HistogramMetricFamily(
            "supervise_queue_seconds",
            "From a request's arrival to its database connection or request thread.",
            labels=["worker"],
        )
        for row in self._workers():
            load, worker = row.get("load") or {}, str(row["worker"])
            if not load or row.get("state") != "ready":
                continue
            for key, family in counters.items():
                family.add_metric([worker], load[key])
            abandoned.add_metric([worker, "queued"], load["left_queued"])
            abandoned.add_metric([worker, "running"], load["left_running"])
            overloaded.add_metric([worker], 1 if load["overloaded"] else 0)
            total, buckets = 0, []
            for bound, n in zip([*map(str, QUEUE_BUCKETS), "+Inf"], load["queue_buckets"], strict=True):
                total += n
                buckets.append((bound, total))
            queue.add_metric([worker], buckets, sum_value=None)  # a sum is not kept
        yield from [*counters.values(), abandoned, overloaded, queue]


def _multiprocess_ready() -> bool:
    from prometheus_client import values

    return "MultiProcessValue" in getattr(values.ValueClass, "__qualname__", "")


def exit_reason(exit_code: int | None, signal: int | None, reason: str | None) -> str:
    """The ``reason`` label of a worker's exit, from what ``child_exit`` gets."""
    if exit_code == 0:
        return "stopped" if reason else "finished"
    if reason is None:
        return "crashed"
    # the master asked it to stop and it did not exit cleanly in time, or the
    # master killed it for a missed heartbeat
    return "killed"


# -- master steps ---------------------------------------------------------------


def _before_fork(info: Any) -> None:
    _metrics["started"].inc()


def _child_exit(info: Any) -> None:
    from prometheus_client import multiprocess

    _metrics["exited"].labels(exit_reason(info.exit_code, info.signal, info.reason)).inc()
    if info.pid is not None:
        multiprocess.mark_process_dead(info.pid)  # type: ignore[no-untyped-call]  # untyped upstream


# -- worker steps ---------------------------------------------------------------


def _worker_ready(worker: Any) -> None:
    _metrics["up"].labels(str(worker.id)).set(1)
    _refresh(worker.id)
    threading.Thread(target=_refresher, args=(worker,), name="supervise-metrics", daemon=True).start()


def _refresher(worker: Any) -> None:
    while not worker.stopping.wait(UPDATE_EVERY):
        _refresh(worker.id)


def _refresh(worker_id: int) -> None:
    from supervisor.database.registry import databases

    for db in databases():
        snapshot = db.snapshot()
        for key, value in snapshot.items():
            name = "pool_requests_waiting" if key == "requests_waiting" else key
            _metrics[name].labels(str(worker_id), db.name).set(value)
