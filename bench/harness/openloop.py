"""Open-loop HTTP load: requests sent at a fixed rate whatever the server does,
each on a new connection (as from many clients), each client giving up after
a timeout. A closed-loop tool (wrk) waits for each answer before it asks
again, so a server past capacity slows its clients down and never shows the
collapse that real traffic, which does not wait, causes.

Every request is timed from when it was *scheduled*, not sent: the generator's
own lag is charged to the server (no coordinated omission). A request is
"answered in time" when its whole 2xx response arrived within the timeout.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

try:
    import uvloop
except ImportError:  # pragma: no cover - uvicorn[standard] brings it
    uvloop = None  # type: ignore[assignment]


@dataclass
class Phase:
    """``rate`` requests per second for ``seconds``."""

    rate: float
    seconds: float


@dataclass
class Outcome:
    sent_at: float  # scheduled send time, seconds from the run's start
    phase: int
    status: int | None  # None: no answer in time (or the connection failed)
    latency: float | None  # seconds from the scheduled send to the whole answer
    error: str | None = None


@dataclass
class Run:
    phases: list[Phase]
    outcomes: list[Outcome] = field(default_factory=list)
    max_lag: float = 0.0  # the generator's worst lateness sending a request

    def phase(self, i: int) -> list[Outcome]:
        return [o for o in self.outcomes if o.phase == i]


async def _one(
    host: str, port: int, path: str, timeout: float, t0: float, sent_at: float, phase: int
) -> Outcome:
    loop = asyncio.get_running_loop()
    deadline = t0 + sent_at + timeout
    writer = None
    try:
        async with asyncio.timeout_at(deadline):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            line = await reader.readline()
            status = int(line.split()[1]) if line else None
            await reader.read()  # to the end: the whole answer
        latency = loop.time() - (t0 + sent_at)
        return Outcome(sent_at, phase, status, latency)
    except TimeoutError:
        return Outcome(sent_at, phase, None, None, "timeout")
    except (OSError, ValueError, IndexError) as exc:
        return Outcome(sent_at, phase, None, None, type(exc).__name__)
    finally:
        if writer is not None:
            writer.close()  # a client that gives up closes its connection (FIN)


async def _drive(host: str, port: int, path: str, phases: list[Phase], timeout: float) -> Run:
    loop = asyncio.get_running_loop()
    run = Run(phases)
    t0 = loop.time() + 0.1
    tasks: set[asyncio.Task[Outcome]] = set()
    start = 0.0
    for index, phase in enumerate(phases):
        n = int(phase.rate * phase.seconds)
        for i in range(n):
            sent_at = start + i / phase.rate
            delay = t0 + sent_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                run.max_lag = max(run.max_lag, -delay)
            task = asyncio.create_task(_one(host, port, path, timeout, t0, sent_at, index))
            tasks.add(task)
            task.add_done_callback(lambda t: (tasks.discard(t), run.outcomes.append(t.result())))
        start += phase.seconds
    if tasks:
        await asyncio.wait(tasks)
    run.outcomes.sort(key=lambda o: o.sent_at)
    return run


def drive(port: int, path: str, phases: list[Phase], timeout: float = 1.0, host: str = "127.0.0.1") -> Run:
    """Run the phases one after the other against ``host:port``; bounded in
    time (the phases, plus ``timeout``)."""
    coro = _drive(host, port, path, phases, timeout)
    if uvloop is not None:
        return uvloop.run(coro)
    return asyncio.run(coro)


def in_time(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.status is not None and 200 <= o.status < 300]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(run: Run, index: int, capacity: float) -> dict[str, Any]:
    """One phase: goodput (answered in time per second, and as a share of
    ``capacity``), the p50/p99 of answered requests, and how the rest ended."""
    phase = run.phases[index]
    outcomes = run.phase(index)
    ok = in_time(outcomes)
    latencies = [o.latency for o in ok if o.latency is not None]
    refused = sum(1 for o in outcomes if o.status == 503)
    timed_out = sum(1 for o in outcomes if o.status is None and o.error == "timeout")
    other = len(outcomes) - len(ok) - refused - timed_out
    goodput = len(ok) / phase.seconds
    return {
        "rate": phase.rate,
        "seconds": phase.seconds,
        "sent": len(outcomes),
        "answered_in_time": len(ok),
        "goodput_rps": round(goodput, 1),
        "goodput_share": round(goodput / capacity, 3) if capacity else None,
        "p50_ms": _ms(percentile(latencies, 0.5)),
        "p99_ms": _ms(percentile(latencies, 0.99)),
        "refused_503": refused,
        "timed_out": timed_out,
        "other": other,
    }


def recovery(run: Run, after: int) -> float | None:
    """Seconds from the start of phase ``after`` until every request sent from
    then on was answered in time (0.0: at once; None: never within the phase)."""
    start = sum(p.seconds for p in run.phases[:after])
    outcomes = run.phase(after)
    failed = [o.sent_at for o in outcomes if not (o.status is not None and 200 <= o.status < 300)]
    if not failed:
        return 0.0
    last = max(failed)
    if last >= start + run.phases[after].seconds - 1.0:
        return None  # still failing in the phase's last second
    return round(last - start + 1.0 / run.phases[after].rate, 3)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def now() -> float:
    return time.monotonic()


async def _saturate(host: str, port: int, path: str, clients: int, seconds: float) -> int:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    done = 0

    async def client() -> None:
        nonlocal done
        while loop.time() < end:
            outcome = await _one(host, port, path, 5.0, loop.time(), 0.0, 0)
            if outcome.status is not None and 200 <= outcome.status < 300 and loop.time() < end:
                done += 1

    await asyncio.gather(*(client() for _ in range(clients)))
    return done


def capacity(port: int, path: str, clients: int = 32, seconds: float = 4.0, host: str = "127.0.0.1") -> float:
    """Requests per second the server completes when ``clients`` clients ask
    again as soon as they are answered (a new connection each time, as the
    open-loop load does): its capacity on this path."""
    coro = _saturate(host, port, path, clients, seconds)
    done = uvloop.run(coro) if uvloop is not None else asyncio.run(coro)
    return done / seconds
