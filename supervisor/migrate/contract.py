"""Contract migrations: the destructive half of a change, applied only once no
old code is left to break.

A file whose first line is ``-- contract`` drops what the code stopped using
(a column, a table, an old name). During a rolling deploy the old code still
runs while the new master migrates, so such a file must wait until every
master whose code lacks it is gone. Each master records the versions of its
``--migrations`` directory in its fleet row (``database/fleet.py``); a
contract file is applied only when no live master, in any fleet on the
database, lacks it (``fleet.lacking``). Until then it is pending: a start
skips it (the files after it apply as usual, so it never delays a start), and
the master applies it from its loop (:class:`Contracts`) as soon as the last
older master leaves, by a clean stop (its row is deleted) or when its lease
runs out (it died).

In the loop: a short-lived connection, the run-once lock only if it is free,
one attempt per turn under the lock rule (lockqueue.py), the backoff spent in
the loop's own wait rather than a sleep, so signals and workers are served
meanwhile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg

from supervisor.database.fleet import Reservation, first_line
from supervisor.errors import DatabaseUnavailableError, MigrationError
from supervisor.logging import get_logger
from supervisor.migrate import lockqueue, migrator_for, sqldir
from supervisor.migrate.sqlfiles import Migration, load
from supervisor.redact import scrub

if TYPE_CHECKING:
    from supervisor.settings.config import Config

log = get_logger()

AGAIN_AFTER_S = 60.0  # after a whole lock budget ran out in the loop, start another one then
EXPIRY_SLACK_S = 0.05  # look again just after a waited-for master's lease ends


class Contracts:
    """This master's contract files not applied yet, and when to look again
    (the loop calls :meth:`tick`, and sleeps at most until :attr:`next_check`)."""

    def __init__(self, config: Config, files: list[Migration]) -> None:
        self.files = files
        # a clean stop deletes the row: seen within this; a lease's end exactly
        self.interval = max(1.0, config.fleet_lease / 3)
        self.next_check = 0.0  # at the first turn of the loop
        self.timeouts = 0  # lock timeouts in a row
        self.waited = False  # some were pending here (not all applied before this master started)

    @classmethod
    def of(cls, config: Config) -> Contracts | None:
        """The watcher, when this master migrates a SQL directory that has
        contract files (the versions its code has: read at start, never again)."""
        spec = config.migrations
        if not spec or not config.migrate or not config.database_url or migrator_for(spec).name != "sqldir":
            return None
        files = [m for m in load(spec) if m.contract]
        return cls(config, files) if files else None

    @property
    def pending(self) -> bool:
        return bool(self.files)

    def tick(self, now: float, config: Config) -> None:
        """If it is time: apply what may be applied; decide when to look again."""
        if now < self.next_check or not self.files:
            return
        policy = lockqueue.Policy.of(config)
        try:
            # one attempt per turn: the backoff is spent in the loop's wait, not in a sleep
            waiting = sqldir.apply_due(config, self.files, lockqueue.Policy(policy.timeout_ms, 1))
        except lockqueue.LockBudgetError as exc:
            self._timed_out(now, config, policy, exc.held_by)
            return
        except DatabaseUnavailableError as exc:  # the lease refresh says so too
            log.warning("contract migrations not checked", error=str(exc), retry_in_s=self.interval)
            self.next_check = now + self.interval
            return
        except MigrationError as exc:
            log.error(
                "contract migration failed; it is retried by the next start or supervise migrate",
                error=str(exc),
            )
            self.files = []
            return
        except psycopg.Error as exc:  # the connection broke while looking
            reason = first_line(scrub(str(exc), config.database_url or "")) or type(exc).__name__
            log.warning("contract migrations not checked", error=reason, retry_in_s=self.interval)
            self.next_check = now + self.interval
            return
        self.timeouts = 0
        self.next_check = now + self._wait(waiting) if self.files else float("inf")
        if self.files:
            self.waited = True
        elif self.waited:
            log.info("every contract migration is applied")

    def _wait(self, waiting: list[Reservation]) -> float:
        """Until the next look: the interval, or less if a waited-for master's lease ends first."""
        ends = [r.lease_s - r.heartbeat_age_s for r in waiting]
        return max(EXPIRY_SLACK_S, min([self.interval, *(end + EXPIRY_SLACK_S for end in ends)]))

    def _timed_out(self, now: float, config: Config, policy: lockqueue.Policy, held_by: str) -> None:
        self.timeouts += 1
        file = self.files[0].file if self.files else ""
        if self.timeouts < config.table_lock_attempts:
            delay = policy.backoff(self.timeouts)
            log.warning(
                "migration gave up waiting for a lock; retrying",
                migration=f"migration {file}",
                attempt=self.timeouts,
                attempts=config.table_lock_attempts,
                retry_in_s=round(delay, 2),
                held_by=held_by,
            )
            self.next_check = now + delay
            return
        log.error(
            "contract migration could not take its lock; it stays pending",
            file=file,
            attempts=self.timeouts,
            lock_timeout_ms=policy.timeout_ms,
            held_by=held_by,
            retry_in_s=AGAIN_AFTER_S,
        )
        self.timeouts = 0
        self.next_check = now + AGAIN_AFTER_S
