"""The crash-loop policy: when to replace a crashed worker, and when to give up.

Pure logic (no processes), so the master's decisions are unit-tested directly.
The rule in one sentence: a worker that was healthy (it became ready and did
work, or stayed ready for ``HEALTHY_AFTER`` seconds without being killed as
stuck) is replaced at once and never counts towards giving up; one that dies
before or right after becoming ready is replaced with growing backoff, and too
many of those in a row stop the supervisor. (An external kill, the OOM
killer's say, is a death of the first kind; a crash loop is one of the
second.) An idle worker is healthy too: a job worker waiting on an empty
queue, or the replacement of a killed HTTP worker whose keep-alive clients
all went to its siblings, may serve nothing for a long time.

The first crash of a slot is replaced at once; each further crash in a row
waits twice as long (0.5 s, 1 s, 2 s, ... up to 30 s). A worker that stayed up
for ``reset_after`` seconds wipes its slot's record. More than ``limit``
crashes in a row and the supervisor gives up (exit 6), so systemd or
Kubernetes see a failure instead of a process that burns CPU forever.
"""

from __future__ import annotations

from dataclasses import dataclass

BASE_DELAY = 0.5
MAX_DELAY = 30.0
# Ready this long, and not killed as stuck, is healthy. Crash loops die within
# milliseconds of becoming ready (a bad setting, an exception at the first
# call); a second is twice the first backoff, and supervisord's startsecs.
HEALTHY_AFTER = 1.0


@dataclass(frozen=True)
class Decision:
    streak: int
    delay: float
    give_up: bool


@dataclass(frozen=True)
class CrashPolicy:
    limit: int  # 0: never give up
    reset_after: float

    def healthy(self, lived: float, worked: bool, stuck: bool) -> bool:
        """Was a worker that died healthy? ``lived``: how long it was ready (0 if
        never); ``worked``: it finished at least one unit of work; ``stuck``: the
        master killed it for missing its heartbeat."""
        return worked or (not stuck and lived >= min(self.reset_after, HEALTHY_AFTER) and lived > 0)

    def on_crash(self, streak: int, lived: float, healthy: bool = False) -> Decision:
        """``streak``: crashes in a row so far; ``lived``: how long the crashed
        worker ran (since it became ready, or since fork if it never did);
        ``healthy``: see :meth:`healthy`."""
        if healthy:
            return Decision(0, 0.0, False)
        if lived >= self.reset_after:
            streak = 0
        streak += 1
        if self.limit and streak > self.limit:
            return Decision(streak, 0.0, True)
        delay = 0.0 if streak == 1 else min(BASE_DELAY * 2 ** (streak - 2), MAX_DELAY)
        return Decision(streak, delay, False)
