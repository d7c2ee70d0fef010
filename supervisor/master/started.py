"""What start-up opened and learned (``startup.start`` returns it): the
master takes it as its own state (``Master.take``), reads it while it runs,
and closes it last when it exits."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supervisor.control.health import HealthServer
    from supervisor.control.server import ControlServer
    from supervisor.database.budget import Budget, Seat
    from supervisor.http.sockets import Listener
    from supervisor.master.handle import WorkerHandle
    from supervisor.migrate.contract import Contracts
    from supervisor.settings.config import Config
    from supervisor.target import Target


@dataclass
class Started:
    target: Target | None = None  # imported (--preload), else None: the workers import it
    mold_preloads: bool = False  # --preload, but a mold of generation 0 imports it (refork.py)
    listeners: list[Listener] = field(default_factory=list)
    adopted: list[WorkerHandle] = field(default_factory=list)  # the previous image's, after a re-exec
    old_lifelines: list[int] = field(default_factory=list)  # what those adopted workers watch
    health: HealthServer | None = None
    control: ControlServer | None = None
    metrics: Callable[[], tuple[bytes, str]] | None = None  # /metrics, when enabled
    budget: Budget | None = None
    migrations: str = "none"  # for /readyz: none, skipped, up to date, applied N
    contracts: Contracts | None = None  # contract migrations the loop applies once old code is gone
    closing: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def member(self) -> Seat | None:
        """This master's seat in its fleet, if it joined one."""
        return self.budget.member if self.budget is not None else None

    def tick(self, now: float, config: Config) -> None:
        """Its own periodic work, each on a short-lived connection closed before
        returning: the fleet lease's renewal, then the contract migrations once
        the old code is gone."""
        if self.member is not None:
            self.member.refresh_if_due(now, config)
        if self.contracts is not None:
            self.contracts.tick(now, config)

    def deadlines(self) -> list[float]:
        """When :meth:`tick` has work next."""
        out = []
        if self.member is not None and self.member.joined:
            out.append(self.member.next_refresh)
        if self.contracts is not None and self.contracts.pending:
            out.append(self.contracts.next_check)
        return out

    def fds(self) -> list[int]:
        """The small servers' descriptors: a new worker closes them."""
        return [*(self.health.fds() if self.health else []), *(self.control.fds() if self.control else [])]

    def close(self) -> None:
        """Undo what start opened, last first (the loop closes its own pipes)."""
        self.closing.close()
