"""Reforking (``--refork-after``): workers forked from a warmed worker share
what it warmed, instead of each warming its own copy.

With --preload, the app is imported by a mold of generation 0 that the
master forks before any worker (``sow``), never by the master; if that mold
fails, the master preloads the app itself after all. The first worker of the
current generation to serve the schedule's count of requests is promoted: it
finishes its work as if retired, closes its pools, ends its threads, freezes
its heap and becomes the mold (``worker/mold.py``).
From then on every worker is forked from the mold (the master hands it the
new worker's channels; it double-forks, and the master adopts the worker as
its subreaper), starting with the slot the mold left; the workers of the
older generation are replaced one at a time through the rolling path, so
capacity never drops by more than one worker and no request fails.

Once its generation is complete (every slot serves one of its workers), the
mold is retired unless workers are expected to be replaced (--max-requests,
--max-worker-memory): an idle mold holds a private copy of every page its
workers have written, about one worker's memory (bench/memory.py). A worker
replaced later (a crash, a scale-up) is then forked by the master, cold; the
master promotes a worker of the current generation again to replace it warm,
as it does when the mold dies: after a pause, keeping the generation, since
its workers are already the mold's kind. When no worker of the generation is
left, the schedule starts over. A mold that cannot fork (EAGAIN) leaves the
current workers in place; the replacement is tried again later. A reload drops
the mold once the new code is known to load (with --preload the new master
image then preloads it in a new mold), and the schedule starts again.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from supervisor.errors import SupervisorError
from supervisor.logging import get_logger
from supervisor.master.handle import State
from supervisor.settings.workers import refork_schedule
from supervisor.target import resolve

if TYPE_CHECKING:
    from supervisor.master.handle import WorkerHandle
    from supervisor.master.view import ReforkView
    from supervisor.settings.config import Config
    from supervisor.target import Target

log = get_logger()

RETRY_AFTER = 10.0  # seconds before another promotion, after a failed one or a dead mold


def preloads_in_mold(config: Config) -> bool:
    """--preload with reforking: the target is imported by a mold of generation
    0 that the workers are forked from, not by the master, so that once every
    worker descends from a later mold no process holds a copy of the app that
    no other shares (the master's was about 20 MiB of a Django app's 180)."""
    return config.preload and bool(refork_schedule(config, config.http))


class Reforker:
    """The master's refork state: the mold, the generation, what is in progress."""

    def __init__(self, master: ReforkView, schedule: tuple[int, ...]) -> None:
        self._m = master
        self.schedule = schedule
        self.generation = 0  # of the workers forked now: 0 by the master, N by the mold of generation N
        self.mold: WorkerHandle | None = None
        self.promoting: WorkerHandle | None = None
        self.retry_at = 0.0
        self.regrow = False  # the mold died: promote again, keeping the generation
        self.seeding: WorkerHandle | None = None  # the mold of generation 0, importing the app
        self._seed = False  # --preload: the app is imported in a mold, not in the master; once
        self._fallback = False  # that mold failed: the master imports the app itself after all
        self._subreaper = False  # adopt_orphans() succeeded: a mold's workers become the master's

    def follow(self, config: Config, seed: bool = False) -> None:
        """Take ``config``'s schedule (validated when it was loaded), or none
        when this system cannot adopt the mold's workers. ``seed``: at start,
        start-up left the app to a mold of generation 0: sow it."""
        self._seed = seed
        self.schedule = refork_schedule(config, config.http)
        if self.schedule and not self._subreaper:
            self._subreaper = self._m.procs.adopt_orphans()
            if not self._subreaper:
                log.warning("reforking off: this system cannot adopt the mold's workers (no subreaper)")
                self.schedule = ()

    def sow(self, now: float) -> Target | None:
        """Fork the mold of generation 0, before any worker: the workers are forked
        from it. If it failed, the target the master is to preload itself."""
        m = self._m
        if self._fallback and not m.stopping:
            self._fallback = False
            return self._preload_here()
        if not self._seed or not self._subreaper or m.stopping:
            return None
        self._seed = False
        try:
            handle = m.fork_seed(now)
        except OSError as exc:
            log.warning("could not fork the mold of generation 0; the master preloads", error=str(exc))
            self._fallback = True
            return None
        self.seeding, handle.preloading = handle, True
        log.info("mold of generation 0 spawned; it imports the target", mold_pid=handle.pid)
        return None

    def _preload_here(self) -> Target | None:
        """The mold of generation 0 failed (a thread its import started, a
        crash): the master imports the target itself, as --preload does without
        reforking, so the workers still share it. None if it cannot either."""
        from supervisor.http import engines

        cfg = self._m.config
        try:
            target = resolve(cfg.target, cfg.interface, cfg.factory)
        except SupervisorError as exc:
            log.error("the master cannot preload the target either; each worker imports it", error=str(exc))
            return None
        engines.warm(cfg.http, target.kind)
        log.info("target preloaded", kind=target.kind.value)
        return target

    @property
    def enabled(self) -> bool:
        return bool(self.schedule)

    def threshold(self, generation: int) -> int:
        """The request count after which a worker of ``generation`` is due (0: never)."""
        return self.schedule[generation] if generation < len(self.schedule) else 0

    def waiting(self) -> bool:
        """A promotion waits for ``retry_at`` (after a failure, or a dead mold)."""
        return self.enabled and self.retry_at > 0 and (self.regrow or self.mold is None)

    def mold_fd(self) -> int:
        """The mold's command socket, for a spawn through it; -1: the master forks."""
        mold = self.mold
        return mold.command_fd if mold is not None and mold.state is State.MOLD else -1

    def tick(self, now: float) -> None:
        """Promote when a worker is due; replace the old generation one at a time."""
        m = self._m
        if not self.enabled or m.stopping or self.promoting is not None or m.reloading or now < self.retry_at:
            return
        self.retry_at = 0.0
        if self.mold is not None:
            if self._roll(now):
                return  # the old generation first
            self._retire_when_complete(now)
        elif self.generation > 0 and self._regrow_if_cold(now):
            return
        due = self._due()
        if due is not None:
            self._promote(due, now)

    def _serving(self) -> list[WorkerHandle]:
        return [
            s.child
            for s in self._m.slots.values()
            if s.child is not None and s.child.state is State.READY and s.pending is None
        ]

    def _retire_when_complete(self, now: float) -> None:
        """Every slot serves a worker of the mold's generation: unless workers
        are expected to be replaced, the mold has nothing left to fork."""
        m, mold = self._m, self.mold
        if mold is None or mold.state is not State.MOLD or self.generation == 0:
            return  # the preloaded mold forks replacements until the first refork retires it
        if m.config.max_requests or m.config.max_worker_memory:
            return
        for slot in m.slots.values():
            child = slot.child
            if slot.pending is not None or child is None or child.generation != self.generation:
                return
            if child.state is not State.READY:
                return  # still booting: a boot that fails is forked again, from the mold
        self.mold = None
        log.info("generation complete; retiring its mold", mold_pid=mold.pid, generation=self.generation)
        mold.retire(m.procs, f"generation {self.generation} is complete", now, m.config.graceful_timeout)

    def _regrow_if_cold(self, now: float) -> bool:
        """No mold: a worker the master forked since (a crash's replacement, a
        scale-up) is cold. Promote a worker of the generation again to replace
        it warm, after a pause that lets a burst of replacements gather; with
        none of the generation left, start the schedule over. True: promote
        nothing now."""
        serving = self._serving()
        if not any(h.generation < self.generation for h in serving):
            return False
        if not any(h.generation == self.generation for h in serving):
            self.regrow = False  # a cold worker must not become a mold of the generation
            if len(serving) < len(self._m.slots):
                return True  # the others still boot: decide once every slot serves
            log.info("no worker of the generation is left; the refork schedule starts over")
            self.generation, self.retry_at = 0, 0.0
            return False
        if not self.regrow:
            self.regrow, self.retry_at = True, now + RETRY_AFTER
            return True
        return False

    def _due(self) -> WorkerHandle | None:
        """The worker to promote now, if one is due."""
        serving = self._serving()
        if self.regrow:  # any worker will do: the warmest of the newest generation
            return max(serving, key=lambda h: (h.generation, h.heartbeat.work), default=None)
        if self.generation >= len(self.schedule):
            return None  # the schedule is done
        threshold = self.schedule[self.generation]
        due = [h for h in serving if h.generation == self.generation and h.heartbeat.work >= threshold]
        return max(due, key=lambda h: h.heartbeat.work, default=None)

    def _promote(self, handle: WorkerHandle, now: float) -> None:
        m = self._m
        if len(m.slots) < 2 and not self.regrow:
            # its slot is empty until the mold forks its replacement: with one worker, a gap
            log.info("promoting the only worker: its slot serves nothing until the mold forks")
        log.info(
            "promoting a worker to mold",
            worker=handle.slot,
            worker_pid=handle.pid,
            work=handle.heartbeat.work,
            generation=self.generation + (0 if self.regrow else 1),
        )
        self.promoting = handle
        handle.promote(m.procs, now, m.config.graceful_timeout)

    def molded(self, handle: WorkerHandle, text: str, now: float) -> None:
        """``handle`` says it is the mold now (``mold GENERATION``)."""
        if handle is self.seeding:
            self.seeding = None
            if self._m.stopping:
                self._m.procs.signal(handle.pid, signal.SIGTERM)
            else:
                handle.ready_at = now  # booted: judged by its heartbeat from now on
                handle.became_mold(now, 0)
                self.mold = handle
                log.info("mold ready; forking workers from it", mold_pid=handle.pid, generation=0)
            return
        if handle is not self.promoting:
            return
        self.promoting = None
        m = self._m
        if m.stopping:
            # it stays a worker being stopped, with its kill time; a mold ends on TERM
            m.procs.signal(handle.pid, signal.SIGTERM)
            return
        generation = int(text) if text.isdigit() else self.generation + 1
        if self.regrow:
            generation, self.regrow = self.generation, False
        handle.became_mold(now, generation)
        old, self.mold, self.generation = self.mold, handle, generation
        if old is not None and old.state is State.MOLD:
            old.retire(
                self._m.procs,
                f"mold of generation {generation} is ready",
                now,
                self._m.config.graceful_timeout,
            )
        slot = self._m.slots.get(handle.slot)
        if slot is not None:
            slot.release(handle)  # refilled at once, through the mold
        log.info("mold ready; forking workers from it", mold_pid=handle.pid, generation=generation)

    def _roll(self, now: float) -> bool:
        """Replace one worker of an older generation (the rolling path keeps it
        to one replacement at a time); False when none is left."""
        m = self._m
        for slot in sorted(m.slots.values(), key=lambda s: s.id):
            child = slot.child
            if child is not None and child.generation < self.generation and child.state is not State.STOPPING:
                if not m.replacing() and child.state is State.READY:
                    m.recycle(child, f"refork: generation {self.generation} is ready", now)
                return True
        return False

    def exited(self, handle: WorkerHandle, desc: str, now: float) -> bool:
        """A child exited: True if it was the mold (the caller judges nothing more)."""
        if handle is self.seeding:
            self.seeding = None
            if not self._m.stopping:
                log.warning(
                    "the mold of generation 0 exited before it was ready; the master preloads the target",
                    status=desc,
                )
                self._fallback = True
            return True
        if handle is self.promoting:
            self.promoting = None
            self.retry_at = now + RETRY_AFTER
            log.warning("the promoted worker exited instead of becoming the mold", status=desc)
            return False  # it was a worker being stopped: the usual judgement applies
        if handle is not self.mold:
            return False
        self.mold = None
        if not self._m.stopping and handle.stop_reason is None:
            log.warning(
                "mold exited; the master forks workers until another is promoted",
                status=desc,
                retry_in_s=RETRY_AFTER,
            )
            self.regrow = self.generation > 0
            self.retry_at = now + RETRY_AFTER
        return True

    def fork_failed(self, now: float, unresponsive: bool = False) -> None:
        """The mold could not fork (EAGAIN): the current workers stay; try
        later. One that did not answer at all (stopped, stuck) is retired: the
        master forks until another is promoted."""
        self.retry_at = now + RETRY_AFTER
        mold = self.mold
        if unresponsive and mold is not None:
            log.warning("mold did not answer; retiring it", mold_pid=mold.pid, retry_in_s=RETRY_AFTER)
            self.mold = None
            self.regrow = self.generation > 0
            if mold.state is State.MOLD:
                mold.retire(self._m.procs, "the mold did not answer", now, self._m.config.graceful_timeout)

    def refused(self, handle: WorkerHandle, why: str) -> None:
        """The promoted worker cannot be the mold (a thread that does not end):
        none of its kind could. Reforking stops, once, with the reason."""
        if handle is not self.promoting and handle is not self.seeding:
            return
        self.schedule = ()
        log.warning(
            "reforking is off: a worker cannot become the mold; --refork-after 0 silences this",
            reason=why,
        )

    def reset(self, why: str, now: float) -> None:
        """New code (a reload): the mold's is old. Forked by the master again."""
        mold, self.mold = self.mold, None
        promoting, seeding = self.promoting, self.seeding
        self.generation, self.regrow, self.promoting, self.seeding = 0, False, None, None
        if seeding is not None:  # it would fork old code; it ends once it reads this
            seeding.retire(self._m.procs, why, now, self._m.config.graceful_timeout)
        if promoting is not None:
            # left alone it would become a mold nobody tracks, holding its slot until killed
            promoting.call_off_promotion(self._m.procs, why, now, self._m.config.graceful_timeout)
        if mold is not None and mold.state is State.MOLD:
            log.info("retiring the mold", reason=why)
            mold.retire(self._m.procs, why, now, self._m.config.graceful_timeout)
