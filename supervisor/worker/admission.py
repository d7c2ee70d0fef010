"""The managed queue: where a request waits for what it cannot run without
(a database connection for an async app, a request thread for a WSGI app),
and the rule that keeps that wait short when the worker is past capacity.

A request's queue time runs from its arrival (``time_budget.TimeBudget``) to
the moment it gets a permit, less what its app did before it asked. A
:class:`Gate` holds as many permits as the resource has (a pool's
``max_size``, the bridge's ``--threads``), so the resource's own queue
(psycopg_pool's waiters, the executor's) never fills: every wait happens
here, where it can be ordered, shed and counted.

The rule, CoDel as Facebook's servers apply it to requests: the queue is
*overloaded* while the shortest queue time seen over an interval stayed above
a target (a queue that never empties is not absorbing a burst, it is a
standing backlog). While overloaded:

* a request that has already waited twice the target is refused (503 with
  ``Retry-After``): it would only delay the ones behind it;
* a new request finding a full round of requests already queued is refused
  at once, before it costs anything;
* the queue is served newest first (adaptive LIFO): the answers that go out
  still have a client waiting, and the old requests are the ones that time out.

When the queue drains, the next interval clears the state and the queue is
served in arrival order again. The target defaults to the median time a
permit is held, between 100 ms and 1 s, judged over five targets: a queue
of about one hold time is one request per permit waiting its turn, more is a
backlog, and a wait shorter than 100 ms is never worth refusing anyone. Queue
time counts the waits in this worker before the app started and in the gate,
not what the app did before it asked for its connection, nor the time a proxy
says it queued there (its clock may be off by more than a target; that time
counts toward the deadline only).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from supervisor.shared.channel import COUNTERS, QUEUE_BUCKETS, Load
from supervisor.worker.time_budget import TimeBudget

_WORD = {name: Load.FIRST_COUNTER + i for i, name in enumerate(COUNTERS)}
_ADMITTED = _WORD["admitted"]


class Tally:
    """What the worker counts of its requests, in its shared heartbeat page
    (``channel.Load``), which the master reads for ``status``, ``/readyz`` and
    ``/metrics``; a plain list in tests. One writer: the worker's event loop."""

    def __init__(self, words: Any = None) -> None:
        self.words = words if words is not None else [0] * Load.SIZE

    def _add(self, name: str) -> None:
        self.words[_WORD[name]] += 1

    def admitted(self, queue_s: float) -> None:
        words = self.words
        words[_ADMITTED] += 1
        # most waits are short: no bisect for the first bucket
        bucket = 0 if queue_s <= QUEUE_BUCKETS[0] else bisect.bisect_left(QUEUE_BUCKETS, queue_s)
        words[Load.FIRST_BUCKET + bucket] += 1

    def shed(self) -> None:
        self._add("shed")

    def left(self, running: bool) -> None:
        self._add("left_running" if running else "left_queued")

    def cancelled(self) -> None:
        self._add("cancelled")

    def expired(self) -> None:
        self._add("expired")

    def bad_request_start(self) -> None:
        self._add("bad_request_start")

    def overloaded(self, flag: bool) -> None:
        self.words[Load.OVERLOADED] = int(flag)


# A queue that waits less than this is not worth a refusal: no user tells 100 ms
# from nothing, and a server run at capacity (every client asking again as soon
# as it is answered) holds a standing queue of a few tens of ms that never grows.
TARGET_MIN = 0.100
TARGET_MAX = 1.0  # above it, a request has waited for one that is not coming back
TARGET_DEFAULT = TARGET_MIN  # before any hold time is known
INTERVALS_PER_TARGET = 5  # the interval CoDel watches, in targets (folly: 5 ms / 100 ms)
INTERVAL_MIN = 0.2
HOLD_SAMPLES = 64  # hold times kept for the median
HOLD_EVERY = 8  # one hold in this many is kept: the median of a sample, at an eighth of the cost


@dataclass
class QueuePolicy:
    """The settings of every gate of one worker."""

    shed: bool = True  # False: queue and count, never refuse (the deadline still applies)
    lifo: bool = True  # adaptive LIFO while overloaded
    target: float | None = None  # None: the median hold time, clamped


class CoDel:
    """Overload detection on one queue: :meth:`observe` each request's queue
    time as it leaves the queue; :attr:`overloaded` is the state for the
    interval that started last."""

    def __init__(self, policy: QueuePolicy) -> None:
        self.policy = policy
        self.overloaded = False
        self.interval_ends = 0.0
        self._min: float | None = None  # shortest queue time in the current interval
        self._holds: deque[float] = deque(maxlen=HOLD_SAMPLES)
        self._sorted: list[float] = []
        self._skip = 0

    @property
    def target(self) -> float:
        if self.policy.target is not None:
            return self.policy.target
        if not self._sorted:
            return TARGET_DEFAULT
        median = self._sorted[len(self._sorted) // 2]
        return min(max(median, TARGET_MIN), TARGET_MAX)

    @property
    def interval(self) -> float:
        return max(self.target * INTERVALS_PER_TARGET, INTERVAL_MIN)

    def held(self, seconds: float) -> None:
        """A permit was held ``seconds``: the auto target follows the median."""
        if self._sorted:
            self._skip = (self._skip + 1) % HOLD_EVERY
            if self._skip:
                return
        if len(self._holds) == self._holds.maxlen:
            self._sorted.pop(bisect.bisect_left(self._sorted, self._holds[0]))
        self._holds.append(seconds)
        bisect.insort(self._sorted, seconds)

    def observe(self, waited: float, now: float) -> None:
        if now >= self.interval_ends:
            # judge the interval that ended; its first request only starts the next one
            self.overloaded = self._min is not None and self._min > self.target
            self.interval_ends = now + self.interval
            self._min = waited
        elif self._min is None or waited < self._min:
            self._min = waited

    def idle(self, now: float) -> None:
        """The queue emptied: it absorbed what it held; the interval that ends
        next (or has ended) is not overloaded."""
        self._min = 0.0
        if now >= self.interval_ends:
            self.overloaded = False
            self.interval_ends = now + self.interval

    def sloughs(self, waited: float) -> bool:
        """Refuse a request that waited this long (only while overloaded)."""
        return self.overloaded and self.policy.shed and waited > 2 * self.target


@dataclass(eq=False)
class _Waiter:
    budget: TimeBudget | None
    queued_at: float
    future: asyncio.Future[bool] = field(repr=False)


class Gate:
    """``permits`` permits for one resource, handed out by the rule above.

    :meth:`poll` takes a free permit at once when nobody waits (the common
    case: no await); when it cannot, :meth:`wait` queues. Both return True
    with a permit, or False when the request was refused (counted as shed; its
    answer is a 503). A request with no budget (lifespan, a background task)
    is never refused and waits in arrival order. Leaving :meth:`wait` by
    cancellation (the deadline, the client gone) takes the request out of the
    queue; it holds no permit then.
    """

    def __init__(
        self, permits: int, policy: QueuePolicy, tally: Tally, admission: Admission | None = None
    ) -> None:
        self.permits = permits
        self.free = permits
        self.codel = CoDel(policy)
        self.tally = tally
        self._admission = admission
        self._waiters: deque[_Waiter] = deque()  # cancelled ones are skipped when reached
        self.queued = 0  # waiters still waiting
        self._held_since: dict[int, float] = {}
        self._recheck: asyncio.TimerHandle | None = None

    @property
    def overloaded(self) -> bool:
        return self.codel.overloaded

    def poll(self, budget: TimeBudget | None) -> bool | None:
        """A free permit now (True), a refusal (False), or None: :meth:`wait`."""
        if self.free <= 0 or self.queued:
            return None
        now = time.monotonic()
        if budget is not None:
            # its queue time so far: before its app started (the event loop's own backlog too)
            waited = budget.before_app()
            self._observe(waited, now)
            if self.codel.sloughs(waited):
                self.tally.shed()
                return False
        self.free -= 1
        if budget is not None and budget.queue_s is None:
            budget.queue_s = waited
            self.tally.admitted(waited)
        return True

    async def wait(self, budget: TimeBudget | None) -> bool:
        codel = self.codel
        if budget is not None and codel.overloaded and codel.policy.shed and self.queued >= self.permits:
            self.tally.shed()  # a full round already waits: refuse before it costs anything
            return False
        waiter = _Waiter(budget, time.monotonic(), asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self.queued += 1
        try:
            admitted = await waiter.future
        except BaseException:
            future = waiter.future
            if not future.done() or future.cancelled():
                self.queued -= 1  # still in the deque: skipped when reached
            elif future.result():
                self.release()  # a permit came with the cancellation: pass it on
            raise
        if admitted:
            self._admit(budget, time.monotonic() - waiter.queued_at)
        return admitted

    def release(self) -> None:
        """Give a permit back: to the next waiter the rule picks, else to the pool."""
        if not self.queued and not self.codel.overloaded:
            self.free += 1  # the usual case: nobody waits
            if self._waiters:
                self._waiters.clear()  # only cancelled ones are left
            return
        now = time.monotonic()
        waiter = self._next(now)
        if waiter is not None:
            waiter.future.set_result(True)
            return
        self.free += 1
        if self.codel.overloaded:
            self.codel.idle(now)  # nobody waits: the queue drained
            if self.codel.overloaded:
                self._clear_when_idle()  # at the interval's end, unless a queue formed again
            else:
                self._changed()

    def _clear_when_idle(self) -> None:
        if self._recheck is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not in an event loop (granian's threads): the next request clears it
        delay = max(0.0, self.codel.interval_ends - time.monotonic()) + 0.001
        self._recheck = loop.call_later(delay, self._idle_check)

    def _idle_check(self) -> None:
        self._recheck = None
        if not self.queued and self.codel.overloaded:
            self.codel.idle(time.monotonic())
            if not self.codel.overloaded:
                self._changed()

    def _next(self, now: float) -> _Waiter | None:
        codel = self.codel
        waiters = self._waiters
        while self.queued:
            newest = codel.overloaded and codel.policy.lifo
            waiter = waiters.pop() if newest else waiters.popleft()
            if waiter.future.done():
                continue  # left by cancellation (already uncounted)
            self.queued -= 1
            waited = self._waited(waiter, now)
            self._observe(waited, now)
            if waiter.budget is not None and codel.sloughs(waited):
                self.tally.shed()
                waiter.future.set_result(False)
                continue
            if newest:
                self._slough_oldest(now)
            return waiter
        waiters.clear()  # only cancelled ones were left
        return None

    def _slough_oldest(self, now: float) -> None:
        """Served newest first, the oldest would wait for ever: refuse those past the limit."""
        waiters = self._waiters
        while waiters:
            oldest = waiters[0]
            if oldest.future.done():
                waiters.popleft()
                continue
            if oldest.budget is None or not self.codel.sloughs(self._waited(oldest, now)):
                return
            waiters.popleft()
            self.queued -= 1
            self.tally.shed()
            oldest.future.set_result(False)

    def _observe(self, waited: float, now: float) -> None:
        was = self.codel.overloaded
        self.codel.observe(waited, now)
        if self.codel.overloaded != was:
            self._changed()

    def _changed(self) -> None:
        if self._admission is not None:
            self._admission.changed()
        else:
            self.tally.overloaded(self.codel.overloaded)

    @staticmethod
    def _waited(waiter: _Waiter, now: float) -> float:
        """Its queue time: here, and before its app started (not what its app did meanwhile)."""
        before = waiter.budget.before_app() if waiter.budget is not None else 0.0
        return before + now - waiter.queued_at

    def _admit(self, budget: TimeBudget | None, gate_wait: float) -> None:
        if budget is not None and budget.queue_s is None:
            budget.queue_s = budget.before_app() + gate_wait
            self.tally.admitted(budget.queue_s)

    def hold(self, key: int) -> None:
        """Start timing a permit's use (the auto target is the median hold)."""
        self._held_since[key] = time.monotonic()

    def unhold(self, key: int) -> None:
        started = self._held_since.pop(key, None)
        if started is not None:
            self.codel.held(time.monotonic() - started)

    def give_back(self, key: int) -> None:
        """The permit timed as ``key`` is free again."""
        self.unhold(key)
        self.release()


class Admission:
    """One worker's managed queues: the policy and tally they share, and a
    gate per resource (each async pool, the WSGI bridge's threads)."""

    def __init__(self, policy: QueuePolicy, tally: Tally) -> None:
        self.policy = policy
        self.tally = tally
        self.gates: list[Gate] = []

    def gate(self, permits: int) -> Gate:
        gate = Gate(permits, self.policy, self.tally, self)
        self.gates.append(gate)
        return gate

    def changed(self) -> None:
        overloaded = any(gate.overloaded for gate in self.gates)
        self.tally.overloaded(overloaded)
