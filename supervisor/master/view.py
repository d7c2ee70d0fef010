"""What the master's helpers (start-up, rolling replacement, exit judgement)
may read and change of the master. :class:`~supervisor.master.loop.Master`
is the one implementation; declaring it here, below the helpers, keeps the
package free of import cycles and names every piece of state they share."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from supervisor.config import Config
    from supervisor.context import MasterInfo
    from supervisor.crashes import CrashPolicy
    from supervisor.errors import SupervisorError
    from supervisor.health import HealthServer
    from supervisor.hooks import Hooks
    from supervisor.master.control import ControlServer
    from supervisor.master.handle import Replacement, Slot, StopMode, WorkerHandle
    from supervisor.master.processes import Processes
    from supervisor.master.wakeup import Wakeup
    from supervisor.pidfile import PidFile
    from supervisor.preflight import Budget
    from supervisor.sockets import Listener
    from supervisor.target import Target


class Reloads(Protocol):
    """The part of rolling.Rollout the control commands use."""

    reloading: bool

    def busy(self) -> bool: ...

    def request_reload(self, now: float) -> None: ...


class MasterView(Protocol):
    config: Config
    hooks: Hooks
    target: Target | None
    reload_config: Callable[[], Config] | None
    procs: Processes
    listeners: list[Listener]
    health: HealthServer | None
    control: ControlServer | None
    pidfile: PidFile | None
    metrics: Callable[[], tuple[bytes, str]] | None
    migrations: str
    budget: Budget | None
    slots: dict[int, Slot]
    children: dict[int, WorkerHandle]
    stopping: StopMode | None
    booted: bool
    policy: CrashPolicy
    started_at: float
    clock: Callable[[], float]
    wakeup: Wakeup
    old_lifelines: list[int]  # after a re-exec: what the adopted workers watch

    def info(self, exit_code: int | None = None) -> MasterInfo: ...

    @property
    def rollout(self) -> Reloads: ...

    @property
    def reloading(self) -> bool: ...

    def ready_count(self) -> int: ...

    def spawn(
        self, slot: Slot, now: float, replacing: WorkerHandle | None = ..., why: Replacement = ...
    ) -> WorkerHandle | None: ...

    def run_hook(self, name: str, context: object, *, abort: str) -> bool: ...

    def check_budget(self, workers: int) -> None: ...

    def scale(self, workers: int) -> str | None: ...

    def fail(self, error: SupervisorError) -> None: ...

    def begin_stop(self, mode: StopMode, reason: str) -> None: ...
