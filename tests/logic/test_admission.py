"""The managed queue's rule (worker/admission.py) and the deadline layer
(http/deadlines.py), driven in the test process: CoDel's overload state, the
order the queue is served in, what is refused, and what each early end
answers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from supervisor.http.deadlines import Deadlines, request_start
from supervisor.shared.channel import COUNTERS, QUEUE_BUCKETS, Load
from supervisor.worker.admission import HOLD_EVERY, HOLD_SAMPLES, CoDel, Gate, QueuePolicy, Tally
from supervisor.worker.time_budget import LEFT, SHED, TimeBudget, current, set_request_timeout


def budget(arrived_ago: float = 0.0, timeout: float = 30.0) -> TimeBudget:
    """A request that waited ``arrived_ago`` before its app started (just now)."""
    now = time.monotonic()
    return TimeBudget(now - arrived_ago, now - arrived_ago + timeout, started=now)


def counts(tally: Tally) -> dict[str, Any]:
    return Load.read(tally.words)


# -- CoDel ----------------------------------------------------------------------


def test_codel_is_overloaded_only_when_an_interval_never_drained():
    codel = CoDel(QueuePolicy(target=0.01))  # interval: 0.1 s
    t = 100.0
    for i in range(20):  # waits around the target, one of them short: absorbed bursts
        codel.observe(0.002 if i % 5 == 0 else 0.03, t + i * 0.01)
    assert not codel.overloaded
    t = 200.0
    for i in range(30):  # every wait above the target for whole intervals: a standing queue
        codel.observe(0.05, t + i * 0.01)
    assert codel.overloaded
    assert codel.sloughs(0.021) and not codel.sloughs(0.019)  # twice the target
    codel.idle(t + 1.0)  # the queue emptied after its interval ended
    assert not codel.overloaded


def test_codel_target_follows_the_median_hold_time_within_bounds():
    codel = CoDel(QueuePolicy())
    assert codel.target == 0.100  # nothing held yet
    for _ in range(10):
        codel.held(0.3)
    assert codel.target == pytest.approx(0.3)  # 300 ms requests: a 300 ms wait is one turn
    assert codel.interval == pytest.approx(1.5)
    window = HOLD_SAMPLES * HOLD_EVERY  # one hold in HOLD_EVERY is kept
    for _ in range(window):
        codel.held(5.0)  # slow reports: the target stops at 1 s
    assert codel.target == 1.0
    for _ in range(window):
        codel.held(0.0001)
    assert codel.target == 0.100  # queries of 0.1 ms: a standing queue of tens of ms is no backlog
    assert codel.interval == pytest.approx(0.5)
    assert CoDel(QueuePolicy(target=0.01)).interval == 0.2  # judged over enough requests
    assert CoDel(QueuePolicy(target=0.3)).target == 0.3


def test_no_shed_never_refuses():
    codel = CoDel(QueuePolicy(shed=False, target=0.01))
    for i in range(30):
        codel.observe(1.0, 300.0 + i * 0.01)
    assert codel.overloaded and not codel.sloughs(10.0)


# -- the gate -------------------------------------------------------------------


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def overload(gate: Gate) -> None:
    """The gate's CoDel found its queue overloaded (how: the CoDel tests above),
    for the rest of the test."""
    gate.codel.overloaded = True
    gate.codel.interval_ends = time.monotonic() + 60


def test_a_free_permit_needs_no_wait_and_counts_the_queue_time():
    tally = Tally()
    gate = Gate(2, QueuePolicy(target=0.01), tally)
    assert gate.poll(budget(0.003)) is True
    assert gate.poll(budget()) is True
    assert gate.poll(budget()) is None  # none left: wait
    c = counts(tally)
    assert c["admitted"] == 2 and sum(c["queue_buckets"]) == 2
    assert c["queue_buckets"][1] == 1  # 3 ms: the 5 ms bucket


def test_fifo_while_healthy_newest_first_while_overloaded():
    async def scenario(overloaded: bool) -> list[str]:
        gate = Gate(1, QueuePolicy(target=10.0), Tally())  # a loose target: nobody is sloughed
        assert gate.poll(None)
        served: list[str] = []

        async def one(name: str) -> None:
            assert await gate.wait(budget())
            served.append(name)

        tasks = [asyncio.create_task(one(n)) for n in "abc"]
        await asyncio.sleep(0)
        if overloaded:
            overload(gate)
        for _ in range(4):
            gate.release()
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        return served

    assert run(scenario(False)) == ["a", "b", "c"]
    assert run(scenario(True)) == ["c", "b", "a"]


def test_while_overloaded_the_long_waiters_are_refused_and_a_full_queue_refuses_at_once():
    async def scenario() -> tuple[list[bool], dict[str, Any]]:
        tally = Tally()
        gate = Gate(2, QueuePolicy(target=0.01), tally)
        assert gate.poll(None) and gate.poll(None)
        overload(gate)
        old = asyncio.create_task(gate.wait(budget(arrived_ago=1.0)))  # waited far past 2 x target
        fresh = asyncio.create_task(gate.wait(budget()))
        await asyncio.sleep(0)
        assert gate.queued == 2
        refused_at_once = await gate.wait(budget())  # a full round (2 permits) already queued
        gate.release()  # newest first: "fresh" gets it, "old" is sloughed
        return [await old, await fresh, refused_at_once], counts(tally)

    (old, fresh, at_once), c = run(scenario())
    assert (old, fresh, at_once) == (False, True, False)
    assert c["shed"] == 2 and c["admitted"] == 1


def test_work_without_a_budget_is_never_refused():
    async def scenario() -> bool:
        gate = Gate(1, QueuePolicy(target=0.01), Tally())
        assert gate.poll(None)
        overload(gate)
        waiting = asyncio.create_task(gate.wait(None))
        await asyncio.sleep(0)
        gate.release()
        return await waiting

    assert run(scenario()) is True


def test_a_cancelled_waiter_is_skipped_and_its_permit_not_lost():
    async def scenario() -> tuple[bool, int]:
        gate = Gate(1, QueuePolicy(target=10.0), Tally())
        assert gate.poll(None)
        gone = asyncio.create_task(gate.wait(budget()))
        waiting = asyncio.create_task(gate.wait(budget()))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        assert gate.queued == 1
        gate.release()
        admitted = await waiting
        gate.release()
        return admitted, gate.free

    assert run(scenario()) == (True, 1)


def test_the_overloaded_flag_clears_once_the_queue_stays_empty():
    async def scenario() -> list[int]:
        tally = Tally()
        gate = Gate(1, QueuePolicy(target=0.005), tally)
        assert gate.poll(None)
        overload(gate)
        gate.codel.interval_ends = time.monotonic() + 0.05
        gate._changed()
        flags = [tally.words[Load.OVERLOADED]]
        gate.release()  # the queue is empty now
        await asyncio.sleep(0.1)  # past the interval: a timer checks without a request
        flags.append(tally.words[Load.OVERLOADED])
        return flags

    assert run(scenario()) == [1, 0]


def test_the_load_words_round_trip():
    tally = Tally()
    tally.admitted(0.2)
    tally.shed()
    tally.left(running=True)
    tally.left(running=False)
    tally.cancelled()
    tally.expired()
    tally.bad_request_start()
    tally.overloaded(True)
    c = counts(tally)
    assert c["overloaded"] is True
    assert all(c[name] == 1 for name in COUNTERS)
    assert (
        len(c["queue_buckets"]) == len(QUEUE_BUCKETS) + 1
        and c["queue_buckets"][QUEUE_BUCKETS.index(0.25)] == 1
    )


# -- X-Request-Start --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "age"),
    [
        (b"t=1700000000.5", 9.5),  # nginx: seconds with ms
        (b"1700000000500", 9.5),  # Heroku: ms
        (b"t=1700000000500000", 9.5),  # Apache: µs
        (b"1700000000500000000", 9.5),  # ns
        (b" t=1700000010.0 ", 0.0),
        (b"t=1700000011", 0.0),  # a proxy's clock slightly ahead: no negative queue
    ],
)
def test_request_start_units_are_told_apart_by_magnitude(value: bytes, age: float):
    assert request_start(value, now_wall=1_700_000_010.0) == pytest.approx(age, abs=1e-3)


@pytest.mark.parametrize("value", [b"", b"t=", b"yesterday", b"t=nan", b"t=-5", b"t=inf", b"t=1"])
def test_a_request_start_that_is_not_one_is_none(value: bytes):
    assert request_start(value, now_wall=1_700_000_000.0) is None


# -- the deadline layer -----------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int | None:
        starts = [m for m in self.messages if m["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None


def scope(**extensions: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [],
        "client": ("127.0.0.1", 5000),
        "extensions": dict(extensions),
    }


async def nothing() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


def serve(app: Any, timeout: float = 30.0, **extensions: Any) -> tuple[Recorder, dict[str, Any]]:
    tally = Tally()
    send = Recorder()
    layer = Deadlines(app, timeout, tally, trusted=lambda host: host == "127.0.0.1", retry_after=3)
    asyncio.run(layer(scope(**extensions), nothing, send))
    return send, counts(tally)


def test_a_deadline_answers_504_and_cancels_where_the_app_waits():
    cancelled = []

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    began = time.monotonic()
    send, c = serve(slow, timeout=0.05)
    assert send.status == 504 and time.monotonic() - began < 1.0
    assert cancelled and c["expired"] == 1


def test_a_refusal_is_a_503_with_retry_after_whatever_the_app_makes_of_it():
    async def framework(scope: Any, receive: Any, send: Any) -> None:
        try:
            current.get().end(SHED)  # what the pool does when the gate refuses
            raise RuntimeError("pool refused")
        except RuntimeError:  # a framework turns it into its own 500...
            await send({"type": "http.response.start", "status": 500, "headers": []})
            await send({"type": "http.response.body", "body": b"oops"})

    send, _ = serve(framework)
    assert send.status == 503
    headers = dict(send.messages[0]["headers"])
    assert headers[b"retry-after"] == b"3" and send.messages[-1]["body"].startswith(b"overloaded")


def test_a_client_gone_before_its_app_runs_nothing():
    ran = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        ran.append(True)

    async def scenario() -> tuple[Recorder, dict[str, Any]]:
        lost = asyncio.get_running_loop().create_future()
        lost.set_result(None)
        tally, send = Tally(), Recorder()
        await Deadlines(app, 30.0, tally)(scope(**{"supervise.connection_lost": lost}), nothing, send)
        return send, counts(tally)

    send, c = asyncio.run(scenario())
    assert not ran and send.messages == [] and c["left_queued"] == 1


def test_a_client_gone_mid_request_gets_nothing_and_the_app_is_cancelled():
    async def scenario() -> tuple[Recorder, dict[str, Any], str | None]:
        lost = asyncio.get_running_loop().create_future()
        seen: list[str | None] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            b = current.get()
            b.running = True  # it got its connection
            asyncio.get_running_loop().call_later(0.01, lost.set_result, None)
            try:
                await asyncio.sleep(10)
            finally:
                seen.append(b.outcome)

        tally, send = Tally(), Recorder()
        await Deadlines(app, 30.0, tally)(scope(**{"supervise.connection_lost": lost}), nothing, send)
        return send, counts(tally), seen[0]

    send, c, outcome = asyncio.run(scenario())
    assert send.messages == [] and c["left_running"] == 1 and outcome == LEFT


def test_once_the_response_started_the_deadline_no_longer_cuts_it():
    async def stream(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.1)  # past the deadline, mid-stream
        await send({"type": "http.response.body", "body": b"done"})

    send, c = serve(stream, timeout=0.02)
    assert send.status == 200 and send.messages[-1]["body"] == b"done" and c["expired"] == 0


def test_the_apps_own_error_is_not_ours_to_answer():
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        serve(broken)


def test_an_app_can_give_one_request_more_time():
    async def report(scope: Any, receive: Any, send: Any) -> None:
        set_request_timeout(1.0)
        await asyncio.sleep(0.1)  # past --request-timeout (0.05), within its own second
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    send, c = serve(report, timeout=0.05)
    assert send.status == 200 and c["expired"] == 0
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive number of seconds"):
            set_request_timeout(bad)
    set_request_timeout(5)  # outside a request: nothing to do


def test_a_request_that_arrived_past_its_deadline_is_answered_without_running():
    ran = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        ran.append(True)

    stale = scope()
    stale["headers"] = [(b"x-request-start", f"t={time.time() - 5:.3f}".encode())]
    tally, send = Tally(), Recorder()
    asyncio.run(Deadlines(app, 1.0, tally, trusted=lambda host: True)(stale, nothing, send))
    assert send.status == 504 and not ran and counts(tally)["expired"] == 1


def test_what_the_app_does_before_its_checkout_is_not_queue_time():
    """An app that works 30 ms before it asks for a connection has not queued 30 ms."""
    tally = Tally()
    gate = Gate(1, QueuePolicy(target=0.01), tally)
    now = time.monotonic()
    b = TimeBudget(now - 0.032, now + 30, started=now - 0.030)  # 2 ms before its app, then 30 ms of app
    assert gate.poll(b) is True and b.queue_s == pytest.approx(0.002, abs=1e-3)


def test_a_proxy_clock_behind_ours_moves_the_deadline_not_the_queue():
    """A proxy whose stamp is 60 ms old (its clock behind ours, or its own
    queue) is not a 60 ms wait in this worker: nothing is refused for it."""
    seen: list[tuple[float, float]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        b = current.get()
        seen.append((b.before_app(), time.monotonic() - b.arrival))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    tally = Tally()
    layer = Deadlines(app, 30.0, tally, trusted=lambda host: True)
    skewed = scope()
    skewed["headers"] = [(b"x-request-start", f"t={time.time() - 0.06:.6f}".encode())]
    send = Recorder()
    asyncio.run(layer(skewed, nothing, send))
    assert send.status == 200
    before_app, since_arrival = seen[0]
    assert before_app < 0.03 and since_arrival >= 0.06


def test_the_deadline_stops_while_the_app_waits_for_its_client():
    """A slow upload is the client's time: 0.15 s of body at a 0.1 s deadline is
    not a timeout; 0.15 s of server work is."""

    async def upload(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await asyncio.sleep(0.05)  # the server's own work: within its 0.1 s
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def slow_body() -> dict[str, Any]:
        await asyncio.sleep(0.15)
        return {"type": "http.request", "body": b"x" * 10, "more_body": False}

    tally, send = Tally(), Recorder()
    asyncio.run(Deadlines(upload, 0.1, tally)(scope(), slow_body, send))
    assert send.status == 200 and counts(tally)["expired"] == 0

    async def slow_work(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await asyncio.sleep(0.15)

    send = Recorder()
    asyncio.run(Deadlines(slow_work, 0.1, tally)(scope(), nothing, send))
    assert send.status == 504


def test_a_cancellation_that_is_not_ours_goes_through():
    """The server cancelling a request (it stops) is not a deadline: it propagates."""

    async def scenario() -> tuple[bool, Recorder]:
        started = asyncio.Event()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            started.set()
            await asyncio.sleep(10)

        send = Recorder()
        task = asyncio.ensure_future(Deadlines(app, 30.0, Tally())(scope(), nothing, send))
        await started.wait()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True, send
        return False, send

    propagated, send = asyncio.run(scenario())
    assert propagated and send.messages == []


def test_an_end_after_the_request_finished_changes_nothing():
    """A task the request spawned outlives it; the client leaving then, or
    a refusal in that task's checkout, must not touch the finished request."""

    async def scenario() -> tuple[Any, list[Any]]:
        lost = asyncio.get_running_loop().create_future()
        kept: list[Any] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            kept.append(current.get())
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        await Deadlines(app, 30.0, Tally())(scope(**{"supervise.connection_lost": lost}), nothing, Recorder())
        lost.set_result(None)
        kept[0].end(SHED)
        await asyncio.sleep(0)
        return kept[0], kept

    budget, _ = asyncio.run(scenario())
    assert budget.outcome is None and budget.finished and not budget.cancelled


def test_the_deadline_watch_stays_as_long_as_the_requests_in_flight():
    """One timer for every deadline: the heap drops finished requests in bulk."""

    async def scenario() -> tuple[int, int]:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        layer = Deadlines(app, 30.0, Tally())
        for _ in range(5000):
            await layer(scope(), nothing, Recorder())
        assert layer._watch is not None
        return len(layer._watch), 5000

    left, served = asyncio.run(scenario())
    assert left <= 64 < served


def test_expiries_are_judged_when_they_come_due_whatever_order_they_arrive_in():
    """One watch for every request of a loop: a deadline moved later (the
    middle request's) or earlier (the last one's) is kept, not the first."""

    async def scenario() -> list[int | None]:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            set_request_timeout(scope["timeout"])
            await asyncio.sleep(scope["work"])
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        layer = Deadlines(app, 0.2, Tally())
        plan = [(0.2, 0.3), (1.0, 0.3), (0.05, 0.1), (0.2, 0.05)]  # (its timeout, its work)
        sends = [Recorder() for _ in plan]

        async def one(i: int) -> None:
            s = scope()
            s["timeout"], s["work"] = plan[i]
            await layer(s, nothing, sends[i])

        await asyncio.gather(*(one(i) for i in range(len(plan))))
        return [s.status for s in sends]

    assert asyncio.run(scenario()) == [504, 200, 504, 200]
